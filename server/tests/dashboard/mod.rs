//! Support for the dashboard API tests: the real server on port 0, a small HTTP client that behaves like
//! the dashboard's page, a minimal CometQL client and a WebSocket subscriber.
#![allow(dead_code)]

pub mod cometql;
pub mod http;
pub mod server;

pub use http::{send, Browser, WAIT};
pub use server::{Backend, TestServer};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

pub type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

pub fn ws_url(addr: std::net::SocketAddr, dev_id: u64) -> String {
    format!(
        "ws://{addr}/ws/sesion=&myid=0&devid={dev_id}&v=4.08&uuid=0123456789abcdef0123456789abcdef&api=js"
    )
}

/// Opens a WebSocket (with `origin` when given); Err(HTTP status) when the upgrade is refused.
pub async fn ws_connect(
    addr: std::net::SocketAddr,
    dev_id: u64,
    origin: Option<&str>,
) -> Result<Ws, u16> {
    let mut req = ws_url(addr, dev_id).into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    match tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, stream))
        .await
        .expect("upgrade answer in time")
    {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("WebSocket connect failed: {e}"),
    }
}

/// Subscribes to `pipe` and waits until the server's registry has the subscription (there is no answer
/// frame to wait for).
pub async fn subscribe(server: &TestServer, ws: &mut Ws, dev_id: u64, pipe: &str) {
    ws.send(Message::text(format!("subscription\n{pipe}")))
        .await
        .unwrap();
    let name = halley::ids::PipeName::parse(pipe).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.subscribers(dev_id, &name) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscription applied in time"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The next JSON frame that carries `pipe`.
pub async fn next_on_pipe(ws: &mut Ws, pipe: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame");
        if let Message::Text(t) = msg {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) {
                if v["pipe"] == pipe && v.get("data").is_some() {
                    return v;
                }
            }
        }
    }
}
