//! One browser-like WebSocket connection: connect (from a chosen 127.0.0.x source address), upgrade, then
//! read server frames, answering pings. Writes are masked as a browser's are.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use crate::tls::{ClientTls, Stream};
use crate::wsproto::{self, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};

pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

pub enum Message {
    Text(Bytes),
    Close,
}

pub struct WsConn {
    stream: Stream,
    buf: BytesMut,
    mask: u32,
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("{what} timed out"))
}

impl WsConn {
    /// TCP connect from `source` (port chosen by the kernel), the TLS handshake with `tls`, and the
    /// upgrade handshake on `path`. The socket closes with RST when dropped, so that repeated runs leave no
    /// TIME_WAIT behind.
    pub async fn connect(
        server: SocketAddr,
        source: Option<IpAddr>,
        path: &str,
        n: u64,
        tls: Option<&ClientTls>,
    ) -> io::Result<WsConn> {
        let work = async {
            let socket = TcpSocket::new_v4()?;
            if let Some(ip) = source {
                socket.bind(SocketAddr::new(ip, 0))?;
            }
            socket.set_zero_linger()?;
            let tcp = socket.connect(server).await?;
            tcp.set_nodelay(true)?;
            let stream = match tls {
                Some(config) => Stream::tls(tcp, config).await?,
                None => Stream::Plain(tcp),
            };
            let mut conn = WsConn {
                stream,
                buf: BytesMut::with_capacity(1024),
                mask: (n as u32).wrapping_mul(2_654_435_761) | 1,
            };
            let key = wsproto::client_key(n);
            let req = wsproto::upgrade_request(&server.to_string(), path, &key);
            conn.stream.write_all(req.as_bytes()).await?;
            let head = loop {
                if let Some(h) = wsproto::parse_response_head(&conn.buf)? {
                    break h;
                }
                conn.fill().await?;
            };
            if head.status != 101 || head.accept.as_deref() != Some(&wsproto::accept_key(&key)) {
                return Err(io::Error::other(format!(
                    "upgrade refused: status {}",
                    head.status
                )));
            }
            let _ = conn.buf.split_to(head.len);
            Ok(conn)
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, work)
            .await
            .map_err(|_| timed_out("WebSocket handshake"))?
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.buf.capacity() - self.buf.len() < 512 {
            self.buf.reserve(4096);
        }
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    fn next_mask(&mut self) -> [u8; 4] {
        self.mask ^= self.mask << 13;
        self.mask ^= self.mask >> 17;
        self.mask ^= self.mask << 5;
        self.mask.to_le_bytes()
    }

    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        let mask = self.next_mask();
        let frame = wsproto::encode_frame(OP_TEXT, text.as_bytes(), Some(mask));
        self.stream.write_all(&frame).await
    }

    /// The next text (or binary) message or close; pings are answered on the way. Cancel-safe between
    /// frames: an interrupted read leaves the bytes in the buffer.
    pub async fn next_message(&mut self) -> io::Result<Message> {
        loop {
            if let Some(head) = wsproto::parse_frame(&self.buf)? {
                let mut frame = self.buf.split_to(head.total());
                let mut payload = frame.split_off(head.header_len);
                if let Some(m) = head.mask {
                    wsproto::unmask(&mut payload, m);
                }
                match head.opcode {
                    OP_TEXT | OP_BINARY => return Ok(Message::Text(payload.freeze())),
                    OP_CLOSE => return Ok(Message::Close),
                    OP_PING => {
                        let mask = self.next_mask();
                        let pong = wsproto::encode_frame(OP_PONG, &payload, Some(mask));
                        self.stream.write_all(&pong).await?;
                    }
                    _ => {}
                }
                continue;
            }
            self.fill().await?;
        }
    }

    /// The next text message within `limit`.
    pub async fn next_text(&mut self, limit: Duration) -> io::Result<Bytes> {
        match tokio::time::timeout(limit, self.next_message()).await {
            Ok(Ok(Message::Text(t))) => Ok(t),
            Ok(Ok(Message::Close)) => Err(io::Error::other("closed by the server")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(timed_out("waiting for a frame")),
        }
    }
}
