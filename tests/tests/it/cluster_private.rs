//! Private messages (users_messages) on a cluster (issue 15): durable in PostgreSQL as on one node; a
//! message reaches the user's connections on whichever nodes they are, once per connection; a user online
//! nowhere has it queued; a user connecting on one node while a sender on another sends never misses a
//! message nor gets one twice (the drain and the sender decide through Redis, `cluster/private.rs`).

use halley::cluster::Keys;
use halley::ids::{DevId, UserId};
use halley_tests::browser::Browser;
use halley_tests::cluster::{RedisProcess, TestCluster};
use halley_tests::frames::json;
use halley_tests::mysql_raw::RawMysql;
use halley_tests::wait::{eventually, WAIT};

const USER: u64 = 70;

fn send_sql(text: &str) -> String {
    format!("INSERT INTO users_messages (id, event, message) VALUES ({USER}, 'e', '{text}')")
}

/// The texts of the next `n` private messages the connection gets (other frames skipped), or fewer when
/// none comes for a while: a missing one shows in the caller's comparison.
async fn private_texts(b: &mut Browser, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let Ok(text) = b.ws.recv_text(WAIT).await else {
            break;
        };
        let v = json(&text);
        if v["pipe"] == "msg" {
            got.push(v["data"].as_str().unwrap_or_default().to_string());
        }
    }
    got
}

/// Waits until no node holds the user any more (their last connections closed everywhere).
async fn offline_everywhere(cluster: &TestCluster, dev_id: u64) {
    let holders = Keys::new(&cluster.prefix).holders(DevId(dev_id), UserId(USER));
    let redis = cluster.redis().await;
    eventually(WAIT, || {
        let (holders, mut redis) = (holders.clone(), redis.clone());
        async move {
            let n: i64 = redis::cmd("HLEN")
                .arg(&holders)
                .query_async(&mut redis)
                .await?;
            match n {
                0 => Ok(()),
                n => Err(anyhow::anyhow!("{n} nodes still hold the user")),
            }
        }
    })
    .await
    .unwrap();
}

async fn queued(q: &mut RawMysql) -> usize {
    let reply = q
        .query(&format!(
            "SELECT message FROM users_messages WHERE id = {USER}"
        ))
        .await;
    reply.rows().len()
}

/// The user on B (twice) and on C; a sender on A: every connection gets every message once, in order.
/// Then the user leaves everywhere: the next message is queued, and the next connect (on C) drains it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_private_message_reaches_the_user_on_every_node_once() {
    // A Redis of its own: another suite's `CLIENT KILL TYPE pubsub` would be a fault this test does not
    // exercise (a node whose pub/sub connection is down misses its users' messages meanwhile).
    let redis = RedisProcess::start().await;
    let cluster = TestCluster::start_on(3, &redis.url(), |_| {}).await;
    let t = cluster.tenant("a@example.com").await;
    let mut q = RawMysql::login(cluster.node(0), &t).await;
    q.query(&format!(
        "INSERT INTO users_auth (id, hash) VALUES ({USER}, 'h70')"
    ))
    .await
    .assert_ok();
    let mut pages = vec![
        Browser::connect(cluster.node(1), t.dev_id, USER, "h70", "b1").await,
        Browser::connect(cluster.node(1), t.dev_id, USER, "h70", "b2").await,
        Browser::connect(cluster.node(2), t.dev_id, USER, "h70", "c1").await,
    ];
    for p in &mut pages {
        // Its drain is over once the connection answers a command.
        p.sync().await;
    }
    let want: Vec<String> = (0..30).map(|i| format!("p{i}")).collect();
    for text in &want {
        q.query(&send_sql(text)).await.assert_ok();
    }
    for p in &mut pages {
        assert_eq!(private_texts(p, want.len()).await, want, "{}", p.uuid);
        p.expect_nothing().await;
    }
    assert_eq!(queued(&mut q).await, 0, "delivered live, nothing queued");
    for p in pages {
        p.close().await;
    }
    offline_everywhere(&cluster, t.dev_id).await;
    q.query(&send_sql("while away")).await.assert_ok();
    assert_eq!(queued(&mut q).await, 1, "a user online nowhere: queued");
    let mut back = Browser::connect(cluster.node(2), t.dev_id, USER, "h70", "back").await;
    assert_eq!(private_texts(&mut back, 1).await, vec!["while away"]);
    back.expect_nothing().await;
    assert_eq!(queued(&mut q).await, 0);
    back.close().await;
    cluster.stop().await;
}

