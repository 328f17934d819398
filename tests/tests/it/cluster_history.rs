//! History read on one node after writes through another (found by `cluster_kill`): a node must not answer
//! `SELECT ... FROM pipes_messages` or `pipe_log` from what it cached before another node published, and a
//! publish must keep history by the pipe's current `pipes_settings`, wherever they were changed.

use halley_tests::cluster::TestCluster;
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
