//! A CometQL connection as a PHP backend holds one: log in with dev_id/key, then query after query.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::mysql_codec::{self as codec, Reply};
use crate::tls::{ClientTls, Stream};

const TIMEOUT: Duration = Duration::from_secs(15);

pub struct MysqlConn {
    stream: Stream,
    buf: BytesMut,
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl MysqlConn {
    /// Connects and logs in; with `tls`, asks for TLS first (SSLRequest) and logs in inside it.
    pub async fn connect(
        addr: SocketAddr,
        user: &str,
        password: &str,
        db: &str,
        tls: Option<&ClientTls>,
    ) -> io::Result<MysqlConn> {
        let tcp = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| other("CometQL connect timed out"))??;
        tcp.set_nodelay(true)?;
        let mut conn = MysqlConn {
            stream: Stream::Plain(tcp),
            buf: BytesMut::with_capacity(4096),
        };
        let (_, greeting) = conn.read_packet().await?;
        let greeting = codec::parse_greeting(&greeting).map_err(other)?;
        let mut seq = 1;
        if let Some(config) = tls {
            conn.write_packet(1, &codec::ssl_request()).await?;
            let Stream::Plain(tcp) = conn.stream else {
                unreachable!("a new connection is plain")
            };
            let upgraded = tokio::time::timeout(TIMEOUT, Stream::tls(tcp, config))
                .await
                .map_err(|_| other("CometQL TLS handshake timed out"))??;
            conn.stream = upgraded;
            seq = 2;
        }
        let response =
            codec::handshake_response(user, password, db, &greeting.scramble, tls.is_some());
        conn.write_packet(seq, &response).await?;
        let mut seq;
        let mut reply;
        (seq, reply) = conn.read_packet().await?;
        loop {
            match codec::parse_reply(&reply).map_err(other)? {
                Reply::Ok => return Ok(conn),
                Reply::Err { code, message } => {
                    return Err(other(format!("login refused: {code} {message}")))
                }
                Reply::AuthSwitch { plugin, scramble } if plugin == codec::NATIVE_PASSWORD => {
                    let token = codec::native_password(password, &scramble);
                    conn.write_packet(seq.wrapping_add(1), &token).await?;
                    (seq, reply) = conn.read_packet().await?;
                }
                other_reply => {
                    return Err(other(format!("unexpected login reply {other_reply:?}")))
                }
            }
        }
    }

    /// Runs one statement; returns its rows (empty for an OK). An ERR packet is an error.
    pub async fn query(&mut self, sql: &str) -> io::Result<Vec<Vec<String>>> {
        self.write_packet(0, &codec::com_query(sql)).await?;
        let (_, first) = self.read_packet().await?;
        match codec::parse_reply(&first).map_err(other)? {
            Reply::Ok => Ok(Vec::new()),
            Reply::Err { code, message } => Err(other(format!("ERROR {code}: {message}"))),
            Reply::AuthSwitch { .. } => Err(other("unexpected auth switch")),
            Reply::Columns(n) => {
                for _ in 0..n {
                    self.read_packet().await?;
                }
                let (_, eof) = self.read_packet().await?;
                if !codec::is_eof(&eof) {
                    return Err(other("no EOF after the column definitions"));
                }
                let mut rows = Vec::new();
                loop {
                    let (_, p) = self.read_packet().await?;
                    if codec::is_eof(&p) {
                        return Ok(rows);
                    }
                    rows.push(codec::parse_row(&p).map_err(other)?);
                }
            }
        }
    }

    async fn write_packet(&mut self, seq: u8, payload: &[u8]) -> io::Result<()> {
        let bytes = codec::packet(seq, payload);
        tokio::time::timeout(TIMEOUT, self.stream.write_all(&bytes))
            .await
            .map_err(|_| other("CometQL write timed out"))?
    }

    async fn read_packet(&mut self) -> io::Result<(u8, Vec<u8>)> {
        loop {
            if let Some((seq, len)) = codec::packet_at(&self.buf) {
                self.buf.advance(4);
                let payload = self.buf.split_to(len).to_vec();
                return Ok((seq, payload));
            }
            let n = tokio::time::timeout(TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| other("CometQL read timed out"))??;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}
