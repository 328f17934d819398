//! The WebSocket opening handshake's request rules (RFC 6455 4.2.1), pure: the request's method, version
//! and header values in, the client's key or the rule it broke out. Header names are matched without
//! regard to case (the HTTP layer lowercases them); token lists (`Connection: keep-alive, Upgrade`) are
//! read as lists. What the RFC requires is refused when missing; nothing beyond it is asked for.

use base64::Engine as _;

/// What the handshake check needs of the upgrade request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UpgradeRequest<'a> {
    pub method: &'a str,
    /// HTTP/1.1 or later (RFC 6455 4.1: "HTTP/1.1 or higher").
    pub http11: bool,
    /// Every header line as (lowercase name, raw value), repeated names repeated.
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// The rule an upgrade request broke, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// No `Upgrade: websocket` or no `Connection: upgrade`: not a WebSocket handshake at all.
    #[error("This is a WebSocket endpoint: connect with a WebSocket client.")]
    NotUpgrade,
    #[error("A WebSocket handshake is a GET request.")]
    Method,
    #[error("A WebSocket handshake needs HTTP/1.1.")]
    Http10,
    #[error("A WebSocket handshake needs one Host header.")]
    Host,
    /// Missing, repeated or other than 13: answered with 426 and the version we speak.
    #[error("Only WebSocket version 13 is supported.")]
    Version,
    #[error("Sec-WebSocket-Key must be the base64 encoding of 16 bytes, sent once.")]
    Key,
}

/// A request that passed: the client's key (for `Sec-WebSocket-Accept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Handshake<'a> {
    pub key: &'a str,
}

/// Checks an upgrade request against RFC 6455 4.2.1.
pub(crate) fn check<'a>(req: &UpgradeRequest<'a>) -> Result<Handshake<'a>, HandshakeError> {
    let values = |name: &'static str| {
        req.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    if !has_token(values("upgrade"), "websocket") || !has_token(values("connection"), "upgrade") {
        return Err(HandshakeError::NotUpgrade);
    }
    if req.method != "GET" {
        return Err(HandshakeError::Method);
    }
    if !req.http11 {
        return Err(HandshakeError::Http10);
    }
    let one = |name| {
        let mut all = values(name);
        match (all.next(), all.next()) {
            (Some(v), None) => std::str::from_utf8(v).ok().map(str::trim),
            _ => None,
        }
    };
    if one("host").is_none_or(str::is_empty) {
        return Err(HandshakeError::Host);
    }
    if one("sec-websocket-version") != Some("13") {
        return Err(HandshakeError::Version);
    }
    match one("sec-websocket-key") {
        Some(key) if valid_key(key) => Ok(Handshake { key }),
        _ => Err(HandshakeError::Key),
    }
}

