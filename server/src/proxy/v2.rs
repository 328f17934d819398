//! The binary header: a 12-byte signature, version and command, address family and transport, the length
//! of the rest, the addresses, then TLVs (type, 16-bit length, value), which are skipped: nothing here needs
//! what they carry (TLS details, a connection id), but they must fit the header.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Parsed, ProxyError, ProxyHeader};

/// The largest v2 header accepted: the fixed 16 bytes and 2 KiB of addresses and TLVs.
pub const V2_MAX_LEN: usize = 16 + 2048;

const FIXED: usize = 16;
const LOCAL: u8 = 0x0;
const PROXY: u8 = 0x1;

/// `buf` starts with the v2 signature.
pub(super) fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if buf.len() < FIXED {
        return Ok(Parsed::Incomplete { committed: true });
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 {
        return Err(ProxyError::V2Version(version));
    }
    if command != LOCAL && command != PROXY {
        return Err(ProxyError::V2Command(command));
    }
    let len = FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > V2_MAX_LEN {
        return Err(ProxyError::V2TooLong(len));
    }
    let Some(body) = buf.get(FIXED..len) else {
        return Ok(Parsed::Incomplete { committed: true });
    };
    // LOCAL: the proxy's own connection; its address block (whatever the family says) is discarded.
    if command == LOCAL {
        return Ok(Parsed::Complete {
            header: ProxyHeader::Local,
            len,
        });
    }
    let family = buf[13];
    let (addresses, header) = match family {
        // UNSPEC: no addresses; the receiver uses the connection's own.
        0x00 => (0, ProxyHeader::Local),
        0x11 | 0x12 => {
            let a = body.get(..12).ok_or(ProxyError::V2ShortAddresses)?;
            let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(a[i], a[i + 1], a[i + 2], a[i + 3]));
            let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
            (12, tcp_or_local(family, ip(0), ip(4), port(8), port(10)))
        }
        0x21 | 0x22 => {
            let a = body.get(..36).ok_or(ProxyError::V2ShortAddresses)?;
            let ip = |i: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&a[i..i + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
            (36, tcp_or_local(family, ip(0), ip(16), port(32), port(34)))
        }
        // UNIX sockets have no address a limit could use: the connection's own stands.
        0x31 | 0x32 => {
            body.get(..216).ok_or(ProxyError::V2ShortAddresses)?;
            (216, ProxyHeader::Local)
        }
        other => return Err(ProxyError::V2Family(other)),
    };
    skip_tlvs(&body[addresses..])?;
    Ok(Parsed::Complete { header, len })
}

