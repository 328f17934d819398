//! `serve_connection` on a real socket, driven byte by byte: framing edge cases, hostile input, every
//! command, timeouts and the closer.

mod support;
mod tls;

use std::time::Duration;

use halley::front::cometql::{ConnConfig, ConnError};
use halley::mysql::auth;
use support::{config, TestServer, KEY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
    salt: [u8; 20],
    greeting: Vec<u8>,
}

impl Raw {
    async fn connect(server: &TestServer) -> Raw {
        let s = TcpStream::connect(server.addr).await.unwrap();
        let mut raw = Raw {
            s,
            buf: Vec::new(),
            salt: [0; 20],
            greeting: Vec::new(),
        };
        let (seq, g) = raw.packet().await.expect("greeting");
        assert_eq!(seq, 0);
        raw.salt = greeting_salt(&g);
        raw.greeting = g;
        raw
    }

    /// The next packet, or `None` once the server closed the connection.
    async fn packet(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], 0]) as usize;
                if self.buf.len() >= 4 + len {
                    let seq = self.buf[3];
                    let payload = self.buf[4..4 + len].to_vec();
                    self.buf.drain(..4 + len);
                    return Some((seq, payload));
                }
            }
            let mut chunk = [0u8; 65536];
            let n = timeout(WAIT, self.s.read(&mut chunk))
                .await
                .expect("server answered in time")
                .unwrap_or(0);
            if n == 0 {
                assert!(self.buf.is_empty(), "connection closed mid-packet");
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn expect_packet(&mut self, seq: u8) -> Vec<u8> {
        let (got, payload) = self.packet().await.expect("a packet, not a close");
        assert_eq!(got, seq, "sequence id of {payload:?}");
        payload
    }

    async fn expect_closed(&mut self) {
        assert_eq!(self.packet().await, None);
    }

    async fn write(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, seq: u8, payload: &[u8]) {
        let bytes = frame(seq, payload);
        self.write(&bytes).await;
    }

    /// Connects and logs in as user "1" with the right key.
    async fn login(server: &TestServer) -> Raw {
        let mut raw = Raw::connect(server).await;
        let scramble = auth::scramble(&raw.salt, KEY.as_bytes());
        let resp = handshake_response(b"1", &scramble, Some("CometQL_v1"), "mysql_native_password");
        raw.send(1, &resp).await;
        assert_eq!(raw.expect_packet(2).await, OK_EMPTY);
        raw
    }
}

const OK_EMPTY: &[u8] = b"\x00\x00\x00\x02\x02\x00\x00";
const OK_1_7: &[u8] = b"\x00\x01\x07\x02\x02\x00\x00";
const EOF: &[u8] = b"\xfe\x00\x00\x02\x02";

fn frame(seq: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_le_bytes()[..3].to_vec();
    out.push(seq);
    out.extend_from_slice(payload);
    out
}

fn greeting_salt(g: &[u8]) -> [u8; 20] {
    let v_end = g.iter().position(|&b| b == 0).unwrap();
    let p1 = v_end + 1 + 4;
    let p2 = p1 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10;
    let mut salt = [0u8; 20];
    salt[..8].copy_from_slice(&g[p1..p1 + 8]);
    salt[8..].copy_from_slice(&g[p2..p2 + 12]);
    salt
}

/// HandshakeResponse41 with PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH | CONNECT_WITH_DB.
fn handshake_response(user: &[u8], auth: &[u8], db: Option<&str>, plugin: &str) -> Vec<u8> {
    let caps: u32 = 0x0200 | 0x8000 | 0x8_0000 | if db.is_some() { 8 } else { 0 };
    let mut p = caps.to_le_bytes().to_vec();
    p.extend_from_slice(&(1u32 << 24).to_le_bytes());
    p.push(45);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(user);
    p.push(0);
    p.push(auth.len() as u8);
    p.extend_from_slice(auth);
    if let Some(db) = db {
        p.extend_from_slice(db.as_bytes());
        p.push(0);
    }
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    p
}

fn err(code: u16, msg: &str) -> Vec<u8> {
    let mut p = vec![0xFF];
    p.extend_from_slice(&code.to_le_bytes());
    p.extend_from_slice(b"#HY000");
    p.extend_from_slice(msg.as_bytes());
    p
}

