//! A node's place in a pipe's order before it has received any message of the pipe (issue 15). A
//! positioned subscribe (`subscription2`) then, while another node publishes: the join must not take
//! Redis's top as the node's place, or the messages still on their way on the channel are dropped as
//! duplicates and the node's plain subscribers, who subscribed earlier, never get them (a silent hole).
//! And a pub/sub connection lost before the first message arrives: what was published meanwhile is
//! repaired for the plain subscribers, as any later hole is (the node learned its place from a sync
//! marker when it subscribed).

use halley::cluster::Keys;
use halley::ids::{DevId, PipeName};
use halley_tests::browser::Browser;
use halley_tests::cluster::{RedisProcess, TestCluster};
use halley_tests::cometql::insert_sql;
use halley_tests::frames::json;
use halley_tests::mysql_raw::RawMysql;
use halley_tests::wait::WAIT;
use serde_json::Value;

use super::cluster_faults::metric;

/// Messages per round.
const K: usize = 20;
/// Probe-channel messages that keep B's pub/sub connection busy ahead of the pipe's first messages.
const FLOOD: usize = 2000;

/// The `data` of the `e` messages of `pipe`, in the order they came, until `n` came or none came for a
/// while (a missing message shows in the caller's comparison, not as a hang).
async fn collect(b: &mut Browser, pipe: &str, n: usize) -> Vec<(Option<u64>, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        let Ok(text) = b.ws.recv_text(WAIT).await else {
            break;
        };
        let v = json(&text);
        if v["pipe"] == pipe && v["event"] == "e" {
            got.push((
                v["offset"].as_u64(),
                v["data"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    got
}

/// Round after round, on a fresh pipe: a plain subscriber on B, B's pub/sub connection made busy, A
/// publishes K messages, and as soon as the first is taken a page on B sends `subscription2` (without a
/// position, or from offset 0). The plain subscriber gets all K exactly once, in order; the joiner every
/// message after its place (or from its position), contiguous, each offset with its message.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_first_positioned_join_holds_nothing_back_from_plain_subscribers() {
    // A Redis of its own: another suite's `CLIENT KILL TYPE pubsub` would drop what is in flight.
    let redis = RedisProcess::start().await;
    let cluster = TestCluster::start_on(2, &redis.url(), |_| {}).await;
    let t = cluster.tenant("a@example.com").await;
    let keys = Keys::new(&cluster.prefix);
    let probe_b = keys.probe("node-1");
    let mut redis = cluster.redis().await;
    let mut plain = Browser::connect(cluster.node(1), t.dev_id, 0, "", "plain").await;
    let mut q = Some(RawMysql::login(cluster.node(0), &t).await);
    let filler = "x".repeat(1000);
    for round in 0..10 {
        let pipe = format!("web_race{round}");
        plain.subscribe(&[&pipe]).await;
        let mut joiner =
            Browser::connect(cluster.node(1), t.dev_id, 0, "", &format!("joiner{round}")).await;
        let mut flood = redis::pipe();
        for _ in 0..FLOOD {
            flood.cmd("PUBLISH").arg(&probe_b).arg(&filler).ignore();
        }
        let () = flood.query_async(&mut redis).await.unwrap();
        let (first, taken) = tokio::sync::oneshot::channel();
        let mut mysql = q.take().unwrap();
        let publishing = {
            let pipe = pipe.clone();
            tokio::spawn(async move {
                let mut first = Some(first);
                for i in 0..K {
                    mysql
                        .query(&insert_sql(&pipe, "e", &format!("m{i}")))
                        .await
                        .assert_ok();
                    if let Some(first) = first.take() {
                        let _ = first.send(());
                    }
                }
                mysql
            })
        };
        taken.await.unwrap();
        let from_zero = round % 2 == 1;
        if from_zero {
            let meta = keys.meta(DevId(t.dev_id), &PipeName::parse(&pipe).unwrap());
            let epoch: String = redis::cmd("HGET")
                .arg(&meta)
                .arg("e")
                .query_async(&mut redis)
                .await
                .unwrap();
            joiner
                .send(&format!("subscription2\n{pipe}\t{epoch}\t0"))
                .await;
        } else {
            joiner.send(&format!("subscription2\n{pipe}")).await;
        }
        q = Some(publishing.await.unwrap());

        let want: Vec<String> = (0..K).map(|i| format!("m{i}")).collect();
        let got: Vec<String> = collect(&mut plain, &pipe, K)
            .await
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        assert_eq!(got, want, "round {round}: the plain subscriber on B");
        plain.expect_nothing().await;

        let mut replayed = Vec::new();
        let subscribed = loop {
            let v: Value = json(&joiner.recv().await);
            if v["event"] == "subscribed" {
                break v["data"].clone();
            }
            assert_eq!(v["event"], "e", "round {round}: {v}");
            replayed.push((
                v["offset"].as_u64(),
                v["data"].as_str().unwrap_or_default().to_string(),
            ));
        };
        let at = subscribed["offset"].as_u64().unwrap();
        assert!(at as usize <= K, "round {round}: {subscribed}");
        let want_replay: Vec<(Option<u64>, String)> = match from_zero {
            // Everything from its position on: what came before its place, replayed.
            true => (1..=at).map(|o| (Some(o), format!("m{}", o - 1))).collect(),
            false => Vec::new(),
        };
        assert_eq!(replayed, want_replay, "round {round}: {subscribed}");
        if from_zero {
            assert_eq!(subscribed["recovered"], true, "round {round}: {subscribed}");
        }
        let live = collect(&mut joiner, &pipe, K - at as usize).await;
        let want_live: Vec<(Option<u64>, String)> = (at + 1..=K as u64)
            .map(|o| (Some(o), format!("m{}", o - 1)))
            .collect();
        assert_eq!(
            live, want_live,
            "round {round}: the joiner after {subscribed}"
        );
        joiner.expect_nothing().await;
        joiner.close().await;
    }
    cluster.stop().await;
}

/// Plain subscribers on B of two pipes B has received nothing of: one published to before (a numbering
/// exists), one never. B's pub/sub connection is killed and A publishes to both while it is down: after
/// B's reconnect its subscriber gets every message, in order, repaired from the windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drop_before_a_pipe_s_first_message_is_repaired() {
    let redis = RedisProcess::start().await;
    let cluster = TestCluster::start_on(2, &redis.url(), |_| {}).await;
    let t = cluster.tenant("a@example.com").await;
    let mut q = RawMysql::login(cluster.node(0), &t).await;
    q.query(&insert_sql("web_old", "e", "before"))
        .await
        .assert_ok();
    let mut plain = Browser::connect(cluster.node(1), t.dev_id, 0, "", "plain").await;
    plain.subscribe(&["web_old", "web_fresh"]).await;
    // B's two sync markers came back (nothing else reaches it): it knows its place in both pipes.
    halley_tests::wait::eventually(WAIT, || async {
        let n = metric(cluster.node(1), "halley_cluster_received_total").await;
        match n >= 2.0 {
            true => Ok(()),
            false => Err(anyhow::anyhow!("{n} received")),
        }
    })
    .await
    .unwrap();
    let mut conn = cluster.redis().await;
    let _: i64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "pubsub"])
        .query_async(&mut conn)
        .await
        .unwrap();
    let pipes = ["web_old", "web_fresh"];
    for i in 0..3 {
        for pipe in pipes {
            q.query(&insert_sql(pipe, "e", &format!("{pipe}{i}")))
                .await
                .assert_ok();
        }
    }
    let mut got: Vec<(String, String)> = Vec::new();
    while got.len() < 6 {
        let Ok(text) = plain.ws.recv_text(WAIT).await else {
            break;
        };
        let v = json(&text);
        if v["event"] == "e" {
            got.push((
                v["pipe"].as_str().unwrap_or_default().to_string(),
                v["data"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    for pipe in pipes {
        let mine: Vec<&str> = got
            .iter()
            .filter(|(p, _)| p == pipe)
            .map(|(_, d)| d.as_str())
            .collect();
        let want: Vec<String> = (0..3).map(|i| format!("{pipe}{i}")).collect();
        assert_eq!(mine, want, "{pipe}: all of {got:?}");
    }
    plain.expect_nothing().await;
    cluster.stop().await;
}