/// Round after round: the user is offline, a sender on A sends a stream of messages, and in the middle
/// the user connects on B (its drain racing with the sends). The connection gets every message of the
/// round exactly once, in order (the early ones from the queue, the rest live), and nothing stays queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_connecting_on_one_node_while_another_sends_misses_nothing() {
    const K: usize = 16;
    let redis = RedisProcess::start().await;
    let cluster = TestCluster::start_on(2, &redis.url(), |_| {}).await;
    let t = cluster.tenant("a@example.com").await;
    let mut q = RawMysql::login(cluster.node(0), &t).await;
    q.query(&format!(
        "INSERT INTO users_auth (id, hash) VALUES ({USER}, 'h70')"
    ))
    .await
    .assert_ok();
    let mut sender = Some(RawMysql::login(cluster.node(0), &t).await);
    for round in 0..20 {
        // Connect after this many sends (0..K), so that the drain meets the stream at every point.
        let connect_after = (round * 7) % K;
        let (ready, go) = tokio::sync::oneshot::channel();
        let mut s = sender.take().unwrap();
        let sending = tokio::spawn(async move {
            let mut ready = Some(ready);
            for i in 0..K {
                if i == connect_after {
                    let _ = ready.take().unwrap().send(());
                }
                s.query(&send_sql(&format!("r{round}-{i}")))
                    .await
                    .assert_ok();
            }
            s
        });
        go.await.unwrap();
        let mut page =
            Browser::connect(cluster.node(1), t.dev_id, USER, "h70", &format!("u{round}")).await;
        sender = Some(sending.await.unwrap());
        let want: Vec<String> = (0..K).map(|i| format!("r{round}-{i}")).collect();
        assert_eq!(
            private_texts(&mut page, K).await,
            want,
            "round {round} (connected after {connect_after} sends)"
        );
        page.expect_nothing().await;
        assert_eq!(
            queued(&mut q).await,
            0,
            "round {round}: nothing left queued"
        );
        page.close().await;
        offline_everywhere(&cluster, t.dev_id).await;
    }
    cluster.stop().await;
}

/// The user is ready on B only. B's pub/sub connection is killed and A sends while B cannot hear: no
/// node takes the message, so it is queued; once B hears again it delivers the user's queue to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_sent_while_the_user_s_node_cannot_hear_arrives_after() {
    let redis = RedisProcess::start().await;
    let cluster = TestCluster::start_on(2, &redis.url(), |_| {}).await;
    let t = cluster.tenant("a@example.com").await;
    let mut q = RawMysql::login(cluster.node(0), &t).await;
    q.query(&format!(
        "INSERT INTO users_auth (id, hash) VALUES ({USER}, 'h70')"
    ))
    .await
    .assert_ok();
    let mut page = Browser::connect(cluster.node(1), t.dev_id, USER, "h70", "page").await;
    page.sync().await;
    let mut conn = cluster.redis().await;
    let _: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "pubsub"])
        .query_async(&mut conn)
        .await
        .unwrap();
    q.query(&send_sql("while deaf")).await.assert_ok();
    assert_eq!(private_texts(&mut page, 1).await, vec!["while deaf"]);
    page.expect_nothing().await;
    assert_eq!(queued(&mut q).await, 0);
    page.close().await;
    cluster.stop().await;
}
