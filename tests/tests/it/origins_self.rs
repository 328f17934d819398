//! The dashboard's own origin may always open WebSockets: saving "Allowed origins" must not break the
//! dashboard's live view, which connects from the server's own origin (`Origin` naming the `Host` the
//! upgrade was sent to). And `/info?dev_id=` tells a page whether its origin is allowed, which the SDK asks
//! when its sockets keep failing (a browser never sees the 403). Both backends, real upgrades.

use std::net::Ipv4Addr;

use halley_tests::dashboard::{send, Browser};
use halley_tests::ws::upgrade_status;
use halley_tests::{on_both_backends, Backend, TestServer};
use serde_json::json;

async fn upgrade(server: &TestServer, dev_id: u64, origin: &str) -> u16 {
    upgrade_status(&server.ws_url(dev_id, 0, ""), &[("Origin", origin)])
        .await
        .expect("upgrade answer in time")
}

on_both_backends!(own_origin_is_always_allowed);

async fn own_origin_is_always_allowed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let addr = server.http_addr();
    let (mut b, dev_id, _, _) = Browser::new_tenant(addr, "self@example.com").await;
    let r = b
        .call(
            "PUT",
            "/origins",
            Some(json!({"origins": ["https://app.example.com"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // The upgrade's Host is `addr` (the URL's authority), so this is the dashboard's own origin.
    let own = format!("http://{addr}");
    assert_eq!(upgrade(&server, dev_id, &own).await, 101, "own origin");
    assert_eq!(
        upgrade(&server, dev_id, "https://app.example.com").await,
        101
    );
    assert_eq!(upgrade(&server, dev_id, "https://evil.example").await, 403);
    let other_port = format!("http://{}:{}", addr.ip(), addr.port() + 1);
    assert_eq!(
        upgrade(&server, dev_id, &other_port).await,
        403,
        "another port is another origin"
    );

    let info = |origin: String| {
        let path = format!("/info?dev_id={dev_id}");
        async move {
            let r = send(
                addr,
                Ipv4Addr::LOCALHOST.into(),
                "GET",
                &path,
                &[("Origin", &origin)],
                None,
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.json()["origin_allowed"].clone()
        }
    };
    assert_eq!(info("https://evil.example".into()).await, json!(false));
    assert_eq!(info("https://app.example.com".into()).await, json!(true));
    assert_eq!(info(own.clone()).await, json!(true));
    let plain = send(addr, Ipv4Addr::LOCALHOST.into(), "GET", "/info", &[], None).await;
    assert_eq!(plain.json()["status"], "ok");
    assert!(
        plain.json().get("origin_allowed").is_none(),
        "unchanged without dev_id"
    );
    server.stop().await;
}

on_both_backends!(origin_questions_are_paid_from_the_address_budget);

/// `/info?dev_id=` may read the database (a dev_id whose list is not cached): many questions on one
/// keep-alive connection are paid from the address's budget of new connections, and answered 429 past it.
async fn origin_questions_are_paid_from_the_address_budget(backend: Backend) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let server = TestServer::start_with(backend, |c| {
        c.limits.new_connections_per_ip_per_sec = 1;
        c.limits.new_connections_per_ip_burst = 4;
    })
    .await;
    let stream = tokio::net::TcpStream::connect(server.http_addr())
        .await
        .expect("connect");
    let mut conn = BufReader::new(stream);
    let mut statuses = Vec::new();
    for dev_id in 1000..1010 {
        let req = format!(
            "GET /info?dev_id={dev_id} HTTP/1.1\r\nHost: h\r\nOrigin: https://page.example\r\n\r\n"
        );
        conn.get_mut().write_all(req.as_bytes()).await.expect("ask");
        let mut status_line = String::new();
        conn.read_line(&mut status_line).await.expect("status");
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            conn.read_line(&mut line).await.expect("header");
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().expect("a length");
            }
        }
        let mut body = vec![0u8; length];
        conn.read_exact(&mut body).await.expect("body");
        statuses.push(status_line.split(' ').nth(1).unwrap_or("").to_owned());
    }
    // The connection took one of the burst of 4: three questions answered, then refusals.
    assert_eq!(&statuses[..3], ["200", "200", "200"], "{statuses:?}");
    assert!(
        statuses[3..].iter().filter(|s| *s == "429").count() >= 6,
        "{statuses:?}"
    );
    server.stop().await;
}
