//! docs/compatibility.md §5, connection limits, each hit with small configured values: WebSocket connections per
//! tenant (HTTP 429 with Retry-After; a per-tenant override raises one tenant's limit only), new connections per IP
//! address (closed when accepted, before the request is read), failed CometQL logins per IP address (ERROR 16 even
//! for the right key until the window passes, without a key check), the server's total connection cap (the extra TCP
//! connection is closed unserved), the HTTP request-head deadline and the CometQL handshake deadline. Every refusal
//! is counted.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use halley::ids::DevId;
use halley::stats::AcceptRefusal;
use halley::storage::LimitRow;
use halley_tests::browser::{anonymous, wait_ws_connections, ws_connections};
use halley_tests::limits::{rate_limited, refusals, set_tenant_limits};
use halley_tests::mysql_raw::{frame, RawMysql, Reply};
use halley_tests::wait::{eventually, read_until_closed, WAIT};
use halley_tests::ws::raw::{upgrade_request, RawWs};
use halley_tests::ws::WsClient;
use halley_tests::{on_both_backends, Backend, TestServer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite;

const OTHER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const ATTEMPTS: usize = 3;

fn ws_path(dev_id: u64) -> String {
    format!("/ws/sesion=&myid=0&devid={dev_id}&v=4.08&uuid=0123456789abcdef0123456789abcdef&api=js")
}

/// A hand-built upgrade: the status and the `Retry-After` value, if any.
async fn upgrade(server: &TestServer, dev_id: u64) -> (u16, Option<u64>) {
    let addr = server.http_addr().to_string();
    let (_ws, resp) = RawWs::connect(&addr, &upgrade_request(&addr, &ws_path(dev_id), &[]))
        .await
        .expect("an answer to the upgrade");
    let retry = resp.head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().parse::<u64>().expect("Retry-After in seconds"))
    });
    (resp.status, retry)
}

/// The upgrade's status for a connection made from `from` (another loopback address).
async fn upgrade_status_from(server: &TestServer, dev_id: u64, from: IpAddr) -> u16 {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind");
    let stream = tokio::time::timeout(WAIT, socket.connect(server.http_addr()))
        .await
        .expect("connect in time")
        .expect("connect");
    let url = format!("ws://{}{}", server.http_addr(), ws_path(dev_id));
    match tokio::time::timeout(WAIT, tokio_tungstenite::client_async(url, stream))
        .await
        .expect("upgrade answered in time")
    {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("upgrade from {from}: {e}"),
    }
}

async fn websocket_connections_per_tenant(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.websocket_connections_per_tenant = 2;
    })
    .await;
    let a = server.tenant("a@example.com").await;
    let b = server.tenant("b@example.com").await;
    let first = anonymous(&server, a.dev_id).await;
    let _second = anonymous(&server, a.dev_id).await;
    wait_ws_connections(&server, a.dev_id, 2).await;
    let before = refusals(&server);

    // The third is refused before the upgrade, with a Retry-After.
    let (status, retry) = upgrade(&server, a.dev_id).await;
    assert_eq!(status, 429);
    let retry = retry.expect("a Retry-After header on the 429");
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");
    assert_eq!(ws_connections(&server, a.dev_id), 2);
    assert_eq!(rate_limited(&server, a.dev_id), 1);
    assert_eq!(refusals(&server) - before, 1);

    // Another tenant is not affected.
    let _b1 = anonymous(&server, b.dev_id).await;
    let _b2 = anonymous(&server, b.dev_id).await;
    assert_eq!(rate_limited(&server, b.dev_id), 0);

    // Once one of A's connections is gone, A may connect again.
    first.close().await.expect("close");
    wait_ws_connections(&server, a.dev_id, 1).await;
    let _again = anonymous(&server, a.dev_id).await;
    assert_eq!(upgrade(&server, a.dev_id).await.0, 429);

    // A's own override raises A's limit only.
    set_tenant_limits(
        &server,
        LimitRow {
            dev_id: DevId(a.dev_id),
            publishes_per_sec: None,
            publish_burst: None,
            websocket_connections: Some(3),
            queue_ttl_secs: None,
            window_messages: None,
            window_secs: None,
        },
    )
    .await;
    let _third = anonymous(&server, a.dev_id).await;
    wait_ws_connections(&server, a.dev_id, 3).await;
    assert_eq!(upgrade(&server, a.dev_id).await.0, 429);
    assert_eq!(
        upgrade(&server, b.dev_id).await.0,
        429,
        "B keeps the global 2"
    );
    assert_eq!(rate_limited(&server, a.dev_id), 3);
    assert_eq!(rate_limited(&server, b.dev_id), 1);
    server.stop().await;
}

