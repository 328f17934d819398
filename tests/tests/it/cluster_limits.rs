//! Limits on a cluster (issue 15; docs/production.md "Running several nodes"): a tenant's publish budget
//! and its cap on WebSocket connections hold across nodes. Publishes: two nodes together stay within
//! `burst + rate * T + nodes * lease` over the `T` seconds they tried (the lease slack,
//! `tenant/leases.rs`), where each node alone would let `burst + rate * T` through.

use std::time::Instant;

use halley_tests::browser::Browser;
use halley_tests::cluster::{redis_url, TestCluster};
use halley_tests::cometql::insert_sql;
use halley_tests::mysql_raw::{RawMysql, Reply};
use halley_tests::wait::{eventually, WAIT};
use halley_tests::ws::upgrade_status;

const RATE: u32 = 10;
const BURST: u32 = 10;
/// `tenant::leases::lease_size(RATE, BURST)`.
const LEASE: u32 = 1;

/// Two nodes publish for the same tenant as fast as they can: together they get no more than one
/// budget (plus the lease slack), the rest refused with the rate-limit error; later, the budget has
/// refilled and a publish passes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_one_publish_budget() {
    let cluster = TestCluster::start_on(2, &redis_url(), |c| {
        c.limits.publishes_per_sec = RATE;
        c.limits.publish_burst = BURST;
    })
    .await;
    let t = cluster.tenant("a@example.com").await;
    const TRIES: usize = 40;
    let started = Instant::now();
    let mut publishers = Vec::new();
    for node in 0..2 {
        let mut q = RawMysql::login(cluster.node(node), &t).await;
        publishers.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (0u32, 0u32);
            for i in 0..TRIES {
                match q
                    .query(&insert_sql("web_budget", "e", &format!("{i}")))
                    .await
                {
                    Reply::Ok { .. } => ok += 1,
                    Reply::Err { message, .. } => {
                        assert!(message.contains("Rate limit exceeded"), "{message}");
                        refused += 1;
                    }
                    other => panic!("{other:?}"),
                }
            }
            (ok, refused)
        }));
    }
    let mut ok = 0;
    for p in publishers {
        let (o, r) = p.await.unwrap();
        assert_eq!(o + r, TRIES as u32);
        ok += o;
    }
    let secs = started.elapsed().as_secs_f64();
    let bound = f64::from(BURST) + f64::from(RATE) * secs + f64::from(2 * LEASE);
    assert!(
        f64::from(ok) <= bound,
        "{ok} publishes passed in {secs:.3} s, over the cluster's budget of {bound:.1}"
    );
    assert!(ok >= BURST, "the burst passes: {ok}");
    // The bucket refills: a publish passes again on either node.
    let mut q = RawMysql::login(cluster.node(1), &t).await;
    let deadline = Instant::now() + WAIT;
    loop {
        match q.query(&insert_sql("web_budget", "e", "later")).await {
            Reply::Ok { .. } => break,
            other if Instant::now() > deadline => panic!("still refused: {other:?}"),
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    cluster.stop().await;
}

/// The tenant may have 3 WebSocket connections: 2 on A and 1 on B fill it; a 4th is refused on either
/// node (429); once one on A closes, B takes one again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_connection_cap_holds_across_nodes() {
    let cluster = TestCluster::start_on(2, &redis_url(), |c| {
        c.limits.websocket_connections_per_tenant = 3;
    })
    .await;
    let t = cluster.tenant("a@example.com").await;
    let a1 = Browser::connect(cluster.node(0), t.dev_id, 0, "", "a1").await;
    let _a2 = Browser::connect(cluster.node(0), t.dev_id, 0, "", "a2").await;
    let _b1 = Browser::connect(cluster.node(1), t.dev_id, 0, "", "b1").await;
    for node in 0..2 {
        let url = cluster.node(node).ws_url(t.dev_id, 0, "");
        assert_eq!(upgrade_status(&url, &[]).await.unwrap(), 429, "node {node}");
    }
    a1.close().await;
    let url = cluster.node(1).ws_url(t.dev_id, 0, "");
    eventually(WAIT, || {
        let url = url.clone();
        async move {
            match upgrade_status(&url, &[]).await? {
                101 => Ok(()),
                s => Err(anyhow::anyhow!("status {s}")),
            }
        }
    })
    .await
    .unwrap();
    cluster.stop().await;
}
