//! Issue 11, the browser side: what one anonymous socket (or one address) can no longer do.
//! - `pipe_log` of a `private_` pipe needs an authorized connection, as subscribing does (item 3);
//! - re-sending an unchanged `subscription` announces nothing on `track_` pipes (item 7);
//! - every connection has a command budget, stricter for commands that read storage (items 7 and 12);
//! - a user's queue drain is not a slow consumer: live messages sent meanwhile wait behind it (item 8);
//! - one address can hold only so many of a tenant's WebSocket connections (item 11);
//! - a socket that sends `pipe_log` commands and reads nothing holds little of the server's memory: it runs
//!   no more commands while its own answers wait (review, High 1; measured on the real binary).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use halley_tests::browser::{anonymous, browser, subscribe, wait_subscribers, wait_ws_connections};
use halley_tests::mysql_raw::RawMysql;
use halley_tests::wait::WAIT;
use halley_tests::ws::raw::{encode_frame, upgrade_request, RawWs, OP_CLOSE, OP_TEXT};
use halley_tests::ws::{upgrade_status, WsClient};
use halley_tests::{on_both_backends, Backend, Tenant, TestServer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

mod pipe_log_flood;

async fn cql(server: &TestServer, t: &Tenant, statements: &[&str]) -> RawMysql {
    let mut m = RawMysql::login(server, t).await;
    for sql in statements {
        m.query(sql).await.assert_ok();
    }
    m
}

fn error_text(v: &Value) -> &str {
    v["data"]["error"].as_str().unwrap_or("")
}

// ---------------------------------------------------------------------------------------------------
// Item 3: private_ history.

const PRIVATE_REFUSED: &str =
    "[pipe_log] Invalid user auth. Anonymous users can not read channels named private_*";

async fn pipe_log_of_private_pipes_needs_an_authorized_connection(backend: Backend) {
    let server = TestServer::start(backend).await;
    let t = server.tenant("private@example.com").await;
    let _m = cql(
        &server,
        &t,
        &[
            "INSERT INTO users_auth (id, hash) VALUES (42, 'h42')",
            "INSERT INTO users_data (id, data) VALUES (42, 'public profile')",
            "INSERT INTO pipes_settings (name, length) VALUES ('private_user42', 10)",
            "INSERT INTO pipes_settings (name, length) VALUES ('web_open', 10)",
            "INSERT INTO pipes_messages (name, event, message) VALUES ('private_user42', 'ev', 'secret')",
            "INSERT INTO pipes_messages (name, event, message) VALUES ('web_open', 'ev', 'public')",
        ],
    )
    .await;

    // Anonymous: the reference's error frame shape for a refused command, and the connection stays open.
    let mut anon = anonymous(&server, t.dev_id).await;
    anon.send_text("pipe_log\nprivate_user42\nm1")
        .await
        .unwrap();
    let refused = anon.recv_json(WAIT).await.unwrap();
    assert_eq!(refused["event"], "error", "{refused}");
    assert_eq!(refused["pipe"], "sys", "{refused}");
    assert_eq!(error_text(&refused), PRIVATE_REFUSED, "{refused}");
    assert_eq!(refused["data"]["number_messages"], -1, "{refused}");
    // Still open, and public history is still public.
    anon.send_text("pipe_log\nweb_open\nm2").await.unwrap();
    let public = anon.recv_json(WAIT).await.unwrap();
    assert_eq!(public["data"], "public", "{public}");
    // Public by design (docs/security.md): users_data values and last-online times.
    anon.send_text("user_data\nm3\n42").await.unwrap();
    let data = anon.recv_json(WAIT).await.unwrap();
    assert_eq!(data["data"]["user_data"], "public profile", "{data}");

    // The authorized user reads its private history.
    let (mut owner, hello) = browser(&server, t.dev_id, 42, "h42").await;
    assert_eq!(hello["authorized"], true, "{hello}");
    owner
        .send_text("pipe_log\nprivate_user42\nm1")
        .await
        .unwrap();
    let entry = owner.recv_json(WAIT).await.unwrap();
    assert_eq!(entry["pipe"], "private_user42", "{entry}");
    assert_eq!(entry["data"], "secret", "{entry}");
    assert_eq!(entry["fromQueue"], true, "{entry}");
    anon.close().await.unwrap();
    owner.close().await.unwrap();
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------
// Item 7: presence amplification and the command budget.

async fn resubscribing_the_same_set_announces_nothing(backend: Backend) {
    // A budget large enough for 1,000 commands: this test is about the events, not the budget.
    let server = TestServer::start_with(backend, |c| {
        c.websocket.commands_per_sec = 100_000;
        c.websocket.command_burst = 100_000;
    })
    .await;
    let t = server.tenant("presence@example.com").await;
    let mut watcher = anonymous(&server, t.dev_id).await;
    subscribe(
        &server,
        &mut watcher,
        t.dev_id,
        &["track_x", "web_y"],
        &[0, 0],
    )
    .await;
    let mut other = anonymous(&server, t.dev_id).await;
    subscribe(
        &server,
        &mut other,
        t.dev_id,
        &["track_x", "web_y"],
        &[1, 1],
    )
    .await;

    let joined = watcher.recv_json(WAIT).await.unwrap();
    assert_eq!(joined["event"], "subscription", "{joined}");
    for _ in 0..1000 {
        other
            .send_text("subscription\ntrack_x\nweb_y")
            .await
            .unwrap();
    }
    // Commands run in order and frames reach the watcher in the order they were caused: whatever the
    // 1,000 re-subscriptions announced would arrive before this message.
    other
        .send_text("web_pipe2\nweb_y\nev\n*\nsentinel")
        .await
        .unwrap();
    let next = watcher.recv_json(WAIT).await.unwrap();
    assert_eq!(
        next["data"], "sentinel",
        "no frame between the join and the sentinel: {next}"
    );
    // A real change is still announced: leaving track_x.
    other.send_text("subscription\nweb_y").await.unwrap();
    let left = watcher.recv_json(WAIT).await.unwrap();
    assert_eq!(left["event"], "unsubscription", "{left}");
    wait_subscribers(&server, t.dev_id, "track_x", 1).await;
    // web_y stayed subscribed all along.
    wait_subscribers(&server, t.dev_id, "web_y", 2).await;
    // Rejoining is a real change again.
    other
        .send_text("subscription\nweb_y\ntrack_x")
        .await
        .unwrap();
    let rejoined = watcher.recv_json(WAIT).await.unwrap();
    assert_eq!(rejoined["event"], "subscription", "{rejoined}");
    watcher.close().await.unwrap();
    other.close().await.unwrap();
    server.stop().await;
}

/// Sends `count` copies of `command`, stopping quietly if the server has closed the connection.
async fn flood(ws: &mut WsClient, command: &str, count: usize) {
    for _ in 0..count {
        if ws.send(Message::text(command)).await.is_err() {
            break;
        }
    }
}

/// Reads frames until the close: the answers that matched `is_answer`, the error frames, and the close.
async fn read_to_close(
    ws: &mut WsClient,
    is_answer: impl Fn(&Value) -> bool,
) -> (usize, Vec<String>, Option<(u16, String)>) {
    let (mut answers, mut errors) = (0, Vec::new());
    loop {
        match ws.recv_message(WAIT).await {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if is_answer(&v) {
                    answers += 1;
                } else {
                    errors.push(error_text(&v).to_owned());
                }
            }
            Ok(Message::Close(f)) => {
                return (
                    answers,
                    errors,
                    f.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())),
                )
            }
            Ok(_) => {}
            Err(e) => panic!("the connection was not closed with a close frame: {e:#}"),
        }
    }
}