async fn new_connections_per_ip(backend: Backend) {
    for attempt in 1..=ATTEMPTS {
        let server = TestServer::start_with(backend, |c| {
            c.limits.new_connections_per_ip_per_sec = 1;
            c.limits.new_connections_per_ip_burst = 3;
        })
        .await;
        let a = server.tenant("a@example.com").await;
        let b = server.tenant("b@example.com").await;
        let started = Instant::now();
        let mut open = Vec::new();
        for (dev_id, which) in [
            (a.dev_id, "first"),
            (b.dev_id, "second"),
            (a.dev_id, "third"),
        ] {
            let mut ws = WsClient::connect(&server.ws_url(dev_id, 0, ""))
                .await
                .expect(which);
            // The greeting: the connection is registered, so the tenant's counters exist.
            ws.recv_text(Duration::from_secs(5)).await.expect(which);
            open.push(ws);
        }
        // The fourth from this address, whichever tenant it is for, is closed when accepted, before
        // its request is read (the tenant is not known yet, so no tenant counts it).
        let to_a = refused_at_accept(&server, a.dev_id).await;
        let to_b = refused_at_accept(&server, b.dev_id).await;
        let elapsed = started.elapsed();
        if elapsed >= Duration::from_millis(900) && attempt < ATTEMPTS {
            eprintln!(
                "attempt {attempt} took {elapsed:?}: a connection may have been replenished, again"
            );
            server.stop().await;
            continue;
        }
        assert!(
            elapsed < Duration::from_secs(1),
            "too slow on every attempt ({elapsed:?})"
        );
        to_a.expect("refused");
        to_b.expect("refused");
        assert_eq!(rate_limited(&server, a.dev_id), 0);
        assert_eq!(rate_limited(&server, b.dev_id), 0);
        let refused = &server.ctx().stats.connections_refused;
        eventually(WAIT, || async {
            match refused.get(AcceptRefusal::IpNewConnections) {
                2 => Ok(()),
                n => Err(anyhow!("{n} refused")),
            }
        })
        .await
        .expect("both refusals counted");
        // The limit is per address: another address still connects.
        assert_eq!(upgrade_status_from(&server, a.dev_id, OTHER_IP).await, 101);
        // After the window, this address may connect again.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(upgrade(&server, a.dev_id).await.0, 101);
        server.stop().await;
        return;
    }
}

/// An upgrade request on a new connection: `Ok` when the server closes it without answering.
async fn refused_at_accept(server: &TestServer, dev_id: u64) -> anyhow::Result<()> {
    let addr = server.http_addr().to_string();
    let mut s = TcpStream::connect(&addr).await?;
    // The server may have closed the socket already: the write's error does not matter.
    let _ = s
        .write_all(&upgrade_request(&addr, &ws_path(dev_id), &[]))
        .await;
    let answer = read_until_closed(&mut s, WAIT).await?;
    if !answer.is_empty() {
        bail!("answered: {:?}", String::from_utf8_lossy(&answer));
    }
    Ok(())
}

/// A login attempt from `from`: `Ok(())` when accepted, the error otherwise.
async fn try_login(
    server: &TestServer,
    from: IpAddr,
    user: &str,
    key: &str,
) -> Result<(), (u16, String)> {
    RawMysql::connect_from(server.cometql_addr(), Some(from))
        .await
        .expect("connect")
        .handshake(user, key, Some("CometQL_v1"))
        .await
        .expect("a login reply")
        .map(|_| ())
}

fn failed_checks(server: &TestServer) -> u64 {
    server
        .ctx()
        .stats
        .cometql_logins_failed
        .load(Ordering::Relaxed)
}

