//! What a balancer says about the client: the PROXY protocol header (v1, v2) on arbitrary first bytes of
//! a connection, and `X-Forwarded-For` / `Forwarded` on arbitrary header values.
//!
//! Checked beyond "no panic": a complete header's length is within the input and the caps (107 bytes for
//! v1, `V2_MAX_LEN` for v2); every shorter prefix of it is incomplete (the reader takes bytes as they
//! arrive and must not decide early), and the bytes after it do not change it; a client named by the
//! forwarding headers is one of the addresses they contain.
#![no_main]

use std::net::IpAddr;

use halley::proxy::{forwarded, parse, Parsed, V1_MAX_LEN, V2_MAX_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    header(data);
    let v1 = [b"PROXY ".as_slice(), data].concat();
    header(&v1);
    let v2 = [b"\r\n\r\n\0\r\nQUIT\n".as_slice(), data].concat();
    header(&v2);
    forwarding(data);
});

fn header(data: &[u8]) {
    let Ok(Parsed::Complete { header, len }) = parse(data) else {
        return;
    };
    assert!(len <= data.len());
    let cap = if data.starts_with(b"PROXY ") { V1_MAX_LEN } else { V2_MAX_LEN };
    assert!(len <= cap, "{len} > {cap}");
    for n in 0..len {
        assert!(
            matches!(parse(&data[..n]), Ok(Parsed::Incomplete { .. })),
            "decided after {n} of {len} bytes"
        );
    }
    assert_eq!(parse(&data[..len]), Ok(Parsed::Complete { header, len }));
}

/// The input split at its first 0 byte into an X-Forwarded-For and a Forwarded value, each split into
/// lines at '\n'; addresses whose first byte is even are trusted.
fn forwarding(data: &[u8]) {
    let (xff, fwd) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let trusted = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.octets()[0] % 2 == 0,
        IpAddr::V6(v6) => v6.octets()[0] % 2 == 0,
    };
    let named = forwarded::client(xff.split(|&b| b == b'\n'), fwd.split(|&b| b == b'\n'), trusted);
    if let Some(ip) = named {
        let text = String::from_utf8_lossy(data).to_lowercase();
        let shown = ip.to_string();
        // The address appears in the input in some spelling; the canonical one is checked for IPv4 (unless a
        // quoted string's escapes spelled it).
        if ip.is_ipv4() && !text.contains('\\') {
            assert!(text.contains(&shown), "{shown} not in {text:?}");
        }
    }
}
