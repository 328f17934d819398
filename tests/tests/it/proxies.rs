//! Client addresses behind a balancer (`trusted_proxies`): from a trusted peer, a PROXY protocol header (v1
//! text, v2 binary) on either port and `X-Forwarded-For` / `Forwarded` on HTTP requests name the client, and
//! the per-IP limits, `users_in_pipes`, the WebSocket limits and `/metrics`' loopback check (over HTTPS too,
//! where the header precedes the TLS handshake) see that client, not the balancer. From any
//! other peer the HTTP headers are ignored and a PROXY header is refused. A trusted peer's malformed or
//! stalled header closes that connection only. The tests connect from 127.0.0.1, trusted or not as each says.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use halley::config::Config;
use halley::stats::AcceptRefusal;
use halley_tests::browser::{wait_ws_connections, ws_connections, Browser};
use halley_tests::mysql_raw::RawMysql;
use halley_tests::wait::{eventually, read_until_closed, WAIT};
use halley_tests::ws::raw::{upgrade_request, RawWs};
use halley_tests::ws::{upgrade_status, WsClient};
use halley_tests::{Backend, TestServer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn trust_loopback(c: &mut Config) {
    c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// `dst`, or for an IPv6 `src` the IPv6 loopback with `dst`'s port (a header's two addresses share a family).
fn same_family(src: SocketAddr, dst: SocketAddr) -> SocketAddr {
    match (src, dst) {
        (SocketAddr::V6(_), SocketAddr::V4(d)) => {
            SocketAddr::new(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), d.port())
        }
        _ => dst,
    }
}

/// `PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\r\n`.
fn v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let dst = same_family(src, dst);
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

/// A v2 PROXY header for a TCP stream, with one TLV (an authority) to skip.
fn v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let dst = same_family(src, dst);
    let mut rest = Vec::new();
    let family = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            rest.extend_from_slice(&s.octets());
            rest.extend_from_slice(&d.octets());
            0x11
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            rest.extend_from_slice(&s.octets());
            rest.extend_from_slice(&d.octets());
            0x21
        }
        _ => panic!("one family"),
    };
    rest.extend_from_slice(&src.port().to_be_bytes());
    rest.extend_from_slice(&dst.port().to_be_bytes());
    rest.extend_from_slice(b"\x02\x00\x0bexample.com");
    v2_raw(0x21, family, &rest)
}

/// Signature, version-and-command, family-and-transport, length, rest.
fn v2_raw(ver_cmd: u8, family: u8, rest: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(ver_cmd);
    h.push(family);
    h.extend_from_slice(&(rest.len() as u16).to_be_bytes());
    h.extend_from_slice(rest);
    h
}

/// A TCP connection to `to` that has sent `header`.
async fn with_header(to: SocketAddr, header: &[u8]) -> TcpStream {
    let mut s = tokio::time::timeout(WAIT, TcpStream::connect(to))
        .await
        .expect("connect in time")
        .expect("connect");
    s.write_all(header).await.expect("send the PROXY header");
    s
}

/// A CometQL connection through a PROXY header: the greeting, or why there is none.
async fn cometql_through(server: &TestServer, header: &[u8]) -> anyhow::Result<RawMysql> {
    RawMysql::over(with_header(server.cometql_addr(), header).await).await
}

/// A WebSocket (anonymous, for `dev_id`) through a PROXY header.
async fn ws_through(server: &TestServer, dev_id: u64, header: &[u8]) -> anyhow::Result<WsClient> {
    let stream = with_header(server.http_addr(), header).await;
    let mut ws = WsClient::over(stream, &server.ws_url(dev_id, 0, "")).await?;
    ws.recv_text(WAIT).await.context("the greeting")?;
    Ok(ws)
}

fn refused_per_ip(server: &TestServer) -> u64 {
    server
        .ctx()
        .stats
        .connections_refused
        .get(AcceptRefusal::IpConnections)
}