async fn failed_logins_per_ip(backend: Backend) {
    const PER_MIN: u32 = 30;
    let here: IpAddr = Ipv4Addr::LOCALHOST.into();
    for attempt in 1..=ATTEMPTS {
        let server = TestServer::start_with(backend, |c| {
            c.limits.failed_logins_per_ip_per_min = PER_MIN;
        })
        .await;
        let t = server.tenant("a@example.com").await;
        let user = t.dev_id.to_string();
        // Never the key itself: its last character changed (to `x`, or `y` when it is an `x`).
        let last = if t.key.ends_with('x') { 'y' } else { 'x' };
        let wrong = format!("{}{last}", &t.key[..t.key.len() - 1]);
        let started = Instant::now();
        // N failures are allowed: the right key still works after them.
        for _ in 0..PER_MIN {
            let e = try_login(&server, here, &user, &wrong).await.unwrap_err();
            assert_eq!(e, (16, "Authentication failure".into()));
        }
        let before_block = try_login(&server, here, &user, &t.key).await;
        // One more failure blocks the address.
        let e = try_login(&server, here, &user, &wrong).await.unwrap_err();
        assert_eq!(e, (16, "Authentication failure".into()));
        let checked = failed_checks(&server);
        let refused_before = refusals(&server);
        let blocked_right_key = try_login(&server, here, &user, &t.key).await;
        let blocked_unknown = try_login(&server, here, "999999", "whatever").await;
        let elapsed = started.elapsed();
        // The block lasts until a failure is replenished (60 s / 30 = 2 s after the first one).
        if elapsed >= Duration::from_millis(1800) && attempt < ATTEMPTS {
            eprintln!("attempt {attempt} took {elapsed:?}: the window may have passed, again");
            server.stop().await;
            continue;
        }
        assert!(
            elapsed < Duration::from_secs(2),
            "too slow on every attempt ({elapsed:?})"
        );
        before_block.expect("the right key works until the limit is passed");
        assert_eq!(
            blocked_right_key,
            Err((16, "Authentication failure".into())),
            "a blocked address is refused even with the right key"
        );
        assert_eq!(blocked_unknown, Err((16, "Authentication failure".into())));
        assert_eq!(
            failed_checks(&server),
            checked,
            "no key is checked for a blocked address"
        );
        assert_eq!(
            refusals(&server) - refused_before,
            2,
            "blocked attempts are counted"
        );
        assert_eq!(failed_checks(&server), u64::from(PER_MIN) + 1);

        // Another address is not blocked.
        try_login(&server, OTHER_IP, &user, &t.key)
            .await
            .expect("the right key from another address");

        // Once the window has passed, the right key works again from the blocked address.
        let unblocked = eventually(Duration::from_secs(5), || async {
            try_login(&server, here, &user, &t.key)
                .await
                .map_err(|e| anyhow!("still refused: {e:?}"))
        })
        .await;
        unblocked.expect("the block ends when the window passes");
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "the block lasted at least until a failure was replenished"
        );
        server.stop().await;
        return;
    }
}

/// `GET /info` on a fresh connection: the response bytes up to the close (the request says close).
async fn get_info(server: &TestServer) -> anyhow::Result<Vec<u8>> {
    let mut s = TcpStream::connect(server.http_addr())
        .await
        .context("connect")?;
    // The server may already have closed the socket: a failed write then shows as an empty answer.
    let _ = s
        .write_all(b"GET /info HTTP/1.1\r\nHost: halley\r\nConnection: close\r\n\r\n")
        .await;
    read_until_closed(&mut s, WAIT).await
}

async fn total_connection_cap(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.max_connections = 5;
    })
    .await;
    let t = server.tenant("a@example.com").await;
    // Five connections across both ports: three CometQL sessions and two WebSockets.
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(RawMysql::login(&server, &t).await);
    }
    let _w1 = anonymous(&server, t.dev_id).await;
    let _w2 = anonymous(&server, t.dev_id).await;

    // The sixth TCP connection, on either port, is closed without a byte of service.
    let refused_http = get_info(&server).await.expect("closed");
    assert!(
        refused_http.is_empty(),
        "a connection past the cap got an answer: {:?}",
        String::from_utf8_lossy(&refused_http)
    );
    let mut s = TcpStream::connect(server.cometql_addr())
        .await
        .expect("connect");
    let refused_cql = read_until_closed(&mut s, WAIT).await.expect("closed");
    assert!(
        refused_cql.is_empty(),
        "a connection past the cap got a greeting"
    );
    let err = RawMysql::connect(&server)
        .await
        .err()
        .expect("no greeting past the cap");
    assert!(
        err.to_string().contains("closed before the greeting"),
        "{err:#}"
    );

    // The sessions in use are not disturbed.
    assert!(matches!(
        sessions[0].query("SHOW STATUS").await,
        Reply::Rows { .. }
    ));

    // Close one: a new connection is served again (the count drops when the server notices).
    let mut closing = sessions.pop().expect("a session");
    closing.write(&frame(0, &[0x01])).await.expect("COM_QUIT");
    closing
        .expect_closed(WAIT)
        .await
        .expect("closed after COM_QUIT");
    let mut served = eventually(WAIT, || async { RawMysql::connect(&server).await })
        .await
        .expect("a connection is served once one closed");
    // And the cap holds again with that one open.
    let mut s = TcpStream::connect(server.http_addr())
        .await
        .expect("connect");
    let _ = s.write_all(b"GET /info HTTP/1.1\r\nHost: h\r\n\r\n").await;
    assert!(read_until_closed(&mut s, WAIT)
        .await
        .expect("closed")
        .is_empty());
    served.write(&frame(0, &[0x01])).await.expect("COM_QUIT");
    served.expect_closed(WAIT).await.expect("closed");
    let info = eventually(WAIT, || async {
        let r = get_info(&server).await?;
        if r.starts_with(b"HTTP/1.1 200") {
            Ok(r)
        } else {
            Err(anyhow!("answer: {:?}", String::from_utf8_lossy(&r)))
        }
    })
    .await
    .expect("/info answers under the cap");
    assert!(String::from_utf8_lossy(&info).contains("\"status\":\"ok\""));
    server.stop().await;
}

