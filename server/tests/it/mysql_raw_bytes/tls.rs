//! CometQL's in-protocol TLS, byte by byte: the greeting offers it only with a certificate, an SSLRequest
//! upgrades in place even when the ClientHello came in the same write, and garbage, a stalled handshake or
//! a second SSLRequest each end that connection with a clear outcome while the server keeps serving.

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use halley::config::TlsConfig;
use halley::front::cometql::ConnError;
use halley::front::tls::{HandshakeError, Tls};
use halley::mysql::auth;
use halley::stats::Stats;
use rustls::pki_types::ServerName;

use super::support::{config, TestServer, KEY};
use super::{err, frame, handshake_response, Raw, OK_EMPTY};

/// A certificate for `localhost` and the server's TLS built from it; the files live as long as the dir.
struct Certs {
    _dir: tempfile::TempDir,
    ca: rustls::RootCertStore,
    tls: Arc<Tls>,
}

fn certs() -> Certs {
    certs_with(TlsConfig::default())
}

fn certs_with(base: TlsConfig) -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let config = TlsConfig {
        cert_file: cert,
        key_file: key,
        ..base
    };
    let tls = Tls::from_config(&config, Stats::default())
        .unwrap()
        .unwrap();
    let mut ca = rustls::RootCertStore::empty();
    ca.add(ck.cert.der().clone()).unwrap();
    Certs { _dir: dir, ca, tls }
}

fn client_config(ca: &rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.clone())
        .with_no_client_auth();
    Arc::new(config)
}

/// SSLRequest: PROTOCOL_41 | SECURE_CONNECTION | SSL | PLUGIN_AUTH, max packet, charset, 23 zeros.
fn ssl_request() -> Vec<u8> {
    let caps: u32 = 0x0200 | 0x8000 | 0x0800 | 0x8_0000;
    let mut p = caps.to_le_bytes().to_vec();
    p.extend_from_slice(&(1u32 << 24).to_le_bytes());
    p.push(45);
    p.extend_from_slice(&[0; 23]);
    p
}

fn offers_ssl(greeting: &[u8]) -> bool {
    let v_end = greeting.iter().position(|&b| b == 0).unwrap();
    let caps_low = v_end + 1 + 4 + 8 + 1;
    u16::from_le_bytes([greeting[caps_low], greeting[caps_low + 1]]) & 0x0800 != 0
}

/// Reads one MySQL packet from a blocking reader.
fn read_packet(r: &mut impl Read) -> (u8, Vec<u8>) {
    let mut head = [0u8; 4];
    r.read_exact(&mut head).unwrap();
    let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
    let mut payload = vec![0; len];
    r.read_exact(&mut payload).unwrap();
    (head[3], payload)
}

#[tokio::test]
async fn without_a_certificate_the_greeting_does_not_offer_tls_and_with_one_it_does() {
    let plain = TestServer::default().await;
    assert!(!offers_ssl(&Raw::connect(&plain).await.greeting));
    let certs = certs();
    let tls = TestServer::start_with_tls(config(), Some(certs.tls.clone())).await;
    assert!(offers_ssl(&Raw::connect(&tls).await.greeting));
}

/// The client sends its SSLRequest and its ClientHello in one write (as some drivers do): the hello's
/// bytes, already in the packet reader, must reach the TLS handshake. Then the login and a query run
/// inside TLS, with the sequence ids continuing from the SSLRequest.
#[tokio::test]
async fn ssl_request_and_client_hello_in_one_write_then_login_and_query_inside_tls() {
    let certs = certs();
    let mut server = TestServer::start_with_tls(config(), Some(certs.tls.clone())).await;
    let addr = server.addr;
    let client = client_config(&certs.ca);
    tokio::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (seq, greeting) = read_packet(&mut tcp);
        assert_eq!(seq, 0);
        assert!(offers_ssl(&greeting));
        let salt = super::greeting_salt(&greeting);

        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(client, name).unwrap();
        let mut one_write = frame(1, &ssl_request());
        conn.write_tls(&mut one_write).unwrap();
        assert!(
            one_write.len() > 36 + 100,
            "the ClientHello follows the SSLRequest"
        );
        tcp.write_all(&one_write).unwrap();

        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        let scramble = auth::scramble(&salt, KEY.as_bytes());
        let resp = handshake_response(b"1", &scramble, Some("CometQL_v1"), "mysql_native_password");
        tls.write_all(&frame(2, &resp)).unwrap();
        assert_eq!(read_packet(&mut tls), (3, OK_EMPTY.to_vec()));
        tls.write_all(&frame(0, b"\x0e")).unwrap();
        assert_eq!(read_packet(&mut tls), (1, OK_EMPTY.to_vec()));
        tls.write_all(&frame(0, b"\x01")).unwrap();
    })
    .await
    .unwrap();
    server.next_outcome().await.unwrap();
    assert!(
        server.handler.last_tls.load(Ordering::SeqCst),
        "the login saw TLS"
    );
    server.assert_sessions_balanced();
}

