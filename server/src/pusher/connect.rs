//! The connect URL: `/app/{key}?protocol=7&client=js&version=8.4.0`. What it may be refused for has its
//! own code (sent as `pusher:error`, then the close), so that the client knows not to retry.

use super::error::ErrorCode;
use super::limits::{PROTOCOL_MIN, PROTOCOL_VERSION};

/// Longest app key read from a URL; any longer names no app.
const KEY_MAX: usize = 64;

/// What a connect URL asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub key: String,
    pub protocol: u32,
    /// The client library and its version, for logs (`client=js&version=8.4.0`).
    pub client: Option<String>,
    pub version: Option<String>,
}

/// Whether a request path is for the Pusher door (the WebSocket route recognises it before anything else).
pub fn is_pusher_path(path: &str) -> bool {
    path.starts_with("/app/")
}

/// Reads `path` (without the query) and `query` (without `?`).
pub fn parse_connect(path: &str, query: Option<&str>) -> Result<Connect, ErrorCode> {
    let key = path
        .strip_prefix("/app/")
        .filter(|k| !k.is_empty() && !k.contains('/'))
        .ok_or(ErrorCode::PathNotFound)?;
    if key.len() > KEY_MAX
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ErrorCode::AppDoesNotExist);
    }
    let (mut protocol, mut client, mut version) = (None, None, None);
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let short = |v: &str| v.chars().take(KEY_MAX).collect::<String>();
        match k {
            "protocol" => protocol = Some(v),
            "client" => client = Some(short(v)),
            "version" => version = Some(short(v)),
            _ => {}
        }
    }
    let protocol: u32 = protocol
        .ok_or(ErrorCode::NoProtocol)?
        .parse()
        .map_err(|_| ErrorCode::InvalidVersion)?;
    if !(PROTOCOL_MIN..=PROTOCOL_VERSION).contains(&protocol) {
        return Err(ErrorCode::UnsupportedProtocol);
    }
    Ok(Connect {
        key: key.to_owned(),
        protocol,
        client,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_pusher_js_sends() {
        assert_eq!(
            parse_connect(
                "/app/app-key",
                Some("protocol=7&client=js&version=8.4.0&flash=false")
            ),
            Ok(Connect {
                key: "app-key".into(),
                protocol: 7,
                client: Some("js".into()),
                version: Some("8.4.0".into()),
            })
        );
        assert!(is_pusher_path("/app/x"));
        assert!(!is_pusher_path("/ws/1"));
    }

    #[test]
    fn each_refusal_has_its_code() {
        assert_eq!(
            parse_connect("/app/", Some("protocol=7")),
            Err(ErrorCode::PathNotFound)
        );
        assert_eq!(
            parse_connect("/app/k/x", Some("protocol=7")),
            Err(ErrorCode::PathNotFound)
        );
        assert_eq!(
            parse_connect("/apps/k", Some("protocol=7")),
            Err(ErrorCode::PathNotFound)
        );
        assert_eq!(parse_connect("/app/k", None), Err(ErrorCode::NoProtocol));
        assert_eq!(
            parse_connect("/app/k", Some("client=js")),
            Err(ErrorCode::NoProtocol)
        );
        assert_eq!(
            parse_connect("/app/k", Some("protocol=seven")),
            Err(ErrorCode::InvalidVersion)
        );
        assert_eq!(
            parse_connect("/app/k", Some("protocol=4")),
            Err(ErrorCode::UnsupportedProtocol)
        );
        assert_eq!(
            parse_connect("/app/k", Some("protocol=8")),
            Err(ErrorCode::UnsupportedProtocol)
        );
        // pysher still asks for 6.
        assert_eq!(
            parse_connect("/app/k", Some("protocol=6"))
                .unwrap()
                .protocol,
            6
        );
        assert_eq!(
            parse_connect("/app/k%20", Some("protocol=7")),
            Err(ErrorCode::AppDoesNotExist)
        );
        assert_eq!(
            parse_connect(&format!("/app/{}", "k".repeat(65)), Some("protocol=7")),
            Err(ErrorCode::AppDoesNotExist)
        );
        let long = format!("protocol=7&client={}", "c".repeat(1000));
        assert_eq!(
            parse_connect("/app/k", Some(&long))
                .unwrap()
                .client
                .unwrap()
                .len(),
            64
        );
    }
}
