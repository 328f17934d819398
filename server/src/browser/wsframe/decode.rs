//! Incremental decoder of client frames over the caller's read buffer.

use bytes::{Buf, Bytes, BytesMut};

use super::{opcode, WsError, DEFAULT_MAX_MESSAGE, MAX_CONTROL_PAYLOAD};

/// One complete thing a client sent: a whole (reassembled) message or a control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    /// The command layer treats binary like text, as the reference does.
    Binary(Bytes),
    /// Answer with `encode_pong(&payload)`.
    Ping(Bytes),
    Pong,
    /// Status code (if any) and reason.
    Close(Option<u16>, String),
}

/// Decodes client frames from a `BytesMut` the caller keeps filling from the socket.
///
/// A frame whose header announces more than the limit is refused as soon as the header is in,
/// so the caller's buffer never holds more than `max_message` plus a header plus one read.
#[derive(Debug)]
pub struct FrameDecoder {
    max_message: usize,
    partial: Option<Partial>,
}

#[derive(Debug)]
struct Partial {
    binary: bool,
    data: Vec<u8>,
}

struct Header {
    fin: bool,
    op: u8,
    mask: [u8; 4],
    len: usize,
    payload_len: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE)
    }
}

impl FrameDecoder {
    /// `max_message` bounds one frame and one reassembled message.
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            partial: None,
        }
    }

    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// Consumes complete frames from `buf` and returns the next message or control frame;
    /// `Ok(None)` means "read more". Bytes of an incomplete frame stay in `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, WsError> {
        loop {
            let Some(h) = self.header(buf)? else {
                return Ok(None);
            };
            if buf.len() - h.len < h.payload_len {
                return Ok(None);
            }
            let body = &buf[h.len..h.len + h.payload_len];
            let done = match h.op {
                opcode::CLOSE => Some(close(unmasked(body, h.mask))),
                opcode::PING => Some(Ok(Incoming::Ping(Bytes::from(unmasked(body, h.mask))))),
                opcode::PONG => Some(Ok(Incoming::Pong)),
                opcode::CONTINUATION => {
                    // header() refused a continuation without a message in progress.
                    if let Some(partial) = self.partial.as_mut() {
                        let start = partial.data.len();
                        partial.data.extend_from_slice(body);
                        unmask(&mut partial.data[start..], h.mask);
                    }
                    match self.partial.take() {
                        Some(p) if h.fin => Some(message(p.binary, p.data)),
                        other => {
                            self.partial = other;
                            None
                        }
                    }
                }
                _ => {
                    let binary = h.op == opcode::BINARY;
                    let data = unmasked(body, h.mask);
                    if h.fin {
                        Some(message(binary, data))
                    } else {
                        self.partial = Some(Partial { binary, data });
                        None
                    }
                }
            };
            buf.advance(h.len + h.payload_len);
            if let Some(result) = done {
                return result.map(Some);
            }
        }
    }

    /// Parses and checks the header at the front of `buf`, as early as its bytes allow.
    fn header(&self, buf: &[u8]) -> Result<Option<Header>, WsError> {
        let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(WsError::ReservedBits);
        }
        if b1 & 0x80 == 0 {
            return Err(WsError::Unmasked);
        }
        let fin = b0 & 0x80 != 0;
        let op = b0 & 0x0F;
        let len7 = b1 & 0x7F;
        let already = match op {
            opcode::CLOSE | opcode::PING | opcode::PONG => {
                if !fin || usize::from(len7) > MAX_CONTROL_PAYLOAD {
                    return Err(WsError::BadControlFrame);
                }
                0
            }
            opcode::TEXT | opcode::BINARY => {
                if self.partial.is_some() {
                    return Err(WsError::ExpectedContinuation);
                }
                0
            }
            opcode::CONTINUATION => match &self.partial {
                Some(p) => p.data.len(),
                None => return Err(WsError::UnexpectedContinuation),
            },
            other => return Err(WsError::UnknownOpcode(other)),
        };
        let (payload_len, len_bytes) = match len7 {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 2),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(b);
                    let n = u64::from_be_bytes(be);
                    if n >> 63 != 0 {
                        return Err(WsError::BadLength);
                    }
                    (n, 8)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 0),
        };
        let room = self.max_message.saturating_sub(already) as u64;
        if payload_len > room {
            return Err(WsError::TooBig {
                limit: self.max_message,
            });
        }
        let mask_at = 2 + len_bytes;
        let Some(m) = buf.get(mask_at..mask_at + 4) else {
            return Ok(None);
        };
        Ok(Some(Header {
            fin,
            op,
            mask: [m[0], m[1], m[2], m[3]],
            len: mask_at + 4,
            // Bounded by max_message above, so it fits in usize.
            payload_len: payload_len as usize,
        }))
    }
}

fn message(binary: bool, data: Vec<u8>) -> Result<Incoming, WsError> {
    if binary {
        Ok(Incoming::Binary(Bytes::from(data)))
    } else {
        String::from_utf8(data)
            .map(Incoming::Text)
            .map_err(|_| WsError::InvalidUtf8)
    }
}

fn close(payload: Vec<u8>) -> Result<Incoming, WsError> {
    match payload.as_slice() {
        [] => Ok(Incoming::Close(None, String::new())),
        [_] => Err(WsError::BadClosePayload),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !valid_close_code(code) {
                return Err(WsError::BadCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Incoming::Close(Some(code), reason.to_owned()))
        }
    }
}

/// Codes a peer may send (RFC 6455 7.4; 1004-1006 and 1015 are never on the wire).
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

fn unmasked(body: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut data = body.to_vec();
    unmask(&mut data, mask);
    data
}

/// XOR with the masking key, eight bytes at a time.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let mut key8 = [0u8; 8];
    key8[..4].copy_from_slice(&mask);
    key8[4..].copy_from_slice(&mask);
    let key = u64::from_ne_bytes(key8);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ key).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so the key phase restarts at 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
