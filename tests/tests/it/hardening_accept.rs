//! Issue 11, items 4, 18 and 19: what the server does with a connection before it knows who is calling.
//! - One address at its cap of open connections (both ports together) leaves every other client served
//!   (`/info`, a WebSocket, a CometQL login), its refused connections are closed at once, and the server's
//!   memory stays bounded while it holds its share with unfinished request heads.
//! - The rate of new connections per address is counted at accept on both ports, once per connection.
//! - A request head past `max_request_head_bytes` gets 431 and costs no more than that.
//! - Refusals are summarized in the log (a few lines, not one per refusal) and counted in /metrics.
//! - The WebSocket handshake follows RFC 6455: what it forbids is refused with a 4xx, what it allows is
//!   accepted, and the close code a client sends is echoed.
//!
//! Client sockets bind to other loopback addresses (127.0.0.2, 127.0.0.3) to play other clients. Memory is
//! read from the server process's `/proc/<pid>/status`. Socket-level behaviour: SQLite only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use halley_tests::mysql_raw::RawMysql;
use halley_tests::process::ServerProcess;
use halley_tests::wait::{eventually, read_until_closed, WAIT};
use halley_tests::ws::raw::{upgrade_request, RawWs, OP_CLOSE};
use halley_tests::{Backend, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

mod handshake;

const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const THIRD: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const UUID: &str = "0123456789abcdef0123456789abcdef";

fn ws_path(dev_id: u64) -> String {
    format!("/ws/sesion=&myid=0&devid={dev_id}&v=4.08&uuid={UUID}&api=js")
}

async fn connect_from(addr: SocketAddr, from: IpAddr) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .map_err(|_| anyhow!("connect to {addr} timed out"))?
        .with_context(|| format!("connect to {addr} from {from}"))
}

/// A request from `from` with `Connection: close` and `extra` header lines: the whole answer.
async fn http_get(
    addr: SocketAddr,
    from: IpAddr,
    path: &str,
    extra: &str,
) -> anyhow::Result<Vec<u8>> {
    let mut s = connect_from(addr, from).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: halley\r\n{extra}Connection: close\r\n\r\n");
    // A refused connection may be closed before the write: that shows as an empty answer.
    let _ = s.write_all(req.as_bytes()).await;
    read_until_closed(&mut s, WAIT).await
}