#[tokio::test]
async fn greeting_has_the_promised_fields_and_a_fresh_salt() {
    let server = TestServer::default().await;
    let a = Raw::connect(&server).await;
    let b = Raw::connect(&server).await;
    let g = &a.greeting;
    assert_eq!(g[0], 10);
    assert!(g[1..].starts_with(b"5.7.99-Halley-0.1.0\0"));
    let rest = &g[1 + 20 + 4 + 8 + 1..];
    let caps = u32::from(u16::from_le_bytes([rest[0], rest[1]]))
        | u32::from(u16::from_le_bytes([rest[5], rest[6]])) << 16;
    assert_eq!(caps & 0x0800, 0, "never CLIENT_SSL");
    assert_eq!(caps & (1 << 24), 0, "never DEPRECATE_EOF");
    assert_eq!(caps & (1 << 16), 0, "never MULTI_STATEMENTS");
    assert_eq!((rest[2], rest[3], rest[4]), (45, 0x02, 0x02));
    assert!(g.ends_with(b"mysql_native_password\0"));
    assert_ne!(a.salt, b.salt);
    assert!(a.salt.iter().all(|&x| (1..=127).contains(&x)));
}

#[tokio::test]
async fn two_packets_in_one_write_and_one_packet_in_two_writes() {
    let mut server = TestServer::default().await;
    let mut c = Raw::login(&server).await;
    let mut both = frame(0, b"\x0e");
    both.extend(frame(0, b"\x03INSERT x"));
    c.write(&both).await;
    assert_eq!(c.expect_packet(1).await, OK_EMPTY);
    assert_eq!(c.expect_packet(1).await, OK_1_7);

    let q = frame(0, b"\x03SELECT 'split'");
    for a in [2, 9] {
        c.write(&q[..a]).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        c.write(&q[a..]).await;
        assert_eq!(c.expect_packet(1).await, b"\x01");
        let def = c.expect_packet(2).await;
        assert!(def.starts_with(b"\x03def\x00\x00\x00\x05query\x05query\x0c\x2d\x00"));
        assert_eq!(c.expect_packet(3).await, EOF);
        assert_eq!(c.expect_packet(4).await, b"\x0eSELECT 'split'");
        assert_eq!(c.expect_packet(5).await, EOF);
    }
    // A request's sequence id is continued, whatever it is.
    c.send(7, b"\x0e").await;
    assert_eq!(c.expect_packet(8).await, OK_EMPTY);
    c.send(0, b"\x01").await;
    c.expect_closed().await;
    server.next_outcome().await.unwrap();
    server.assert_sessions_balanced();
}

#[tokio::test]
async fn oversized_packet_gets_err_11_and_close() {
    let mut server = TestServer::start(ConnConfig {
        max_packet: 1024,
        ..config()
    })
    .await;
    let mut c = Raw::login(&server).await;
    let mut q = b"\x03SELECT '".to_vec();
    q.resize(1025, b'a');
    c.send(0, &q).await;
    assert_eq!(c.expect_packet(1).await, err(11, "Data is too long"));
    c.expect_closed().await;
    drop(c);
    assert!(matches!(
        server.next_outcome().await,
        Err(ConnError::Packet(_))
    ));
    // Exactly the limit is fine.
    let mut c = Raw::login(&server).await;
    q.truncate(1024);
    c.send(0, &q).await;
    assert_eq!(c.expect_packet(1).await, b"\x01");
    drop(c);
    server.next_outcome().await.unwrap();
    server.assert_sessions_balanced();
}

#[tokio::test]
async fn a_header_announcing_a_huge_packet_is_refused_without_waiting_for_it() {
    let mut server = TestServer::default().await;
    let mut c = Raw::login(&server).await;
    c.write(b"\xff\xff\xff\x00\x03SELECT").await;
    assert_eq!(c.expect_packet(1).await, err(11, "Data is too long"));
    c.expect_closed().await;
    drop(c);
    assert!(server.next_outcome().await.is_err());
}

