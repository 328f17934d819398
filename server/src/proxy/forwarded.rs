//! The client of an HTTP request that came through proxies: `X-Forwarded-For: client, proxy1, proxy2` and
//! `Forwarded: for=client, for=proxy1` (RFC 7239). Each proxy appends the address it was connected from, so
//! only the right end is written by proxies we trust: the client is the right-most address that is not
//! itself a trusted proxy (when all are trusted, the left-most). Anything left of it was written by the
//! client and is not believed.
//!
//! A balancer writes one of the two headers; the other, if present, came from the client. So when both
//! are present and they do not name the same client, neither is believed ([`client`] returns None, and the
//! caller keeps the connection's own address): a forged header can then cost its sender its own address,
//! never lend it another's. An entry that is not an address (`unknown`, an obfuscated `_name`, garbage)
//! ends the walk the same way: who is behind it is not known.

use std::net::{IpAddr, SocketAddr};

/// The client named by the request's `X-Forwarded-For` and `Forwarded` values (each header's lines in
/// order), with `trusted` telling which addresses are proxies; None when neither header names one.
pub fn client<'a>(
    x_forwarded_for: impl IntoIterator<Item = &'a [u8]>,
    forwarded: impl IntoIterator<Item = &'a [u8]>,
    trusted: impl Fn(IpAddr) -> bool,
) -> Option<IpAddr> {
    let xff = walk(x_forwarded_for, xff_nodes, &trusted);
    let fwd = walk(forwarded, forwarded_nodes, &trusted);
    match (xff, fwd) {
        (Walk::Absent, Walk::Absent) => None,
        (Walk::Client(ip), Walk::Absent) | (Walk::Absent, Walk::Client(ip)) => Some(ip),
        (Walk::Client(a), Walk::Client(b)) => (a == b).then_some(a),
        _ => None,
    }
}

/// What one header says.
#[derive(Debug, PartialEq, Eq)]
enum Walk {
    Absent,
    Client(IpAddr),
    /// Present, but the chain breaks before a client (a non-address entry).
    Unknown,
}

/// The nodes of all of a header's lines, left to right; None for an entry that is not an address.
fn walk<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
    nodes: fn(&str, &mut Vec<Option<IpAddr>>),
    trusted: impl Fn(IpAddr) -> bool,
) -> Walk {
    let mut all = Vec::new();
    for line in lines {
        match std::str::from_utf8(line) {
            Ok(text) => nodes(text, &mut all),
            Err(_) => all.push(None),
        }
    }
    let Some(leftmost) = all.first().copied() else {
        return Walk::Absent;
    };
    for node in all.iter().rev() {
        match node {
            None => return Walk::Unknown,
            Some(ip) if trusted(*ip) => continue,
            Some(ip) => return Walk::Client(*ip),
        }
    }
    leftmost.map_or(Walk::Unknown, Walk::Client)
}

/// `1.2.3.4, 2001:db8::1, [2001:db8::2]:443, 5.6.7.8:80`; empty entries (`a,,b`) are skipped.
fn xff_nodes(text: &str, out: &mut Vec<Option<IpAddr>>) {
    out.extend(
        text.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(node),
    );
}

/// `for=1.2.3.4;proto=https, for="[2001:db8::1]:443";by=...`: each element's `for` (an element without one
/// names no client).
fn forwarded_nodes(text: &str, out: &mut Vec<Option<IpAddr>>) {
    for element in split_outside_quotes(text, ',') {
        if element.trim().is_empty() {
            continue;
        }
        let value = split_outside_quotes(element, ';').find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("for")
                .then(|| unquote(value.trim()))
        });
        out.push(value.and_then(|v| node(&v)));
    }
}

/// An address, with or without a port, IPv6 with or without brackets.
fn node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// Splits at `sep` where it is not inside a quoted string.
fn split_outside_quotes(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter()
}

