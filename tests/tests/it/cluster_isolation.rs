//! Tenant isolation on a cluster (issue 15): the essence of `core_isolation`, `isolation_cometql` and
//! `isolation_browser` with two tenants spread over three real `halley` processes sharing one Redis and
//! one PostgreSQL, same pipe names and user ids. A's publishes (CometQL on any node, a browser's
//! `web_pipe2`) never reach B's pages on any node; B's CometQL on any node never reads A's presence
//! (`pipes`, `users_in_pipes`, `users_time`, `track_` events), history (`pipes_messages`, `pipe_log`) or
//! settings; B cannot switch to A's database on any node.

use std::net::SocketAddr;

use halley_tests::browser::{jwt, Browser};
use halley_tests::frames::json;
use halley_tests::mysql_raw::{RawMysql, Reply};
use halley_tests::nodes::ProcessCluster;
use halley_tests::Tenant;
use serde_json::Value;

const PIPES: [&str; 3] = ["chat", "web_chat", "track_room"];

async fn login(cql: SocketAddr, t: &Tenant) -> RawMysql {
    RawMysql::login_at(cql, &t.dev_id.to_string(), &t.key).await
}

fn publish(pipe: &str, event: &str, message: &str) -> String {
    format!("INSERT INTO pipes_messages (name, event, message) VALUES ('{pipe}', '{event}', '{message}')")
}

fn rows(reply: &Reply) -> Vec<Vec<String>> {
    reply.rows().to_vec()
}

/// The frames `b` gets before the marker `text` on `pipe` (which is consumed).
async fn before_marker(b: &mut Browser, pipe: &str, text: &str) -> Vec<Value> {
    let mut got = Vec::new();
    loop {
        let v = json(&b.recv().await);
        if v["pipe"] == pipe && v["event"] == "marker" && v["data"] == text {
            return got;
        }
        got.push(v);
    }
}