/// A stream's addresses; a datagram's are not this connection's client.
fn tcp_or_local(family: u8, src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> ProxyHeader {
    if family & 0x0f == 0x1 {
        ProxyHeader::Proxied {
            source: SocketAddr::new(src, sport),
            destination: SocketAddr::new(dst, dport),
        }
    } else {
        ProxyHeader::Local
    }
}

fn skip_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyError> {
    while !tlvs.is_empty() {
        let [_kind, hi, lo, ..] = *tlvs else {
            return Err(ProxyError::V2Tlv);
        };
        let end = 3 + usize::from(u16::from_be_bytes([hi, lo]));
        tlvs = tlvs.get(end..).ok_or(ProxyError::V2Tlv)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{parse, V2_SIGNATURE};
    use super::*;

    /// Signature, version 2 with `command`, `family`, the length and the rest.
    fn header(command: u8, family: u8, rest: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(rest.len() as u16).to_be_bytes());
        h.extend_from_slice(rest);
        h
    }

    fn complete(buf: &[u8]) -> (ProxyHeader, usize) {
        match parse(buf) {
            Ok(Parsed::Complete { header, len }) => (header, len),
            other => panic!("{buf:?}: {other:?}"),
        }
    }

    fn proxied(src: &str, dst: &str) -> ProxyHeader {
        ProxyHeader::Proxied {
            source: src.parse().unwrap(),
            destination: dst.parse().unwrap(),
        }
    }

    const TCP4: &[u8] = b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\x21\x11\x00\x0c\
        \xc0\x00\x02\x01\x0a\x00\x00\x01\xd2\x04\x01\xbb";

    #[test]
    fn tcp4_from_literal_bytes() {
        let mut with_request = TCP4.to_vec();
        with_request.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            complete(&with_request),
            (proxied("192.0.2.1:53764", "10.0.0.1:443"), 28)
        );
    }

    #[test]
    fn tcp6_with_tlvs() {
        let mut rest = Vec::new();
        rest.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        rest.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        rest.extend_from_slice(&[0x12, 0x34, 0x1f, 0x90]);
        // PP2_TYPE_ALPN "h2", PP2_TYPE_AUTHORITY "example.com", PP2_TYPE_NOOP of zero bytes.
        rest.extend_from_slice(b"\x01\x00\x02h2\x02\x00\x0bexample.com\x04\x00\x00");
        let h = header(1, 0x21, &rest);
        assert_eq!(
            complete(&h),
            (proxied("[2001:db8::7]:4660", "[::1]:8080"), h.len())
        );
    }

    #[test]
    fn local_unspec_unix_and_datagrams_name_no_client() {
        // LOCAL: a health check; whatever follows is discarded, even an unknown family.
        assert_eq!(complete(&header(0, 0x00, b"")).0, ProxyHeader::Local);
        assert_eq!(complete(&header(0, 0x11, &[0; 12])).0, ProxyHeader::Local);
        assert_eq!(complete(&header(0, 0x77, b"xyz")).0, ProxyHeader::Local);
        assert_eq!(complete(&header(1, 0x00, b"")).0, ProxyHeader::Local);
        assert_eq!(
            complete(&header(1, 0x00, b"\x04\x00\x00")).0,
            ProxyHeader::Local
        );
        assert_eq!(complete(&header(1, 0x31, &[0; 216])).0, ProxyHeader::Local);
        assert_eq!(complete(&header(1, 0x12, &[1; 12])).0, ProxyHeader::Local);
    }

    #[test]
    fn a_partial_header_waits_for_more() {
        for n in 12..TCP4.len() {
            assert_eq!(
                parse(&TCP4[..n]),
                Ok(Parsed::Incomplete { committed: true }),
                "{n}"
            );
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        let mut v1 = header(1, 0x11, &[0; 12]);
        v1[12] = 0x11;
        assert_eq!(parse(&v1), Err(ProxyError::V2Version(1)));
        assert_eq!(
            parse(&header(2, 0x11, &[0; 12])),
            Err(ProxyError::V2Command(2))
        );
        assert_eq!(
            parse(&header(1, 0x11, &[0; 11])),
            Err(ProxyError::V2ShortAddresses)
        );
        assert_eq!(
            parse(&header(1, 0x21, &[0; 35])),
            Err(ProxyError::V2ShortAddresses)
        );
        assert_eq!(
            parse(&header(1, 0x31, &[0; 100])),
            Err(ProxyError::V2ShortAddresses)
        );
        assert_eq!(
            parse(&header(1, 0x13, &[0; 12])),
            Err(ProxyError::V2Family(0x13))
        );
        assert_eq!(
            parse(&header(1, 0x41, &[0; 12])),
            Err(ProxyError::V2Family(0x41))
        );
        let mut tlv = [0u8; 12].to_vec();
        tlv.extend_from_slice(b"\x01\x00\x05ab");
        assert_eq!(parse(&header(1, 0x11, &tlv)), Err(ProxyError::V2Tlv));
        let mut stub = [0u8; 12].to_vec();
        stub.extend_from_slice(b"\x01\x00");
        assert_eq!(parse(&header(1, 0x11, &stub)), Err(ProxyError::V2Tlv));
    }

    #[test]
    fn an_oversized_header_is_refused_from_its_length_alone() {
        let mut h = header(1, 0x11, &[]);
        h[14..16].copy_from_slice(&0xffffu16.to_be_bytes());
        assert_eq!(parse(&h), Err(ProxyError::V2TooLong(16 + 0xffff)));
        let mut at_cap = vec![0u8; 12];
        // One NOOP TLV filling the rest of the cap exactly.
        let fill = V2_MAX_LEN - 16 - 12 - 3;
        at_cap.push(0x04);
        at_cap.extend_from_slice(&(fill as u16).to_be_bytes());
        at_cap.resize(at_cap.len() + fill, 0);
        let h = header(1, 0x11, &at_cap);
        assert_eq!(h.len(), V2_MAX_LEN);
        assert_eq!(complete(&h).1, V2_MAX_LEN);
        let mut over = at_cap.clone();
        over.push(0);
        assert_eq!(
            parse(&header(1, 0x11, &over)),
            Err(ProxyError::V2TooLong(V2_MAX_LEN + 1))
        );
    }
}
