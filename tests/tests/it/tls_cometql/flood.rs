//! The TLS handshake as an attack surface: a flood of handshakes that stall after the server has answered
//! costs bounded memory in the real process, and nobody else is locked out meanwhile.

use std::time::Duration;

use halley_tests::mysql_raw::{frame, RawMysql};
use halley_tests::process::ServerProcess;
use halley_tests::tls::TestCerts;
use halley_tests::wait::WAIT;
use halley_tests::Backend;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{insert_literal_sql, ssl_request, TlsCometql};

/// A handshake flood: 300 connections each send an SSLRequest and a whole ClientHello (so the server computes
/// its answer and keeps a TLS session waiting for the client's Finished) and then stall. The server's memory
/// grows by a bounded amount per stalled handshake, an honest client still logs in over TLS meanwhile, and
/// every stalled one is cut at the handshake deadline and counted as a failed handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_stalled_tls_handshakes_costs_bounded_memory_and_locks_nobody_out() {
    const FLOOD: usize = 300;
    let certs = TestCerts::new();
    let toml = format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n[cometql]\nhandshake_timeout_secs = 4\n\
         [limits]\nconnections_per_ip = 1000\nnew_connections_per_ip_per_sec = 100000\n\
         new_connections_per_ip_burst = 100000\n",
        certs.cert_file().display().to_string(),
        certs.key_file().display().to_string()
    );
    let server = ServerProcess::start(Backend::Sqlite, &toml)
        .await
        .expect("start halley");
    let tenant = server.tenant("flood@example.com").await.unwrap();
    let addr = server.cometql_addr();
    // One honest TLS login first, so that the baseline holds what any TLS session allocates once.
    TlsCometql::login_at(addr, &certs, "localhost", &tenant)
        .await
        .unwrap()
        .expect("TLS login");
    let before = server.memory();

    let client = certs.client_config();
    let mut held = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        let raw = RawMysql::connect_from(addr, None).await.expect("greeting");
        let mut tcp = raw.into_tcp().expect("socket");
        let name = ServerName::try_from("localhost").unwrap();
        let mut hello = rustls::ClientConnection::new(client.clone(), name).unwrap();
        let mut bytes = frame(1, &ssl_request());
        hello.write_tls(&mut bytes).unwrap();
        tcp.write_all(&bytes).await.expect("the hello is taken");
        held.push(tcp);
    }
    // The server answered each hello (its first flight) and now waits for the client.
    for tcp in &mut held {
        let mut record = [0u8; 5];
        tokio::time::timeout(WAIT, tcp.read_exact(&mut record))
            .await
            .expect("the server answers the hello")
            .expect("read");
        assert_eq!(record[0], 0x16, "a TLS handshake record");
    }
    let during = server.memory();
    let growth = during.rss_kib.saturating_sub(before.rss_kib);
    eprintln!(
        "server memory: RSS {} KiB before, {} KiB with {FLOOD} stalled TLS handshakes (peak {} KiB): \
         {} KiB each",
        before.rss_kib,
        during.rss_kib,
        during.hwm_kib,
        growth / FLOOD as u64
    );
    assert!(
        growth < FLOOD as u64 * 64,
        "the server grew by {growth} KiB for {FLOOD} stalled handshakes"
    );
    // Nobody is locked out: handshake slots are not held while the server waits for a client.
    let mut honest = TlsCometql::login_at(addr, &certs, "localhost", &tenant)
        .await
        .unwrap()
        .expect("an honest TLS login during the flood");
    honest
        .exec(&insert_literal_sql("flood", "msg", "'still here'"))
        .await
        .expect("its query runs");
    // Every stalled handshake is cut at the deadline (4 s from its accept).
    for mut tcp in held {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(15), tcp.read_to_end(&mut rest)).await;
        assert!(
            read.is_ok(),
            "a stalled handshake was not cut at its deadline"
        );
    }
    let mut http = TcpStream::connect(server.http_addr()).await.unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, http.read_to_end(&mut answer))
        .await
        .expect("metrics in time")
        .unwrap();
    let metrics = String::from_utf8_lossy(&answer);
    let failed = metrics
        .lines()
        .find_map(|l| l.strip_prefix("halley_tls_handshake_failures_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        failed >= FLOOD as u64,
        "{failed} failed handshakes counted; metrics:\n{metrics}"
    );
    server.stop().await;
}
