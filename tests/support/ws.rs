//! WebSocket client for the browser-side tests: a well-behaved client (tokio-tungstenite) with bounded
//! waits, over TCP or TLS (`wss://`, [`WsClient::connect_tls`]), plus [`raw`] for hand-built upgrades
//! and frames.

pub mod raw;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection under a WebSocket: TCP, or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Stream = WebSocketStream<Box<dyn Io>>;

pub struct WsClient {
    stream: Stream,
}

/// Builds the upgrade request, with extra headers such as `Origin`.
fn request(
    url: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<tungstenite::handshake::client::Request> {
    let mut req = url
        .into_client_request()
        .with_context(|| format!("bad WebSocket URL {url}"))?;
    for (name, value) in headers {
        let name: tungstenite::http::HeaderName = name.parse().context("bad header name")?;
        req.headers_mut().insert(
            name,
            HeaderValue::from_str(value).context("bad header value")?,
        );
    }
    Ok(req)
}

/// Connects (in TLS with `tls`, for `wss://`), or returns the refused upgrade's HTTP status (101 when it
/// went through).
async fn handshake(
    url: &str,
    headers: &[(&str, &str)],
    tls: Option<Arc<rustls::ClientConfig>>,
) -> anyhow::Result<Result<Stream, u16>> {
    let req = request(url, headers)?;
    let host = req.uri().host().context("no host in the URL")?.to_owned();
    let port = req.uri().port_u16().context("no port in the URL")?;
    let connect = async {
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match tls {
            None => Box::new(tcp),
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(host.clone())?;
                let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
                Box::new(tls.await.context("TLS handshake")?)
            }
        };
        anyhow::Ok(tokio_tungstenite::client_async(req, io).await)
    };
    let attempt = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| anyhow!("WebSocket connect to {url} timed out after {CONNECT_TIMEOUT:?}"))?
        .with_context(|| format!("WebSocket connect to {url}"))?;
    match attempt {
        Ok((stream, _)) => Ok(Ok(stream)),
        Err(tungstenite::Error::Http(resp)) => Ok(Err(resp.status().as_u16())),
        Err(e) => Err(anyhow!(e).context(format!("WebSocket connect to {url}"))),
    }
}

/// The HTTP status the server answers an upgrade with: 101 when it accepts it, else e.g. 403 or 429.
pub async fn upgrade_status(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<u16> {
    status_of(handshake(url, headers, None).await?).await
}

/// `upgrade_status` on `wss://`, in TLS with `tls`.
pub async fn upgrade_status_tls(
    url: &str,
    headers: &[(&str, &str)],
    tls: Arc<rustls::ClientConfig>,
) -> anyhow::Result<u16> {
    status_of(handshake(url, headers, Some(tls)).await?).await
}

async fn status_of(attempt: Result<Stream, u16>) -> anyhow::Result<u16> {
    Ok(match attempt {
        Ok(mut stream) => {
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.close(None)).await;
            101
        }
        Err(status) => status,
    })
}

fn describe_close(frame: Option<tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(f) => format!(
            "closed by the server: {} {:?}",
            u16::from(f.code),
            f.reason.as_str()
        ),
        None => "closed by the server without a close frame".to_owned(),
    }
}

