//! Presence when things break (issue 15, second slice): a node cut off from Redis (its lease and
//! heartbeat stop, as when it is killed) has its members and users removed by a survivor within the
//! bound, each leave and offline announced once; with Redis down, presence reads fail with ERROR 503
//! rather than answer with one node's part; when Redis comes back empty, every node writes its presence
//! again, the changes made meanwhile included.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use halley_tests::browser::Browser;
use halley_tests::cluster::{redis_url, wait_ready, RedisProcess, TestCluster};
use halley_tests::frames::json;
use halley_tests::mysql_raw::RawMysql;
use halley_tests::wait::{eventually, WAIT};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::cluster_presence::{mark, rows, run, track_of};

/// The documented bound (lease TTL 10 s + one sweep interval 5 s), with room for a loaded machine.
const SWEPT_WITHIN: Duration = Duration::from_secs(40);

/// A TCP relay to Redis that a test cuts: every relayed connection is dropped and new ones refused, as
/// if the node behind it had died (its heartbeat stops renewing its lease).
struct Relay {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Relay {
    async fn to(redis: &str) -> Relay {
        let target = redis
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, rx) = watch::channel(false);
        let mut stop = rx.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stop.changed() => return,
                };
                let Ok((mut inbound, _)) = accepted else {
                    return;
                };
                let (target, mut stop) = (target.clone(), rx.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = stop.changed() => {}
                    }
                });
            }
        });
        Relay { addr, cut }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn cut(&self) {
        let _ = self.cut.send(true);
    }
}

/// Frames `b` gets (within `limit` each) until `want` of them matched `is`; returns those and the others.
async fn frames_until(
    b: &mut Browser,
    want: usize,
    limit: Duration,
    is: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut got = Vec::new();
    while got.iter().filter(|v| is(v)).count() < want {
        let text =
            b.ws.recv_text(limit)
                .await
                .expect("an announcement in time");
        got.push(json(&text));
    }
    got
}

