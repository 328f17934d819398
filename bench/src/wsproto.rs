//! The WebSocket wire format, both sides, pure: the upgrade request and response heads and RFC 6455 frames.
//! Just what the load tool and the raw baseline server need; no I/O here.

use base64::Engine as _;
use sha1::{Digest, Sha1};

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Frames larger than this are refused: nothing in a benchmark comes close.
const MAX_PAYLOAD: u64 = 16 << 20;
const HEAD_LIMIT: usize = 16 * 1024;
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#[derive(Debug, PartialEq, Eq)]
pub struct ProtoError(pub String);

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtoError {}

impl From<ProtoError> for std::io::Error {
    fn from(e: ProtoError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

fn err(text: impl Into<String>) -> ProtoError {
    ProtoError(text.into())
}

/// A Sec-WebSocket-Key derived from a number (keys need to be unique per connection, not secret).
pub fn client_key(n: u64) -> String {
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&n.to_le_bytes());
    raw[8..].copy_from_slice(&(!n).rotate_left(17).to_le_bytes());
    base64::engine::general_purpose::STANDARD.encode(raw)
}

pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

pub fn upgrade_request(host: &str, path: &str, key: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://{host}\r\n\
         User-Agent: halley-load\r\n\r\n"
    )
}

/// The response to an upgrade request, once its head is complete.
#[derive(Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub len: usize,
    pub status: u16,
    pub accept: Option<String>,
}

/// The request head of an upgrade, as the raw baseline server reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub len: usize,
    pub path: String,
    pub key: Option<String>,
}

fn head_end(buf: &[u8]) -> Result<Option<usize>, ProtoError> {
    match buf.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => Ok(Some(i + 4)),
        None if buf.len() > HEAD_LIMIT => Err(err("HTTP head too long")),
        None => Ok(None),
    }
}

fn header<'a>(lines: &[&'a str], name: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

pub fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, ProtoError> {
    let Some(len) = head_end(buf)? else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..len]).map_err(|_| err("non-UTF-8 response head"))?;
    let lines: Vec<&str> = text.split("\r\n").collect();
    let status = lines[0]
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err(format!("bad status line {:?}", lines[0])))?;
    let accept = header(&lines[1..], "sec-websocket-accept").map(str::to_owned);
    Ok(Some(ResponseHead {
        len,
        status,
        accept,
    }))
}

pub fn parse_request_head(buf: &[u8]) -> Result<Option<RequestHead>, ProtoError> {
    let Some(len) = head_end(buf)? else {
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..len]).map_err(|_| err("non-UTF-8 request head"))?;
    let lines: Vec<&str> = text.split("\r\n").collect();
    let mut parts = lines[0].split(' ');
    let (Some("GET"), Some(path)) = (parts.next(), parts.next()) else {
        return Err(err(format!("not a GET: {:?}", lines[0])));
    };
    let key = header(&lines[1..], "sec-websocket-key").map(str::to_owned);
    Ok(Some(RequestHead {
        len,
        path: path.to_owned(),
        key,
    }))
}

pub fn switching_protocols(key: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    )
}

/// A frame's header, parsed; the payload follows at `header_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    pub fin: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub header_len: usize,
    pub payload_len: usize,
}

impl FrameHead {
    pub fn total(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// The head of the frame at the start of `buf`, or `None` while the whole frame is not there yet.
pub fn parse_frame(buf: &[u8]) -> Result<Option<FrameHead>, ProtoError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0F;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        126 | 127 => return Ok(None),
        n => (u64::from(n), 2),
    };
    if len > MAX_PAYLOAD {
        return Err(err(format!("frame of {len} bytes")));
    }
    let mask = if masked {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let m = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        Some(m)
    } else {
        None
    };
    let head = FrameHead {
        fin,
        opcode,
        mask,
        header_len: at,
        payload_len: len as usize,
    };
    Ok((buf.len() >= head.total()).then_some(head))
}

/// One complete, unfragmented frame; masked when `mask` is given (client to server).
pub fn encode_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_of_the_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(client_key(1).len(), 24);
        assert_ne!(client_key(1), client_key(2));
    }

    #[test]
    fn response_head_waits_for_the_blank_line() {
        let full = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: abc\r\n\r\n\x81";
        assert_eq!(parse_response_head(&full[..20]), Ok(None));
        let head = parse_response_head(full).unwrap().unwrap();
        assert_eq!(head.status, 101);
        assert_eq!(head.accept.as_deref(), Some("abc"));
        assert_eq!(head.len, full.len() - 1);
    }

    #[test]
    fn request_head_gives_path_and_key() {
        let req = upgrade_request("127.0.0.1:1", "/ws/sesion=&myid=0", "k==");
        let head = parse_request_head(req.as_bytes()).unwrap().unwrap();
        assert_eq!(head.path, "/ws/sesion=&myid=0");
        assert_eq!(head.key.as_deref(), Some("k=="));
        assert_eq!(head.len, req.len());
        assert!(parse_request_head(b"POST / HTTP/1.1\r\n\r\n").is_err());
    }

    #[test]
    fn frames_round_trip_at_each_length_form() {
        for len in [0usize, 5, 125, 126, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for mask in [None, Some([1, 2, 3, 4])] {
                let bytes = encode_frame(OP_TEXT, &payload, mask);
                assert_eq!(parse_frame(&bytes[..bytes.len() - 1]).unwrap(), None);
                let head = parse_frame(&bytes).unwrap().unwrap();
                assert!(head.fin);
                assert_eq!(head.opcode, OP_TEXT);
                assert_eq!(head.mask, mask);
                assert_eq!(head.total(), bytes.len());
                let mut got = bytes[head.header_len..].to_vec();
                if let Some(m) = head.mask {
                    unmask(&mut got, m);
                }
                assert_eq!(got, payload);
            }
        }
    }

    #[test]
    fn huge_frames_are_refused() {
        let mut b = vec![0x81, 127];
        b.extend_from_slice(&(1u64 << 40).to_be_bytes());
        assert!(parse_frame(&b).is_err());
    }
}
