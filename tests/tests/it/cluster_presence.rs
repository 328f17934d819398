//! Presence on several nodes (issue 15, second slice; docs/production.md "Running several nodes"):
//! `pipes`, `users_in_pipes`, `users_time` and the browser's `pipe_count`, `track_pipe_users` and
//! `user_status` answer the same on every node; a `track_` join or leave reaches the pipe's subscribers on
//! every node once; a user connected on two nodes is online once and offline once, after the last
//! connection anywhere; a tenant never sees another's members.
//!
//! "Once" is checked with a marker: a message published to the same pipe after the event travels on the
//! same Redis channel, so the frames a subscriber gets before the marker are all the announcements made.

use halley::cluster::Keys;
use halley::ids::{DevId, PipeName};
use halley_tests::browser::Browser;
use halley_tests::cluster::TestCluster;
use halley_tests::cometql::insert_sql;
use halley_tests::frames::json;
use halley_tests::mysql_raw::RawMysql;
use halley_tests::wait::{eventually, WAIT};
use halley_tests::{Tenant, TestServer};
use serde_json::Value;

pub(crate) async fn rows(node: &TestServer, t: &Tenant, sql: &str) -> Vec<Vec<String>> {
    let mut q = RawMysql::login(node, t).await;
    q.query(sql).await.rows().to_vec()
}

pub(crate) async fn run(node: &TestServer, t: &Tenant, sql: &str) {
    let mut q = RawMysql::login(node, t).await;
    q.query(sql).await.assert_ok();
}

/// Publishes a marker on `pipe` through `node`.
pub(crate) async fn mark(node: &TestServer, t: &Tenant, pipe: &str, text: &str) {
    run(node, t, &insert_sql(pipe, "mark", text)).await;
}

/// The frames `b` got before the marker `text` (the marker itself consumed).
pub(crate) async fn before_mark(b: &mut Browser, text: &str) -> Vec<Value> {
    let mut got = Vec::new();
    loop {
        let v = json(&b.recv().await);
        if v["event"] == "mark" && v["data"] == text {
            return got;
        }
        got.push(v);
    }
}

/// What a track_ announcement says: (event, user_id, uuid).
pub(crate) fn track_of(v: &Value) -> (String, u64, String) {
    (
        v["event"].as_str().unwrap_or_default().to_string(),
        v["data"]["user_id"].as_u64().unwrap_or(u64::MAX),
        v["data"]["uuid"].as_str().unwrap_or_default().to_string(),
    )
}

/// The `data` of the next answer frame on `_answer*` pipes, after sending `command`.
async fn answer(b: &mut Browser, command: &str) -> Value {
    b.send(command).await;
    loop {
        let v = json(&b.recv().await);
        if v["pipe"].as_str().is_some_and(|p| p.starts_with("_answer")) {
            return v;
        }
    }
}

