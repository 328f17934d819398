//! A tenant's recovery window (issue 14): its own size and age (`halley tenant limits --window-messages
//! --window-secs`), and its bytes counted in its storage quota, so that a tenant that fills windows on many
//! pipes with big messages stops at what its history quota leaves free instead of the node's whole budget.
//! Real server, real sockets, publishes over CometQL; the attack runs against the server binary and
//! measures its memory.

use std::net::SocketAddr;
use std::time::Duration;

use halley::ids::DevId;
use halley::storage::LimitRow;
use halley_tests::browser::{wait_subscribers, Browser};
use halley_tests::cometql::insert_sql;
use halley_tests::frames::json;
use halley_tests::limits::set_tenant_limits;
use halley_tests::mysql_raw::RawMysql;
use halley_tests::process::ServerProcess;
use halley_tests::wait::{within, WAIT};
use halley_tests::ws::WsClient;
use halley_tests::{on_both_backends, Backend, Tenant, TestServer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PIPE: &str = "web_window";

/// Sends `subscription2` for PIPE and returns the `subscribed` frame's data, with the replayed frames'
/// offsets before it.
async fn subscribe2(b: &mut Browser, position: Option<(&str, u64)>) -> (Vec<u64>, Value) {
    let line = match position {
        None => PIPE.to_string(),
        Some((epoch, offset)) => format!("{PIPE}\t{epoch}\t{offset}"),
    };
    b.send(&format!("subscription2\n{line}")).await;
    let mut replayed = Vec::new();
    loop {
        let v = json(&b.recv().await);
        if v["event"] == "subscribed" {
            return (replayed, v["data"].clone());
        }
        replayed.push(
            v["offset"]
                .as_u64()
                .expect("a replayed frame has its offset"),
        );
    }
}

fn window_override(dev_id: u64, messages: Option<i64>, secs: Option<i64>) -> LimitRow {
    LimitRow {
        dev_id: DevId(dev_id),
        publishes_per_sec: None,
        publish_burst: None,
        websocket_connections: None,
        queue_ttl_secs: None,
        window_messages: messages,
        window_secs: secs,
    }
}

/// Publishes `n` messages to PIPE, closes the positioned subscriber first so that the window is all there
/// is, and comes back at each of `positions`: recovered exactly when the tenant's window still holds
/// everything after it.
async fn recovered_from(server: &TestServer, tenant: &Tenant, n: u64, at: u64) -> bool {
    let mut q = RawMysql::login(server, tenant).await;
    let mut b = Browser::connect(server, tenant.dev_id, 0, "", "window").await;
    let (_, data) = subscribe2(&mut b, None).await;
    let epoch = data["epoch"].as_str().expect("epoch").to_string();
    let top = data["offset"].as_u64().expect("offset");
    b.close().await;
    wait_subscribers(server, tenant.dev_id, PIPE, 0).await;
    for i in 0..n {
        q.query(&insert_sql(PIPE, "e", &format!("m{i}")))
            .await
            .assert_ok();
    }
    let mut b = Browser::connect(server, tenant.dev_id, 0, "", "window").await;
    let (replayed, data) = subscribe2(&mut b, Some((&epoch, top + at))).await;
    let recovered = data["recovered"] == true;
    if recovered {
        assert_eq!(replayed, ((top + at + 1)..=(top + n)).collect::<Vec<_>>());
    } else {
        assert!(replayed.is_empty(), "never a partial replay: {replayed:?}");
    }
    b.close().await;
    recovered
}

async fn a_tenant_window_override_applies_to_that_tenant_only(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.publishes_per_sec = 100_000;
        c.limits.publish_burst = 100_000;
    })
    .await;
    let small = server.tenant("small@example.com").await;
    let other = server.tenant("other@example.com").await;
    set_tenant_limits(&server, window_override(small.dev_id, Some(5), None)).await;

    // Ten published: five kept for the tenant with the override, so a client five behind recovers and
    // one six behind does not; the other tenant keeps the node's hundred.
    assert!(recovered_from(&server, &small, 10, 5).await);
    assert!(!recovered_from(&server, &small, 10, 4).await);
    assert!(recovered_from(&server, &other, 10, 0).await);

    // The override lifted: the node's window again from the next subscription2 on.
    set_tenant_limits(&server, window_override(small.dev_id, None, None)).await;
    assert!(recovered_from(&server, &small, 10, 0).await);

    // A window of no messages keeps nothing: only a client that missed nothing recovers.
    set_tenant_limits(&server, window_override(small.dev_id, Some(0), None)).await;
    assert!(!recovered_from(&server, &small, 3, 0).await);
    assert!(recovered_from(&server, &small, 0, 0).await);
    server.stop().await;
}

/// `GET /metrics` and the value of the unlabelled series `name`.
async fn metric(http: SocketAddr, name: &str) -> f64 {
    let body = within(WAIT, async {
        let mut s = tokio::net::TcpStream::connect(http).await?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        anyhow::Ok(String::from_utf8_lossy(&out).into_owned())
    })
    .await
    .expect("in time")
    .expect("metrics");
    body.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .unwrap_or_else(|| panic!("/metrics has no {name}"))
}

