//! Field primitives inside a packet payload: little-endian integers, NUL-terminated strings and the
//! length-encoded integers and strings of the MySQL protocol. Reading never panics: a short payload is a
//! typed error.

use thiserror::Error;

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    #[error("packet ended early while reading {0}")]
    Truncated(&'static str),
    #[error("invalid length-encoded integer prefix 0x{prefix:02x} while reading {what}")]
    BadLenenc { prefix: u8, what: &'static str },
}

/// A cursor over one payload.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.bytes(1, what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A NUL-terminated string; the NUL is consumed and not returned.
    pub(crate) fn nul_str(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(WireError::Truncated(what))?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    /// A NUL-terminated string whose NUL some clients leave out when it ends the packet.
    pub(crate) fn nul_str_or_rest(&mut self) -> &'a [u8] {
        match self.buf.iter().position(|&b| b == 0) {
            Some(end) => {
                let s = &self.buf[..end];
                self.buf = &self.buf[end + 1..];
                s
            }
            None => self.rest(),
        }
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// A length-encoded integer. 0xFB (NULL) and 0xFF (ERR) are not integers in what a client sends.
    pub(crate) fn lenenc_int(&mut self, what: &'static str) -> Result<u64, WireError> {
        let prefix = self.u8(what)?;
        let width = match prefix {
            0..=0xFA => return Ok(u64::from(prefix)),
            0xFC => 2,
            0xFD => 3,
            0xFE => 8,
            _ => return Err(WireError::BadLenenc { prefix, what }),
        };
        let b = self.bytes(width, what)?;
        let mut le = [0u8; 8];
        le[..width].copy_from_slice(b);
        Ok(u64::from_le_bytes(le))
    }

    pub(crate) fn lenenc_bytes(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let len = self.lenenc_int(what)?;
        let len = usize::try_from(len).map_err(|_| WireError::Truncated(what))?;
        self.bytes(len, what)
    }
}

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Length-encoded integer: 1 byte below 251, else 0xFC + 2 bytes, 0xFD + 3 bytes or 0xFE + 8 bytes.
pub(crate) fn put_lenenc_int(out: &mut Vec<u8>, v: u64) {
    let le = v.to_le_bytes();
    match v {
        0..=0xFA => out.push(le[0]),
        0xFB..=0xFFFF => {
            out.push(0xFC);
            out.extend_from_slice(&le[..2]);
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0xFD);
            out.extend_from_slice(&le[..3]);
        }
        _ => {
            out.push(0xFE);
            out.extend_from_slice(&le);
        }
    }
}

pub(crate) fn put_lenenc_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_lenenc_int(out, b.len() as u64);
    out.extend_from_slice(b);
}

pub(crate) fn put_nul_str(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b);
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lenenc(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_lenenc_int(&mut out, v);
        out
    }

    #[test]
    fn lenenc_int_widths_at_every_boundary() {
        assert_eq!(lenenc(0), b"\x00");
        assert_eq!(lenenc(250), b"\xfa");
        assert_eq!(lenenc(251), b"\xfc\xfb\x00");
        assert_eq!(lenenc(0xFFFF), b"\xfc\xff\xff");
        assert_eq!(lenenc(0x1_0000), b"\xfd\x00\x00\x01");
        assert_eq!(lenenc(0xFF_FFFF), b"\xfd\xff\xff\xff");
        assert_eq!(lenenc(0x100_0000), b"\xfe\x00\x00\x00\x01\x00\x00\x00\x00");
        assert_eq!(lenenc(u64::MAX), b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff");
    }

    #[test]
    fn lenenc_int_round_trips() {
        for v in [
            0,
            1,
            250,
            251,
            252,
            0xFFFF,
            0x1_0000,
            0xFF_FFFF,
            0x100_0000,
            u64::MAX,
        ] {
            let bytes = lenenc(v);
            let mut r = Reader::new(&bytes);
            assert_eq!(r.lenenc_int("v"), Ok(v));
            assert!(r.is_empty());
        }
    }

    #[test]
    fn reader_reports_truncation_and_bad_prefixes() {
        assert_eq!(
            Reader::new(b"\xfc\x01").lenenc_int("x"),
            Err(WireError::Truncated("x"))
        );
        assert_eq!(
            Reader::new(b"\xfb").lenenc_int("x"),
            Err(WireError::BadLenenc {
                prefix: 0xFB,
                what: "x"
            })
        );
        assert_eq!(
            Reader::new(b"\x05abc").lenenc_bytes("s"),
            Err(WireError::Truncated("s"))
        );
        assert_eq!(
            Reader::new(b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff").lenenc_bytes("s"),
            Err(WireError::Truncated("s"))
        );
        assert_eq!(Reader::new(b"ab").u32("n"), Err(WireError::Truncated("n")));
        assert_eq!(
            Reader::new(b"abc").nul_str("u"),
            Err(WireError::Truncated("u"))
        );
    }

    #[test]
    fn nul_strings() {
        let mut r = Reader::new(b"root\0db");
        assert_eq!(r.nul_str("user"), Ok(&b"root"[..]));
        assert_eq!(r.nul_str_or_rest(), b"db");
        assert!(r.is_empty());
        assert_eq!(r.nul_str_or_rest(), b"");
    }
}
