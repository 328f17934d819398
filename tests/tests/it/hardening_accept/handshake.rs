//! Item 18: the WebSocket handshake as raw bytes, case by case (RFC 6455 4.2.1), and the close code echoed.

use super::*;

/// The upgrade request `path` on `host` with these header lines verbatim, on `version`.
fn handshake_bytes(method: &str, version: &str, path: &str, headers: &[&str]) -> Vec<u8> {
    let mut req = format!("{method} {path} {version}\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Item 18. Each case is sent as raw bytes; refusals come before the upgrade and end the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_handshake_follows_rfc_6455() {
    let server = TestServer::start(Backend::Sqlite).await;
    let t = server.tenant("a@example.com").await;
    let addr = server.http_addr().to_string();
    let path = ws_path(t.dev_id);
    let host = format!("Host: {addr}");
    const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
    let base = [
        host.as_str(),
        "Upgrade: websocket",
        "Connection: Upgrade",
        KEY,
        "Sec-WebSocket-Version: 13",
    ];
    let without = |name: &str| -> Vec<&str> {
        base.iter()
            .copied()
            .filter(|h| !h.starts_with(name))
            .collect()
    };
    let with = |name: &str, line: &'static str| -> Vec<&str> {
        let mut h = without(name);
        h.push(line);
        h
    };

    let refused: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "POST",
            handshake_bytes("POST", "HTTP/1.1", &path, &base),
            405,
        ),
        ("PUT", handshake_bytes("PUT", "HTTP/1.1", &path, &base), 405),
        (
            "no Host",
            handshake_bytes("GET", "HTTP/1.1", &path, &without("Host")),
            400,
        ),
        (
            "two Host headers",
            handshake_bytes("GET", "HTTP/1.1", &path, &with("X-None", "Host: other")),
            400,
        ),
        (
            "a key that is not base64",
            handshake_bytes(
                "GET",
                "HTTP/1.1",
                &path,
                &with(
                    "Sec-WebSocket-Key",
                    "Sec-WebSocket-Key: not a key at all!!!!!",
                ),
            ),
            400,
        ),
        (
            "a key of 15 bytes",
            handshake_bytes(
                "GET",
                "HTTP/1.1",
                &path,
                &with(
                    "Sec-WebSocket-Key",
                    "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA",
                ),
            ),
            400,
        ),
        (
            "no key",
            handshake_bytes("GET", "HTTP/1.1", &path, &without("Sec-WebSocket-Key")),
            400,
        ),
        (
            "no version",
            handshake_bytes("GET", "HTTP/1.1", &path, &without("Sec-WebSocket-Version")),
            426,
        ),
        (
            "version 8",
            handshake_bytes(
                "GET",
                "HTTP/1.1",
                &path,
                &with("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"),
            ),
            426,
        ),
        (
            "HTTP/1.0",
            handshake_bytes("GET", "HTTP/1.0", &path, &base),
            400,
        ),
        (
            "no Upgrade",
            handshake_bytes("GET", "HTTP/1.1", &path, &without("Upgrade")),
            400,
        ),
    ];
    for (what, request, want) in refused {
        // The whole answer up to the close: the connection ends after it (no upgrade, no second request).
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        s.write_all(&request).await.expect("send");
        let answer = read_until_closed(&mut s, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        let answer = String::from_utf8_lossy(&answer);
        let head = answer.split("\r\n\r\n").next().unwrap_or("");
        let status = head.split(' ').nth(1).and_then(|s| s.parse::<u16>().ok());
        assert_eq!(status, Some(want), "{what}: {answer}");
        assert!(
            head.starts_with("HTTP/1."),
            "{what}: not an HTTP answer: {answer}"
        );
        if !head.starts_with("HTTP/1.0") {
            assert_eq!(header(head, "connection"), Some("close"), "{what}: {head}");
        }
        match want {
            405 => assert_eq!(header(head, "allow"), Some("GET"), "{what}"),
            426 => assert_eq!(header(head, "sec-websocket-version"), Some("13"), "{what}"),
            _ => {}
        }
    }

    // What RFC 6455 allows: lowercase names, a Connection list, a mixed-case token, lists over lines.
    let accepted: Vec<(&str, Vec<&str>)> = vec![
        (
            "Connection: keep-alive, Upgrade",
            with("Connection", "Connection: keep-alive, Upgrade"),
        ),
        (
            "lowercase names and a mixed-case token",
            vec![
                "host: h",
                "upgrade: WebSocket",
                "connection: upgrade",
                "sec-websocket-key: AAAAAAAAAAAAAAAAAAAAAA==",
                "sec-websocket-version: 13",
            ],
        ),
        ("Connection over two lines", {
            let mut h = with("Connection", "Connection: keep-alive");
            h.push("Connection: Upgrade");
            h
        }),
        ("Upgrade list", with("Upgrade", "Upgrade: h2c, websocket")),
    ];
    for (what, headers) in accepted {
        let (mut ws, resp) =
            RawWs::connect(&addr, &handshake_bytes("GET", "HTTP/1.1", &path, &headers))
                .await
                .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert_eq!(resp.status, 101, "{what}: {}", resp.head);
        let hello = ws
            .read_frame(WAIT)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:#}"))
            .unwrap_or_else(|| panic!("{what}: no greeting"));
        assert!(
            hello.text().is_some_and(|t| t.contains("serverInfo")),
            "{what}: {hello:?}"
        );
    }

    // The close code a client sends comes back in the server's close (RFC 6455 5.5.1).
    for (sent, want) in [(Some(4000u16), 4000u16), (Some(1001), 1001), (None, 1000)] {
        let (mut ws, resp) = RawWs::connect(&addr, &upgrade_request(&addr, &path, &[]))
            .await
            .expect("upgrade");
        assert_eq!(resp.status, 101);
        let _hello = ws.read_frame(WAIT).await.expect("greeting");
        let payload: Vec<u8> = sent.map(|c| c.to_be_bytes().to_vec()).unwrap_or_default();
        ws.send_frame(true, OP_CLOSE, &payload, true)
            .await
            .expect("send close");
        let frames = ws.read_until_closed(WAIT).await.expect("the close reply");
        let close = frames
            .iter()
            .find(|f| f.opcode == OP_CLOSE)
            .and_then(|f| f.close())
            .unwrap_or_else(|| panic!("no close reply to {sent:?}: {frames:?}"));
        assert_eq!(close.0, want, "reply to a close with {sent:?}");
    }
    server.stop().await;
}