/// Whether a comma-separated header list (over any number of lines) holds `token`, case-insensitively.
/// For `Upgrade`, a protocol with a version (`websocket/13`) is not `websocket`.
pub(crate) fn has_token<'a>(values: impl IntoIterator<Item = &'a [u8]>, token: &str) -> bool {
    values
        .into_iter()
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// `Sec-WebSocket-Key`: the base64 (with padding) of 16 bytes, so 24 characters.
pub(crate) fn valid_key(key: &str) -> bool {
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|k| k.len() == 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn good() -> Vec<(&'static str, &'static [u8])> {
        vec![
            ("host", b"example.com"),
            ("upgrade", b"websocket"),
            ("connection", b"Upgrade"),
            ("sec-websocket-key", KEY.as_bytes()),
            ("sec-websocket-version", b"13"),
        ]
    }

    fn run(
        method: &str,
        http11: bool,
        headers: &[(&str, &[u8])],
    ) -> Result<String, HandshakeError> {
        check(&UpgradeRequest {
            method,
            http11,
            headers,
        })
        .map(|h| h.key.to_string())
    }

    fn with(name: &str, value: Option<&'static [u8]>) -> Vec<(&'static str, &'static [u8])> {
        let mut h: Vec<_> = good().into_iter().filter(|(n, _)| *n != name).collect();
        if let Some(v) = value {
            let name = good().into_iter().find(|(n, _)| *n == name).unwrap().0;
            h.push((name, v));
        }
        h
    }

    #[test]
    fn the_rfc_example_passes() {
        assert_eq!(run("GET", true, &good()), Ok(KEY.to_string()));
    }

    #[test]
    fn what_the_rfc_allows_is_accepted() {
        for (name, value) in [
            ("connection", &b"keep-alive, Upgrade"[..]),
            ("connection", b"UPGRADE"),
            ("connection", b"upgrade ,keep-alive"),
            ("upgrade", b"WebSocket"),
            ("upgrade", b"h2c, websocket"),
        ] {
            assert_eq!(
                run("GET", true, &with(name, Some(value))),
                Ok(KEY.to_string()),
                "{name}: {:?}",
                String::from_utf8_lossy(value)
            );
        }
        // Lists over several lines, mixed-case names, a key with surrounding whitespace.
        let mut h = with("connection", Some(b"keep-alive"));
        h.push(("Connection", b"Upgrade"));
        h.push(("X-Other", b"1"));
        assert!(run("GET", true, &h).is_ok());
        let h = with("sec-websocket-key", Some(b" AAAAAAAAAAAAAAAAAAAAAA== "));
        assert_eq!(run("GET", true, &h), Ok("AAAAAAAAAAAAAAAAAAAAAA==".into()));
    }

    #[test]
    fn not_an_upgrade() {
        use HandshakeError::NotUpgrade;
        assert_eq!(run("GET", true, &with("upgrade", None)), Err(NotUpgrade));
        assert_eq!(run("GET", true, &with("connection", None)), Err(NotUpgrade));
        for (name, value) in [
            ("upgrade", &b"websocket/13"[..]),
            ("upgrade", b"h2c"),
            ("connection", b"keep-alive"),
            ("connection", b"upgraded"),
        ] {
            assert_eq!(run("GET", true, &with(name, Some(value))), Err(NotUpgrade));
        }
        assert_eq!(run("POST", true, &with("upgrade", None)), Err(NotUpgrade));
    }

    #[test]
    fn method_version_and_host() {
        for method in ["POST", "PUT", "HEAD", "get", "OPTIONS"] {
            assert_eq!(
                run(method, true, &good()),
                Err(HandshakeError::Method),
                "{method}"
            );
        }
        assert_eq!(run("GET", false, &good()), Err(HandshakeError::Http10));
        assert_eq!(
            run("GET", true, &with("host", None)),
            Err(HandshakeError::Host)
        );
        assert_eq!(
            run("GET", true, &with("host", Some(b" "))),
            Err(HandshakeError::Host)
        );
        let mut two = good();
        two.push(("host", b"other.example"));
        assert_eq!(run("GET", true, &two), Err(HandshakeError::Host));
    }

    #[test]
    fn websocket_version() {
        for v in [
            None,
            Some(&b"8"[..]),
            Some(b"12"),
            Some(b"13, 8"),
            Some(b""),
        ] {
            assert_eq!(
                run("GET", true, &with("sec-websocket-version", v)),
                Err(HandshakeError::Version),
                "{v:?}"
            );
        }
        let mut two = good();
        two.push(("sec-websocket-version", b"13"));
        assert_eq!(run("GET", true, &two), Err(HandshakeError::Version));
        assert!(run("GET", true, &with("sec-websocket-version", Some(b" 13 "))).is_ok());
    }

    #[test]
    fn websocket_key() {
        for k in [
            None,
            Some(&b""[..]),
            Some(b"not base64 at all!!!!!!!"),
            // 15 and 17 bytes.
            Some(b"AAAAAAAAAAAAAAAAAAAA"),
            Some(b"AAAAAAAAAAAAAAAAAAAAAAA="),
            Some(b"AAAAAAAAAAAAAAAAAAAAAAAA"),
            // 16 bytes without padding, or with a URL-safe alphabet.
            Some(b"AAAAAAAAAAAAAAAAAAAAAA"),
            Some(b"____________________AA=="),
        ] {
            assert_eq!(
                run("GET", true, &with("sec-websocket-key", k)),
                Err(HandshakeError::Key),
                "{:?}",
                k.map(String::from_utf8_lossy)
            );
        }
        let mut two = good();
        two.push(("sec-websocket-key", KEY.as_bytes()));
        assert_eq!(run("GET", true, &two), Err(HandshakeError::Key));
        assert!(valid_key("////////////////////AA=="));
        assert!(valid_key(KEY));
    }
}
