//! HTTPS and WSS on `https_addr`: the HTTP port's routes over TLS (info, the SDK, metrics, the dashboard
//! with a `Secure` cookie and an https own-origin), a WSS subscriber receiving what CometQL publishes
//! (and a late reader getting megabytes whole and in order through the TLS outbox), and a handshake that
//! is garbage or never finishes ending only its own connection. Real sockets, a rustls client trusting
//! the test CA.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::anyhow;
use halley_tests::browser::{uuid_of, wait_subscribers};
use halley_tests::cometql::insert_sql;
use halley_tests::dashboard::{send, send_tls, Browser};
use halley_tests::frames::check_pipe_frame;
use halley_tests::mysql_raw::RawMysql;
use halley_tests::tls::TestCerts;
use halley_tests::wait::{eventually, read_until_closed, WAIT};
use halley_tests::ws::{upgrade_status_tls, WsClient};
use halley_tests::{on_both_backends, Backend, TestServer};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn https_server(backend: Backend, certs: &TestCerts) -> TestServer {
    TestServer::start_with(backend, |c| {
        certs.configure(c);
        c.https_addr = Some("127.0.0.1:0".parse().unwrap());
        // A stalled handshake is given up on after this (the test waits for it, bounded).
        c.websocket.handshake_timeout_secs = 1;
    })
    .await
}

async fn get(server: &TestServer, tls: &Arc<rustls::ClientConfig>, path: &str) -> (u16, String) {
    let from = Ipv4Addr::LOCALHOST.into();
    let r = send_tls(
        server.https_addr(),
        from,
        Some(tls.clone()),
        "GET",
        path,
        &[],
        None,
    )
    .await;
    (r.status, r.body)
}

/// The comet-server connect URL on the HTTPS port.
fn wss_url(addr: SocketAddr, dev_id: u64, tag: &str) -> String {
    format!(
        "wss://{addr}/ws/sesion=&myid=0&devid={dev_id}&v=4.08&uuid={}&api=js",
        uuid_of(tag)
    )
}

/// An anonymous WSS subscriber of `pipe`, registered by the hub.
async fn wss_subscriber(
    server: &TestServer,
    tls: &Arc<rustls::ClientConfig>,
    dev_id: u64,
    pipe: &str,
    already: usize,
) -> WsClient {
    let url = wss_url(server.https_addr(), dev_id, pipe);
    let mut ws = WsClient::connect_tls(&url, &[], Some(tls.clone()))
        .await
        .expect("WSS connect");
    let hello = ws.recv_json(WAIT).await.expect("the serverInfo frame");
    assert_eq!(hello["event"], "serverInfo", "{hello}");
    ws.send_text(&format!("subscription\n{pipe}"))
        .await
        .expect("subscribe");
    wait_subscribers(server, dev_id, pipe, already + 1).await;
    ws
}

on_both_backends!(the_http_routes_are_served_over_https);

async fn the_http_routes_are_served_over_https(backend: Backend) {
    let certs = TestCerts::new();
    let server = https_server(backend, &certs).await;
    let tls = certs.client_config();

    let (status, body) = get(&server, &tls, "/info").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"],
        "ok"
    );
    let (status, body) = get(&server, &tls, "/CometServerApi.js").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("CometServer"),
        "the SDK: {}",
        &body[..body.len().min(200)]
    );
    let (status, body) = get(&server, &tls, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\nhalley_tls_handshakes_total "), "{body}");
    let (status, _) = get(&server, &tls, "/").await;
    assert_eq!(status, 200, "the dashboard page");

    // The plain port keeps serving alongside.
    let plain = send(
        server.http_addr(),
        Ipv4Addr::LOCALHOST.into(),
        "GET",
        "/info",
        &[],
        None,
    )
    .await;
    assert_eq!(plain.status, 200);
    assert!(server.ctx().stats.tls_handshakes.load(Ordering::Relaxed) >= 4);
    server.stop().await;
}

on_both_backends!(a_wss_subscriber_receives_what_cometql_publishes);

async fn a_wss_subscriber_receives_what_cometql_publishes(backend: Backend) {
    let certs = TestCerts::new();
    let server = https_server(backend, &certs).await;
    let tls = certs.client_config();
    let tenant = server.tenant("wss@example.com").await;
    let mut ws = wss_subscriber(&server, &tls, tenant.dev_id, "news", 0).await;
    let mut q = RawMysql::login(&server, &tenant).await;
    q.query(&insert_sql("news", "hello", "over TLS"))
        .await
        .assert_ok();
    let frame = ws.recv_text(WAIT).await.expect("the message");
    check_pipe_frame(&frame, "news", "hello", "over TLS");

    // Commands and their answers go over TLS too (the connection's own reads and writes).
    ws.send_text("user_status\n987654321").await.unwrap();
    let answer = ws.recv_text(WAIT).await.expect("the user_status answer");
    assert!(answer.contains("user_status_987654321"), "{answer}");

    // A shutdown closes WSS connections as it does plain ones: 1001, sent through TLS.
    let mut other = wss_subscriber(&server, &tls, tenant.dev_id, "news", 1).await;
    ws.close().await.expect("clean close");
    server.stop().await;
    let closed = other
        .expect_closed(WAIT)
        .await
        .expect("closed by the shutdown");
    assert_eq!(closed.map(|(code, _)| code), Some(1001));
}

on_both_backends!(a_late_wss_reader_gets_everything_in_order);