async fn users_auth(cluster: &TestCluster, t: &Tenant, ids: &[u64]) {
    for id in ids {
        run(
            cluster.node(0),
            t,
            &format!("INSERT INTO users_auth (id, hash) VALUES ({id}, 'h{id}')"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_reads_answer_the_same_on_every_node() {
    let cluster = TestCluster::start(3).await;
    let t = cluster.tenant("reads@example.com").await;
    users_auth(&cluster, &t, &[81, 82]).await;
    let mut u81 = Browser::connect(cluster.node(0), t.dev_id, 81, "h81", "u81").await;
    let mut anon = Browser::connect(cluster.node(1), t.dev_id, 0, "", "anon").await;
    let mut u82 = Browser::connect(cluster.node(2), t.dev_id, 82, "h82", "u82").await;
    u81.subscribe(&["track_room", "web_a"]).await;
    anon.subscribe(&["track_room"]).await;
    u82.subscribe(&["web_a"]).await;

    let mut seen = Vec::new();
    for i in 0..3 {
        let node = cluster.node(i);
        let pipes = rows(
            node,
            &t,
            "SELECT name, users FROM pipes WHERE name IN ('track_room', 'web_a', 'web_none')",
        )
        .await;
        assert_eq!(
            pipes,
            [["track_room", "2"], ["web_a", "2"], ["web_none", "0"]],
            "pipes on node {i}"
        );
        let members = rows(
            node,
            &t,
            "SELECT * FROM users_in_pipes WHERE name = 'track_room'",
        )
        .await;
        let times = rows(
            node,
            &t,
            "SELECT id, time FROM users_time WHERE id IN (81, 82, 83)",
        )
        .await;
        assert_eq!(
            times,
            [["81", "0"], ["82", "0"], ["83", "-1"]],
            "users_time on node {i}"
        );
        let limited = rows(
            node,
            &t,
            "SELECT user_id FROM users_in_pipes WHERE name = 'web_a' LIMIT 1",
        )
        .await;
        assert_eq!(limited.len(), 1);
        seen.push(members);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], seen[2]);
    let mut who: Vec<(String, String)> = seen[0]
        .iter()
        .map(|r| (r[1].clone(), r[2].clone()))
        .collect();
    who.sort();
    assert_eq!(
        who,
        [
            ("0".into(), anon.uuid.clone()),
            ("81".into(), u81.uuid.clone())
        ]
    );

    // The browser's reads, asked on each node.
    let mut answers = Vec::new();
    for b in [&mut u81, &mut anon, &mut u82] {
        let count = answer(b, "pipe_count\nweb_a\nm1").await;
        assert_eq!(count["data"]["user_in_pipe"], 2, "{count}");
        let users = answer(b, "track_pipe_users\ntrack_room\nm2").await;
        let status = answer(b, "user_status\n82").await;
        assert_eq!(status["data"]["data"], 0, "{status}");
        answers.push(users["data"].clone());
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
    assert_eq!(
        answers[0].as_array().map(Vec::len),
        Some(2),
        "{}",
        answers[0]
    );

    // Gone on one node: gone for every node.
    u81.close().await;
    for i in 0..3 {
        // A close is not waited for: its write comes a moment later.
        eventually(WAIT, || async {
            let n = rows(
                cluster.node(i),
                &t,
                "SELECT users FROM pipes WHERE name = 'web_a'",
            )
            .await;
            (n == [["1"]])
                .then_some(())
                .ok_or(anyhow::anyhow!("node {i}: {n:?}"))
        })
        .await
        .unwrap();
    }
    anon.close().await;
    u82.close().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn track_joins_and_leaves_reach_every_node_once() {
    let cluster = TestCluster::start(3).await;
    let t = cluster.tenant("track@example.com").await;
    users_auth(&cluster, &t, &[72]).await;
    let mut watchers = Vec::new();
    for i in 0..3 {
        let mut w = Browser::connect(cluster.node(i), t.dev_id, 0, "", &format!("w{i}")).await;
        w.subscribe(&["track_room"]).await;
        watchers.push(w);
    }
    // The watchers' own joins: w0 saw w1 and w2 come, w1 saw w2, w2 saw nobody.
    mark(cluster.node(0), &t, "track_room", "m0").await;
    for (i, w) in watchers.iter_mut().enumerate() {
        let got: Vec<_> = before_mark(w, "m0").await.iter().map(track_of).collect();
        let want: Vec<_> = (i + 1..3)
            .map(|j| {
                (
                    "subscription".to_string(),
                    0,
                    halley_tests::browser::uuid_of(&format!("w{j}")),
                )
            })
            .collect();
        assert_eq!(got, want, "watcher {i}");
    }

    let mut u = Browser::connect(cluster.node(1), t.dev_id, 72, "h72", "u72").await;
    u.subscribe(&["web_x", "track_room"]).await;
    mark(cluster.node(2), &t, "track_room", "m1").await;
    for (i, w) in watchers.iter_mut().enumerate() {
        let got: Vec<_> = before_mark(w, "m1").await.iter().map(track_of).collect();
        assert_eq!(
            got,
            [("subscription".to_string(), 72, u.uuid.clone())],
            "one join on watcher {i}'s node"
        );
    }
    // The newcomer hears nothing of itself.
    assert!(before_mark(&mut u, "m1").await.is_empty());

    // Leaving by resubscribing, then by closing: one leave each, on every node.
    u.subscribe(&["web_x"]).await;
    mark(cluster.node(0), &t, "track_room", "m2").await;
    for w in watchers.iter_mut() {
        let got: Vec<_> = before_mark(w, "m2").await.iter().map(track_of).collect();
        assert_eq!(got, [("unsubscription".to_string(), 72, u.uuid.clone())]);
    }
    let w2 = watchers.pop().unwrap();
    let w2_uuid = w2.uuid.clone();
    w2.close().await;
    eventually(WAIT, || async {
        let n = rows(
            cluster.node(0),
            &t,
            "SELECT users FROM pipes WHERE name = 'track_room'",
        )
        .await;
        (n == [["2"]]).then_some(()).ok_or(anyhow::anyhow!("{n:?}"))
    })
    .await
    .unwrap();
    mark(cluster.node(1), &t, "track_room", "m3").await;
    for w in watchers.iter_mut() {
        let got: Vec<_> = before_mark(w, "m3").await.iter().map(track_of).collect();
        assert_eq!(got, [("unsubscription".to_string(), 0, w2_uuid.clone())]);
    }
    for w in watchers {
        w.close().await;
    }
    u.close().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_on_two_nodes_is_online_once_and_offline_once() {
    let cluster = TestCluster::start(3).await;
    let t = cluster.tenant("status@example.com").await;
    users_auth(&cluster, &t, &[73]).await;
    let mut w0 = Browser::connect(cluster.node(0), t.dev_id, 0, "", "w0").await;
    let mut w2 = Browser::connect(cluster.node(2), t.dev_id, 0, "", "w2").await;
    w0.subscribe(&["user_status_73"]).await;
    w2.subscribe(&["user_status_73"]).await;
    let events = |got: Vec<Value>| -> Vec<String> {
        got.iter()
            .map(|v| {
                format!(
                    "{} {}",
                    v["pipe"].as_str().unwrap_or(""),
                    v["event"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    let time = |node: usize| {
        let (cluster, t) = (&cluster, &t);
        async move {
            let r = rows(
                cluster.node(node),
                t,
                "SELECT time FROM users_time WHERE id = 73",
            )
            .await;
            r[0][0].parse::<i64>().unwrap()
        }
    };

    let u1 = Browser::connect(cluster.node(1), t.dev_id, 73, "h73", "u1").await;
    let u2 = Browser::connect(cluster.node(2), t.dev_id, 73, "h73", "u2").await;
    mark(cluster.node(1), &t, "user_status_73", "a").await;
    for w in [&mut w0, &mut w2] {
        assert_eq!(events(before_mark(w, "a").await), ["user_status_73 online"]);
    }
    for node in 0..3 {
        assert_eq!(time(node).await, 0, "online on node {node}");
    }

    // One of two gone: still online everywhere, nothing announced.
    u1.close().await;
    // Node 1 wrote that it has no connection of the user left (a close is not waited for).
    let key = Keys::new(&cluster.prefix).users(
        DevId(t.dev_id),
        &PipeName::parse_command("user_status_73").unwrap(),
    );
    let mut redis = cluster.redis().await;
    eventually(WAIT, || {
        let (mut redis, key) = (redis.clone(), key.clone());
        async move {
            let nodes: Vec<String> = redis::cmd("HKEYS")
                .arg(&key)
                .query_async(&mut redis)
                .await?;
            (nodes == ["node-2"])
                .then_some(())
                .ok_or(anyhow::anyhow!("{nodes:?}"))
        }
    })
    .await
    .unwrap();
    mark(cluster.node(0), &t, "user_status_73", "b").await;
    for w in [&mut w0, &mut w2] {
        assert!(before_mark(w, "b").await.is_empty());
    }
    for node in 0..3 {
        assert_eq!(time(node).await, 0, "still online on node {node}");
    }

    // The last one anywhere: offline once, and users_time says when, on every node.
    let before = halley_tests::browser::unix_now();
    u2.close().await;
    for w in [&mut w0, &mut w2] {
        let v = json(&w.recv().await);
        assert_eq!(
            (v["event"].as_str(), v["pipe"].as_str()),
            (Some("offline"), Some("user_status_73"))
        );
    }
    mark(cluster.node(2), &t, "user_status_73", "c").await;
    for w in [&mut w0, &mut w2] {
        assert!(before_mark(w, "c").await.is_empty());
    }
    for node in 0..3 {
        let last = eventually(WAIT, || async {
            let t = time(node).await;
            (t > 0)
                .then_some(t)
                .ok_or(anyhow::anyhow!("users_time is {t}"))
        })
        .await
        .unwrap();
        assert!(last >= before, "{last} >= {before}");
    }
    let left: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(left, 0);
    w0.close().await;
    w2.close().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_never_sees_another_s_members() {
    let cluster = TestCluster::start(2).await;
    let a = cluster.tenant("a-presence@example.com").await;
    let b = cluster.tenant("b-presence@example.com").await;
    users_auth(&cluster, &a, &[5]).await;
    let mut wb = Browser::connect(cluster.node(1), b.dev_id, 0, "", "wb").await;
    wb.subscribe(&["track_room", "user_status_5"]).await;
    let mut ua = Browser::connect(cluster.node(0), a.dev_id, 5, "h5", "ua").await;
    ua.subscribe(&["track_room"]).await;
    for node in 0..2 {
        let n = cluster.node(node);
        assert_eq!(
            rows(n, &a, "SELECT users FROM pipes WHERE name = 'track_room'").await,
            [["1"]]
        );
        assert_eq!(
            rows(n, &b, "SELECT users FROM pipes WHERE name = 'track_room'").await,
            [["1"]]
        );
        let theirs = rows(
            n,
            &b,
            "SELECT user_id, user_uuid FROM users_in_pipes WHERE name = 'track_room'",
        )
        .await;
        assert_eq!(theirs, [["0".to_string(), wb.uuid.clone()]]);
        assert_eq!(
            rows(n, &b, "SELECT time FROM users_time WHERE id = 5").await,
            [["-1"]]
        );
    }
    let count = answer(&mut wb, "pipe_count\ntrack_room\nm").await;
    assert_eq!(count["data"]["user_in_pipe"], 1);
    // B's watcher heard nothing of A's user: neither the join nor the online.
    mark(cluster.node(0), &b, "track_room", "t").await;
    assert!(before_mark(&mut wb, "t").await.is_empty());
    ua.close().await;
    mark(cluster.node(0), &b, "user_status_5", "s").await;
    assert!(before_mark(&mut wb, "s").await.is_empty());
    wb.close().await;
    cluster.stop().await;
}
