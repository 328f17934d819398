//! Several nodes on one Redis and one PostgreSQL (issue 15, first slice; docs/production.md "Running
//! several nodes"): a publish on any node reaches the subscribers of every node, in per-pipe order; a
//! `web_pipe2` sender is left out wherever it is; `subscription2` offsets are one numbering cluster-wide;
//! tenants never see each other's messages through Redis; a garbled message on a channel is dropped and
//! counted; bad cluster configurations are refused with a clear message.

use std::collections::HashMap;

use halley::cluster::{wire, Keys};
use halley::ids::{DevId, PipeName};
use halley_tests::browser::Browser;
use halley_tests::cluster::TestCluster;
use halley_tests::cometql::insert_sql;
use halley_tests::frames::json;
use halley_tests::mysql_raw::RawMysql;
use halley_tests::{Tenant, TestServer};
use serde_json::Value;

async fn connect(node: &TestServer, tenant: &Tenant, tag: &str) -> Browser {
    Browser::connect(node, tenant.dev_id, 0, "", tag).await
}

/// Reads frames until `n` messages of `pipe` came: their data, in order (other frames skipped).
async fn messages(b: &mut Browser, pipe: &str, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let v = json(&b.recv().await);
        if v["pipe"] == pipe && v["event"] == "e" {
            got.push(v["data"].as_str().unwrap_or_default().to_string());
        }
    }
    got
}