const QUOTA: usize = 1024 * 1024;
const PIPES: usize = 32;
const PER_PIPE: usize = 100;
const TEXT: usize = 60 * 1024;

/// Asks positions for PIPES pipes of the tenant (so each gets a stream and a window), then leaves.
async fn open_windows(http: SocketAddr, dev_id: u64) {
    let url = format!(
        "ws://{http}/ws/sesion=&myid=0&devid={dev_id}&v=4.08&uuid=window{dev_id:0>26}&api=js"
    );
    let mut ws = WsClient::connect(&url).await.expect("connect");
    let lines: Vec<String> = (0..PIPES).map(|i| format!("web_w{i}")).collect();
    ws.send_text(&format!("subscription2\n{}", lines.join("\n")))
        .await
        .expect("send");
    let mut subscribed = 0;
    while subscribed < PIPES {
        let v = ws.recv_json(WAIT).await.expect("a frame");
        if v["event"] == "subscribed" {
            subscribed += 1;
        }
    }
    ws.close().await.expect("close");
}

/// The attack: windows on 32 pipes filled with 100 messages of 60 KiB each would hold about 375 MiB
/// (384 MiB with the node's own budget raised out of the way). The tenant's history quota (1 MiB) bounds
/// its windows: the server holds at most that in windows and grows by a few MiB, and the windows keep
/// working (a client that missed only the last message still recovers).
async fn windows_stop_at_the_tenants_quota(backend: Backend) {
    let server = ServerProcess::start(
        backend,
        &format!(
            "[limits]\npublishes_per_sec = 100000\npublish_burst = 100000\n\
             history_bytes_per_tenant = {QUOTA}\n\
             [recovery]\nwindow_bytes = {}\n",
            1024 * 1024 * 1024
        ),
    )
    .await
    .expect("server starts");
    let t = server.tenant("greedy@example.com").await.expect("tenant");
    let (http, cql) = (server.http_addr(), server.cometql_addr());
    let mut q = RawMysql::login_at(cql, &t.dev_id.to_string(), &t.key).await;
    // One publish before the baseline, so that it includes what a publish allocates once.
    q.query(&insert_sql("web_w0", "e", "warm"))
        .await
        .assert_ok();
    open_windows(http, t.dev_id).await;
    let before = server.memory();

    let text = "x".repeat(TEXT);
    for _ in 0..PER_PIPE {
        for p in 0..PIPES {
            q.query(&insert_sql(&format!("web_w{p}"), "e", &text))
                .await
                .assert_ok();
        }
    }
    let held = metric(http, "halley_recovery_window_bytes").await as usize;
    let after = server.memory();
    let growth = after.hwm_kib.saturating_sub(before.rss_kib);
    eprintln!(
        "windows hold {held} B (quota {QUOTA} B); server RSS {} KiB before, peak {} KiB after \
         {PIPES} x {PER_PIPE} publishes of {TEXT} B: growth {growth} KiB",
        before.rss_kib, after.hwm_kib
    );
    assert!(held <= QUOTA, "windows hold {held} B, past the quota");
    assert!(held > 0, "the windows still keep what fits");
    assert!(
        growth < 48 * 1024,
        "the server grew by {growth} KiB (unbounded windows would take ~375 MiB)"
    );

    // Still working: the first pipes took the budget and keep their newest message each (a pipe whose
    // message does not fit keeps nothing rather than a partial window), so a subscriber one message
    // behind on the first pipe recovers.
    let url = format!(
        "ws://{http}/ws/sesion=&myid=0&devid={}&v=4.08&uuid=again{:0>27}&api=js",
        t.dev_id, t.dev_id
    );
    let mut ws = WsClient::connect(&url).await.expect("connect");
    let last = "web_w0";
    ws.send_text(&format!("subscription2\n{last}"))
        .await
        .expect("send");
    let data = loop {
        let v = ws.recv_json(WAIT).await.expect("a frame");
        if v["event"] == "subscribed" {
            break v["data"].clone();
        }
    };
    let (epoch, top) = (
        data["epoch"].as_str().unwrap(),
        data["offset"].as_u64().unwrap(),
    );
    assert_eq!(top, PER_PIPE as u64);
    ws.send_text(&format!("subscription2\n{last}\t{epoch}\t{}", top - 1))
        .await
        .expect("send");
    let mut replayed = 0;
    let data = loop {
        let v = ws
            .recv_json(Duration::from_secs(10))
            .await
            .expect("a frame");
        if v["event"] == "subscribed" {
            break v["data"].clone();
        }
        replayed += 1;
    };
    assert_eq!(
        (data["recovered"].clone(), replayed),
        (Value::Bool(true), 1)
    );
    ws.close().await.expect("close");
    server.stop().await;
}

on_both_backends!(
    a_tenant_window_override_applies_to_that_tenant_only,
    windows_stop_at_the_tenants_quota,
);