fn status_of(answer: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(answer.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.parse().ok()
}

/// `/metrics` asked from another loopback address (loopback needs no token).
async fn metrics(addr: SocketAddr) -> anyhow::Result<String> {
    let answer = http_get(addr, OTHER, "/metrics", "").await?;
    if status_of(&answer) != Some(200) {
        bail!("/metrics answered {:?}", String::from_utf8_lossy(&answer));
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

fn refused(metrics: &str, reason: &str) -> u64 {
    let prefix = format!("halley_connections_refused_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{metrics}"))
}

/// Waits until /metrics counts `want` refusals for `reason` (a refusal is counted when the server accepts the
/// socket, which may come after the client's connect returned) and returns the count. A /metrics request
/// that is itself refused (the server has not yet seen the test's held connections close) is one more
/// refusal, so the count may exceed `want` by those, and by nothing else.
async fn wait_refused(addr: SocketAddr, reason: &str, want: u64) -> u64 {
    let unanswered = std::sync::atomic::AtomicU64::new(0);
    eventually(WAIT, || async {
        let metrics = metrics(addr).await.inspect_err(|_| {
            unanswered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })?;
        let n = refused(&metrics, reason);
        let extra = unanswered.load(std::sync::atomic::Ordering::Relaxed);
        if (want..=want + extra).contains(&n) {
            Ok(n)
        } else {
            Err(anyhow!(
                "{n} refused for {reason}, want {want} (+ up to {extra} of /metrics)"
            ))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// `/info` from `from`: served with 200.
async fn info_served(addr: SocketAddr, from: IpAddr) {
    let answer = http_get(addr, from, "/info", "").await.expect("an answer");
    assert_eq!(
        status_of(&answer),
        Some(200),
        "/info from {from}: {:?}",
        String::from_utf8_lossy(&answer)
    );
}

/// A WebSocket from `from` to the tenant: upgraded, and its greeting (serverInfo) received.
async fn websocket_served(addr: SocketAddr, from: IpAddr, dev_id: u64) {
    let stream = connect_from(addr, from).await.expect("connect");
    let url = format!("ws://{addr}{}", ws_path(dev_id));
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, stream))
        .await
        .expect("upgrade answered in time")
        .unwrap_or_else(|e| panic!("WebSocket from {from}: {e}"));
    use futures_util::StreamExt;
    let hello = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("greeting in time")
        .expect("a greeting")
        .expect("a greeting");
    assert!(
        hello.to_text().unwrap_or("").contains("serverInfo"),
        "{hello:?}"
    );
}

/// A CometQL login from `from` with the tenant's key: accepted.
async fn login_served(addr: SocketAddr, from: IpAddr, dev_id: u64, key: &str) {
    RawMysql::connect_from(addr, Some(from))
        .await
        .unwrap_or_else(|e| panic!("CometQL greeting for {from}: {e:#}"))
        .handshake(&dev_id.to_string(), key, Some("CometQL_v1"))
        .await
        .expect("a login reply")
        .unwrap_or_else(|e| panic!("CometQL login from {from} refused: {e:?}"));
}

/// An unfinished request head of `len` bytes: a request line and one long header, never the empty line.
fn partial_head(len: usize) -> Vec<u8> {
    let mut head = b"GET /info HTTP/1.1\r\nHost: halley\r\nX-Pad: ".to_vec();
    head.resize(len, b'a');
    head
}

const HOLD_TIMEOUTS: &str = "[websocket]\nhandshake_timeout_secs = 120\n\
                             [cometql]\nhandshake_timeout_secs = 120\n";

/// Item 4. 127.0.0.1 opens 100 connections (its cap) with a 15 KiB unfinished request head each, then
/// 200 more HTTP and 100 more CometQL connections: those are closed at once, before any byte, and the
/// server's total (300, which this address alone would fill without a per-address cap) stays open to
/// everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_at_its_cap_leaves_everyone_else_served() {
    const CAP: usize = 100;
    const HEAD: usize = 15 * 1024;
    let server = ServerProcess::start(
        Backend::Sqlite,
        &format!(
            "{HOLD_TIMEOUTS}[limits]\nmax_connections = 300\nconnections_per_ip = {CAP}\n\
             new_connections_per_ip_per_sec = 100000\nnew_connections_per_ip_burst = 100000\n"
        ),
    )
    .await
    .expect("server starts");
    let t = server.tenant("a@example.com").await.expect("tenant");
    let (http, cql) = (server.http_addr(), server.cometql_addr());
    // Every kind of client once before the attack, so that the baseline includes their allocations.
    info_served(http, OTHER).await;
    websocket_served(http, OTHER, t.dev_id).await;
    login_served(cql, THIRD, t.dev_id, &t.key).await;
    let before = server.memory();

    let mut held = Vec::new();
    for _ in 0..CAP {
        let mut s = connect_from(http, ATTACKER).await.expect("connect");
        s.write_all(&partial_head(HEAD))
            .await
            .expect("the head is taken");
        held.push(s);
    }
    // Past the cap, on either port: counted at accept, closed without a byte.
    let mut refused_http = Vec::new();
    for _ in 0..200 {
        let mut s = connect_from(http, ATTACKER).await.expect("connect");
        let _ = s.write_all(&partial_head(HEAD)).await;
        refused_http.push(s);
    }
    let mut refused_cql = 0;
    for _ in 0..100 {
        let err = RawMysql::connect_from(cql, Some(ATTACKER))
            .await
            .err()
            .expect("no greeting past the cap");
        assert!(
            err.to_string().contains("closed before the greeting"),
            "{err:#}"
        );
        refused_cql += 1;
    }
    for s in &mut refused_http {
        let answer = read_until_closed(s, WAIT).await.expect("closed at once");
        assert!(answer.is_empty(), "a refused connection got an answer");
    }
    wait_refused(http, "ip_connections", 200 + refused_cql).await;

    // Everyone else is served, on both ports.
    info_served(http, OTHER).await;
    websocket_served(http, OTHER, t.dev_id).await;
    login_served(cql, THIRD, t.dev_id, &t.key).await;
    info_served(http, THIRD).await;
    let m = metrics(http).await.expect("metrics");
    assert_eq!(refused(&m, "server_connections"), 0);
    assert_eq!(refused(&m, "ip_connections"), 300);

    // The held connections are still open (their heads are not finished), and cost what their heads cost.
    let after = server.memory();
    let growth = after.hwm_kib.saturating_sub(before.rss_kib);
    eprintln!(
        "server memory: RSS {} KiB before, RSS {} KiB / peak {} KiB with {CAP} held heads of {HEAD} B \
         and 300 refused: growth {growth} KiB",
        before.rss_kib, after.rss_kib, after.hwm_kib
    );
    assert!(
        growth < 6 * 1024,
        "the server grew by {growth} KiB for {CAP} connections of {HEAD} B"
    );
    // One of the held connections ends its head: it is answered, so it was held, not dropped.
    let mut first = held.remove(0);
    first
        .write_all(b"\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let answer = read_until_closed(&mut first, WAIT).await.expect("answered");
    assert_eq!(
        status_of(&answer),
        Some(200),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    // Its slot is free again for this address once the server has seen it close.
    drop(first);
    eventually(WAIT, || async {
        let answer = http_get(http, ATTACKER, "/info", "").await?;
        match status_of(&answer) {
            Some(200) => Ok(()),
            _ => Err(anyhow!("not yet served")),
        }
    })
    .await
    .expect("a freed slot serves the address again");
    drop(held);
    server.stop().await;
}

/// Item 4, the rate. New connections per address are counted when accepted, on both ports and for plain
/// HTTP too; a WebSocket upgrade is not counted a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_connection_rate_is_counted_once_at_accept_on_both_ports() {
    const ATTEMPTS: usize = 3;
    for attempt in 1..=ATTEMPTS {
        let server = ServerProcess::start(
            Backend::Sqlite,
            &format!(
                "{HOLD_TIMEOUTS}[limits]\nnew_connections_per_ip_per_sec = 1\n\
                 new_connections_per_ip_burst = 4\n"
            ),
        )
        .await
        .expect("server starts");
        let t = server.tenant("a@example.com").await.expect("tenant");
        let (http, cql) = (server.http_addr(), server.cometql_addr());
        let started = Instant::now();
        // Four connections: two bare HTTP, one CometQL, and a WebSocket (counted once, at accept).
        let _bare1 = connect_from(http, ATTACKER).await.expect("connect");
        let _bare2 = connect_from(http, ATTACKER).await.expect("connect");
        let cql_conn = RawMysql::connect_from(cql, Some(ATTACKER)).await;
        let ws = RawWs::connect(
            &http.to_string(),
            &upgrade_request(&http.to_string(), &ws_path(t.dev_id), &[]),
        )
        .await;
        // The fifth, on either port, is closed at once.
        let mut fifth = connect_from(http, ATTACKER).await.expect("connect");
        let fifth = read_until_closed(&mut fifth, WAIT).await;
        let sixth = RawMysql::connect_from(cql, Some(ATTACKER)).await;
        let elapsed = started.elapsed();
        if elapsed >= Duration::from_millis(900) && attempt < ATTEMPTS {
            eprintln!("attempt {attempt} took {elapsed:?}: a connection may have been replenished");
            server.stop().await;
            continue;
        }
        cql_conn.expect("the CometQL connection is within the burst");
        let (_ws, resp) = ws.expect("an answer to the upgrade");
        assert_eq!(resp.status, 101, "{}", resp.head);
        assert!(
            fifth.expect("closed at once").is_empty(),
            "a refused connection got an answer"
        );
        let err = sixth.err().expect("no greeting past the rate");
        assert!(
            err.to_string().contains("closed before the greeting"),
            "{err:#}"
        );
        // Other addresses have their own budget.
        info_served(http, OTHER).await;
        login_served(cql, THIRD, t.dev_id, &t.key).await;
        wait_refused(http, "ip_new_connections", 2).await;
        server.stop().await;
        return;
    }
}

/// Item 4, the head buffer. A head that fits (12 KiB, more than a dashboard request or an upgrade with
/// cookies needs) is served; a longer one gets 431 and is closed; 100 clients each sending 256 KiB of a
/// head cost the server no more than their 16 KiB buffers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_past_the_limit_gets_431_and_costs_its_buffer_only() {
    let server = ServerProcess::start(Backend::Sqlite, HOLD_TIMEOUTS)
        .await
        .expect("server starts");
    let t = server.tenant("a@example.com").await.expect("tenant");
    let http = server.http_addr();
    assert_eq!(server.config().limits.max_request_head_bytes, 16 * 1024);
    let pad = |n: usize| format!("X-Pad: {}\r\n", "a".repeat(n));

    let fits = http_get(http, OTHER, "/info", &pad(12 * 1024))
        .await
        .expect("answer");
    assert_eq!(status_of(&fits), Some(200));
    let (_ws, resp) = RawWs::connect(
        &http.to_string(),
        &upgrade_request(
            &http.to_string(),
            &ws_path(t.dev_id),
            &[("Cookie", &"c".repeat(12 * 1024))],
        ),
    )
    .await
    .expect("an answer to the upgrade");
    assert_eq!(resp.status, 101, "{}", resp.head);
    let too_long = http_get(http, OTHER, "/info", &pad(20 * 1024))
        .await
        .expect("answer");
    assert_eq!(
        status_of(&too_long),
        Some(431),
        "{:?}",
        String::from_utf8_lossy(&too_long)
    );

    let before = server.memory();
    let mut clients = Vec::new();
    for _ in 0..100 {
        let mut s = connect_from(http, ATTACKER).await.expect("connect");
        // The server stops reading at its limit and closes: the rest of the write may fail.
        let _ = tokio::time::timeout(WAIT, s.write_all(&partial_head(256 * 1024))).await;
        clients.push(s);
    }
    let after = server.memory();
    let growth = after.hwm_kib.saturating_sub(before.rss_kib);
    eprintln!(
        "server memory: RSS {} KiB before, peak {} KiB with 100 heads of 256 KiB: growth {growth} KiB",
        before.rss_kib, after.hwm_kib
    );
    assert!(
        growth < 8 * 1024,
        "100 oversized heads grew the server by {growth} KiB"
    );
    for s in &mut clients {
        let answer = read_until_closed(s, WAIT)
            .await
            .expect("closed after its buffer filled");
        assert!(
            answer.is_empty() || status_of(&answer) == Some(431),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    server.stop().await;
}

/// Item 19. 1,000 connections refused at the server's total cap leave a few summary lines in the log
/// (one per reason and 10 s), not one line each, and /metrics counts every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_summarized_in_the_log_and_counted_in_metrics() {
    const FLOOD: u64 = 1000;
    let server = ServerProcess::start(
        Backend::Sqlite,
        &format!("{HOLD_TIMEOUTS}[limits]\nmax_connections = 5\n"),
    )
    .await
    .expect("server starts");
    let http = server.http_addr();
    let mut held = Vec::new();
    for _ in 0..5 {
        // Served once (keep-alive), so it is surely accepted and counted before anything else connects:
        // otherwise a probe below could take its place and make it a sixth refusal.
        let mut s = connect_from(http, ATTACKER).await.expect("connect");
        s.write_all(b"GET /info HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .expect("request");
        let mut first = [0u8; 1];
        let n = tokio::time::timeout(WAIT, s.read(&mut first))
            .await
            .expect("an answer in time")
            .expect("an answer");
        assert_eq!(n, 1, "served");
        held.push(s);
    }
    // A sixth connection is refused once the five are counted (accepts are asynchronous to connects).
    // Every probe that is not served was refused (a reset shows as an error), and counts in the flood.
    let probes_refused = std::sync::atomic::AtomicU64::new(0);
    eventually(WAIT, || async {
        let mut s = connect_from(http, OTHER).await?;
        let _ = s
            .write_all(b"GET /info HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            .await;
        let served = matches!(read_until_closed(&mut s, WAIT).await, Ok(a) if !a.is_empty());
        if served {
            return Err(anyhow!("still served"));
        }
        probes_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    })
    .await
    .expect("the cap is reached");
    let probes = probes_refused.load(std::sync::atomic::Ordering::Relaxed);
    for _ in probes..FLOOD {
        let mut s = connect_from(http, ATTACKER).await.expect("connect");
        let answer = read_until_closed(&mut s, WAIT)
            .await
            .expect("closed at once");
        assert!(answer.is_empty());
    }
    drop(held);
    let total = wait_refused(http, "server_connections", FLOOD).await;

    // The summaries, one per interval: their counts add up to every refusal.
    let summaries = eventually(Duration::from_secs(30), || async {
        let log = server.log();
        let counted: u64 = log
            .lines()
            .filter(|l| l.contains("connections per server"))
            .filter_map(|l| {
                let rest = &l[l.find("refused ")? + "refused ".len()..];
                rest.split_whitespace().next()?.parse::<u64>().ok()
            })
            .sum();
        if counted == total {
            Ok(log)
        } else {
            Err(anyhow!(
                "the log summarizes {counted} refusals so far:\n{log}"
            ))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let lines = summaries.lines().count();
    assert!(
        (1..=6).contains(&lines),
        "{lines} log lines for {FLOOD} refusals:\n{summaries}"
    );
    assert!(
        summaries.contains("addresses in the last 10 s: connections per server"),
        "{summaries}"
    );
    server.stop().await;
}
