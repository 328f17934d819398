//! Issue 15, end to end: three real `halley` processes on one Redis and one PostgreSQL, and one of them
//! killed with SIGKILL while publishers on every node (the dying one included) publish to a pipe that keeps
//! history. Its positioned WebSocket clients (`subscription2`) reconnect to the survivors with their last
//! position and get everything (`recovered:true`, offsets without a hole, nothing twice); its presence
//! members are removed by a survivor within the documented bound, each leave and offline seen exactly once
//! on every survivor; and every publish acknowledged (OK) before the kill is in the history.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use halley_tests::browser::Browser;
use halley_tests::frames::json;
use halley_tests::mysql_raw::{RawMysql, Reply};
use halley_tests::nodes::ProcessCluster;
use halley_tests::wait::{eventually, WAIT};
use halley_tests::Tenant;
use serde_json::Value;

use crate::cluster_presence::track_of;

/// The documented bound (lease 10 s + one sweep interval 5 s), with room for a loaded machine.
const SWEPT_WITHIN: Duration = Duration::from_secs(40);
const PIPE: &str = "web_hist";
/// Messages per publisher: all of them fit the recovery window (100) and one history SELECT (99).
const EACH: usize = 20;

async fn login(addr: std::net::SocketAddr, t: &Tenant) -> RawMysql {
    RawMysql::login_at(addr, &t.dev_id.to_string(), &t.key).await
}

async fn run(addr: std::net::SocketAddr, t: &Tenant, sql: &str) {
    login(addr, t).await.query(sql).await.assert_ok();
}

fn publish_sql(pipe: &str, event: &str, message: &str) -> String {
    format!("INSERT INTO pipes_messages (name, event, message) VALUES ('{pipe}', '{event}', '{message}')")
}

/// A `subscription2` client of [`PIPE`]: what it processed, as the SDK keeps it (the last position; a
/// frame at or below it is a duplicate and dropped; `gap` asks again from the last position).
struct Positioned {
    b: Browser,
    epoch: String,
    offset: u64,
    got: Vec<String>,
}

impl Positioned {
    async fn connect(http: std::net::SocketAddr, t: &Tenant, tag: &str) -> Positioned {
        let b = Browser::connect_at(http, t.dev_id, 0, "", tag).await;
        let mut p = Positioned {
            b,
            epoch: String::new(),
            offset: 0,
            got: Vec::new(),
        };
        p.b.send(&format!("subscription2\n{PIPE}")).await;
        p.until_subscribed(false).await;
        p
    }

    /// Reconnects to `http` with the last position; the answer must be a full recovery.
    async fn resume(&mut self, http: std::net::SocketAddr, t: &Tenant, tag: &str) {
        self.b = Browser::connect_at(http, t.dev_id, 0, "", tag).await;
        self.ask_again().await;
        self.until_subscribed(true).await;
    }

    async fn ask_again(&mut self) {
        let line = format!("subscription2\n{PIPE}\t{}\t{}", self.epoch, self.offset);
        self.b.send(&line).await;
    }

    /// Handles frames until the `subscribed` answer; `recovered` is what it must say.
    async fn until_subscribed(&mut self, recovered: bool) {
        loop {
            let v = json(&self.b.recv().await);
            if v["event"] == "subscribed" && v["pipe"] == PIPE {
                assert_eq!(v["data"]["recovered"], recovered, "{v}");
                self.epoch = v["data"]["epoch"].as_str().unwrap().to_string();
                if !recovered {
                    self.offset = v["data"]["offset"].as_u64().unwrap();
                }
                return;
            }
            self.take(v).await;
        }
    }

    /// One frame of the pipe: in order, or a duplicate, or a `gap` (then ask again and recover).
    async fn take(&mut self, v: Value) {
        if v["event"] == "gap" {
            self.ask_again().await;
            self.until_subscribed_boxed().await;
            return;
        }
        assert_eq!(v["pipe"], PIPE, "{v}");
        let offset = v["offset"].as_u64().unwrap_or_else(|| panic!("{v}"));
        if offset <= self.offset {
            return;
        }
        assert_eq!(offset, self.offset + 1, "a silent hole before {v}");
        self.offset = offset;
        self.got.push(v["data"].as_str().unwrap().to_string());
    }