/// Inside TLS, a second SSLRequest is refused with MySQL's TLS error, inside TLS.
#[tokio::test]
async fn a_second_ssl_request_inside_tls_is_refused() {
    let certs = certs();
    let mut server = TestServer::start_with_tls(config(), Some(certs.tls.clone())).await;
    let addr = server.addr;
    let client = client_config(&certs.ca);
    tokio::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        read_packet(&mut tcp);
        tcp.write_all(&frame(1, &ssl_request())).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(client, name).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        tls.write_all(&frame(2, &ssl_request())).unwrap();
        let (seq, payload) = read_packet(&mut tls);
        assert_eq!(seq, 3);
        assert_eq!(
            payload,
            err(
                2026,
                "TLS is already on: a second SSLRequest is not allowed"
            )
        );
    })
    .await
    .unwrap();
    assert!(matches!(
        server.next_outcome().await,
        Err(ConnError::SslRequested)
    ));
}

/// Plain text where the ClientHello should be: the handshake fails, that connection is closed, and the
/// next client is served.
#[tokio::test]
async fn garbage_instead_of_a_client_hello_ends_only_that_connection() {
    let certs = certs();
    let mut server = TestServer::start_with_tls(config(), Some(certs.tls.clone())).await;
    let mut c = Raw::connect(&server).await;
    let mut bytes = frame(1, &ssl_request());
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    c.write(&bytes).await;
    // The server answers with a TLS alert or nothing, then closes: never a MySQL packet.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut c.s, &mut rest),
    )
    .await
    .expect("closed in time");
    assert!(
        rest.first().is_none_or(|&b| b == 0x15),
        "a TLS alert at most: {rest:?}"
    );
    assert!(matches!(
        server.next_outcome().await,
        Err(ConnError::Tls(HandshakeError::Failed(_)))
    ));
    let plain = Raw::login(&server).await;
    drop(plain);
    server.next_outcome().await.unwrap();
}

/// A client that sends its SSLRequest and then nothing is cut at the handshake deadline, which covers the
/// TLS handshake too.
#[tokio::test]
async fn a_stalled_tls_handshake_is_cut_at_the_handshake_deadline() {
    let certs = certs();
    let cfg = halley::front::cometql::ConnConfig {
        handshake_timeout: Duration::from_millis(300),
        ..config()
    };
    let mut server = TestServer::start_with_tls(cfg, Some(certs.tls.clone())).await;
    let mut c = Raw::connect(&server).await;
    c.send(1, &ssl_request()).await;
    let started = std::time::Instant::now();
    assert!(matches!(
        server.next_outcome().await,
        Err(ConnError::Tls(HandshakeError::Timeout))
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    c.expect_closed().await;
}

/// One handshake slot, and two clients that stall: one sent half its hello, the other its whole hello and
/// never its Finished. Neither holds the slot while it waits, so a third client's handshake and login go
/// through at once.
#[tokio::test]
async fn clients_that_stall_mid_handshake_hold_no_handshake_slot() {
    let certs = certs_with(TlsConfig {
        max_concurrent_handshakes: 1,
        ..TlsConfig::default()
    });
    let server = TestServer::start_with_tls(config(), Some(certs.tls.clone())).await;
    let client = client_config(&certs.ca);
    let hello = || {
        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(client.clone(), name).unwrap();
        let mut bytes = Vec::new();
        conn.write_tls(&mut bytes).unwrap();
        bytes
    };
    let mut half = Raw::connect(&server).await;
    let mut bytes = frame(1, &ssl_request());
    let h = hello();
    bytes.extend_from_slice(&h[..h.len() / 2]);
    half.write(&bytes).await;
    let mut whole = Raw::connect(&server).await;
    let mut bytes = frame(1, &ssl_request());
    bytes.extend_from_slice(&hello());
    whole.write(&bytes).await;
    // The server answers the whole hello (its first flight) and then waits for the client's Finished.
    let mut first_flight = [0u8; 5];
    tokio::io::AsyncReadExt::read_exact(&mut whole.s, &mut first_flight)
        .await
        .unwrap();
    assert_eq!(first_flight[0], 0x16, "a TLS handshake record");
    let tls = certs.tls.clone();
    let freed = async {
        while tls.free_handshake_slots() != 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), freed)
        .await
        .expect("the slot is given back while the server waits");

    let addr = server.addr;
    let third = tokio::task::spawn_blocking(move || {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (_, greeting) = read_packet(&mut tcp);
        let salt = super::greeting_salt(&greeting);
        tcp.write_all(&frame(1, &ssl_request())).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(client, name).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        let scramble = auth::scramble(&salt, KEY.as_bytes());
        let resp = handshake_response(b"1", &scramble, None, "mysql_native_password");
        tls.write_all(&frame(2, &resp)).unwrap();
        read_packet(&mut tls)
    });
    assert_eq!(third.await.unwrap(), (3, OK_EMPTY.to_vec()));
    drop((half, whole));
}