/// Every page of `pages` gets nothing before its own tenant's marker, published through `cql`.
async fn only_marker(pages: &mut [Browser], q: &mut RawMysql, text: &str) {
    for pipe in PIPES {
        q.query(&publish(pipe, "marker", text)).await.assert_ok();
    }
    for (i, b) in pages.iter_mut().enumerate() {
        for pipe in PIPES {
            let got = before_marker(b, pipe, text).await;
            assert!(
                got.is_empty(),
                "page {i} got another tenant's frames: {got:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_spread_over_nodes_never_see_each_other() {
    let cluster = ProcessCluster::start(3).await;
    let a = cluster.tenant("iso-a@example.com").await;
    let b = cluster.tenant("iso-b@example.com").await;
    let http = |i: usize| cluster.node(i).http_addr();
    let cql = |i: usize| cluster.node(i).cometql_addr();
    let mut qa = login(cql(0), &a).await;
    let mut qb = login(cql(2), &b).await;
    for q in [&mut qa, &mut qb] {
        q.query("INSERT INTO users_auth (id, hash) VALUES (7, 'h7')")
            .await
            .assert_ok();
        q.query("INSERT INTO pipes_settings (name, length) VALUES ('chat', 10)")
            .await
            .assert_ok();
    }

    // Pages of both tenants on every node, on the same pipes.
    let mut a_pages = Vec::new();
    let mut b_pages = Vec::new();
    for i in 0..3 {
        let mut pa = Browser::connect_at(http(i), a.dev_id, 0, "", &format!("a{i}")).await;
        pa.subscribe(&PIPES).await;
        a_pages.push(pa);
        let mut pb = Browser::connect_at(http(i), b.dev_id, 0, "", &format!("b{i}")).await;
        pb.subscribe(&PIPES).await;
        b_pages.push(pb);
    }
    // Everyone's own joins, read up to a marker of each tenant.
    for (pages, q, text) in [
        (&mut a_pages, &mut qa, "a-start"),
        (&mut b_pages, &mut qb, "b-start"),
    ] {
        for pipe in PIPES {
            q.query(&publish(pipe, "marker", text)).await.assert_ok();
        }
        for p in pages.iter_mut() {
            for pipe in PIPES {
                before_marker(p, pipe, text).await;
            }
        }
    }

    // A's user 7 joins track_room on node 1; A publishes through nodes 0 and 1, and a browser's web_pipe2.
    let mut a7 = Browser::connect_at(http(1), a.dev_id, 7, "h7", "a7").await;
    assert!(a7.authorized(), "{}", a7.hello);
    a7.subscribe(&["track_room"]).await;
    let mut qa1 = login(cql(1), &a).await;
    for (q, m) in [(&mut qa, "a0"), (&mut qa1, "a1")] {
        q.query(&publish("chat", "e", m)).await.assert_ok();
        q.query(&publish("web_chat", "e", m)).await.assert_ok();
    }
    a7.send("web_pipe2\nweb_chat\ne\n*\nfrom A's browser").await;
    let mut seen_by_a = Vec::new();
    for p in a_pages.iter_mut() {
        seen_by_a.push(before_marker_all(p, &mut qa1, "a-after").await);
    }
    for got in &seen_by_a {
        assert!(
            got.iter().any(|v| v["data"] == "from A's browser"),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|v| v["pipe"] == "track_room" && v["data"]["user_id"] == 7),
            "{got:?}"
        );
    }
    only_marker(&mut b_pages, &mut qb, "b-after").await;

    // B's CometQL on every node reads only B's presence, history and settings.
    for i in 0..3 {
        let mut q = login(cql(i), &b).await;
        let node = format!("node {i}");
        assert_eq!(
            rows(
                &q.query("SELECT name, users FROM pipes WHERE name = 'track_room'")
                    .await
            ),
            [["track_room", "3"]],
            "{node}: B's three pages only"
        );
        let members = q
            .query("SELECT user_id FROM users_in_pipes WHERE name = 'track_room'")
            .await;
        assert_eq!(rows(&members), [["0"], ["0"], ["0"]], "{node}");
        assert_eq!(
            rows(
                &q.query("SELECT id, time FROM users_time WHERE id = 7")
                    .await
            ),
            [["7", "-1"]],
            "{node}: A's user 7 online is not B's"
        );
        let history = q
            .query("SELECT message FROM pipes_messages WHERE name = 'chat'")
            .await;
        let history: Vec<String> = history.rows().iter().map(|r| r[0].clone()).collect();
        assert!(
            history.iter().all(|m| m.starts_with("b-")),
            "{node}: {history:?}"
        );
        // B's own db_<N> works, A's is refused, and so is the reference's cluster prefix.
        assert!(matches!(
            q.init_db(&format!("db_{}", b.dev_id)).await,
            Reply::Ok { .. }
        ));
        assert_eq!(
            q.init_db(&format!("db_{}", a.dev_id)).await.err(),
            (15, "Select database failure")
        );
        let prefixed = format!(
            "cometqlcluster_v1 set dev_id={}; SELECT * FROM pipes WHERE name = 'chat'",
            a.dev_id
        );
        assert_eq!(q.query(&prefixed).await.err(), (16, "Invalid dev_id value"));
    }
    // And A on every node sees its own.
    for i in 0..3 {
        let mut q = login(cql(i), &a).await;
        assert_eq!(
            rows(
                &q.query("SELECT name, users FROM pipes WHERE name = 'track_room'")
                    .await
            ),
            [["track_room", "4"]],
            "node {i}"
        );
        assert_eq!(
            rows(
                &q.query("SELECT id, time FROM users_time WHERE id = 7")
                    .await
            ),
            [["7", "0"]]
        );
        let history = q
            .query("SELECT message FROM pipes_messages WHERE name = 'chat'")
            .await;
        let history: Vec<String> = history.rows().iter().map(|r| r[0].clone()).collect();
        assert!(
            history.contains(&"a0".to_string()) && history.contains(&"a1".to_string()),
            "{history:?}"
        );
        assert!(history.iter().all(|m| m.starts_with('a')), "{history:?}");
    }

    // A's user JWT is accepted on a node that did not create the tenant (one master key), and is no
    // key of B's.
    let a9 = Browser::connect_at(http(2), a.dev_id, 9, &jwt(&a, 9), "a9").await;
    assert!(a9.authorized(), "{}", a9.hello);
    let b9 = Browser::connect_at(http(1), b.dev_id, 9, &jwt(&a, 9), "b9").await;
    assert!(!b9.authorized(), "{}", b9.hello);

    // A browser of B asks pipe_log and track_pipe_users on every node: B's own only.
    for (i, p) in b_pages.iter_mut().enumerate() {
        p.send("pipe_log\nchat\nlog").await;
        p.send("track_pipe_users\ntrack_room\nusers").await;
        let got = p.sync().await;
        assert!(
            got.len() >= 2,
            "node {i}: B's history and B's users: {got:?}"
        );
        for frame in &got {
            let v = json(frame);
            assert!(v["data"] != "a0" && v["data"] != "a1", "node {i}: {frame}");
            assert!(!frame.contains("\"user_id\":7"), "node {i}: {frame}");
        }
    }
    cluster.stop().await;
}

/// Publishes `text` as a marker on every pipe and returns every frame `b` got before them.
async fn before_marker_all(b: &mut Browser, q: &mut RawMysql, text: &str) -> Vec<Value> {
    let mut got = Vec::new();
    for pipe in PIPES {
        q.query(&publish(pipe, "marker", text)).await.assert_ok();
        got.extend(before_marker(b, pipe, text).await);
    }
    got
}