fn is_mark(v: &Value) -> bool {
    v["event"] == "mark"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_node_s_presence_is_removed_once_within_the_bound() {
    let relay = Relay::to(&redis_url()).await;
    let relay_url = relay.url();
    let cluster = TestCluster::start_on(3, &redis_url(), |c| {
        if c.cluster.node_name == "node-2" {
            c.cluster.redis_url = relay_url.clone();
        }
    })
    .await;
    let t = cluster.tenant("dead@example.com").await;
    for id in [74, 75] {
        let sql = format!("INSERT INTO users_auth (id, hash) VALUES ({id}, 'h{id}')");
        run(cluster.node(0), &t, &sql).await;
    }
    let watched = ["track_room", "user_status_74", "user_status_75"];
    let mut watchers = Vec::new();
    for i in 0..2 {
        let mut w = Browser::connect(cluster.node(i), t.dev_id, 0, "", &format!("w{i}")).await;
        w.subscribe(&watched).await;
        watchers.push(w);
    }
    // On the node that dies: user 74 (there only), user 75 (on node 0 too), an anonymous member.
    let mut u74 = Browser::connect(cluster.node(2), t.dev_id, 74, "h74", "u74").await;
    let mut u75 = Browser::connect(cluster.node(2), t.dev_id, 75, "h75", "u75").await;
    let mut anon = Browser::connect(cluster.node(2), t.dev_id, 0, "", "anon").await;
    let u75_elsewhere = Browser::connect(cluster.node(0), t.dev_id, 75, "h75", "u75b").await;
    u74.subscribe(&["track_room", "web_b"]).await;
    u75.subscribe(&["web_b"]).await;
    anon.subscribe(&["track_room"]).await;
    // What was announced so far, read up to a marker on each watched pipe.
    for pipe in watched {
        mark(cluster.node(0), &t, pipe, "before").await;
    }
    for w in watchers.iter_mut() {
        frames_until(w, watched.len(), WAIT, is_mark).await;
    }
    assert_eq!(
        rows(
            cluster.node(1),
            &t,
            "SELECT users FROM pipes WHERE name IN ('track_room', 'web_b')"
        )
        .await,
        [["4"], ["2"]]
    );

    let cut_at = Instant::now();
    relay.cut();
    let announced = |v: &Value| v["event"] != "mark";
    let mut took = Duration::ZERO;
    for w in watchers.iter_mut() {
        let got = frames_until(w, 3, SWEPT_WITHIN, announced).await;
        took = took.max(cut_at.elapsed());
        let mut events: Vec<String> = got
            .iter()
            .map(|v| match v["pipe"].as_str() {
                Some("track_room") => {
                    let (ev, user, _) = track_of(v);
                    format!("{ev} {user}")
                }
                other => format!(
                    "{} {}",
                    other.unwrap_or(""),
                    v["event"].as_str().unwrap_or("")
                ),
            })
            .collect();
        events.sort();
        assert_eq!(
            events,
            [
                "unsubscription 0",
                "unsubscription 74",
                "user_status_74 offline"
            ]
        );
    }
    eprintln!("the dead node's presence was removed {took:?} after it was cut off");
    // Exactly once: nothing more before a marker on each pipe (user 75 is still online on node 0).
    for pipe in watched {
        mark(cluster.node(1), &t, pipe, "after").await;
    }
    for w in watchers.iter_mut() {
        let got = frames_until(w, watched.len(), WAIT, is_mark).await;
        assert!(got.iter().all(is_mark), "{got:?}");
    }
    for i in 0..2 {
        let n = cluster.node(i);
        assert_eq!(
            rows(
                n,
                &t,
                "SELECT users FROM pipes WHERE name IN ('track_room', 'web_b')"
            )
            .await,
            [["2"], ["0"]],
            "node {i}"
        );
        let times = rows(
            n,
            &t,
            "SELECT id, time FROM users_time WHERE id IN (74, 75)",
        )
        .await;
        assert_eq!(times[1], ["75", "0"]);
        eventually(WAIT, || async {
            let r = rows(n, &t, "SELECT time FROM users_time WHERE id = 74").await;
            (r[0][0] != "0")
                .then_some(())
                .ok_or(anyhow::anyhow!("{r:?}"))
        })
        .await
        .unwrap();
    }
    for w in watchers {
        w.close().await;
    }
    u75_elsewhere.close().await;
    drop((u74, u75, anon));
    cluster.stop().await;
}

/// A node that died and comes back under its name inherits nothing: whoever removes its previous run's
/// members (a survivor, or the node itself at start) announces each leave once, and the new run's
/// connections (their ids start again) are members of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_back_under_its_name_inherits_nothing() {
    let relay = Relay::to(&redis_url()).await;
    let relay_url = relay.url();
    let mut cluster = TestCluster::start_on(2, &redis_url(), |c| {
        if c.cluster.node_name == "node-1" {
            c.cluster.redis_url = relay_url.clone();
        }
    })
    .await;
    let t = cluster.tenant("again@example.com").await;
    let mut w = Browser::connect(cluster.node(0), t.dev_id, 0, "", "w").await;
    w.subscribe(&["track_room"]).await;
    let mut old = Browser::connect(cluster.node(1), t.dev_id, 0, "", "old").await;
    old.subscribe(&["track_room"]).await;
    mark(cluster.node(0), &t, "track_room", "joined").await;
    let got = frames_until(&mut w, 1, WAIT, is_mark).await;
    assert_eq!(got.len(), 2, "{got:?}");

    relay.cut();
    let lease = format!("{}:node:node-1", cluster.prefix);
    let mut redis = cluster.redis().await;
    eventually(SWEPT_WITHIN, || {
        let (mut redis, lease) = (redis.clone(), lease.clone());
        async move {
            let held: bool = redis::cmd("EXISTS")
                .arg(&lease)
                .query_async(&mut redis)
                .await?;
            (!held)
                .then_some(())
                .ok_or(anyhow::anyhow!("the dead node's lease is held"))
        }
    })
    .await
    .unwrap();
    let database = cluster.node(0).config().database_url.clone();
    let prefix = cluster.prefix.clone();
    let again = halley_tests::TestServer::start_on(&database, |c| {
        c.cluster.redis_url = redis_url();
        c.cluster.key_prefix = prefix;
        c.cluster.node_name = "node-1".into();
    })
    .await;
    wait_ready(&again, true).await;
    let mut new = Browser::connect(&again, t.dev_id, 0, "", "new").await;
    new.subscribe(&["track_room"]).await;
    mark(&again, &t, "track_room", "rejoined").await;
    let got = frames_until(&mut w, 1, SWEPT_WITHIN, is_mark).await;
    let events: Vec<_> = got.iter().filter(|v| !is_mark(v)).map(track_of).collect();
    assert_eq!(
        events,
        [
            ("unsubscription".to_string(), 0, old.uuid.clone()),
            ("subscription".to_string(), 0, new.uuid.clone()),
        ]
    );
    for node in [cluster.node(0), &again] {
        let members = rows(
            node,
            &t,
            "SELECT user_uuid FROM users_in_pipes WHERE name = 'track_room'",
        )
        .await;
        let mut uuids: Vec<String> = members.into_iter().map(|r| r[0].clone()).collect();
        uuids.sort();
        let mut want = vec![w.uuid.clone(), new.uuid.clone()];
        want.sort();
        assert_eq!(uuids, want);
    }
    let _ = redis::cmd("PING").query_async::<String>(&mut redis).await;
    w.close().await;
    new.close().await;
    drop(old);
    again.stop().await;
    cluster.nodes.truncate(1);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_fails_presence_reads_and_redis_back_gets_it_all_again() {
    let mut redis = RedisProcess::start().await;
    let cluster = TestCluster::start_on(2, &redis.url(), |_| {}).await;
    let t = cluster.tenant("down@example.com").await;
    run(
        cluster.node(0),
        &t,
        "INSERT INTO users_auth (id, hash) VALUES (76, 'h76')",
    )
    .await;
    let mut a = Browser::connect(cluster.node(0), t.dev_id, 0, "", "a").await;
    a.subscribe(&["web_a", "track_room"]).await;
    let u76 = Browser::connect(cluster.node(1), t.dev_id, 76, "h76", "u76").await;
    assert_eq!(
        rows(
            cluster.node(1),
            &t,
            "SELECT users FROM pipes WHERE name = 'web_a'"
        )
        .await,
        [["1"]]
    );

    redis.kill();
    for sql in [
        "SELECT users FROM pipes WHERE name = 'web_a'",
        "SELECT * FROM users_in_pipes WHERE name = 'web_a'",
        "SELECT time FROM users_time WHERE id = 76",
    ] {
        for i in 0..2 {
            let mut q = RawMysql::login(cluster.node(i), &t).await;
            let reply = q.query(sql).await;
            assert_eq!(reply.err().0, 503, "{sql} on node {i}: {reply:?}");
        }
    }
    // A member joins while Redis is away: kept by its node, written when Redis is back.
    let mut b = Browser::connect(cluster.node(1), t.dev_id, 0, "", "b").await;
    b.send("subscription\nweb_a").await;

    redis.restart().await;
    for node in &cluster.nodes {
        wait_ready(node, true).await;
    }
    for i in 0..2 {
        eventually(WAIT, || async {
            let mut q = RawMysql::login(cluster.node(i), &t).await;
            let r = q.query("SELECT users FROM pipes WHERE name IN ('web_a', 'track_room')").await;
            let ok = matches!(&r, halley_tests::mysql_raw::Reply::Rows { rows, .. } if rows == &[["2"], ["1"]]);
            ok.then_some(()).ok_or(anyhow::anyhow!("node {i}: {r:?}"))
        })
        .await
        .unwrap();
        let times = rows(
            cluster.node(i),
            &t,
            "SELECT time FROM users_time WHERE id = 76",
        )
        .await;
        assert_eq!(times, [["0"]], "node {i}");
    }
    a.close().await;
    b.close().await;
    u76.close().await;
    cluster.stop().await;
}
