//! Issue 15, end to end in a browser: three real `halley` processes on one Redis and one PostgreSQL. PHP
//! mysqli backends publish concurrently on node A (three of them) and on node B (one); `CometServer()`
//! pages in headless Chromium, connected to nodes B and C (`node: "<host:port>"`, the SDK loaded from
//! their node's /CometServerApi.js), receive every message, each publisher's in its order, and every page
//! the same order (one order per pipe cluster-wide). The pages are driven by tests/clients/cluster_pages.mjs.

use std::process::Stdio;
use std::time::Duration;

use halley_tests::clients::{self, clients_dir, Client, Login};
use halley_tests::mysql_raw::RawMysql;
use halley_tests::nodes::ProcessCluster;
use halley_tests::wait::{eventually, within, WAIT};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const PIPE: &str = "web_chat";
/// Messages per publisher.
const EACH: usize = 15;
/// Chromium's start and the pages' loading on a loaded machine.
const BROWSER_WAIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn php_publishers_on_two_nodes_reach_chromium_pages_on_two_others_in_one_order() {
    let cluster = ProcessCluster::start(3).await;
    let t = cluster.tenant("chromium@example.com").await;
    let (a, b, c) = (cluster.node(0), cluster.node(1), cluster.node(2));
    let publishers = [("a0", a), ("a1", a), ("a2", a), ("b0", b)];
    let total = publishers.len() * EACH;

    let pages: Vec<Value> = [b, b, c, c]
        .iter()
        .map(|n| json!({"node": n.http_addr().to_string(), "dev_id": t.dev_id}))
        .collect();
    let request = json!({"pages": pages, "pipe": PIPE, "expect": total});
    let mut driver = Command::new(std::env::var("HALLEY_TEST_NODE").unwrap_or("node".into()))
        .arg(clients_dir().join("cluster_pages.mjs"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node (tests/run.sh installs it)");
    let mut stdin = driver.stdin.take().unwrap();
    stdin
        .write_all(request.to_string().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
    let ready = within(BROWSER_WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ready.as_deref(), Some(r#"{"ready":true}"#));

    // Every page's subscription is known cluster-wide (presence in Redis) before anything is published.
    let sql = format!("SELECT users FROM pipes WHERE name = '{PIPE}'");
    let want = [[pages.len().to_string()]];
    eventually(BROWSER_WAIT, || async {
        let mut q = RawMysql::login_at(a.cometql_addr(), &t.dev_id.to_string(), &t.key).await;
        let rows = q.query(&sql).await.rows().to_vec();
        match rows == want {
            true => Ok(()),
            false => Err(anyhow::anyhow!("subscribed so far: {rows:?}")),
        }
    })
    .await
    .unwrap();

    let runs = publishers.iter().map(|(tag, node)| {
        let mut req = Login::new(node.cometql_addr().port(), t.dev_id.to_string(), &t.key).request();
        for i in 0..EACH {
            req = req.sql(format!(
                "INSERT INTO pipes_messages (name, event, message) VALUES ('{PIPE}', 'm', '{tag}-{i:02}')"
            ));
        }
        async move { (tag, clients::run(Client::Php, &req).await) }
    });
    for (tag, resp) in futures_util::future::join_all(runs).await {
        let resp = resp.unwrap_or_else(|e| panic!("{tag}: {e:#}"));
        for i in 0..EACH {
            resp.step(i)
                .and_then(|s| s.ok())
                .unwrap_or_else(|e| panic!("{tag} {i}: {e:#}"));
        }
    }

    let done = within(BROWSER_WAIT + WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    let got: Value = serde_json::from_str(&done.expect("the pages' messages")).unwrap();
    let got: Vec<Vec<String>> = serde_json::from_value(got["pages"].clone()).unwrap();
    within(WAIT, driver.wait()).await.unwrap().unwrap();
    for (i, page) in got.iter().enumerate() {
        assert_eq!(page.len(), total, "page {i} got {page:?}");
        for (tag, _) in publishers {
            let mine: Vec<&String> = page
                .iter()
                .filter(|m| m.starts_with(&format!("{tag}-")))
                .collect();
            let want: Vec<String> = (0..EACH).map(|i| format!("{tag}-{i:02}")).collect();
            assert_eq!(
                mine,
                want.iter().collect::<Vec<_>>(),
                "page {i}, publisher {tag}"
            );
        }
        assert_eq!(page, &got[0], "page {i} saw another order than page 0");
    }
    cluster.stop().await;
}