#[tokio::test]
async fn garbage_instead_of_a_handshake_response() {
    let mut server = TestServer::start(ConnConfig {
        handshake_timeout: Duration::from_millis(300),
        ..config()
    })
    .await;
    // An HTTP request: its first bytes announce a 5 MB packet.
    let mut c = Raw::connect(&server).await;
    c.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert_eq!(c.expect_packet(b' ' + 1).await, err(1043, "Bad handshake"));
    c.expect_closed().await;
    drop(c);
    assert!(server.next_outcome().await.is_err());
    // Bytes that frame as a packet but are not a handshake response.
    for junk in [&b"\xff\xff\xff\xff\x00"[..], b"\x00\x00\x00\x00", b""] {
        let mut c = Raw::connect(&server).await;
        c.send(1, junk).await;
        assert_eq!(c.expect_packet(2).await, err(1043, "Bad handshake"));
        c.expect_closed().await;
        drop(c);
        assert!(server.next_outcome().await.is_err());
    }
    // Half a packet, then silence: the handshake timeout closes it.
    let mut c = Raw::connect(&server).await;
    c.write(b"\x40\x00\x00\x01\x8d\xa2").await;
    assert_eq!(c.packet().await, None);
    assert!(matches!(
        server.next_outcome().await,
        Err(ConnError::HandshakeTimeout)
    ));
    // Nothing at all.
    let mut c = Raw::connect(&server).await;
    assert_eq!(c.packet().await, None);
    assert!(matches!(
        server.next_outcome().await,
        Err(ConnError::HandshakeTimeout)
    ));
    // Hanging up mid-packet.
    let mut c = Raw::connect(&server).await;
    c.write(b"\x40\x00\x00\x01\x8d").await;
    drop(c);
    assert!(matches!(
        server.next_outcome().await,
        Err(ConnError::UnexpectedEof)
    ));
    server.assert_sessions_balanced();
}

#[tokio::test]
async fn ssl_request_gets_a_clear_error() {
    let mut server = TestServer::default().await;
    let mut c = Raw::connect(&server).await;
    let mut ssl = 0x0000_8a08_u32.to_le_bytes().to_vec();
    ssl.extend_from_slice(&(1u32 << 24).to_le_bytes());
    ssl.push(45);
    ssl.extend_from_slice(&[0; 23]);
    c.send(1, &ssl).await;
    assert_eq!(
        c.expect_packet(2).await,
        err(
            2026,
            "TLS is not offered by this server (no certificate is configured); connect without SSL"
        )
    );
    c.expect_closed().await;
    drop(c);
    assert!(matches!(
        server.next_outcome().await,
        Err(ConnError::SslRequested)
    ));
}

#[tokio::test]
async fn wrong_or_empty_password_is_error_16() {
    let mut server = TestServer::default().await;
    for auth in [&auth::scramble(&[1; 20], KEY.as_bytes())[..], b""] {
        let mut c = Raw::connect(&server).await;
        let resp = handshake_response(b"1", auth, None, "mysql_native_password");
        c.send(1, &resp).await;
        assert_eq!(c.expect_packet(2).await, err(16, "Authentication failure"));
        c.expect_closed().await;
        drop(c);
        assert!(matches!(
            server.next_outcome().await,
            Err(ConnError::Refused(_))
        ));
    }
    server.assert_sessions_balanced();
}

#[tokio::test]
async fn another_plugin_is_switched_to_native_password() {
    let mut server = TestServer::default().await;
    let mut c = Raw::connect(&server).await;
    let resp = handshake_response(b"1", b"", Some("CometQL_v1"), "caching_sha2_password");
    c.send(1, &resp).await;
    let mut switch = b"\xfemysql_native_password\0".to_vec();
    switch.extend_from_slice(&c.salt);
    switch.push(0);
    assert_eq!(c.expect_packet(2).await, switch);
    let scramble = auth::scramble(&c.salt, KEY.as_bytes());
    c.send(3, &scramble).await;
    assert_eq!(c.expect_packet(4).await, OK_EMPTY);
    c.send(0, b"\x0e").await;
    assert_eq!(c.expect_packet(1).await, OK_EMPTY);
    drop(c);
    server.next_outcome().await.unwrap();
    server.assert_sessions_balanced();
}

