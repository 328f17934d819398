//! Packet framing: a 3-byte little-endian payload length and a 1-byte sequence id before every payload.
//! A payload of 0xFFFFFF bytes or more travels as several packets, each full one (exactly 0xFFFFFF
//! bytes) followed by the next, the last one shorter (possibly empty).
//!
//! [`PacketDecoder`] is fed whatever the socket returned (several packets, half a packet) and yields whole
//! logical payloads. It refuses a payload bigger than its limit as soon as the header announcing it
//! arrives, so it never buffers more than one command plus one read.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// The largest payload of one physical packet; a payload this long continues in the next packet.
pub const MAX_PART: usize = 0xFF_FFFF;

const HEADER: usize = 4;

/// How far past `max_packet` the buffer may grow: room for one socket read and the headers of the
/// continuation packets.
const SLACK: usize = 64 * 1024;

/// One logical packet: the sequence id of its last physical packet (replies continue from it) and the
/// reassembled payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub seq: u8,
    pub payload: Bytes,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum PacketError {
    /// `seq` is the sequence id of the packet that crossed the limit, for the ERR reply.
    #[error("packet payload of at least {len} bytes exceeds the limit of {max} bytes")]
    TooLong { seq: u8, len: usize, max: usize },
    #[error("continuation packet out of order: expected sequence id {expected}, got {got}")]
    OutOfOrder { expected: u8, got: u8 },
    #[error("more than {0} bytes buffered without a complete packet being taken")]
    BufferFull(usize),
}

#[derive(Debug)]
pub struct PacketDecoder {
    buf: BytesMut,
    max_packet: usize,
}

impl PacketDecoder {
    pub fn new(max_packet: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            max_packet,
        }
    }

    /// Changes the limit for the packets not yet taken (the handshake uses a smaller one).
    pub fn set_max_packet(&mut self, max_packet: usize) {
        self.max_packet = max_packet;
    }

    /// Bytes received and not yet returned as a packet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes every byte received and not yet returned as a packet: what a client sent after its
    /// SSLRequest, which belongs to the TLS stream.
    pub fn take_buffered(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    /// Appends received bytes. Take every complete packet with [`Self::next_packet`] before feeding more:
    /// the buffer is capped at one maximal packet plus one read.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), PacketError> {
        let cap = self.max_packet.saturating_add(SLACK);
        if self.buf.len().saturating_add(chunk.len()) > cap {
            return Err(PacketError::BufferFull(cap));
        }
        self.buf.extend_from_slice(chunk);
        Ok(())
    }

    /// The next complete logical packet, `None` if more bytes are needed.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, PacketError> {
        let mut pos = 0;
        let mut total = 0usize;
        let mut parts = 0usize;
        let mut last_seq = 0u8;
        loop {
            let Some(header) = self.buf.get(pos..pos + HEADER) else {
                return Ok(None);
            };
            let len =
                usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
            let seq = header[3];
            if parts > 0 && seq != last_seq.wrapping_add(1) {
                return Err(PacketError::OutOfOrder {
                    expected: last_seq.wrapping_add(1),
                    got: seq,
                });
            }
            total = total.saturating_add(len);
            if total > self.max_packet {
                return Err(PacketError::TooLong {
                    seq,
                    len: total,
                    max: self.max_packet,
                });
            }
            if self.buf.len() < pos + HEADER + len {
                return Ok(None);
            }
            pos += HEADER + len;
            parts += 1;
            last_seq = seq;
            if len < MAX_PART {
                break;
            }
        }
        let payload = if parts == 1 {
            self.buf.advance(HEADER);
            self.buf.split_to(total).freeze()
        } else {
            let mut joined = BytesMut::with_capacity(total);
            let mut rest = self.buf.split_to(pos);
            while rest.has_remaining() {
                let len =
                    usize::from(rest[0]) | usize::from(rest[1]) << 8 | usize::from(rest[2]) << 16;
                rest.advance(HEADER);
                joined.extend_from_slice(&rest.split_to(len));
            }
            joined.freeze()
        };
        Ok(Some(Packet {
            seq: last_seq,
            payload,
        }))
    }
}