/// Publishes on A and B at once to the same pipes; subscribers on B and C get every message, each
/// publisher's in its order, and B and C see one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn publishes_on_any_node_reach_every_node_in_one_order() {
    let cluster = TestCluster::start(3).await;
    let t = cluster.tenant("a@example.com").await;
    let pipes = ["web_one", "web_two"];
    let mut on_b = connect(cluster.node(1), &t, "b").await;
    let mut on_c = connect(cluster.node(2), &t, "c").await;
    on_b.subscribe(&pipes).await;
    on_c.subscribe(&pipes).await;
    const N: usize = 40;
    let mut publishers = Vec::new();
    for (node, name) in [(0, "a"), (1, "b")] {
        let mut q = RawMysql::login(cluster.node(node), &t).await;
        publishers.push(tokio::spawn(async move {
            for i in 0..N {
                for pipe in pipes {
                    q.query(&insert_sql(pipe, "e", &format!("{name}{i}")))
                        .await
                        .assert_ok();
                }
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    for pipe in pipes {
        let seen_b = messages_of(&mut on_b, pipe, 2 * N).await;
        let seen_c = messages_of(&mut on_c, pipe, 2 * N).await;
        assert_eq!(seen_b, seen_c, "one order on every node ({pipe})");
        for name in ["a", "b"] {
            let mine: Vec<&String> = seen_b.iter().filter(|m| m.starts_with(name)).collect();
            let want: Vec<String> = (0..N).map(|i| format!("{name}{i}")).collect();
            assert_eq!(
                mine,
                want.iter().collect::<Vec<_>>(),
                "{name}'s order on {pipe}"
            );
        }
    }
    on_b.expect_nothing().await;
    cluster.stop().await;
}

/// The frames of one pipe among the messages of several, kept aside per pipe between calls.
async fn messages_of(b: &mut Browser, pipe: &str, n: usize) -> Vec<String> {
    thread_local! {
        static ASIDE: std::cell::RefCell<HashMap<(String, String), Vec<String>>> = Default::default();
    }
    let key = (b.uuid.clone(), pipe.to_string());
    let mut got = ASIDE.with(|a| a.borrow_mut().remove(&key).unwrap_or_default());
    while got.len() < n {
        let v = json(&b.recv().await);
        if v["event"] != "e" {
            continue;
        }
        let data = v["data"].as_str().unwrap_or_default().to_string();
        if v["pipe"] == pipe {
            got.push(data);
        } else {
            let other = (
                b.uuid.clone(),
                v["pipe"].as_str().unwrap_or_default().to_string(),
            );
            ASIDE.with(|a| a.borrow_mut().entry(other).or_default().push(data));
        }
    }
    got
}

/// `web_pipe2` from a page on A: the sender does not get it back, the other page on A and one on B do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_pipe2_sender_is_left_out_on_every_node() {
    let cluster = TestCluster::start(2).await;
    let t = cluster.tenant("a@example.com").await;
    let mut sender = connect(cluster.node(0), &t, "sender").await;
    let mut beside = connect(cluster.node(0), &t, "beside").await;
    let mut far = connect(cluster.node(1), &t, "far").await;
    for b in [&mut sender, &mut beside, &mut far] {
        b.subscribe(&["web_chat"]).await;
    }
    sender.send("web_pipe2\nweb_chat\ne\n*\nhello").await;
    for b in [&mut beside, &mut far] {
        let v = json(&b.recv().await);
        assert_eq!(
            (v["pipe"].as_str(), v["data"].as_str()),
            (Some("web_chat"), Some("hello")),
            "{v}"
        );
        assert_eq!(v["user_id"], 0);
    }
    // The sender gets its answer, not its message.
    let frames = sender.sync().await;
    assert!(
        frames
            .iter()
            .all(|f| !json(f)["pipe"].as_str().unwrap_or("").eq("web_chat")),
        "{frames:?}"
    );
    cluster.stop().await;
}

/// `subscription2` on two nodes: the same epoch, the same offsets, contiguous; a reconnect to the other
/// node with the last position is replayed from the window in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_one_numbering_on_every_node() {
    let cluster = TestCluster::start(2).await;
    let t = cluster.tenant("a@example.com").await;
    let mut q = RawMysql::login(cluster.node(0), &t).await;
    q.query(&insert_sql("web_pos", "e", "before"))
        .await
        .assert_ok();
    let mut a = connect(cluster.node(0), &t, "a").await;
    let mut b = connect(cluster.node(1), &t, "b").await;
    let sub_a = subscribe2(&mut a, "web_pos", None).await;
    let sub_b = subscribe2(&mut b, "web_pos", None).await;
    assert_eq!(sub_a["epoch"], sub_b["epoch"], "one epoch");
    assert_eq!(sub_a["offset"], 1, "{sub_a}");
    assert_eq!(sub_b["offset"], 1, "{sub_b}");
    let epoch = sub_a["epoch"].as_str().unwrap().to_string();
    for i in 0..10 {
        let mut q = RawMysql::login(cluster.node(i % 2), &t).await;
        q.query(&insert_sql("web_pos", "e", &format!("m{i}")))
            .await
            .assert_ok();
    }
    for browser in [&mut a, &mut b] {
        let mut offsets = Vec::new();
        while offsets.len() < 10 {
            let v = json(&browser.recv().await);
            if v["event"] == "e" {
                offsets.push(v["offset"].as_u64().unwrap());
            }
        }
        assert_eq!(offsets, (2..=11).collect::<Vec<u64>>());
    }
    // B goes away at offset 6 and comes back on A: offsets 7..=11 replayed, then recovered:true.
    b.close().await;
    let mut back = connect(cluster.node(0), &t, "back").await;
    back.send(&format!("subscription2\nweb_pos\t{epoch}\t6"))
        .await;
    let mut replayed = Vec::new();
    let subscribed = loop {
        let v = json(&back.recv().await);
        if v["event"] == "subscribed" {
            break v["data"].clone();
        }
        replayed.push(v["offset"].as_u64().unwrap());
    };
    assert_eq!(replayed, vec![7, 8, 9, 10, 11]);
    assert_eq!(subscribed["recovered"], true, "{subscribed}");
    assert_eq!(subscribed["offset"], 11);
    cluster.stop().await;
}

/// A pipe that keeps history: its offsets are the database's, written by two nodes' storage writers at
/// once; every node delivers them contiguous and in order (a late one is waited for, or read from the
/// window), and the same on both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_durable_pipe_s_offsets_stay_in_order_across_nodes() {
    let cluster = TestCluster::start(2).await;
    let t = cluster.tenant("a@example.com").await;
    let mut q = RawMysql::login(cluster.node(0), &t).await;
    q.query("INSERT INTO pipes_settings (name, length) VALUES ('web_kept', 500)")
        .await
        .assert_ok();
    let mut a = connect(cluster.node(0), &t, "a").await;
    let mut b = connect(cluster.node(1), &t, "b").await;
    let sub_a = subscribe2(&mut a, "web_kept", None).await;
    let sub_b = subscribe2(&mut b, "web_kept", None).await;
    assert_eq!(sub_a, sub_b, "one numbering");
    const N: usize = 60;
    let mut publishers = Vec::new();
    for node in 0..2 {
        let mut q = RawMysql::login(cluster.node(node), &t).await;
        publishers.push(tokio::spawn(async move {
            for i in 0..N {
                q.query(&insert_sql("web_kept", "e", &format!("n{node}-{i}")))
                    .await
                    .assert_ok();
            }
        }));
    }
    for p in publishers {
        p.await.unwrap();
    }
    let mut seen = Vec::new();
    for browser in [&mut a, &mut b] {
        let mut got = Vec::new();
        while got.len() < 2 * N {
            let v = json(&browser.recv().await);
            assert_ne!(v["event"], "gap", "{v}");
            if v["event"] == "e" {
                got.push((v["offset"].as_u64().unwrap(), v["data"].to_string()));
            }
        }
        let offsets: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, (1..=2 * N as u64).collect::<Vec<_>>());
        seen.push(got);
    }
    assert_eq!(
        seen[0], seen[1],
        "the same message at each offset on both nodes"
    );
    cluster.stop().await;
}

