//! Hand-built WebSocket traffic over a plain TcpStream, for what a well-behaved client cannot send:
//! malformed upgrades, unmasked or fragmented frames, bad opcodes, oversized lengths, partial writes.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MAX_HEAD: usize = 16 * 1024;
/// Largest server frame we accept to read; far above the 64 KiB default limit.
const MAX_PAYLOAD: u64 = 16 * 1024 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    pub fin: bool,
    /// The three RSV bits, as the low bits of this value.
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    /// Unmasked payload.
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub fn text(&self) -> Option<&str> {
        (self.opcode == OP_TEXT).then(|| std::str::from_utf8(&self.payload).ok())?
    }

    /// Code and reason of a close frame.
    pub fn close(&self) -> Option<(u16, String)> {
        if self.opcode != OP_CLOSE || self.payload.len() < 2 {
            return None;
        }
        let code = u16::from_be_bytes([self.payload[0], self.payload[1]]);
        Some((
            code,
            String::from_utf8_lossy(&self.payload[2..]).into_owned(),
        ))
    }
}

/// Encodes one frame. `mask: Some(..)` as a client must, `None` to send a protocol violation.
/// `opcode` is masked to 4 bits; any value (reserved ones included) can be sent.
pub fn encode_frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(if fin { 0x80 } else { 0 } | (opcode & 0x0F));
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Decodes one frame from the start of `buf`: `Ok(None)` when more bytes are needed, otherwise the frame
/// and the number of bytes it used.
pub fn decode_frame(buf: &[u8]) -> anyhow::Result<Option<(RawFrame, usize)>> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    let masked = b1 & 0x80 != 0;
    let (len, mut pos) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => (u64::from_be_bytes(b.try_into()?), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if len > MAX_PAYLOAD {
        bail!("frame announces {len} bytes, more than the {MAX_PAYLOAD} this helper reads");
    }
    let key = if masked {
        let Some(k) = buf.get(pos..pos + 4) else {
            return Ok(None);
        };
        pos += 4;
        Some([k[0], k[1], k[2], k[3]])
    } else {
        None
    };
    let end = pos + len as usize;
    let Some(body) = buf.get(pos..end) else {
        return Ok(None);
    };
    let payload = match key {
        Some(k) => body.iter().enumerate().map(|(i, b)| b ^ k[i % 4]).collect(),
        None => body.to_vec(),
    };
    let frame = RawFrame {
        fin: b0 & 0x80 != 0,
        rsv: (b0 >> 4) & 0x07,
        opcode: b0 & 0x0F,
        masked,
        payload,
    };
    Ok(Some((frame, end)))
}

/// The server's answer to the upgrade request.
#[derive(Debug, Clone)]
pub struct UpgradeResponse {
    pub status: u16,
    /// Status line and headers, as received.
    pub head: String,
}

pub struct RawWs {
    stream: TcpStream,
    /// Bytes received but not yet decoded (frames that followed the response head, partial frames).
    pending: Vec<u8>,
}

impl RawWs {
    /// Opens a TCP connection to `addr` (`host:port`) and sends `request` verbatim: use
    /// [`upgrade_request`] for a valid one, or any bytes for a malformed one. Reads the response head.
    pub async fn connect(addr: &str, request: &[u8]) -> anyhow::Result<(Self, UpgradeResponse)> {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("TCP connect to {addr} timed out"))?
            .with_context(|| format!("TCP connect to {addr}"))?;
        let mut ws = Self {
            stream,
            pending: Vec::new(),
        };
        ws.send_bytes(request).await?;
        let head = ws.read_head().await?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("no HTTP status in {head:?}"))?;
        Ok((ws, UpgradeResponse { status, head }))
    }

    async fn read_head(&mut self) -> anyhow::Result<String> {
        loop {
            if let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.pending[..end]).into_owned();
                self.pending.drain(..end + 4);
                return Ok(head);
            }
            if self.pending.len() > MAX_HEAD {
                bail!("response head longer than {MAX_HEAD} bytes");
            }
            if self.fill(IO_TIMEOUT).await? == 0 {
                bail!(
                    "connection closed before the response head ended: {:?}",
                    String::from_utf8_lossy(&self.pending)
                );
            }
        }
    }

    /// Reads more bytes into `pending`; 0 at end of stream. A reset counts as the end too: a server
    /// may drop a misbehaving client without a FIN. Err only on timeout.
    async fn fill(&mut self, timeout: Duration) -> anyhow::Result<usize> {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(timeout, self.stream.read(&mut chunk)).await {
            Err(_) => bail!("nothing received within {timeout:?}"),
            Ok(Err(_)) => Ok(0),
            Ok(Ok(n)) => {
                self.pending.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
        }
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        tokio::time::timeout(IO_TIMEOUT, self.stream.write_all(bytes))
            .await
            .map_err(|_| anyhow!("write blocked for {IO_TIMEOUT:?}"))?
            .context("raw write")
    }

    /// Sends one frame, masked with a fixed key when `masked`.
    pub async fn send_frame(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: &[u8],
        masked: bool,
    ) -> anyhow::Result<()> {
        let mask = masked.then_some([0x37, 0xFA, 0x21, 0x3D]);
        self.send_bytes(&encode_frame(fin, opcode, payload, mask))
            .await
    }

    /// The next frame from the server; `None` when the connection ended cleanly between frames.
    pub async fn read_frame(&mut self, timeout: Duration) -> anyhow::Result<Option<RawFrame>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some((frame, used)) = decode_frame(&self.pending)? {
                self.pending.drain(..used);
                return Ok(Some(frame));
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.fill(left).await? {
                0 if self.pending.is_empty() => return Ok(None),
                0 => bail!(
                    "connection ended inside a frame ({} bytes pending)",
                    self.pending.len()
                ),
                _ => continue,
            }
        }
    }

    /// Frames until the server's close frame (included) or the end of the connection.
    pub async fn read_until_closed(&mut self, timeout: Duration) -> anyhow::Result<Vec<RawFrame>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_frame(left).await? {
                None => return Ok(frames),
                Some(f) => {
                    let is_close = f.opcode == OP_CLOSE;
                    frames.push(f);
                    if is_close {
                        return Ok(frames);
                    }
                }
            }
        }
    }
}

/// A valid client upgrade request for `path` (with its query) on `host`, plus `extra` header lines.
pub fn upgrade_request(host: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in extra {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

#[cfg(test)]
mod tests;
