//! The text header: `PROXY TCP4 <src> <dst> <sport> <dport>\r\n` (or TCP6), or `PROXY UNKNOWN...\r\n`.
//! One line of at most 107 bytes, single spaces, nothing optional.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Parsed, ProxyError, ProxyHeader};

/// The longest v1 line, CRLF included (`PROXY TCP6` with two full IPv6 addresses and two 5-digit ports).
pub const V1_MAX_LEN: usize = 107;

/// `buf` starts with `PROXY `.
pub(super) fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX_LEN {
            Err(ProxyError::V1TooLong)
        } else {
            Ok(Parsed::Incomplete { committed: true })
        };
    };
    let Some(line) = window[..lf].strip_suffix(b"\r") else {
        return Err(ProxyError::V1Malformed(
            "a line feed without carriage return",
        ));
    };
    let line = std::str::from_utf8(&line[super::V1_SIGNATURE.len()..])
        .map_err(|_| ProxyError::V1Malformed("not ASCII"))?;
    let header = header(line)?;
    Ok(Parsed::Complete {
        header,
        len: lf + 1,
    })
}

fn header(line: &str) -> Result<ProxyHeader, ProxyError> {
    let mut fields = line.split(' ');
    let family = fields.next().unwrap_or("");
    if family == "UNKNOWN" {
        // The receiver ignores the rest of an UNKNOWN line.
        return Ok(ProxyHeader::Local);
    }
    let addr = |s: Option<&str>| -> Result<IpAddr, ProxyError> {
        let s = s.ok_or(ProxyError::V1Malformed("missing fields"))?;
        match family {
            "TCP4" => s.parse::<Ipv4Addr>().map(IpAddr::V4),
            "TCP6" => s.parse::<Ipv6Addr>().map(IpAddr::V6),
            _ => {
                return Err(ProxyError::V1Malformed(
                    "protocol not TCP4, TCP6 or UNKNOWN",
                ))
            }
        }
        .map_err(|_| ProxyError::V1Malformed("bad address"))
    };
    let port = |s: Option<&str>| -> Result<u16, ProxyError> {
        let s = s.ok_or(ProxyError::V1Malformed("missing fields"))?;
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProxyError::V1Malformed("bad port"));
        }
        s.parse().map_err(|_| ProxyError::V1Malformed("bad port"))
    };
    let (src, dst) = (addr(fields.next())?, addr(fields.next())?);
    let (sport, dport) = (port(fields.next())?, port(fields.next())?);
    if fields.next().is_some() {
        return Err(ProxyError::V1Malformed("extra fields"));
    }
    Ok(ProxyHeader::Proxied {
        source: SocketAddr::new(src, sport),
        destination: SocketAddr::new(dst, dport),
    })
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    fn complete(buf: &[u8]) -> (ProxyHeader, usize) {
        match parse(buf) {
            Ok(Parsed::Complete { header, len }) => (header, len),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn proxied(src: &str, dst: &str) -> ProxyHeader {
        ProxyHeader::Proxied {
            source: src.parse().unwrap(),
            destination: dst.parse().unwrap(),
        }
    }

    #[test]
    fn the_specs_examples() {
        let tcp4 = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            complete(tcp4),
            (proxied("192.168.0.1:56324", "192.168.0.11:443"), 47)
        );
        let longest = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
            ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        let ffff = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
        assert_eq!(complete(longest), (proxied(ffff, ffff), 104));
        assert_eq!(complete(b"PROXY UNKNOWN\r\n"), (ProxyHeader::Local, 15));
        // The spec's worst case: UNKNOWN followed by the longest TCP6 fields.
        let unknown = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
            ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(complete(unknown), (ProxyHeader::Local, V1_MAX_LEN));
        assert_eq!(
            complete(b"PROXY TCP6 2001:db8::1 ::1 1 0\r\n").0,
            proxied("[2001:db8::1]:1", "[::1]:0")
        );
    }

    #[test]
    fn a_partial_line_waits_for_more() {
        let whole = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
        for n in 6..whole.len() {
            assert_eq!(
                parse(&whole[..n]),
                Ok(Parsed::Incomplete { committed: true }),
                "{n}"
            );
        }
    }

    #[test]
    fn malformed_lines_are_refused() {
        let malformed: &[&[u8]] = &[
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 7\r\n",
            b"PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n",
            b"PROXY TCP4 ::1 ::1 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n",
            b"PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY \r\n",
            b"PROXY TCP4 \xff.2.3.4 1.2.3.4 1 2\r\n",
        ];
        for line in malformed {
            assert!(
                matches!(parse(line), Err(ProxyError::V1Malformed(_))),
                "{:?}: {:?}",
                String::from_utf8_lossy(line),
                parse(line)
            );
        }
    }

    #[test]
    fn no_line_end_within_107_bytes_is_too_long() {
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(V1_MAX_LEN, b'x');
        assert_eq!(parse(&long), Err(ProxyError::V1TooLong));
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse(&long), Err(ProxyError::V1TooLong));
        long.truncate(V1_MAX_LEN - 1);
        assert_eq!(parse(&long), Ok(Parsed::Incomplete { committed: true }));
    }
}