/// Sends `subscription2` for `pipe` and returns the `subscribed` frame's data (skipping a replay).
async fn subscribe2(b: &mut Browser, pipe: &str, position: Option<(&str, u64)>) -> Value {
    let line = match position {
        None => pipe.to_string(),
        Some((e, o)) => format!("{pipe}\t{e}\t{o}"),
    };
    b.send(&format!("subscription2\n{line}")).await;
    loop {
        let v = json(&b.recv().await);
        if v["event"] == "subscribed" {
            return v["data"].clone();
        }
    }
}

/// Tenant B subscribes the same pipe names on another node: A's messages never reach B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_stay_apart_through_redis() {
    let cluster = TestCluster::start(2).await;
    let a = cluster.tenant("a@example.com").await;
    let b = cluster.tenant("b@example.com").await;
    let mut of_a = connect(cluster.node(1), &a, "of-a").await;
    let mut of_b = connect(cluster.node(1), &b, "of-b").await;
    of_a.subscribe(&["web_same"]).await;
    of_b.subscribe(&["web_same"]).await;
    let mut q = RawMysql::login(cluster.node(0), &a).await;
    q.query(&insert_sql("web_same", "e", "for a"))
        .await
        .assert_ok();
    assert_eq!(messages(&mut of_a, "web_same", 1).await, vec!["for a"]);
    of_b.expect_nothing().await;
    cluster.stop().await;
}

/// A node holds a pipe's channel only while it has subscribers of the pipe: the last one leaving
/// unsubscribes it, the next one subscribes it again (and gets what is published then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_is_held_only_while_the_node_has_subscribers() {
    let cluster = TestCluster::start(2).await;
    let t = cluster.tenant("a@example.com").await;
    let mut q = RawMysql::login(cluster.node(0), &t).await;
    let mut page = connect(cluster.node(1), &t, "page").await;
    for round in 0..3 {
        page.subscribe(&["web_on_off"]).await;
        assert_eq!(channels(cluster.node(1)).await, 1.0);
        q.query(&insert_sql("web_on_off", "e", &format!("r{round}")))
            .await
            .assert_ok();
        assert_eq!(
            messages(&mut page, "web_on_off", 1).await,
            vec![format!("r{round}")]
        );
        page.subscribe(&[]).await;
        halley_tests::wait::eventually(halley_tests::wait::WAIT, || async {
            match channels(cluster.node(1)).await {
                0.0 => Ok(()),
                n => Err(anyhow::anyhow!("{n} channels")),
            }
        })
        .await
        .unwrap();
    }
    cluster.stop().await;
}

