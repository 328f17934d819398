//! Redis faults under a cluster (issue 15): the pub/sub connection killed during a stream of publishes
//! (every positioned subscriber gets every message or the gap frame, never a silent hole), and Redis
//! down and back (the node says it is not ready and refuses publishes with ERROR 503 meanwhile, then
//! recovers by itself).

use halley_tests::browser::Browser;
use halley_tests::cluster::{wait_ready, RedisProcess, TestCluster};
use halley_tests::cometql::insert_sql;
use halley_tests::frames::json;
use halley_tests::mysql_raw::RawMysql;
use serde_json::Value;

/// Reads until the message `last` of pipe `web_k` arrived: the offsets of the messages seen, and
/// whether a gap frame came (after which the page would ask again).
async fn read_until(b: &mut Browser, last: &str) -> (Vec<u64>, bool) {
    let mut offsets = Vec::new();
    let mut gap = false;
    loop {
        let v: Value = json(&b.recv().await);
        match v["event"].as_str() {
            Some("gap") => gap = true,
            Some("e") => {
                offsets.push(v["offset"].as_u64().expect("an offset"));
                if v["data"] == last {
                    return (offsets, gap);
                }
            }
            _ => {}
        }
    }
}

/// The window holds what was missed: every page gets every message, repaired from Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_pubsub_connection_is_repaired_from_the_window() {
    let cluster = kill_during_publishes(1000).await;
    for node in &cluster.nodes {
        assert!(metric(node, "halley_cluster_repairs_total").await >= 1.0);
        assert_eq!(metric(node, "halley_cluster_gaps_total").await, 0.0);
    }
    cluster.stop().await;
}

/// The window is too small for what was missed: the positioned pages are told `gap`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hole_the_window_cannot_fill_is_a_gap_frame() {
    let cluster = kill_during_publishes(5).await;
    for node in &cluster.nodes {
        assert!(metric(node, "halley_cluster_gaps_total").await >= 1.0);
    }
    cluster.stop().await;
}

/// Three positioned pages on two nodes, 200 publishes with `CLIENT KILL TYPE pubsub` now and then: every
/// page gets every message in order, or a gap frame before the hole.
async fn kill_during_publishes(window: usize) -> TestCluster {
    let cluster = TestCluster::start_on(2, &halley_tests::cluster::redis_url(), |c| {
        c.recovery.window_messages = window;
    })
    .await;
    let t = cluster.tenant("a@example.com").await;
    let mut pages = Vec::new();
    for (i, node) in [0, 1, 1].into_iter().enumerate() {
        let mut b = Browser::connect(cluster.node(node), t.dev_id, 0, "", &format!("p{i}")).await;
        b.send("subscription2\nweb_k").await;
        loop {
            if json(&b.recv().await)["event"] == "subscribed" {
                break;
            }
        }
        pages.push(b);
    }
    let mut q = RawMysql::login(cluster.node(0), &t).await;
    let mut redis = cluster.redis().await;
    const N: usize = 200;
    for i in 0..N {
        q.query(&insert_sql("web_k", "e", &format!("m{i}")))
            .await
            .assert_ok();
        if i % 50 == 25 {
            let _: i64 = redis::cmd("CLIENT")
                .arg(&["KILL", "TYPE", "pubsub"])
                .query_async(&mut redis)
                .await
                .unwrap();
        }
    }
    for page in &mut pages {
        let (offsets, gap) = read_until(page, &format!("m{}", N - 1)).await;
        let contiguous = offsets.windows(2).all(|w| w[1] == w[0] + 1);
        assert!(contiguous || gap, "a hole without a gap frame: {offsets:?}");
        if window >= N {
            assert!(contiguous && !gap, "{offsets:?}");
        }
        assert_eq!(offsets.last(), Some(&(N as u64)));
    }
    // The kills happened, and were noticed.
    for node in &cluster.nodes {
        let m = metric(node, "halley_cluster_reconnects_total").await;
        assert!(m >= 1.0, "reconnects {m}");
    }
    cluster
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_fails_closed_and_recovers_without_a_restart() {
    let mut redis = RedisProcess::start().await;
    let cluster = TestCluster::start_on(2, &redis.url(), |_| {}).await;
    let t = cluster.tenant("a@example.com").await;
    let mut page = Browser::connect(cluster.node(1), t.dev_id, 0, "", "page").await;
    page.subscribe(&["web_r"]).await;
    let mut q = RawMysql::login(cluster.node(0), &t).await;
    q.query(&insert_sql("web_r", "e", "before"))
        .await
        .assert_ok();
    assert_eq!(json(&page.recv().await)["data"], "before");

    redis.kill();
    wait_ready(cluster.node(0), false).await;
    let down = info(cluster.node(0)).await;
    assert_eq!(down["ready"], false, "{down}");
    let refused = q.query(&insert_sql("web_r", "e", "while down")).await;
    let (code, text) = refused.err();
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("cluster is unavailable"), "{text}");

    redis.restart().await;
    for node in &cluster.nodes {
        wait_ready(node, true).await;
    }
    assert_eq!(info(cluster.node(0)).await["ready"], true);
    // The subscription is back on its own: a publish after recovery reaches the page.
    halley_tests::wait::eventually(halley_tests::wait::WAIT, || async {
        let mut q = RawMysql::login(cluster.node(0), &t).await;
        match q.query(&insert_sql("web_r", "e", "after")).await {
            halley_tests::mysql_raw::Reply::Ok { .. } => Ok(()),
            other => Err(anyhow::anyhow!("{other:?}")),
        }
    })
    .await
    .unwrap();
    loop {
        let v = json(&page.recv().await);
        assert_ne!(v["data"], "while down", "a refused publish was delivered");
        if v["data"] == "after" {
            break;
        }
    }
    cluster.stop().await;
}

async fn info(node: &halley_tests::TestServer) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(node.http_addr())
        .await
        .unwrap();
    s.write_all(b"GET /info HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    serde_json::from_str(body).unwrap()
}

/// One value off the node's `/metrics`.
pub(crate) async fn metric(node: &halley_tests::TestServer, name: &str) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(node.http_addr())
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} in /metrics"));
    line[name.len() + 1..].trim().parse().unwrap()
}
