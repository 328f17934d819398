//! RFC 6455 framing, server side: frames we send (unmasked, never fragmented), the incremental
//! decoder of what browsers send, the close-code mapping and the handshake's accept key.

mod decode;

pub use decode::{FrameDecoder, Incoming};

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use sha1::{Digest, Sha1};
use thiserror::Error;

/// Default limit on one client message (assembled from all its fragments).
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;
/// Control frames (close, ping, pong) carry at most this many payload bytes.
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// Longest frame header: 2 bytes + 8-byte length + 4-byte mask.
pub const MAX_HEADER: usize = 14;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Close codes, named once (RFC 6455 7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    /// Also used when a slow client's outbox overflows.
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
}

pub(crate) mod opcode {
    pub(crate) const CONTINUATION: u8 = 0x0;
    pub(crate) const TEXT: u8 = 0x1;
    pub(crate) const BINARY: u8 = 0x2;
    pub(crate) const CLOSE: u8 = 0x8;
    pub(crate) const PING: u8 = 0x9;
    pub(crate) const PONG: u8 = 0xA;
}

/// A client broke the protocol; the connection is closed with [`WsError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WsError {
    #[error("client frame is not masked")]
    Unmasked,
    #[error("reserved bits set in a frame header")]
    ReservedBits,
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    #[error("control frame is fragmented or longer than 125 bytes")]
    BadControlFrame,
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    #[error("new data frame while a fragmented message is unfinished")]
    ExpectedContinuation,
    #[error("64-bit frame length has its most significant bit set")]
    BadLength,
    #[error("close frame payload of one byte")]
    BadClosePayload,
    #[error("invalid close code {0}")]
    BadCloseCode(u16),
    #[error("message longer than {limit} bytes")]
    TooBig { limit: usize },
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
}