async fn channels(node: &TestServer) -> f64 {
    let text = metrics(node).await;
    let line = text
        .lines()
        .find(|l| l.starts_with("halley_cluster_channels "))
        .expect("halley_cluster_channels");
    line["halley_cluster_channels ".len()..]
        .trim()
        .parse()
        .unwrap()
}

/// Garbage on a pipe's channel (not decodable, or naming another tenant than its channel's): counted
/// and dropped, the node goes on delivering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_messages_on_a_channel_are_counted_and_dropped() {
    let cluster = TestCluster::start(1).await;
    let t = cluster.tenant("a@example.com").await;
    let other = cluster.tenant("b@example.com").await;
    let mut page = connect(cluster.node(0), &t, "page").await;
    page.subscribe(&["web_g"]).await;
    let keys = Keys::new(&cluster.prefix);
    let channel = keys.channel(DevId(t.dev_id), &PipeName::parse("web_g").unwrap());
    // Well-formed, but for the other tenant: must not reach this tenant's page.
    let forged = wire::assemble(
        &wire::head(&wire::Header {
            kind: wire::Kind::Message,
            origin: "intruder".into(),
            except: None,
            dev_id: DevId(other.dev_id),
            pipe: PipeName::parse("web_g").unwrap(),
        }),
        "e",
        1,
        b"1 - e\nforged",
    );
    let mut redis = cluster.redis().await;
    for payload in [
        b"\xff\x00garbage".to_vec(),
        b"H1 m".to_vec(),
        forged,
        vec![b'x'; 100_000],
    ] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    let mut q = RawMysql::login(cluster.node(0), &t).await;
    q.query(&insert_sql("web_g", "e", "real")).await.assert_ok();
    assert_eq!(messages(&mut page, "web_g", 1).await, vec!["real"]);
    page.expect_nothing().await;
    let metrics = metrics(cluster.node(0)).await;
    assert!(
        metrics.contains("halley_cluster_garbled_total 4"),
        "{metrics}"
    );
    cluster.stop().await;
}

async fn metrics(node: &TestServer) -> String {
    let mut ws = tokio::net::TcpStream::connect(node.http_addr())
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ws.write_all(b"GET /metrics HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    ws.read_to_string(&mut body).await.unwrap();
    body
}

/// What an operator gets wrong is said plainly at start.
#[test]
fn bad_cluster_configurations_are_refused_clearly() {
    let base = || halley::config::Config {
        database_url: "postgres://u@127.0.0.1/db".into(),
        cluster: halley::config::ClusterConfig {
            redis_url: "redis://127.0.0.1:6379".into(),
            key_prefix: "p".into(),
            node_name: "n".into(),
        },
        ..Default::default()
    };
    base().validate().unwrap();
    let mut c = base();
    c.cluster.key_prefix.clear();
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.contains("key_prefix (HALLEY_REDIS_PREFIX) is required"),
        "{e}"
    );
    let mut c = base();
    c.database_url = "sqlite://x.db".into();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("redis_url needs PostgreSQL"), "{e}");
}

/// A second node with a live node's name does not start, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_node_s_name_is_refused() {
    let cluster = TestCluster::start(1).await;
    let mut config = cluster.node(0).config().clone();
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    config.cometql_addr = "127.0.0.1:0".parse().unwrap();
    let err = match halley::app::start(config).await {
        Ok(_) => panic!("a second node-0 started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("node name \"node-0\" is held by a live node"),
        "{err}"
    );
    cluster.stop().await;
}
