//! History read on one node after writes through another (found by `cluster_kill`): a node must not answer
//! `SELECT ... FROM pipes_messages` or `pipe_log` from what it cached before another node published, and a
//! publish must keep history by the pipe's current `pipes_settings`, wherever they were changed. Every node
//! keeps its history and history-length caches on (issue 17): a write is answered once the other nodes were
//! told, over the control channel, what their caches must forget.

use std::sync::atomic::Ordering;

use halley::ids::{DevId, PipeName};
use halley_tests::browser::Browser;
use halley_tests::cluster::TestCluster;
use halley_tests::frames::json;
use halley_tests::mysql_raw::RawMysql;
use halley_tests::{Tenant, TestServer};

async fn run(node: &TestServer, t: &Tenant, sql: &str) {
    RawMysql::login(node, t).await.query(sql).await.assert_ok();
}

async fn history(node: &TestServer, t: &Tenant, pipe: &str) -> Vec<String> {
    let sql = format!("SELECT message FROM pipes_messages WHERE name = '{pipe}'");
    let mut q = RawMysql::login(node, t).await;
    q.query(&sql)
        .await
        .rows()
        .iter()
        .map(|r| r[0].clone())
        .collect()
}

fn publish(pipe: &str, message: &str) -> String {
    format!("INSERT INTO pipes_messages (name, event, message) VALUES ('{pipe}', 'e', '{message}')")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_reads_the_history_other_nodes_wrote() {
    let cluster = TestCluster::start(2).await;
    let t = cluster.tenant("history@example.com").await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    run(
        a,
        &t,
        "INSERT INTO pipes_settings (name, length) VALUES ('web_h', 10)",
    )
    .await;
    run(a, &t, &publish("web_h", "one")).await;
    // Node A has read (and may keep) the pipe's history; node B publishes.
    assert_eq!(history(a, &t, "web_h").await, ["one"]);
    run(b, &t, &publish("web_h", "two")).await;
    assert_eq!(history(a, &t, "web_h").await, ["one", "two"]);
    assert_eq!(history(b, &t, "web_h").await, ["one", "two"]);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publish_keeps_history_by_settings_changed_on_another_node() {
    let cluster = TestCluster::start(2).await;
    let t = cluster.tenant("settings@example.com").await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    // Node B publishes while the pipe keeps nothing (and may remember that), then A turns history on.
    run(b, &t, &publish("web_s", "lost")).await;
    run(
        a,
        &t,
        "INSERT INTO pipes_settings (name, length) VALUES ('web_s', 10)",
    )
    .await;
    run(b, &t, &publish("web_s", "kept")).await;
    assert_eq!(history(a, &t, "web_s").await, ["kept"]);
    cluster.stop().await;
}

/// Node B's caches hold what it read (they are on in a cluster), and forget it when node A publishes,
/// changes the pipe's settings, or deletes its history: SELECT and pipe_log on B show A's writes, and B's
/// publishes keep history by the settings A set.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_caches_and_forgets_what_another_node_wrote() {
    let cluster = TestCluster::start(2).await;
    let t = cluster.tenant("caches@example.com").await;
    let (a, b) = (cluster.node(0), cluster.node(1));
    let pipe = PipeName::parse("web_c").unwrap();
    run(
        a,
        &t,
        "INSERT INTO pipes_settings (name, length) VALUES ('web_c', 10)",
    )
    .await;
    run(a, &t, &publish("web_c", "one")).await;
    assert_eq!(history(b, &t, "web_c").await, ["one"]);
    let cache = &b.ctx().history_cache;
    let hits = cache.hits.load(Ordering::Relaxed);
    assert_eq!(history(b, &t, "web_c").await, ["one"]);
    assert!(
        cache.hits.load(Ordering::Relaxed) > hits,
        "node B answered the second read from its cache"
    );
    assert_eq!(
        b.ctx()
            .history
            .get(b.ctx(), DevId(t.dev_id), &pipe)
            .await
            .unwrap(),
        10
    );

    // A publish on A: B's SELECT and pipe_log show it.
    run(a, &t, &publish("web_c", "two")).await;
    assert_eq!(history(b, &t, "web_c").await, ["one", "two"]);
    let mut page = Browser::connect(b, t.dev_id, 0, "", "cachelog").await;
    page.send("pipe_log\nweb_c\nm\n").await;
    let logged: Vec<String> = page
        .sync()
        .await
        .iter()
        .map(|f| json(f)["data"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(logged, ["one", "two"]);
    page.close().await;

    // A shortens the length: B shows the kept entry, and B's own publish is trimmed to A's length.
    run(
        a,
        &t,
        "INSERT INTO pipes_settings (name, length) VALUES ('web_c', 1)",
    )
    .await;
    assert_eq!(history(b, &t, "web_c").await, ["two"]);
    run(b, &t, &publish("web_c", "three")).await;
    assert_eq!(history(a, &t, "web_c").await, ["three"]);
    assert_eq!(history(b, &t, "web_c").await, ["three"]);

    // A deletes the history, then the settings: B shows nothing, and B's publish is no longer kept.
    run(a, &t, "DELETE FROM pipes_messages WHERE name = 'web_c'").await;
    assert!(history(b, &t, "web_c").await.is_empty());
    run(
        a,
        &t,
        "INSERT INTO pipes_settings (name, length) VALUES ('web_c', 5)",
    )
    .await;
    run(b, &t, &publish("web_c", "four")).await;
    assert_eq!(history(b, &t, "web_c").await, ["four"]);
    run(a, &t, "DELETE FROM pipes_settings WHERE name = 'web_c'").await;
    run(b, &t, &publish("web_c", "five")).await;
    assert!(history(b, &t, "web_c").await.is_empty());
    assert!(history(a, &t, "web_c").await.is_empty());
    cluster.stop().await;
}