async fn a_flood_of_commands_hits_the_budget(backend: Backend) {
    let server = TestServer::start(backend).await;
    let t = server.tenant("flood@example.com").await;
    let burst = server.config().websocket.command_burst as usize;
    let read_burst = server.config().websocket.storage_read_burst as usize;

    // Commands in general: the burst is answered, then one error frame, then a close once the client
    // has kept sending through a burst's worth of refusals.
    let mut ws = anonymous(&server, t.dev_id).await;
    flood(&mut ws, "pipe_count\nweb_a\nm", 1000).await;
    let (answers, errors, close) = read_to_close(&mut ws, |v| v["event"] == "user_in_pipe").await;
    assert!(
        answers >= burst && answers < 1000,
        "{answers} of 1000 answered"
    );
    // One error frame per run of refusals (a run is only broken if the budget refills mid-flood).
    assert!(
        !errors.is_empty()
            && errors
                .iter()
                .all(|e| e.starts_with("Rate limit exceeded: commands per connection (retry in ")),
        "{errors:?}"
    );
    assert_eq!(
        close,
        Some((1008, "command rate limit exceeded".to_owned()))
    );

    // Storage reads have a smaller budget of their own.
    let mut ws = anonymous(&server, t.dev_id).await;
    flood(&mut ws, "user_status\n5", 400).await;
    let (answers, errors, close) =
        read_to_close(&mut ws, |v| v["pipe"] == "_answer_user_status").await;
    assert!(
        answers >= read_burst && answers < burst,
        "{answers} of 400 storage reads answered"
    );
    assert!(
        errors.first().is_some_and(
            |e| e.starts_with("Rate limit exceeded: storage reads per connection (retry in ")
        ),
        "{errors:?}"
    );
    assert_eq!(close.map(|c| c.0), Some(1008));

    // A connection within its budget is untouched.
    let mut calm = anonymous(&server, t.dev_id).await;
    calm.send_text("pipe_count\nweb_a\nm").await.unwrap();
    let answer = calm.recv_json(WAIT).await.unwrap();
    assert_eq!(answer["event"], "user_in_pipe", "{answer}");
    calm.close().await.unwrap();
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------
// Item 8: a large queue drained while live messages arrive, during every pass of the drain.

/// The queue the user finds: one batch of the drain (less than 100), larger than what the sockets hold,
/// so the drain's first pass is still writing it when the live messages come.
const QUEUED: usize = 99;
const QUEUED_PAD: usize = 60_000;
/// Sent while the first pass writes: the drain reads the queue again for them (a second pass), and they
/// are more than the sockets hold, so the second pass is still writing when the next ones come.
const LIVE: usize = 1500;
const LIVE_PAD: usize = 8000;
/// Sent during the second pass: more than an outbox holds (1,024 frames).
const LATER: usize = 1500;
const LATER_PAD: usize = 1000;

fn message(tag: char, i: usize, pad: usize) -> String {
    format!("{tag}{i:05}{}", "x".repeat(pad))
}

async fn send_private(m: &mut RawMysql, tag: char, count: usize, pad: usize) {
    let per_statement = (500_000 / pad).clamp(1, 100);
    for start in (0..count).step_by(per_statement) {
        let rows: Vec<String> = (start..(start + per_statement).min(count))
            .map(|i| format!("(80, 'e', '{}')", message(tag, i, pad)))
            .collect();
        let sql = format!(
            "INSERT INTO users_messages (id, event, message) VALUES {}",
            rows.join(",")
        );
        m.query(&sql).await.assert_ok();
    }
}

/// Reads `expected` in order, each exactly once. Messages queued before the user connected come from the
/// queue; later ones may too (they waited behind the drain) or come live once the drain is over, but
/// never a queued one after a live one.
async fn expect_in_order(user: &mut WsClient, expected: &[String], live_seen: &mut bool) {
    for (n, want) in expected.iter().enumerate() {
        let frame = user
            .recv_json(WAIT)
            .await
            .unwrap_or_else(|e| panic!("message {n} ({}): {e:#}", &want[..6]));
        assert_eq!(frame["pipe"], "msg", "{}", &want[..6]);
        let got = frame["data"].as_str().unwrap_or("");
        assert!(
            got == want,
            "message {n}: got {:?}, want {:?}",
            &got[..got.len().min(6)],
            &want[..6]
        );
        let queued = frame["fromQueue"] == true;
        assert!(
            !(queued && *live_seen),
            "{}: queued after a live message",
            &want[..6]
        );
        *live_seen |= !queued;
    }
}

async fn a_queue_drain_is_not_a_slow_consumer(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.publishes_per_sec = 100_000;
        c.limits.publish_burst = 100_000;
        c.cometql.max_query_bytes = 1 << 20;
        c.cometql.max_packet_bytes = 2 << 20;
        c.websocket.write_timeout_secs = 120;
    })
    .await;
    let t = server.tenant("drain@example.com").await;
    let mut m = cql(
        &server,
        &t,
        &["INSERT INTO users_auth (id, hash) VALUES (80, 'h80')"],
    )
    .await;
    send_private(&mut m, 'q', QUEUED, QUEUED_PAD).await;

    // The user connects with a small receive buffer (no autotuning): what is in flight is bounded by the
    // server's send buffer (4 MiB at most), less than each group of messages below. The drain starts
    // right after serverInfo; the client reads nothing more for now, so the drain's first pass is blocked
    // writing the queue.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let stream = socket.connect(server.http_addr()).await.unwrap();
    let mut user = WsClient::over(stream, &server.ws_url(t.dev_id, 80, "h80"))
        .await
        .unwrap();
    let hello = user.recv_json(WAIT).await.unwrap();
    assert_eq!(hello["authorized"], true, "{hello}");
    // A pause (not a bound: whatever the drain has reached by then, every message must arrive once and
    // in order) so that the first pass has claimed the whole queue before more comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    send_private(&mut m, 'l', LIVE, LIVE_PAD).await;

    let mut live_seen = false;
    let queued: Vec<String> = (0..QUEUED).map(|i| message('q', i, QUEUED_PAD)).collect();
    expect_in_order(&mut user, &queued, &mut live_seen).await;
    assert!(!live_seen, "the queue the user found came from the queue");
    // The first pass is over; the second is writing the live messages and blocked again. More live
    // messages now: before the fix the connection was ready during the second pass, and these piled up
    // in an outbox nobody wrote until the drain ended: past 1,024 frames, a slow-consumer close.
    tokio::time::sleep(Duration::from_millis(500)).await;
    send_private(&mut m, 'm', LATER, LATER_PAD).await;

    let rest: Vec<String> = (0..LIVE)
        .map(|i| message('l', i, LIVE_PAD))
        .chain((0..LATER).map(|i| message('m', i, LATER_PAD)))
        .collect();
    expect_in_order(&mut user, &rest, &mut live_seen).await;
    // Not closed, the queue is empty, and from now on messages are live.
    let left = m
        .query("SELECT message FROM users_messages WHERE id = 80")
        .await;
    assert!(
        left.rows().is_empty(),
        "{} left in the queue",
        left.rows().len()
    );
    m.query("INSERT INTO users_messages (id, event, message) VALUES (80, 'e', 'after')")
        .await
        .assert_ok();
    let after = user.recv_json(WAIT).await.unwrap();
    assert_eq!(after["data"], "after", "{after}");
    assert!(after.get("fromQueue").is_none(), "{after}");
    user.close().await.unwrap();
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------
// Item 11: WebSocket connections per tenant and address.