#[tokio::test]
async fn commands_other_than_query() {
    let mut server = TestServer::default().await;
    let mut c = Raw::login(&server).await;
    c.send(0, b"\x1f").await;
    assert_eq!(
        c.expect_packet(1).await,
        err(2, "Command 0x1f is not supported")
    );
    c.send(0, b"\x16SELECT ?").await;
    let e = c.expect_packet(1).await;
    assert!(e.starts_with(b"\xff\x02\x00#HY000Prepared statements (COM_STMT_PREPARE)"));
    // COM_STMT_CLOSE gets no reply at all: the next packet read is the PING's OK.
    c.send(0, b"\x19\x01\x00\x00\x00").await;
    c.send(0, b"\x04pipes\x00").await;
    assert_eq!(c.expect_packet(1).await, EOF);
    c.send(0, b"\x02CometQL_v1").await;
    assert_eq!(c.expect_packet(1).await, OK_EMPTY);
    c.send(0, b"\x02db_2").await;
    assert_eq!(c.expect_packet(1).await, err(15, "Select database failure"));
    c.send(0, b"").await;
    assert_eq!(c.expect_packet(1).await, err(2, "Empty command packet"));
    c.send(0, b"\x0e").await;
    assert_eq!(c.expect_packet(1).await, OK_EMPTY);
    c.send(0, b"\x01").await;
    c.expect_closed().await;
    server.next_outcome().await.unwrap();
    server.assert_sessions_balanced();
}

fn change_user(user: &[u8], auth: &[u8], plugin: &str) -> Vec<u8> {
    let mut p = vec![0x11];
    p.extend_from_slice(user);
    p.push(0);
    p.push(auth.len() as u8);
    p.extend_from_slice(auth);
    p.extend_from_slice(b"CometQL_v1\0\x2d\x00");
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    p
}

#[tokio::test]
async fn change_user_really_checks_the_credentials() {
    let mut server = TestServer::default().await;
    let mut c = Raw::login(&server).await;
    // A native scramble is checked against the connection's original salt.
    let good = auth::scramble(&c.salt, KEY.as_bytes());
    c.send(0, &change_user(b"1", &good, "mysql_native_password"))
        .await;
    assert_eq!(c.expect_packet(1).await, OK_EMPTY);
    // Another plugin: switched with a fresh salt.
    c.send(0, &change_user(b"1", b"", "caching_sha2_password"))
        .await;
    let switch = c.expect_packet(1).await;
    let fresh: [u8; 20] = switch[23..43].try_into().unwrap();
    assert_ne!(fresh, c.salt);
    c.send(2, &auth::scramble(&fresh, KEY.as_bytes())).await;
    assert_eq!(c.expect_packet(3).await, OK_EMPTY);
    assert_eq!(
        server
            .handler
            .logins
            .load(std::sync::atomic::Ordering::SeqCst),
        3
    );
    assert_eq!(
        server
            .handler
            .closed
            .load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    // A wrong key ends the connection.
    let bad = auth::scramble(&c.salt, b"not-the-key");
    c.send(0, &change_user(b"1", &bad, "mysql_native_password"))
        .await;
    assert_eq!(c.expect_packet(1).await, err(16, "Authentication failure"));
    c.expect_closed().await;
    drop(c);
    assert!(matches!(
        server.next_outcome().await,
        Err(ConnError::Refused(_))
    ));
    server.assert_sessions_balanced();
}

#[tokio::test]
async fn idle_timeout_and_closer_end_the_connection() {
    let mut server = TestServer::start(ConnConfig {
        idle_timeout: Duration::from_millis(200),
        ..config()
    })
    .await;
    let mut c = Raw::login(&server).await;
    c.expect_closed().await;
    drop(c);
    assert!(matches!(
        server.next_outcome().await,
        Err(ConnError::IdleTimeout)
    ));

    let mut c = Raw::login(&server).await;
    c.send(0, b"\x03close-me").await;
    assert_eq!(c.expect_packet(1).await, OK_EMPTY);
    c.expect_closed().await;
    server.next_outcome().await.unwrap();
    server.assert_sessions_balanced();
}