async fn request_head_deadline(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.websocket.handshake_timeout_secs = 1;
    })
    .await;
    let addr = server.http_addr();
    // Three misbehaving clients at once, each dropped on its own at the 1 s deadline.
    let half_line = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let started = Instant::now();
        s.write_all(b"GET /ws/sesion=&myid=0&dev")
            .await
            .expect("write");
        let answer = read_until_closed(&mut s, Duration::from_secs(5))
            .await
            .expect("a half-sent request line is dropped");
        (started.elapsed(), answer)
    };
    // A complete line, a header 0.6 s later, and never the end of the head (a trickling client).
    let trickle = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let started = Instant::now();
        s.write_all(b"GET /info HTTP/1.1\r\n").await.expect("write");
        tokio::time::sleep(Duration::from_millis(600)).await;
        let _ = s.write_all(b"Host: h\r\n").await;
        let answer = read_until_closed(&mut s, Duration::from_secs(5))
            .await
            .expect("a trickling request is dropped");
        (started.elapsed(), answer)
    };
    // Connects and sends nothing at all.
    let silent = async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let started = Instant::now();
        let answer = read_until_closed(&mut s, Duration::from_secs(5))
            .await
            .expect("a silent connection is dropped");
        (started.elapsed(), answer)
    };
    let (half_line, trickle, silent) = tokio::join!(half_line, trickle, silent);
    for (what, (took, answer)) in [
        ("half a request line", half_line),
        ("a trickling head", trickle),
        ("a silent connection", silent),
    ] {
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "{what}: dropped after {took:?}, want about 1 s"
        );
        // Either a bare close or a 408; never a normal answer.
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{what}: answered {text:?}"
        );
    }
    // A prompt client is served.
    let info = get_info(&server).await.expect("answer");
    assert!(
        info.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&info)
    );
    server.stop().await;
}

async fn cometql_handshake_deadline(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.cometql.handshake_timeout_secs = 1;
    })
    .await;
    let t = server.tenant("a@example.com").await;
    // Each deadline runs from the connection's own start.
    let dropped_after = |mut m: RawMysql, started: Instant, what: &'static str| async move {
        m.expect_closed(Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "{what}: dropped after {took:?}, want about 1 s"
        );
    };
    // Reads the greeting, answers nothing.
    let silent_since = Instant::now();
    let silent = RawMysql::connect(&server).await.expect("greeting");
    // Half a handshake response: a packet header announcing more than is ever sent.
    let half_since = Instant::now();
    let mut half = RawMysql::connect(&server).await.expect("greeting");
    half.write(&[80, 0, 0, 1, 0x05, 0xa6]).await.expect("write");
    // A logged-in session is not subject to the handshake deadline.
    let mut session = RawMysql::login(&server, &t).await;
    let idle_session = async {
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert!(matches!(
            session.query("SHOW STATUS").await,
            Reply::Rows { .. }
        ));
    };
    tokio::join!(
        dropped_after(silent, silent_since, "a client that never logs in"),
        dropped_after(half, half_since, "a half-sent handshake"),
        idle_session,
    );
    server.stop().await;
}

on_both_backends!(
    websocket_connections_per_tenant,
    new_connections_per_ip,
    failed_logins_per_ip,
);

/// Socket-level limits: no storage involved beyond start-up, so SQLite is enough.
mod socket_limits {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn total_connection_cap() {
        super::total_connection_cap(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn request_head_deadline() {
        super::request_head_deadline(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cometql_handshake_deadline() {
        super::cometql_handshake_deadline(Backend::Sqlite).await
    }
}