/// A token as is; a quoted string without its quotes and escapes.
fn unquote(s: &str) -> String {
    let Some(inner) = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return s.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// 10.0.0.0/8 and 2001:db8:ffff::/48 are the proxies.
    fn trusted(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => v4.octets()[0] == 10,
            IpAddr::V6(v6) => v6.segments()[..3] == [0x2001, 0xdb8, 0xffff],
        }
    }

    fn xff(lines: &[&str]) -> Option<IpAddr> {
        client(lines.iter().map(|l| l.as_bytes()), [], trusted)
    }

    fn fwd(lines: &[&str]) -> Option<IpAddr> {
        client([], lines.iter().map(|l| l.as_bytes()), trusted)
    }

    #[test]
    fn x_forwarded_for_right_most_untrusted() {
        assert_eq!(xff(&[]), None);
        assert_eq!(xff(&["203.0.113.7"]), Some(ip("203.0.113.7")));
        // The client claimed 1.1.1.1; our balancer appended what it saw; an inner proxy is trusted.
        assert_eq!(
            xff(&["1.1.1.1, 203.0.113.7, 10.1.2.3"]),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            xff(&["1.1.1.1", "203.0.113.7,10.1.2.3"]),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            xff(&["10.0.0.5, 10.0.0.6"]),
            Some(ip("10.0.0.5")),
            "all trusted"
        );
        assert_eq!(xff(&["198.51.100.1:4711"]), Some(ip("198.51.100.1")));
        assert_eq!(xff(&["[2001:db8::1]:443"]), Some(ip("2001:db8::1")));
        assert_eq!(
            xff(&["2001:db8::1 , 2001:db8:ffff::9"]),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(xff(&["1.1.1.1,,203.0.113.7,"]), Some(ip("203.0.113.7")));
    }

    #[test]
    fn a_non_address_ends_the_walk() {
        assert_eq!(xff(&["203.0.113.7, unknown, 10.0.0.1"]), None);
        assert_eq!(xff(&["203.0.113.7, garbage"]), None);
        assert_eq!(xff(&["unknown, 203.0.113.7"]), Some(ip("203.0.113.7")));
        assert_eq!(client([&b"\xff\xfe"[..]], [], trusted), None, "not UTF-8");
    }

    #[test]
    fn forwarded_for() {
        assert_eq!(
            fwd(&["for=192.0.2.60;proto=http;by=203.0.113.43"]),
            Some(ip("192.0.2.60"))
        );
        assert_eq!(
            fwd(&["For=\"[2001:db8:cafe::17]:4711\""]),
            Some(ip("2001:db8:cafe::17"))
        );
        assert_eq!(
            fwd(&["for=192.0.2.43, for=198.51.100.17;by=\"a,b;c\", for=10.0.0.1"]),
            Some(ip("198.51.100.17"))
        );
        assert_eq!(
            fwd(&["for=192.0.2.43", "for=10.9.9.9"]),
            Some(ip("192.0.2.43"))
        );
        assert_eq!(fwd(&["for=_hidden, for=10.0.0.1"]), None);
        assert_eq!(fwd(&["for=unknown"]), None);
        assert_eq!(fwd(&["proto=https;by=10.0.0.1"]), None, "no for=");
        assert_eq!(fwd(&["for=\"192.0.2.\\60\""]), Some(ip("192.0.2.60")));
    }

    #[test]
    fn both_headers_must_agree() {
        let both = |x: &str, f: &str| client([x.as_bytes()], [f.as_bytes()], trusted);
        assert_eq!(
            both("203.0.113.7", "for=203.0.113.7"),
            Some(ip("203.0.113.7"))
        );
        // One of them was written by the client: which, we cannot tell.
        assert_eq!(both("203.0.113.7", "for=198.51.100.1"), None);
        // A header that names no client does not make the other believable.
        assert_eq!(both("203.0.113.7", "for=unknown"), None);
        assert_eq!(both("garbage", "for=198.51.100.1"), None);
    }
}
