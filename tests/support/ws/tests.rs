use super::*;
use std::future::Future;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

const T: Duration = Duration::from_secs(5);

/// A one-connection WebSocket server running `script`; returns its ws:// URL.
async fn serve<F, Fut>(script: F) -> String
where
    F: FnOnce(WebSocketStream<TcpStream>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        script(ws).await;
    });
    format!("ws://{addr}/ws/sesion=x&myid=1&devid=15")
}

#[tokio::test]
async fn text_and_json_skip_pings() {
    let url = serve(|mut ws| async move {
        let got = ws.next().await.unwrap().unwrap();
        ws.send(Message::Ping(vec![1].into())).await.unwrap();
        ws.send(got).await.unwrap();
        ws.send(Message::text(r#"{"event":"msg","data":"é😀"}"#))
            .await
            .unwrap();
        // Keep the connection open until the client has read everything.
        let _ = ws.next().await;
    })
    .await;
    let mut c = WsClient::connect(&url).await.unwrap();
    c.send_text("hello").await.unwrap();
    assert_eq!(c.recv_text(T).await.unwrap(), "hello");
    let v = c.recv_json(T).await.unwrap();
    assert_eq!(v["data"], "é😀");
    c.close().await.unwrap();
}

#[tokio::test]
async fn expect_closed_reports_code_and_reason_after_skipping_frames() {
    let url = serve(|mut ws| async move {
        for _ in 0..3 {
            ws.send(Message::text("backlog")).await.unwrap();
        }
        let frame = CloseFrame {
            code: CloseCode::Policy,
            reason: "outbox full".into(),
        };
        ws.send(Message::Close(Some(frame))).await.unwrap();
        let _ = ws.next().await;
    })
    .await;
    let mut c = WsClient::connect(&url).await.unwrap();
    assert_eq!(
        c.expect_closed(T).await.unwrap(),
        Some((1008, "outbox full".to_owned()))
    );
}

#[tokio::test]
async fn expect_closed_without_close_frame_and_on_timeout() {
    let url = serve(|ws| async move { drop(ws) }).await;
    let mut c = WsClient::connect(&url).await.unwrap();
    assert_eq!(c.expect_closed(T).await.unwrap(), None);

    let url = serve(|mut ws| async move {
        let _ = ws.next().await;
    })
    .await;
    let mut c = WsClient::connect(&url).await.unwrap();
    let err = c
        .expect_closed(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("still open"), "{err}");
}

#[tokio::test]
async fn silence_and_timeouts() {
    let url = serve(|mut ws| async move {
        ws.send(Message::Ping(vec![].into())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        ws.send(Message::text("late")).await.unwrap();
        let _ = ws.next().await;
    })
    .await;
    let mut c = WsClient::connect(&url).await.unwrap();
    c.expect_silence(Duration::from_millis(100)).await.unwrap();
    let err = c.recv_text(Duration::from_millis(50)).await.unwrap_err();
    assert!(err.to_string().contains("no WebSocket message"), "{err}");
    let err = c.expect_silence(Duration::from_secs(3)).await.unwrap_err();
    assert!(err.to_string().contains("late"), "{err}");
}

#[tokio::test]
async fn recv_text_fails_on_close() {
    let url = serve(|mut ws| async move {
        ws.send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        })))
        .await
        .unwrap();
        let _ = ws.next().await;
    })
    .await;
    let mut c = WsClient::connect(&url).await.unwrap();
    let err = c.recv_text(T).await.unwrap_err().to_string();
    assert!(err.contains("1000") && err.contains("bye"), "{err}");
}

#[tokio::test]
async fn refused_upgrades_report_the_status_and_headers_are_sent() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..2 {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf)
                .await
                .unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
            let status = if head.contains("origin: https://evil.example") {
                "403 Forbidden"
            } else {
                "429 Too Many Requests"
            };
            let resp =
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            tokio::io::AsyncWriteExt::write_all(&mut tcp, resp.as_bytes())
                .await
                .unwrap();
        }
    });
    let url = format!("ws://{addr}/ws/x");
    let status = upgrade_status(&url, &[("Origin", "https://evil.example")])
        .await
        .unwrap();
    assert_eq!(status, 403);
    let err = WsClient::connect(&url).await.err().unwrap().to_string();
    assert!(err.contains("429"), "{err}");

    let ok_url = serve(|mut ws| async move {
        let _ = ws.next().await;
    })
    .await;
    assert_eq!(upgrade_status(&ok_url, &[]).await.unwrap(), 101);
}

#[tokio::test]
async fn connect_to_nothing_fails_fast() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    assert!(WsClient::connect(&format!("ws://{addr}/")).await.is_err());
}
