use super::*;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;

const T: Duration = Duration::from_secs(5);

#[test]
fn encodes_rfc6455_examples() {
    // RFC 6455 section 5.7: unmasked and masked "Hello".
    assert_eq!(
        encode_frame(true, OP_TEXT, b"Hello", None),
        [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    );
    assert_eq!(
        encode_frame(true, OP_TEXT, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d])),
        [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
    );
    assert_eq!(
        encode_frame(false, OP_TEXT, b"Hel", None),
        [0x01, 0x03, 0x48, 0x65, 0x6c]
    );
    assert_eq!(encode_frame(true, OP_PING, b"", None), [0x89, 0x00]);
}

#[test]
fn encodes_extended_lengths() {
    let f = encode_frame(true, OP_BINARY, &[0u8; 256], None);
    assert_eq!(f[..4], [0x82, 126, 0x01, 0x00]);
    assert_eq!(f.len(), 4 + 256);
    let f = encode_frame(true, OP_BINARY, &vec![0u8; 65536], None);
    assert_eq!(f[..10], [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    // 125 still fits the 7-bit length: the reference corrupted 123-125 byte frames.
    assert_eq!(encode_frame(true, OP_TEXT, &[b'a'; 125], None)[1], 125);
}

#[test]
fn decodes_what_it_encodes_and_waits_for_partial_input() {
    let payload = "é😀".repeat(50);
    for mask in [None, Some([1, 2, 3, 4])] {
        let bytes = encode_frame(true, OP_TEXT, payload.as_bytes(), mask);
        let (frame, used) = decode_frame(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(frame.text(), Some(payload.as_str()));
        assert_eq!(frame.masked, mask.is_some());
        for cut in [0, 1, 2, 3, bytes.len() - 1] {
            assert_eq!(decode_frame(&bytes[..cut]).unwrap(), None, "cut at {cut}");
        }
    }
}

#[test]
fn decodes_close_frames_and_refuses_huge_lengths() {
    let (f, _) = decode_frame(&[0x88, 0x06, 0x03, 0xF0, b's', b'l', b'o', b'w'])
        .unwrap()
        .unwrap();
    assert_eq!(f.close(), Some((1008, "slow".to_owned())));
    assert_eq!(f.text(), None);
    let huge = [0x82, 127, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
    assert!(decode_frame(&huge).is_err());
    let (f, _) = decode_frame(&[0xF1, 0x00]).unwrap().unwrap();
    assert_eq!((f.fin, f.rsv, f.opcode), (true, 7, OP_TEXT));
}

#[test]
fn builds_an_upgrade_request() {
    let req = String::from_utf8(upgrade_request("h:1", "/ws/x", &[("Origin", "o")])).unwrap();
    assert!(req.starts_with("GET /ws/x HTTP/1.1\r\nHost: h:1\r\n"));
    assert!(req.ends_with("Origin: o\r\n\r\n"));
}

/// An echo server that also reports whether the connection ended in a protocol error.
async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr.to_string()
}

#[tokio::test]
async fn talks_to_a_real_server() {
    let addr = echo_server().await;
    let (mut ws, resp) = RawWs::connect(&addr, &upgrade_request(&addr, "/ws/x", &[]))
        .await
        .unwrap();
    assert_eq!(resp.status, 101, "{}", resp.head);
    assert!(
        resp.head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{}",
        resp.head
    );
    // A fragmented message: the server reassembles it.
    ws.send_frame(false, OP_TEXT, b"hel", true).await.unwrap();
    ws.send_frame(true, OP_CONTINUATION, b"lo", true)
        .await
        .unwrap();
    let f = ws.read_frame(T).await.unwrap().unwrap();
    assert_eq!(f.text(), Some("hello"));
    assert!(!f.masked);
    // An unmasked client frame is a protocol violation: the server drops the connection.
    ws.send_frame(true, OP_TEXT, b"x", false).await.unwrap();
    let frames = ws.read_until_closed(T).await.unwrap();
    assert!(frames.iter().all(|f| f.opcode == OP_CLOSE), "{frames:?}");
}

#[tokio::test]
async fn malformed_upgrade_is_refused_and_silence_times_out() {
    let addr = echo_server().await;
    // tungstenite's server hangs up without an answer; a server may also answer 400.
    match RawWs::connect(&addr, b"GET /ws/x HTTP/1.1\r\nHost: x\r\n\r\n").await {
        Ok((_, resp)) => assert_ne!(resp.status, 101),
        Err(e) => assert!(e.to_string().contains("closed before"), "{e}"),
    }

    let (mut ws, _) = RawWs::connect(&addr, &upgrade_request(&addr, "/", &[]))
        .await
        .unwrap();
    let err = ws.read_frame(Duration::from_millis(100)).await.unwrap_err();
    assert!(err.to_string().contains("nothing received"), "{err}");
}