/// Builds a reply: any number of packets with consecutive sequence ids, in one buffer written at once.
#[derive(Debug, Default)]
pub struct PacketWriter {
    buf: Vec<u8>,
    seq: u8,
}

impl PacketWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the sequence id of the next packet (a reply starts at the request's id + 1).
    pub fn set_seq(&mut self, seq: u8) {
        self.seq = seq;
    }

    /// The sequence id the next packet will get.
    pub fn seq(&self) -> u8 {
        self.seq
    }

    pub fn packet(&mut self, payload: &[u8]) {
        self.packet_with(|out| out.extend_from_slice(payload));
    }

    /// Appends one logical packet whose payload `fill` writes in place (no intermediate copy unless the
    /// payload needs continuation packets).
    pub fn packet_with(&mut self, fill: impl FnOnce(&mut Vec<u8>)) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; HEADER]);
        fill(&mut self.buf);
        let len = self.buf.len() - start - HEADER;
        if len < MAX_PART {
            self.buf[start..start + 3].copy_from_slice(&(len as u32).to_le_bytes()[..3]);
            self.buf[start + 3] = self.seq;
            self.seq = self.seq.wrapping_add(1);
            return;
        }
        let payload = self.buf.split_off(start + HEADER);
        self.buf.truncate(start);
        for part in payload.chunks(MAX_PART) {
            self.header(part.len());
            self.buf.extend_from_slice(part);
        }
        // A payload that ends on a part boundary needs an empty packet to say it ended.
        if payload.len().is_multiple_of(MAX_PART) {
            self.header(0);
        }
    }

    fn header(&mut self, len: usize) {
        self.buf.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
        self.buf.push(self.seq);
        self.seq = self.seq.wrapping_add(1);
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Empties the buffer after it was written, giving back the memory of an unusually large reply.
    pub fn clear(&mut self) {
        if self.buf.capacity() > 256 * 1024 {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(seq: u8, payload: &[u8]) -> Packet {
        Packet {
            seq,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn two_packets_in_one_chunk() {
        let mut d = PacketDecoder::new(1024);
        d.feed(b"\x01\x00\x00\x00\x0e\x05\x00\x00\x00\x03abcd")
            .unwrap();
        assert_eq!(d.next_packet(), Ok(Some(pkt(0, b"\x0e"))));
        assert_eq!(d.next_packet(), Ok(Some(pkt(0, b"\x03abcd"))));
        assert_eq!(d.next_packet(), Ok(None));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn packet_split_across_chunks_including_the_header() {
        let mut d = PacketDecoder::new(1024);
        d.feed(b"\x09\x00").unwrap();
        assert_eq!(d.next_packet(), Ok(None));
        d.feed(b"\x00\x00\x03SELE").unwrap();
        assert_eq!(d.next_packet(), Ok(None));
        d.feed(b"CT 1\x01\x00").unwrap();
        assert_eq!(d.next_packet(), Ok(Some(pkt(0, b"\x03SELECT 1"))));
        assert_eq!(d.next_packet(), Ok(None));
        assert_eq!(d.buffered(), 2);
    }

    #[test]
    fn empty_payload() {
        let mut d = PacketDecoder::new(16);
        d.feed(b"\x00\x00\x00\x02").unwrap();
        assert_eq!(d.next_packet(), Ok(Some(pkt(2, b""))));
    }

    #[test]
    fn continuation_packets_are_joined() {
        let mut wire = Vec::new();
        wire.extend_from_slice(b"\xff\xff\xff\x00");
        wire.extend(std::iter::repeat_n(b'a', MAX_PART));
        wire.extend_from_slice(b"\x02\x00\x00\x01bc");
        let mut d = PacketDecoder::new(MAX_PART + 2);
        for chunk in wire.chunks(100_000) {
            d.feed(chunk).unwrap();
        }
        let p = d.next_packet().unwrap().unwrap();
        assert_eq!(p.seq, 1);
        assert_eq!(p.payload.len(), MAX_PART + 2);
        assert_eq!(&p.payload[MAX_PART..], b"bc");
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn continuation_ending_on_a_boundary_needs_the_empty_packet() {
        let mut wire = b"\xff\xff\xff\x07".to_vec();
        wire.extend(std::iter::repeat_n(b'x', MAX_PART));
        let mut d = PacketDecoder::new(MAX_PART);
        d.feed(&wire).unwrap();
        assert_eq!(d.next_packet(), Ok(None));
        d.feed(b"\x00\x00\x00\x08").unwrap();
        let p = d.next_packet().unwrap().unwrap();
        assert_eq!((p.seq, p.payload.len()), (8, MAX_PART));
    }

    #[test]
    fn oversized_packet_is_refused_from_its_header_alone() {
        let mut d = PacketDecoder::new(1024);
        d.feed(b"\x01\x04\x00\x00").unwrap();
        assert_eq!(
            d.next_packet(),
            Err(PacketError::TooLong {
                seq: 0,
                len: 1025,
                max: 1024
            })
        );
        let mut d = PacketDecoder::new(100);
        d.feed(b"GET / HTTP/1.1\r\n").unwrap();
        assert!(matches!(
            d.next_packet(),
            Err(PacketError::TooLong { seq: b' ', .. })
        ));
    }

    #[test]
    fn continuation_beyond_the_limit_is_refused() {
        let mut d = PacketDecoder::new(MAX_PART + 10);
        let mut wire = b"\xff\xff\xff\x00".to_vec();
        wire.extend(std::iter::repeat_n(0u8, MAX_PART));
        wire.extend_from_slice(b"\x0b\x00\x00\x01");
        d.feed(&wire).unwrap();
        assert!(matches!(
            d.next_packet(),
            Err(PacketError::TooLong { seq: 1, .. })
        ));
    }

    #[test]
    fn continuation_with_a_wrong_sequence_id_is_refused() {
        let mut d = PacketDecoder::new(2 * MAX_PART);
        let mut wire = b"\xff\xff\xff\x05".to_vec();
        wire.extend(std::iter::repeat_n(0u8, MAX_PART));
        wire.extend_from_slice(b"\x00\x00\x00\x09");
        d.feed(&wire).unwrap();
        assert_eq!(
            d.next_packet(),
            Err(PacketError::OutOfOrder {
                expected: 6,
                got: 9
            })
        );
    }

    #[test]
    fn feeding_without_taking_is_bounded() {
        let mut d = PacketDecoder::new(10);
        let chunk = vec![0u8; SLACK];
        d.feed(&chunk).unwrap();
        assert_eq!(d.feed(&chunk), Err(PacketError::BufferFull(10 + SLACK)));
    }

    #[test]
    fn writer_numbers_packets_and_wraps() {
        let mut w = PacketWriter::new();
        w.set_seq(255);
        w.packet(b"\x00\x00\x00\x02\x02\x00\x00\x00");
        w.packet(b"");
        assert_eq!(
            w.as_bytes(),
            b"\x08\x00\x00\xff\x00\x00\x00\x02\x02\x00\x00\x00\x00\x00\x00\x00"
        );
        assert_eq!(w.seq(), 1);
        w.clear();
        assert!(w.is_empty());
    }

    #[test]
    fn writer_splits_long_payloads_and_decoder_reads_them_back() {
        for len in [MAX_PART - 1, MAX_PART, MAX_PART + 1, 2 * MAX_PART] {
            let mut w = PacketWriter::new();
            w.set_seq(3);
            w.packet_with(|out| out.extend(std::iter::repeat_n(b'z', len)));
            let parts = len / MAX_PART + 1;
            assert_eq!(w.as_bytes().len(), len + 4 * parts, "len {len}");
            assert_eq!(w.seq(), 3 + parts as u8);
            let mut d = PacketDecoder::new(len);
            d.feed(w.as_bytes()).unwrap();
            let p = d.next_packet().unwrap().unwrap();
            assert_eq!((p.seq, p.payload.len()), (2 + parts as u8, len));
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn random_chunks_never_panic_and_stay_bounded() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..2_000 {
            let mut d = PacketDecoder::new(rng.gen_range(0..4096));
            'feed: for _ in 0..20 {
                let len = rng.gen_range(0..600);
                let chunk: Vec<u8> = (0..len).map(|_| rng.gen::<u8>() & 0x0f).collect();
                if d.feed(&chunk).is_err() {
                    break;
                }
                loop {
                    match d.next_packet() {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
                assert!(d.buffered() <= 4096 + SLACK);
            }
        }
    }
}