impl WsError {
    /// The one place where protocol errors become close codes.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::TooBig { .. } => close_code::TOO_BIG,
            Self::InvalidUtf8 => close_code::INVALID_DATA,
            Self::Unmasked
            | Self::ReservedBits
            | Self::UnknownOpcode(_)
            | Self::BadControlFrame
            | Self::UnexpectedContinuation
            | Self::ExpectedContinuation
            | Self::BadLength
            | Self::BadClosePayload
            | Self::BadCloseCode(_) => close_code::PROTOCOL_ERROR,
        }
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (surrounding whitespace ignored).
pub fn accept_key(sec_websocket_key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(sec_websocket_key.trim().as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// One complete text frame (FIN, unmasked) in one allocation: written once per publish and
/// shared by every subscriber.
pub fn encode_text(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(header_len(payload.len()) + payload.len());
    put_header(&mut out, opcode::TEXT, payload.len());
    out.put_slice(payload);
    out.freeze()
}

/// Builds a text frame whose payload `write` appends, without copying the payload: header room
/// is reserved in front and the unused part is skipped. `size_hint` is the expected payload size.
pub fn encode_text_with(size_hint: usize, write: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut out = BytesMut::with_capacity(MAX_HEADER + size_hint);
    out.put_bytes(0, MAX_HEADER);
    write(&mut out);
    let (header, header_len) = header(opcode::TEXT, out.len() - MAX_HEADER);
    let skip = MAX_HEADER - header_len;
    out[skip..MAX_HEADER].copy_from_slice(&header[..header_len]);
    let mut frame = out.freeze();
    bytes::Buf::advance(&mut frame, skip);
    frame
}

/// Close frame; the reason is cut (at a character boundary) to fit a control frame.
pub fn encode_close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    control(opcode::CLOSE, &payload)
}

/// Pong echoing a ping's payload (cut to 125 bytes; a decoded ping never exceeds that).
pub fn encode_pong(payload: &[u8]) -> Bytes {
    control(opcode::PONG, payload)
}

/// Ping with an opaque payload (cut to 125 bytes).
pub fn encode_ping(payload: &[u8]) -> Bytes {
    control(opcode::PING, payload)
}

fn control(op: u8, payload: &[u8]) -> Bytes {
    let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
    let mut out = BytesMut::with_capacity(2 + payload.len());
    put_header(&mut out, op, payload.len());
    out.put_slice(payload);
    out.freeze()
}

fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// FIN + opcode and the shortest length encoding; servers never mask.
fn header(op: u8, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x80 | op;
    match len {
        0..=125 => {
            h[1] = len as u8;
            (h, 2)
        }
        126..=0xFFFF => {
            h[1] = 126;
            h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            (h, 4)
        }
        _ => {
            h[1] = 127;
            h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            (h, 10)
        }
    }
}

fn put_header(out: &mut BytesMut, op: u8, len: usize) {
    let (h, n) = header(op, len);
    out.put_slice(&h[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_rfc_vector() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            accept_key(" dGhlIHNhbXBsZSBub25jZQ== "),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn text_hello_rfc_example() {
        assert_eq!(
            &encode_text(b"Hello")[..],
            &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        assert_eq!(&encode_text(b"")[..], &[0x81, 0x00]);
    }

    #[test]
    fn short_frame_boundary_is_not_corrupted() {
        // The reference truncates 123..=125-byte payloads; every byte must survive here.
        for n in [122usize, 123, 124, 125] {
            let payload: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            let frame = encode_text(&payload);
            assert_eq!(frame.len(), n + 2);
            assert_eq!(frame[0], 0x81);
            assert_eq!(frame[1] as usize, n);
            assert_eq!(&frame[2..], &payload[..]);
        }
    }

    #[test]
    fn sixteen_bit_lengths() {
        let frame = encode_text(&[b'x'; 126]);
        assert_eq!(&frame[..4], &[0x81, 126, 0x00, 126]);
        assert_eq!(frame.len(), 130);
        let frame = encode_text(&vec![b'x'; 65535]);
        assert_eq!(&frame[..4], &[0x81, 126, 0xFF, 0xFF]);
        assert_eq!(frame.len(), 65539);
    }

    #[test]
    fn sixty_four_bit_lengths() {
        // The reference silently drops frames over 65535 bytes.
        let frame = encode_text(&vec![b'y'; 65536]);
        assert_eq!(&frame[..10], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(frame.len(), 65546);
        assert!(frame[10..].iter().all(|&b| b == b'y'));
    }

    #[test]
    fn encode_with_matches_encode() {
        for n in [0usize, 5, 125, 126, 127, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let direct = encode_text(&payload);
            let built = encode_text_with(0, |out| out.put_slice(&payload));
            assert_eq!(direct, built, "length {n}");
        }
    }

    #[test]
    fn control_frames() {
        assert_eq!(&encode_close(1000, "")[..], &[0x88, 0x02, 0x03, 0xE8]);
        assert_eq!(
            &encode_close(1009, "big")[..],
            &[0x88, 0x05, 0x03, 0xF1, b'b', b'i', b'g']
        );
        assert_eq!(
            &encode_pong(b"Hello")[..],
            &[0x8A, 0x05, b'H', b'e', b'l', b'l', b'o']
        );
        assert_eq!(&encode_ping(b"")[..], &[0x89, 0x00]);
        assert_eq!(encode_ping(&[1; 200]).len(), 127);
    }

    #[test]
    fn close_reason_is_cut_at_a_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let frame = encode_close(1008, &reason);
        assert_eq!(frame[1] as usize, 2 + 122);
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
    }

    #[test]
    fn close_code_mapping() {
        assert_eq!(WsError::Unmasked.close_code(), 1002);
        assert_eq!(WsError::ReservedBits.close_code(), 1002);
        assert_eq!(WsError::UnknownOpcode(3).close_code(), 1002);
        assert_eq!(WsError::BadControlFrame.close_code(), 1002);
        assert_eq!(WsError::UnexpectedContinuation.close_code(), 1002);
        assert_eq!(WsError::ExpectedContinuation.close_code(), 1002);
        assert_eq!(WsError::BadLength.close_code(), 1002);
        assert_eq!(WsError::BadClosePayload.close_code(), 1002);
        assert_eq!(WsError::BadCloseCode(5).close_code(), 1002);
        assert_eq!(WsError::InvalidUtf8.close_code(), 1007);
        assert_eq!(WsError::TooBig { limit: 1 }.close_code(), 1009);
    }
}