impl WsClient {
    /// Connects to `ws://host:port/path?...` within 10 s; a refused upgrade is an error naming the status.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Self::connect_with_headers(url, &[]).await
    }

    pub async fn connect_with_headers(url: &str, headers: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::connect_tls(url, headers, None).await
    }

    /// Connects to `wss://host:port/...` in TLS with `tls` (with None, plain as `connect_with_headers`).
    pub async fn connect_tls(
        url: &str,
        headers: &[(&str, &str)],
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> anyhow::Result<Self> {
        match handshake(url, headers, tls).await? {
            Ok(stream) => Ok(Self { stream }),
            Err(status) => bail!("WebSocket upgrade to {url} refused with HTTP {status}"),
        }
    }

    /// Upgrades a socket that is already connected (for example one bound to another loopback address
    /// before connecting, to act as another client address).
    pub async fn over(socket: TcpStream, url: &str) -> anyhow::Result<Self> {
        let req = request(url, &[])?;
        let upgrade = tokio_tungstenite::client_async(req, Box::new(socket) as Box<dyn Io>);
        let (stream, _) = tokio::time::timeout(CONNECT_TIMEOUT, upgrade)
            .await
            .map_err(|_| anyhow!("WebSocket upgrade to {url} timed out"))?
            .with_context(|| format!("WebSocket upgrade to {url}"))?;
        Ok(Self { stream })
    }

    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.send(Message::text(text)).await
    }

    pub async fn send_json(&mut self, value: &serde_json::Value) -> anyhow::Result<()> {
        self.send_text(&value.to_string()).await
    }

    /// Any message, e.g. `Message::Ping` or `Message::Binary`. Bounded like every other wait.
    pub async fn send(&mut self, msg: Message) -> anyhow::Result<()> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.stream.send(msg))
            .await
            .map_err(|_| anyhow!("send blocked for {CONNECT_TIMEOUT:?}"))?
            .context("WebSocket send")
    }

    /// The next message of any kind (pings and pongs included), within `timeout`.
    pub async fn recv_message(&mut self, timeout: Duration) -> anyhow::Result<Message> {
        match tokio::time::timeout(timeout, self.stream.next()).await {
            Err(_) => bail!("no WebSocket message within {timeout:?}"),
            Ok(None) => bail!("the connection ended"),
            Ok(Some(Err(e))) => Err(anyhow!(e).context("WebSocket receive")),
            Ok(Some(Ok(msg))) => Ok(msg),
        }
    }

    /// The next text frame within `timeout`, skipping pings and pongs (answered automatically).
    /// A close, a binary frame, the end of the connection or the timeout are errors.
    pub async fn recv_text(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_message(left).await? {
                Message::Text(t) => return Ok(t.as_str().to_owned()),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                Message::Binary(b) => bail!("expected text, got a {}-byte binary frame", b.len()),
                Message::Close(frame) => bail!("expected text, {}", describe_close(frame)),
            }
        }
    }

    /// The next text frame parsed as JSON.
    pub async fn recv_json(&mut self, timeout: Duration) -> anyhow::Result<serde_json::Value> {
        let text = self.recv_text(timeout).await?;
        serde_json::from_str(&text).with_context(|| format!("frame is not JSON: {text}"))
    }

    /// Waits for the server to close the connection, skipping any frames before that.
    /// `Some((code, reason))` for a close frame, `None` when the TCP connection just ended;
    /// an error if it is still open after `timeout`.
    pub async fn expect_closed(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<Option<(u16, String)>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.stream.next()).await {
                Err(_) => bail!("the connection is still open after {timeout:?}"),
                Ok(None) | Ok(Some(Err(_))) => return Ok(None),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Ok(frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())))
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Succeeds if no text, binary or close arrives for `duration` (pings and pongs are ignored).
    pub async fn expect_silence(&mut self, duration: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + duration;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            match tokio::time::timeout(left, self.stream.next()).await {
                Err(_) => return Ok(()),
                Ok(None) => bail!("expected silence, the connection ended"),
                Ok(Some(Err(e))) => bail!("expected silence, got an error: {e}"),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    bail!("expected silence, {}", describe_close(frame))
                }
                Ok(Some(Ok(other))) => bail!("expected silence, got {other:?}"),
            }
        }
    }

    /// Starts the closing handshake and waits (bounded) for the server's answer.
    pub async fn close(mut self) -> anyhow::Result<()> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.stream.close(None))
            .await
            .map_err(|_| anyhow!("close did not complete within {CONNECT_TIMEOUT:?}"))?
            .or_else(|e| match e {
                tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => Ok(()),
                e => Err(anyhow!(e)),
            })
    }
}

#[cfg(test)]
mod tests;