/// Far more than the socket buffers take, published while the client reads nothing: most of it waits
/// in the outbox or as TLS records the kernel did not take yet; all of it arrives, whole and in order.
async fn a_late_wss_reader_gets_everything_in_order(backend: Backend) {
    const MESSAGES: usize = 200;
    let certs = TestCerts::new();
    let server = https_server(backend, &certs).await;
    let tls = certs.client_config();
    let tenant = server.tenant("late@example.com").await;
    let mut ws = wss_subscriber(&server, &tls, tenant.dev_id, "bulk", 0).await;
    let mut q = RawMysql::login(&server, &tenant).await;
    let message = |i: usize| format!("{i:06}").repeat(10_000);
    for i in 0..MESSAGES {
        q.query(&insert_sql("bulk", "e", &message(i)))
            .await
            .assert_ok();
    }
    for i in 0..MESSAGES {
        let frame = ws.recv_text(WAIT).await.expect("the next message");
        check_pipe_frame(&frame, "bulk", "e", &message(i));
    }
    ws.close().await.expect("clean close");
    server.stop().await;
}

on_both_backends!(https_pages_are_their_own_origin);

/// A page served over https on the HTTPS port (`Origin: https://host:port`) is the server's own origin
/// for WebSockets and for the dashboard's state-changing requests, whatever the tenant's allowed list.
async fn https_pages_are_their_own_origin(backend: Backend) {
    let certs = TestCerts::new();
    let server = https_server(backend, &certs).await;
    let tls = certs.client_config();
    let addr = server.https_addr();
    let mut b = Browser::https(addr, tls.clone());
    assert_eq!(b.origin(), format!("https://{addr}"));
    let r = b
        .sign_up("origin@example.com", "correct horse battery")
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let dev_id = r.json()["dev_id"].as_u64().unwrap();
    let r = b
        .call(
            "PUT",
            "/origins",
            Some(json!({"origins": ["https://app.example.com"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let url = wss_url(addr, dev_id, "origin");
    let status = |origin: String| {
        let (url, tls) = (url.clone(), tls.clone());
        async move {
            upgrade_status_tls(&url, &[("Origin", &origin)], tls)
                .await
                .expect("an upgrade answer")
        }
    };
    assert_eq!(
        status(format!("https://{addr}")).await,
        101,
        "own https origin"
    );
    assert_eq!(status("https://app.example.com".into()).await, 101);
    assert_eq!(status("https://evil.example".into()).await, 403);

    // Over this server's TLS an http page is not the dashboard's own.
    let r = b
        .call_with(
            "POST",
            "/logout",
            None,
            &[("Origin", &format!("http://{addr}"))],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    server.stop().await;
}

on_both_backends!(the_session_cookie_is_secure_over_https);

async fn the_session_cookie_is_secure_over_https(backend: Backend) {
    let certs = TestCerts::new();
    let server = https_server(backend, &certs).await;
    let tls = certs.client_config();
    let mut b = Browser::https(server.https_addr(), tls);
    let r = b
        .sign_up("cookie@example.com", "correct horse battery")
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let cookie = r.header("set-cookie").expect("a session cookie").to_owned();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    assert_eq!(b.call("GET", "/me", None).await.status, 200);
    let r = b
        .log_in("cookie@example.com", "correct horse battery")
        .await;
    assert!(r.header("set-cookie").unwrap().ends_with("; Secure"));
    let r = b.call("POST", "/logout", None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let cleared = r.header("set-cookie").unwrap();
    assert!(
        cleared.contains("Max-Age=0") && cleared.ends_with("; Secure"),
        "{cleared}"
    );

    // The same server over plain HTTP: no Secure (a browser would not send it back).
    let mut plain = Browser::new(server.http_addr());
    let r = plain
        .log_in("cookie@example.com", "correct horse battery")
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.header("set-cookie").unwrap().contains("Secure"));
    server.stop().await;
}

on_both_backends!(bad_handshakes_end_only_their_connection);

/// Bytes that are not a ClientHello, and a client that connects and sends nothing: each loses its own
/// connection (counted as a failed handshake) while the port keeps serving others.
async fn bad_handshakes_end_only_their_connection(backend: Backend) {
    let certs = TestCerts::new();
    let server = https_server(backend, &certs).await;
    let tls = certs.client_config();
    let addr = server.https_addr();
    let stats = &server.ctx().stats;

    let mut stalled = TcpStream::connect(addr).await.unwrap();
    let mut garbage = TcpStream::connect(addr).await.unwrap();
    garbage
        .write_all(b"GET /info HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut garbage, WAIT).await.expect("closed");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "no plaintext answer: {:?}",
        String::from_utf8_lossy(&answer)
    );

    // While one handshake stalls, others complete.
    let (status, _) = get(&server, &tls, "/info").await;
    assert_eq!(status, 200);
    read_until_closed(&mut stalled, WAIT)
        .await
        .expect("the stalled handshake is given up on");
    eventually(WAIT, || async {
        match stats.tls_handshake_failures.load(Ordering::Relaxed) {
            n if n >= 2 => Ok(()),
            n => Err(anyhow!("{n} failed handshakes counted, want 2")),
        }
    })
    .await
    .unwrap();
    let (status, _) = get(&server, &tls, "/info").await;
    assert_eq!(status, 200, "still serving");

    // A TLS client that stops halfway (a ClientHello, then nothing) is given up on the same way.
    let mut half = TcpStream::connect(addr).await.unwrap();
    let hello = client_hello(&tls);
    half.write_all(&hello).await.unwrap();
    read_until_closed(&mut half, WAIT)
        .await
        .expect("a handshake left halfway is given up on");
    server.stop().await;
}

/// The first flight of a real rustls client: its ClientHello record.
fn client_hello(tls: &Arc<rustls::ClientConfig>) -> Vec<u8> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(tls.clone(), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    assert_eq!(out.first(), Some(&0x16), "a handshake record");
    out
}