/// The server closes the connection without a byte (no greeting, no HTTP answer).
async fn closed_unserved(mut s: TcpStream, what: &str) {
    let got = read_until_closed(&mut s, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        got.is_empty(),
        "{what}: answered {:?}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cometql_counts_the_client_a_proxy_header_names() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        trust_loopback(c);
        c.limits.connections_per_ip = 2;
    })
    .await;
    let t = server.tenant("a@example.com").await;
    let dst = server.cometql_addr();
    // Five sockets from the one balancer, three clients: each client is under its own limit.
    let mut open = Vec::new();
    for (i, src) in ["203.0.113.1:1001", "203.0.113.2:1002", "[2001:db8::3]:1003"]
        .into_iter()
        .enumerate()
    {
        let header = if i % 2 == 0 {
            v1(addr(src), dst)
        } else {
            v2(addr(src), dst)
        };
        open.push(cometql_through(&server, &header).await.expect(src));
    }
    let same = addr("198.51.100.7:5000");
    open.push(cometql_through(&server, &v1(same, dst)).await.unwrap());
    open.push(cometql_through(&server, &v2(same, dst)).await.unwrap());
    let before = refused_per_ip(&server);
    let third = with_header(dst, &v2(same, dst)).await;
    closed_unserved(third, "a third connection of 198.51.100.7").await;
    assert_eq!(refused_per_ip(&server) - before, 1);

    // A proxied connection logs in and works like any other.
    let session = open
        .pop()
        .unwrap()
        .handshake(&t.dev_id.to_string(), &t.key, Some("CometQL_v1"))
        .await
        .unwrap()
        .expect("login through the proxy");
    // Its slot is given back when it closes: the client may connect again.
    drop(session);
    let header = v1(same, dst);
    let again = eventually(WAIT, || cometql_through(&server, &header))
        .await
        .expect("198.51.100.7 may connect again once one of its connections closed");
    drop((again, open));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_counts_the_client_a_proxy_header_names() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        trust_loopback(c);
        c.limits.connections_per_ip = 2;
    })
    .await;
    let t = server.tenant("a@example.com").await;
    let dst = server.http_addr();
    let mut open = Vec::new();
    for (i, src) in ["203.0.113.1:1001", "203.0.113.2:1002", "[2001:db8::3]:1003"]
        .into_iter()
        .enumerate()
    {
        let header = if i % 2 == 0 {
            v2(addr(src), dst)
        } else {
            v1(addr(src), dst)
        };
        open.push(ws_through(&server, t.dev_id, &header).await.expect(src));
    }
    let same = addr("198.51.100.7:5000");
    open.push(ws_through(&server, t.dev_id, &v1(same, dst)).await.unwrap());
    open.push(ws_through(&server, t.dev_id, &v2(same, dst)).await.unwrap());
    let before = refused_per_ip(&server);
    let mut third = with_header(dst, &v1(same, dst)).await;
    let _ = third
        .write_all(&upgrade_request(&dst.to_string(), "/ws/devid=1", &[]))
        .await;
    closed_unserved(third, "a third connection of 198.51.100.7").await;
    assert_eq!(refused_per_ip(&server) - before, 1);
    assert_eq!(ws_connections(&server, t.dev_id), 5);

    // A LOCAL header (the balancer's health check) and a plain request both are the balancer's own.
    let mut check = with_header(dst, &v2_raw(0x20, 0x00, b"")).await;
    check
        .write_all(b"GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut check, WAIT).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    drop(open);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_and_forwarded_name_the_client_of_each_upgrade() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        trust_loopback(c);
        c.limits.websocket_connections_per_ip_per_tenant = 2;
    })
    .await;
    let t = server.tenant("a@example.com").await;
    let url = server.ws_url(t.dev_id, 0, "");
    let mut open = Vec::new();
    // Three clients through the one balancer; a client's own claim left of the balancer's is not believed.
    for xff in ["203.0.113.1", "203.0.113.2", "198.51.100.7, 203.0.113.3"] {
        open.push(
            WsClient::connect_with_headers(&url, &[("X-Forwarded-For", xff)])
                .await
                .expect(xff),
        );
    }
    let same = [("Forwarded", "for=\"198.51.100.7:4711\";proto=https")];
    open.push(WsClient::connect_with_headers(&url, &same).await.unwrap());
    open.push(
        WsClient::connect_with_headers(&url, &[("X-Forwarded-For", "198.51.100.7")])
            .await
            .unwrap(),
    );
    assert_eq!(
        upgrade_status(&url, &same).await.unwrap(),
        429,
        "a third for 198.51.100.7"
    );
    // The balancer's own address (no header) is one more client.
    assert_eq!(upgrade_status(&url, &[]).await.unwrap(), 101);

    // users_in_pipes shows the client the header named.
    let mut b = Browser::connect_full(
        &server,
        t.dev_id,
        0,
        "",
        "xff",
        "4.08",
        &[("X-Forwarded-For", "192.0.2.44, 127.0.0.1")],
    )
    .await;
    b.subscribe(&["web_where"]).await;
    let header = v1(addr("192.0.2.99:3000"), server.cometql_addr());
    let mut cql = cometql_through(&server, &header)
        .await
        .unwrap()
        .handshake(&t.dev_id.to_string(), &t.key, Some("CometQL_v1"))
        .await
        .unwrap()
        .expect("login through the proxy");
    let r = cql
        .query("SELECT ip FROM users_in_pipes WHERE name = 'web_where'")
        .await;
    assert_eq!(r.rows(), [vec!["192.0.2.44".to_string()]]);
    drop(open);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peer_is_its_own_client() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
        c.limits.websocket_connections_per_ip_per_tenant = 2;
        c.cometql.handshake_timeout_secs = 1;
    })
    .await;
    let t = server.tenant("a@example.com").await;
    let url = server.ws_url(t.dev_id, 0, "");
    let mut open = Vec::new();
    for xff in ["203.0.113.1", "203.0.113.2"] {
        let h = [("X-Forwarded-For", xff), ("Forwarded", "for=203.0.113.9")];
        open.push(WsClient::connect_with_headers(&url, &h).await.expect(xff));
    }
    // Both counted under 127.0.0.1, whatever they said.
    let h = [("X-Forwarded-For", "203.0.113.3")];
    assert_eq!(upgrade_status(&url, &h).await.unwrap(), 429);

    // A PROXY header is not a request, nor a MySQL handshake.
    let http = server.http_addr().to_string();
    let mut req = v1(addr("203.0.113.4:1"), server.http_addr());
    req.extend_from_slice(&upgrade_request(&http, "/ws/devid=1", &[]));
    let (_, answer) = RawWs::connect(&http, &req).await.unwrap();
    assert_eq!(answer.status, 400, "{}", answer.head);
    let dst = server.cometql_addr();
    for header in [
        v1(addr("203.0.113.4:1"), dst),
        v2(addr("203.0.113.4:1"), dst),
    ] {
        let mut m = RawMysql::connect(&server).await.expect("greeted");
        m.write(&header).await.unwrap();
        m.expect_closed(WAIT)
            .await
            .expect("a PROXY header is a bad handshake");
    }
    drop(open);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_header_from_a_trusted_peer_closes_that_connection_only() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        trust_loopback(c);
        c.cometql.handshake_timeout_secs = 1;
        c.websocket.handshake_timeout_secs = 1;
    })
    .await;
    let t = server.tenant("a@example.com").await;
    let mut oversized_v1 = b"PROXY UNKNOWN ".to_vec();
    oversized_v1.resize(300, b'x');
    let mut oversized_v2 = v2_raw(0x21, 0x11, &[0; 12]);
    oversized_v2[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
    let cases: [(&str, Vec<u8>); 8] = [
        ("garbage v1", b"PROXY TCP4 1.2.3.4 nonsense\r\n".to_vec()),
        ("bad v2 command", v2_raw(0x2f, 0x11, &[0; 12])),
        ("short v2 addresses", v2_raw(0x21, 0x21, &[0; 12])),
        ("oversized v1", oversized_v1),
        ("oversized v2", oversized_v2),
        (
            "truncated v1",
            b"PROXY TCP4 203.0.113.1 127.0.0.1 1".to_vec(),
        ),
        (
            "truncated v2",
            v2(addr("203.0.113.1:1"), addr("127.0.0.1:2"))[..20].to_vec(),
        ),
        ("a stall", Vec::new()),
    ];
    for (what, bytes) in &cases {
        closed_unserved(
            with_header(server.cometql_addr(), bytes).await,
            &format!("CometQL, {what}"),
        )
        .await;
        // On HTTP a stall is what hyper's request-head deadline handles: test the rest.
        if !bytes.is_empty() {
            closed_unserved(
                with_header(server.http_addr(), bytes).await,
                &format!("HTTP, {what}"),
            )
            .await;
        }
    }
    // A trusted peer's CometQL connection without a header is refused; on HTTP it is the balancer's own.
    closed_unserved(
        with_header(server.cometql_addr(), b"\x20\x00\x00\x01\x85\xa6\x3f").await,
        "CometQL without a header",
    )
    .await;

    // The server still serves, both ports.
    let ok = v1(addr("203.0.113.1:1"), server.cometql_addr());
    cometql_through(&server, &ok)
        .await
        .unwrap()
        .handshake(&t.dev_id.to_string(), &t.key, Some("CometQL_v1"))
        .await
        .unwrap()
        .expect("login");
    let ok = v2(addr("203.0.113.1:1"), server.http_addr());
    ws_through(&server, t.dev_id, &ok)
        .await
        .expect("a WebSocket");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_forwarded_request_is_admitted_for_its_client() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        trust_loopback(c);
        c.limits.connections_per_ip = 2;
    })
    .await;
    let t = server.tenant("a@example.com").await;
    let url = server.ws_url(t.dev_id, 0, "");
    // More sockets from the balancer than one address may open: its clients are counted, not it.
    let mut open = Vec::new();
    for xff in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        let h = [("X-Forwarded-For", xff)];
        open.push(WsClient::connect_with_headers(&url, &h).await.expect(xff));
    }
    let same = [("X-Forwarded-For", "198.51.100.7")];
    for _ in 0..2 {
        open.push(WsClient::connect_with_headers(&url, &same).await.unwrap());
    }
    // The two WebSockets keep their client's count after their HTTP connections ended in the upgrade.
    let before = refused_per_ip(&server);
    assert_eq!(upgrade_status(&url, &same).await.unwrap(), 429);
    assert_eq!(refused_per_ip(&server) - before, 1);
    wait_ws_connections(&server, t.dev_id, 5).await;
    // Once one closes, the client may connect again.
    open.pop().unwrap().close().await.unwrap();
    eventually(WAIT, || async {
        match upgrade_status(&url, &same).await? {
            101 => Ok(()),
            other => anyhow::bail!("HTTP {other}"),
        }
    })
    .await
    .unwrap();
    drop(open);
    server.stop().await;
}

