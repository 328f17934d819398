//! A keep-alive HTTP/1.1 client for Nchan's publisher endpoint (POST a message, GET a channel's info) and
//! the Pusher HTTP API (JSON bodies).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(15);

/// A response head: its length, status, and how the body is delimited.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub len: usize,
    pub status: u16,
    pub body: Body,
    /// `Connection: close`: the server closes after this response.
    pub close: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Body {
    Length(usize),
    Chunked,
}

pub fn parse_head(buf: &[u8]) -> io::Result<Option<Head>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| bad("non-UTF-8 head"))?;
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let mut body = Body::Length(0);
    let mut close = false;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            body = Body::Length(v.parse().map_err(|_| bad("bad Content-Length"))?);
        } else if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
            body = Body::Chunked;
        } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    Ok(Some(Head {
        len: end + 4,
        status,
        body,
        close,
    }))
}

/// Nchan's channel info, as JSON: `"subscribers": N`.
pub fn subscribers_in(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    let at = text.find("\"subscribers\"")? + "\"subscribers\"".len();
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn bad(text: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, text.to_owned())
}

pub struct HttpConn {
    stream: TcpStream,
    addr: SocketAddr,
    host: String,
    buf: BytesMut,
    /// The server said `Connection: close` (Sockudo does after every HTTP API answer): the next request
    /// opens a new connection, as an HTTP client library would.
    closed: bool,
}

async fn open(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::other("HTTP connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl HttpConn {
    pub async fn connect(addr: SocketAddr) -> io::Result<HttpConn> {
        Ok(HttpConn {
            stream: open(addr).await?,
            addr,
            host: addr.to_string(),
            buf: BytesMut::with_capacity(4096),
            closed: false,
        })
    }

    /// A new connection when the server closed the previous one.
    async fn reconnect_if_closed(&mut self) -> io::Result<()> {
        if self.closed {
            self.stream = open(self.addr).await?;
            self.buf.clear();
            self.closed = false;
        }
        Ok(())
    }

    /// One request on the kept-alive connection; returns status and body.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> io::Result<(u16, Vec<u8>)> {
        self.send(method, path, "Accept: text/json", body).await
    }

    /// The same with a JSON body (a Pusher HTTP API request).
    pub async fn request_json(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> io::Result<(u16, Vec<u8>)> {
        let headers = "Accept: application/json\r\nContent-Type: application/json";
        self.send(method, path, headers, body).await
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> io::Result<(u16, Vec<u8>)> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{headers}\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        tokio::time::timeout(TIMEOUT, async {
            self.reconnect_if_closed().await?;
            self.stream.write_all(&req).await?;
            self.read_response().await
        })
        .await
        .map_err(|_| io::Error::other("HTTP request timed out"))?
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    async fn read_response(&mut self) -> io::Result<(u16, Vec<u8>)> {
        let head = loop {
            if let Some(h) = parse_head(&self.buf)? {
                break h;
            }
            self.fill().await?;
        };
        self.buf.advance(head.len);
        self.closed = head.close;
        let body = match head.body {
            Body::Length(n) => {
                while self.buf.len() < n {
                    self.fill().await?;
                }
                self.buf.split_to(n).to_vec()
            }
            Body::Chunked => self.read_chunks().await?,
        };
        Ok((head.status, body))
    }

    async fn read_chunks(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                self.fill().await?;
            };
            let size_text = std::str::from_utf8(&self.buf[..line_end]).map_err(|_| bad("chunk"))?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("bad chunk size"))?;
            self.buf.advance(line_end + 2);
            while self.buf.len() < size + 2 {
                self.fill().await?;
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.advance(size + 2);
            if size == 0 {
                return Ok(body);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_with_length_or_chunks() {
        let h = parse_head(b"HTTP/1.1 201 Created\r\nContent-Length: 12\r\n\r\nbody").unwrap();
        assert_eq!(
            h,
            Some(Head {
                len: 44,
                status: 201,
                body: Body::Length(12),
                close: false,
            })
        );
        let h = parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n")
            .unwrap();
        assert!(h.unwrap().close);
        let h = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(h.unwrap().body, Body::Chunked);
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n").unwrap(), None);
    }

    #[test]
    fn channel_info_subscribers() {
        let body =
            br#"{"messages": 0, "requested": 1, "subscribers": 1000, "last_message_id": ""}"#;
        assert_eq!(subscribers_in(body), Some(1000));
        assert_eq!(subscribers_in(b"{}"), None);
    }
}