/// A WebSocket connect from a chosen loopback address (127.0.0.2 is loopback too on Linux).
async fn connect_from(from: IpAddr, server: SocketAddr, url: &str) -> anyhow::Result<WsClient> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let stream = socket.connect(server).await?;
    WsClient::over(stream, url).await
}

/// The status line and body of an upgrade request answered without upgrading.
async fn refused_upgrade(server: &TestServer, dev_id: u64) -> String {
    let mut s = tokio::net::TcpStream::connect(server.http_addr())
        .await
        .unwrap();
    let path = format!("/ws/sesion=&myid=0&devid={dev_id}&v=4.08&uuid=abc&api=js");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.http_addr()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut response))
        .await
        .expect("the refusal arrives")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

async fn one_address_at_its_cap_leaves_the_tenant_open(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.websocket_connections_per_ip_per_tenant = 3;
    })
    .await;
    let t = server.tenant("cap@example.com").await;
    let other_tenant = server.tenant("other@example.com").await;
    let url = server.ws_url(t.dev_id, 0, "");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(anonymous(&server, t.dev_id).await);
    }
    // 127.0.0.1 is at its cap for this tenant: refused with a clear 429.
    assert_eq!(upgrade_status(&url, &[]).await.unwrap(), 429);
    let refusal = refused_upgrade(&server, t.dev_id).await;
    assert!(refusal.starts_with("HTTP/1.1 429"), "{refusal}");
    assert!(
        refusal.contains("Rate limit exceeded: WebSocket connections per IP address and tenant"),
        "{refusal}"
    );
    assert!(
        refusal.to_ascii_lowercase().contains("retry-after: 1"),
        "{refusal}"
    );

    // The tenant still accepts another address, and the same address still reaches another tenant.
    let from = "127.0.0.2".parse().unwrap();
    let mut elsewhere = connect_from(from, server.http_addr(), &url)
        .await
        .expect("another address is accepted");
    let hello = elsewhere.recv_json(WAIT).await.unwrap();
    assert_eq!(hello["event"], "serverInfo", "{hello}");
    let other = anonymous(&server, other_tenant.dev_id).await;

    // A connection that ends gives its place back.
    held.pop().unwrap().close().await.unwrap();
    wait_ws_connections(&server, t.dev_id, 3).await;
    held.push(anonymous(&server, t.dev_id).await);
    assert_eq!(upgrade_status(&url, &[]).await.unwrap(), 429);

    for ws in held {
        ws.close().await.unwrap();
    }
    elsewhere.close().await.unwrap();
    other.close().await.unwrap();
    wait_ws_connections(&server, t.dev_id, 0).await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------------
