//! Revocations on a cluster (issue 15): deleting a user's users_auth row, revoking their token, or revoking
//! a key on one node closes the affected sessions on every node; a node that missed a revocation on the
//! control channel reads it from Redis (`cluster/control.rs`).

use halley::cluster::Keys;
use halley_tests::browser::{jwt, Browser};
use halley_tests::cluster::TestCluster;
use halley_tests::dashboard;
use halley_tests::mysql_raw::RawMysql;
use halley_tests::wait::WAIT;

async fn closed(b: &mut Browser, what: &str) {
    assert!(
        b.ws.expect_closed(WAIT).await.is_ok(),
        "{what}: the connection was not closed"
    );
}

/// users_auth DELETE on A closes the user's connections on B and C (and only theirs); a revoked JWT on
/// A closes that user's connection on C.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_user_or_revoking_a_token_closes_their_sessions_on_every_node() {
    let cluster = TestCluster::start(3).await;
    let t = cluster.tenant("a@example.com").await;
    let mut q = RawMysql::login(cluster.node(0), &t).await;
    for (id, hash) in [(70, "h70"), (71, "h71")] {
        q.query(&format!(
            "INSERT INTO users_auth (id, hash) VALUES ({id}, '{hash}')"
        ))
        .await
        .assert_ok();
    }
    let mut on_b = Browser::connect(cluster.node(1), t.dev_id, 70, "h70", "b").await;
    let mut on_c = Browser::connect(cluster.node(2), t.dev_id, 70, "h70", "c").await;
    let mut other = Browser::connect(cluster.node(1), t.dev_id, 71, "h71", "other").await;
    for b in [&mut on_b, &mut on_c, &mut other] {
        assert!(b.authorized());
    }
    q.query("DELETE FROM users_auth WHERE id = 70")
        .await
        .assert_ok();
    closed(&mut on_b, "user 70 on B").await;
    closed(&mut on_c, "user 70 on C").await;
    other.expect_nothing().await;

    let token = jwt(&t, 72);
    let mut by_token = Browser::connect(cluster.node(2), t.dev_id, 72, &token, "jwt").await;
    assert!(by_token.authorized(), "{}", by_token.hello);
    q.query(&format!(
        "INSERT INTO revoked_tokens (token) VALUES ('{token}')"
    ))
    .await
    .assert_ok();
    closed(&mut by_token, "user 72's token on C").await;
    other.expect_nothing().await;
    other.close().await;
    cluster.stop().await;
}

/// A key revoked through the dashboard on A closes the CometQL session that logged in with it on B.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoking_a_key_closes_its_cometql_sessions_on_every_node() {
    let cluster = TestCluster::start(2).await;
    let (mut owner, dev_id, _first, _) =
        dashboard::Browser::new_tenant(cluster.node(0).http_addr(), "k@example.com").await;
    let r = owner
        .call("POST", "/keys", Some(serde_json::json!({"name": "two"})))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let second_id = r.json()["id"].as_i64().unwrap();
    let second_key = r.json()["key"].as_str().unwrap().to_owned();
    let user = dev_id.to_string();
    let mut on_b = RawMysql::login_at(cluster.node(1).cometql_addr(), &user, &second_key).await;
    let r = owner
        .call("DELETE", &format!("/keys/{second_id}"), None)
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(
        on_b.expect_closed(WAIT).await.is_ok(),
        "the revoked key's session on B is closed"
    );
    cluster.stop().await;
}

/// A revocation B never heard on the channel (written to the window only, as if B's pub/sub connection
/// had been down) is read from Redis when B sees the next number: the user's connection on B closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_missed_on_the_channel_is_read_from_redis() {
    let cluster = TestCluster::start(2).await;
    let t = cluster.tenant("a@example.com").await;
    let mut q = RawMysql::login(cluster.node(0), &t).await;
    for (id, hash) in [(70, "h70"), (71, "h71")] {
        q.query(&format!(
            "INSERT INTO users_auth (id, hash) VALUES ({id}, '{hash}')"
        ))
        .await
        .assert_ok();
    }
    let mut missed = Browser::connect(cluster.node(1), t.dev_id, 70, "h70", "missed").await;
    let mut heard = Browser::connect(cluster.node(1), t.dev_id, 71, "h71", "heard").await;
    let keys = Keys::new(&cluster.prefix);
    let mut redis = cluster.redis().await;
    let n: u64 = redis::cmd("INCR")
        .arg(keys.control_seq())
        .query_async(&mut redis)
        .await
        .unwrap();
    let () = redis::cmd("ZADD")
        .arg(keys.control_window())
        .arg(n)
        .arg(format!("{n} u {} 70", t.dev_id))
        .query_async(&mut redis)
        .await
        .unwrap();
    // Nothing on the channel yet: B has not heard of it.
    missed.expect_nothing().await;
    q.query("DELETE FROM users_auth WHERE id = 71")
        .await
        .assert_ok();
    closed(&mut heard, "user 71 (heard on the channel)").await;
    closed(&mut missed, "user 70 (read from the window)").await;
    cluster.stop().await;
}