    fn until_subscribed_boxed(
        &mut self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(self.until_subscribed(true))
    }

    /// Reads what its node sent before it died, until the connection ends.
    async fn drain_until_closed(&mut self) {
        loop {
            match self.b.ws.recv_text(WAIT).await {
                Ok(text) => self.take(json(&text)).await,
                Err(e) => {
                    let e = format!("{e:#}");
                    assert!(
                        !e.contains("no WebSocket message within"),
                        "still open: {e}"
                    );
                    return;
                }
            }
        }
    }

    /// Handles frames until the message `last`.
    async fn until_message(&mut self, last: &str) {
        while self.got.last().map(String::as_str) != Some(last) {
            let v = json(&self.b.recv().await);
            self.take(v).await;
        }
    }
}

/// A publisher on one node: `EACH` messages `<tag>-<i>` one after the other, each after the previous OK.
/// Returns the acknowledged ones; stops at the first failure (its node died).
async fn publisher(
    addr: std::net::SocketAddr,
    t: Tenant,
    tag: String,
    acked: Arc<AtomicUsize>,
) -> Vec<String> {
    let mut q = login(addr, &t).await;
    let mut ok = Vec::new();
    for i in 0..EACH {
        let message = format!("{tag}-{i:02}");
        if q.write(&RawMysql::com_query(&publish_sql(PIPE, "m", &message)))
            .await
            .is_err()
        {
            break;
        }
        match q.reply().await {
            Ok(Reply::Ok { .. }) => {
                ok.push(message);
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Ok(other) => panic!("{tag}: publish {i} answered {other:?}"),
            Err(_) => break,
        }
    }
    ok
}

/// Frames `b` gets (each within `limit`) until `want` of them matched `is`.
async fn frames_until(
    b: &mut Browser,
    want: usize,
    limit: Duration,
    is: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let mut got = Vec::new();
    while got.iter().filter(|v| is(v)).count() < want {
        let text = b.ws.recv_text(limit).await.expect("a frame in time");
        got.push(json(&text));
    }
    got
}

fn is_mark(v: &Value) -> bool {
    v["event"] == "mark"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_s_clients_recover_elsewhere_and_nothing_acknowledged_is_lost() {
    let mut cluster = ProcessCluster::start(3).await;
    let t = cluster.tenant("kill@example.com").await;
    let addr = |c: &ProcessCluster, i: usize| (c.node(i).http_addr(), c.node(i).cometql_addr());
    let (http0, cql0) = addr(&cluster, 0);
    let (http1, cql1) = addr(&cluster, 1);
    let (http2, cql2) = addr(&cluster, 2);
    run(
        cql0,
        &t,
        &format!("INSERT INTO pipes_settings (name, length) VALUES ('{PIPE}', 1000)"),
    )
    .await;
    run(
        cql0,
        &t,
        "INSERT INTO users_auth (id, hash) VALUES (74, 'h74')",
    )
    .await;

    // Presence on the node that dies: user 74 and an anonymous member of track_room; watchers elsewhere.
    let watched = ["track_room", "user_status_74"];
    let mut watchers = Vec::new();
    for (i, http) in [http0, http1].into_iter().enumerate() {
        let mut w = Browser::connect_at(http, t.dev_id, 0, "", &format!("w{i}")).await;
        w.subscribe(&watched).await;
        watchers.push(w);
    }
    let mut u74 = Browser::connect_at(http2, t.dev_id, 74, "h74", "u74").await;
    u74.subscribe(&["track_room"]).await;
    let mut anon = Browser::connect_at(http2, t.dev_id, 0, "", "anon").await;
    anon.subscribe(&["track_room"]).await;
    for pipe in watched {
        run(cql0, &t, &publish_sql(pipe, "mark", "before")).await;
    }
    for w in watchers.iter_mut() {
        frames_until(w, watched.len(), WAIT, is_mark).await;
    }

    // Positioned clients of the history pipe on the node that dies.
    let mut clients = Vec::new();
    for i in 0..4 {
        clients.push(Positioned::connect(http2, &t, &format!("pos{i}")).await);
    }

    // Publishers on every node; node 2 is killed once its publisher has a few OKs.
    let acked_on_2 = Arc::new(AtomicUsize::new(0));
    let mut publishers = Vec::new();
    for (tag, cql) in [("a", cql0), ("b", cql1), ("c", cql2)] {
        let counter = match tag {
            "c" => acked_on_2.clone(),
            _ => Arc::new(AtomicUsize::new(0)),
        };
        publishers.push(tokio::spawn(publisher(cql, t.clone(), tag.into(), counter)));
    }
    eventually(WAIT, || async {
        match acked_on_2.load(Ordering::SeqCst) >= 5 {
            true => Ok(()),
            false => Err(anyhow::anyhow!("node 2's publisher has fewer than 5 OKs")),
        }
    })
    .await
    .unwrap();
    let killed_at = Instant::now();
    cluster.nodes[2].kill();
    let mut acked = Vec::new();
    for p in publishers {
        acked.extend(p.await.unwrap());
    }
    let on_2 = acked.iter().filter(|m| m.starts_with("c-")).count();
    eprintln!(
        "acknowledged: {} in all, {on_2} by the killed node",
        acked.len()
    );
    assert!(on_2 >= 5, "{acked:?}");

    // The clients read what reached them, then resume on the survivors from their last position.
    for (i, c) in clients.iter_mut().enumerate() {
        c.drain_until_closed().await;
        eprintln!("client {i}: {} messages before its node died", c.got.len());
        let http = [http0, http1][i % 2];
        c.resume(http, &t, &format!("pos{i}b")).await;
    }
    run(cql1, &t, &publish_sql(PIPE, "m", "last")).await;
    for c in clients.iter_mut() {
        c.until_message("last").await;
    }

    // Everything acknowledged is in the history, which every client got in its order, exactly once.
    let mut q = login(cql0, &t).await;
    let history: Vec<String> = q
        .query(&format!(
            "SELECT message FROM pipes_messages WHERE name = '{PIPE}'"
        ))
        .await
        .rows()
        .iter()
        .map(|r| r[0].clone())
        .collect();
    for m in &acked {
        assert!(
            history.contains(m),
            "acknowledged {m} is not in the history {history:?}"
        );
    }
    assert_eq!(history.last().map(String::as_str), Some("last"));
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(c.got, history, "client {i}");
    }
    // Each publisher's messages in the order it published them.
    for tag in ["a-", "b-", "c-"] {
        let mine: Vec<&String> = history.iter().filter(|m| m.starts_with(tag)).collect();
        let mut sorted = mine.clone();
        sorted.sort();
        assert_eq!(mine, sorted, "{tag}");
    }

    // The dead node's members: one leave each, one offline, on every survivor, within the bound.
    let mut took = Duration::ZERO;
    for w in watchers.iter_mut() {
        let got = frames_until(w, 3, SWEPT_WITHIN, |v| !is_mark(v)).await;
        took = took.max(killed_at.elapsed());
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
    eprintln!("the killed node's presence was removed {took:?} after the kill");
    for pipe in watched {
        run(cql1, &t, &publish_sql(pipe, "mark", "after")).await;
    }
    for w in watchers.iter_mut() {
        let got = frames_until(w, watched.len(), WAIT, is_mark).await;
        assert!(got.iter().all(is_mark), "announced twice: {got:?}");
    }
    let mut q = login(cql1, &t).await;
    let rows = q
        .query("SELECT users FROM pipes WHERE name = 'track_room'")
        .await
        .rows()
        .to_vec();
    assert_eq!(rows, [["2"]], "the two watchers remain");
    drop((u74, anon));
    cluster.stop().await;
}