/// The status line of what `stream` answers to `GET path`, read until the server closes.
async fn get_status<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    path: &str,
    headers: &str,
) -> String {
    use tokio::io::AsyncReadExt;
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n");
    stream.write_all(req.as_bytes()).await.expect("send");
    let mut got = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        // A reset or a missing close_notify ends the answer as well as a FIN.
        while let Ok(n @ 1..) = stream.read(&mut chunk).await {
            got.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("an answer in time");
    let text = String::from_utf8_lossy(&got);
    text.lines().next().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_see_the_client_a_local_proxy_names_over_http_and_https() {
    let certs = halley_tests::tls::TestCerts::new();
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        trust_loopback(c);
        certs.configure(c);
        c.https_addr = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    // /metrics answers loopback clients only: through a proxy on this host, only a loopback client.
    let https = server.https_addr();
    for (client, want) in [("203.0.113.5:1", "403"), ("127.0.0.9:1", "200")] {
        let tcp = with_header(https, &v1(addr(client), https)).await;
        let connector = tokio_rustls::TlsConnector::from(certs.client_config());
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
            .await
            .expect("TLS in time")
            .expect("TLS after the PROXY header");
        let status = get_status(&mut tls, "/metrics", "").await;
        assert!(status.contains(want), "HTTPS from {client}: {status}");
    }
    let http = server.http_addr();
    for (xff, want) in [
        (Some("203.0.113.5"), "403"),
        (Some("127.0.0.9, 127.0.0.1"), "200"),
        (None, "200"),
    ] {
        let mut tcp = TcpStream::connect(http).await.unwrap();
        let header = xff.map_or(String::new(), |x| format!("X-Forwarded-For: {x}\r\n"));
        let status = get_status(&mut tcp, "/metrics", &header).await;
        assert!(status.contains(want), "HTTP with {xff:?}: {status}");
    }
    server.stop().await;
}
