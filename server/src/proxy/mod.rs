//! What a proxy in front of the server says about the client, pure (bytes in, typed values out): the PROXY
//! protocol header a balancer sends before the client's first byte ([`v1`] text, [`v2`] binary; HAProxy's
//! proxy-protocol.txt) and the `Forwarded` / `X-Forwarded-For` request headers ([`forwarded`]). Whether a
//! peer may say it at all is the front door's decision (`trusted_proxies`); this module only reads.
//!
//! Bounded: a v1 header is at most 107 bytes, a v2 header at most [`V2_MAX_LEN`] (the format allows
//! 16 + 65535; real balancers send a few hundred bytes of TLVs at most). Never panics on any input (a fuzz
//! target checks it).

pub mod forwarded;
mod v1;
mod v2;

use std::net::SocketAddr;

use thiserror::Error;

pub use v1::V1_MAX_LEN;
pub use v2::V2_MAX_LEN;

/// The v1 header starts with these bytes.
const V1_SIGNATURE: &[u8] = b"PROXY ";
/// The v2 header starts with these 12 bytes.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// A complete PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The proxy relays a client: its address and the address it connected to.
    Proxied {
        source: SocketAddr,
        destination: SocketAddr,
    },
    /// The connection is the proxy's own (v2 LOCAL, a health check), or the proxy does not know the
    /// client (v1 UNKNOWN, v2 UNSPEC or UNIX or a datagram transport): the socket's peer is the client.
    Local,
}

/// What the bytes at the start of a connection are, so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole header of `len` bytes; what follows is the client's.
    Complete { header: ProxyHeader, len: usize },
    /// The start of a header, or (`committed: false`) bytes too few to tell from the start of something
    /// else: a prefix of a signature. With `committed`, every byte so far belongs to the header.
    Incomplete { committed: bool },
    /// Not a PROXY header: the connection starts with something else.
    NotProxy,
}

/// A header that cannot be a valid one, whatever follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProxyError {
    #[error("PROXY v1 header without its CRLF within {V1_MAX_LEN} bytes")]
    V1TooLong,
    #[error("malformed PROXY v1 header: {0}")]
    V1Malformed(&'static str),
    #[error("PROXY v2 header version {0} (only 2 exists)")]
    V2Version(u8),
    #[error("PROXY v2 command {0} (only LOCAL 0 and PROXY 1 exist)")]
    V2Command(u8),
    #[error("PROXY v2 header of {0} bytes: more than the {V2_MAX_LEN} accepted")]
    V2TooLong(usize),
    #[error("PROXY v2 header too short for its address family")]
    V2ShortAddresses,
    #[error("PROXY v2 address family or transport {0:#04x} unknown")]
    V2Family(u8),
    #[error("PROXY v2 TLV running past the header")]
    V2Tlv,
}

/// Reads the PROXY header at the start of `buf`, if it starts with one.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if buf.starts_with(V1_SIGNATURE) {
        return v1::parse(buf);
    }
    if buf.starts_with(V2_SIGNATURE) {
        return v2::parse(buf);
    }
    let prefix_of = |sig: &[u8]| buf.len() < sig.len() && sig.starts_with(buf);
    if prefix_of(V1_SIGNATURE) || prefix_of(V2_SIGNATURE) {
        Ok(Parsed::Incomplete { committed: false })
    } else {
        Ok(Parsed::NotProxy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_and_their_prefixes() {
        assert_eq!(parse(b""), Ok(Parsed::Incomplete { committed: false }));
        assert_eq!(parse(b"PROX"), Ok(Parsed::Incomplete { committed: false }));
        assert_eq!(
            parse(b"\r\n\r\n\0"),
            Ok(Parsed::Incomplete { committed: false })
        );
        assert_eq!(parse(b"PROXY "), Ok(Parsed::Incomplete { committed: true }));
        assert_eq!(
            parse(V2_SIGNATURE),
            Ok(Parsed::Incomplete { committed: true })
        );
        // An HTTP request, a MySQL packet, a TLS ClientHello, a request after a blank line.
        for other in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROPFIND / HTTP/1.1\r\n",
            b"\x20\x00\x00\x01\x85\xa6",
            b"\x16\x03\x01\x02\x00",
            b"\r\nGET / HTTP/1.1\r\n",
        ] {
            assert_eq!(parse(other), Ok(Parsed::NotProxy), "{other:?}");
        }
    }
}