// Review Low 9: after the client's own close the server closes at once, whatever the code.

/// A browser leaving a page closes with 1001. The server echoes the code and closes the connection at
/// once: it no longer reads on (lingers) as it does after a close of its own. Observed without a clock:
/// what the client sends after the echo is not read, so 8 MiB of frames cannot all be written (before
/// the fix the server read and dropped them for up to two seconds).
async fn a_client_close_is_not_lingered_on(backend: Backend) {
    let server = TestServer::start(backend).await;
    let t = server.tenant("leave@example.com").await;
    let addr = server.http_addr().to_string();
    for code in [1001u16, 1000] {
        let path = format!(
            "/ws/sesion=&myid=0&devid={}&v=4.08&uuid=abc&api=js",
            t.dev_id
        );
        let (mut ws, response) = RawWs::connect(&addr, &upgrade_request(&addr, &path, &[]))
            .await
            .unwrap();
        assert_eq!(response.status, 101, "{}", response.head);
        let hello = ws.read_frame(WAIT).await.unwrap().expect("serverInfo");
        assert!(
            hello.text().unwrap_or("").contains("serverInfo"),
            "{hello:?}"
        );
        ws.send_bytes(&encode_frame(
            true,
            OP_CLOSE,
            &code.to_be_bytes(),
            Some([9, 8, 7, 6]),
        ))
        .await
        .unwrap();
        let echo = ws
            .read_frame(WAIT)
            .await
            .unwrap()
            .expect("the close echoed");
        assert_eq!(echo.close(), Some((code, String::new())), "{echo:?}");
        let frame = encode_frame(true, OP_TEXT, &[b' '; 60 * 1024], Some([1, 2, 3, 4]));
        let mut sent = 0;
        while sent < 8 << 20 {
            if ws.send_bytes(&frame).await.is_err() {
                break;
            }
            sent += frame.len();
        }
        assert!(
            sent < 8 << 20,
            "close {code}: the server read on after echoing it"
        );
    }
    server.stop().await;
}

on_both_backends!(
    pipe_log_of_private_pipes_needs_an_authorized_connection,
    a_queue_drain_is_not_a_slow_consumer,
);

mod single_backend {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resubscribing_the_same_set_announces_nothing() {
        super::resubscribing_the_same_set_announces_nothing(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_commands_hits_the_budget() {
        super::a_flood_of_commands_hits_the_budget(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_close_is_not_lingered_on() {
        super::a_client_close_is_not_lingered_on(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pipe_log_flood_holds_little_memory() {
        super::pipe_log_flood::a_pipe_log_flood_holds_little_memory(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_address_at_its_cap_leaves_the_tenant_open() {
        super::one_address_at_its_cap_leaves_the_tenant_open(Backend::Sqlite).await
    }
}
