//! Signed HTTP API requests (`POST /apps/{id}/events` and the rest): the query carries `auth_key`,
//! `auth_timestamp`, `auth_version=1.0`, `body_md5` (hex MD5 of a request's body) and `auth_signature`,
//! the hex HMAC-SHA256 under the app's secret of
//!
//! ```text
//! METHOD\nPATH\nQUERY
//! ```
//!
//! where QUERY is every parameter but `auth_signature`, decoded, keys lowercased, sorted by key and joined
//! as `k=v` with `&`, without escaping (Pusher's wording: "auth_key=foo&name=Something else"). The libraries
//! send values as they signed them (Node) or URL-encoded (PHP's `http_build_query`), so they are decoded
//! (`%XX`, and `+` as a space) before the string is made.
//!
//! The request is only read here; the app's key and secrets, and the clock, are passed in.

use md5::{Digest, Md5};
use thiserror::Error;

use super::limits::API_TIMESTAMP_WINDOW_SECS;
use super::sign::{hex, hmac_hex, matches_any};

/// Parameters a caller may not set themselves: the signature's own.
const RESERVED: &[&str] = &[
    "auth_key",
    "auth_timestamp",
    "auth_version",
    "auth_signature",
    "body_md5",
];

/// Why a signed request was refused. All of them are "unauthorized" to the client except
/// [`ApiAuthError::MalformedQuery`], a request no library makes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApiAuthError {
    #[error("The query string could not be read: {0}")]
    MalformedQuery(&'static str),
    #[error("Missing parameter {0}")]
    Missing(&'static str),
    #[error("Unsupported auth_version (only 1.0)")]
    Version,
    #[error("auth_timestamp is not a number")]
    Timestamp,
    #[error("Timestamp expired: {0} seconds from the server's time, at most 600")]
    Expired(i64),
    #[error("body_md5 does not match the body")]
    BodyMd5,
    #[error("Invalid auth_key")]
    WrongKey,
    #[error("Invalid signature")]
    Signature,
}

/// A request as the HTTP door received it.
#[derive(Debug, Clone, Copy)]
pub struct ApiRequest<'a> {
    pub method: &'a str,
    /// The path alone, as sent (`/apps/3/events`).
    pub path: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    pub body: &'a [u8],
}

/// A checked request's parameters other than the signature's own, decoded, keys lowercased.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Hex MD5 of a body, as `body_md5` carries it.
pub fn body_md5(body: &[u8]) -> String {
    hex(&Md5::digest(body))
}

/// The decoded parameters of a query string, keys lowercased, sorted by key. A key given twice is refused:
/// the signature would cover one reading of it and the handler could act on another.
pub fn parse_query(query: &str) -> Result<Vec<(String, String)>, ApiAuthError> {
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode(k)?.to_ascii_lowercase();
        let v = decode(v)?;
        if params.iter().any(|(have, _)| *have == k) {
            return Err(ApiAuthError::MalformedQuery("a parameter is given twice"));
        }
        params.push((k, v));
    }
    params.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(params)
}

/// `%XX` and `+` decoded; the result must be UTF-8.
fn decode(s: &str) -> Result<String, ApiAuthError> {
    let bad = ApiAuthError::MalformedQuery("bad percent-encoding");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16));
                let lo = bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(bad);
                };
                out.push((hi * 16 + lo) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiAuthError::MalformedQuery("not UTF-8"))
}

/// `METHOD\nPATH\nk=v&k=v` over `params` (sorted, `auth_signature` left out).
pub fn string_to_sign(method: &str, path: &str, params: &[(String, String)]) -> String {
    let query: Vec<String> = params
        .iter()
        .filter(|(k, _)| k != "auth_signature")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{}\n{path}\n{}",
        method.to_ascii_uppercase(),
        query.join("&")
    )
}

/// Checks a request against the app's `key` and each of its `secrets` at `now` (unix seconds): the
/// version, the timestamp's window, the body's MD5, the key and the signature, every secret tried. Returns
/// the other parameters.
pub fn verify<S: AsRef<str>>(
    req: &ApiRequest<'_>,
    key: &str,
    secrets: &[S],
    now: i64,
) -> Result<Params, ApiAuthError> {
    let params = parse_query(req.query)?;
    let get = |name: &'static str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or(ApiAuthError::Missing(name))
    };
    let given_key = get("auth_key")?;
    let signature = get("auth_signature")?;
    if get("auth_version")? != "1.0" {
        return Err(ApiAuthError::Version);
    }
    let timestamp: i64 = get("auth_timestamp")?
        .parse()
        .map_err(|_| ApiAuthError::Timestamp)?;
    let skew = now.saturating_sub(timestamp);
    if skew.saturating_abs() > API_TIMESTAMP_WINDOW_SECS {
        return Err(ApiAuthError::Expired(skew));
    }
    match (get("body_md5"), req.body.is_empty()) {
        (Ok(given), _) if given != body_md5(req.body) => return Err(ApiAuthError::BodyMd5),
        (Err(_), false) => return Err(ApiAuthError::Missing("body_md5")),
        _ => {}
    }
    let signed = string_to_sign(req.method, req.path, &params);
    // The signature is checked even when the key is wrong, so both failures cost the same work.
    let sig_ok = matches_any(secrets, signed.as_bytes(), signature);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        given_key.as_bytes(),
        key.as_bytes(),
    )) {
        return Err(ApiAuthError::WrongKey);
    }
    if !sig_ok {
        return Err(ApiAuthError::Signature);
    }
    Ok(Params(
        params
            .into_iter()
            .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
            .collect(),
    ))
}

/// The signed query string a client sends (what the `pusher` libraries make): for tests and for tools.
pub fn sign(
    req: &ApiRequest<'_>,
    key: &str,
    secret: &str,
    timestamp: i64,
    params: &[(&str, &str)],
) -> String {
    let mut all: Vec<(String, String)> = vec![
        ("auth_key".into(), key.into()),
        ("auth_timestamp".into(), timestamp.to_string()),
        ("auth_version".into(), "1.0".into()),
    ];
    if !req.body.is_empty() {
        all.push(("body_md5".into(), body_md5(req.body)));
    }
    all.extend(
        params
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned())),
    );
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let signature = hmac_hex(
        secret.as_bytes(),
        string_to_sign(req.method, req.path, &all).as_bytes(),
    );
    let query: Vec<String> = all.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{}&auth_signature={signature}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";
    const NOW: i64 = 1353088179;
    const BODY: &str = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;

    fn post(query: &str) -> ApiRequest<'_> {
        ApiRequest {
            method: "POST",
            path: "/apps/3/events",
            query,
            body: BODY.as_bytes(),
        }
    }

    /// Pusher's documented example (the HTTP API reference, "Worked authentication example"), which the
    /// npm `pusher` library 5.3.4 reproduces byte for byte with the clock set to its timestamp.
    const DOC_QUERY: &str = "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";

    #[test]
    fn the_documented_worked_example() {
        assert_eq!(
            body_md5(BODY.as_bytes()),
            "ec365a775a4cd0599faeb73354201b6f"
        );
        let params = parse_query(DOC_QUERY).unwrap();
        assert_eq!(
            string_to_sign("POST", "/apps/3/events", &params),
            "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
        );
        assert_eq!(
            verify(&post(DOC_QUERY), KEY, &[SECRET], NOW),
            Ok(Params::default())
        );
        assert_eq!(sign(&post(""), KEY, SECRET, NOW, &[]), DOC_QUERY);
    }

    /// `GET /apps/3/channels?filter_by_prefix=presence-&info=user_count`, signed by the npm `pusher`
    /// library 5.3.4 (`createSignedQueryString`, clock at 1353088179).
    #[test]
    fn a_get_with_parameters_from_the_pusher_library() {
        let query = "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&filter_by_prefix=presence-&info=user_count&auth_signature=16819168891cb5dfd72b5c7a5d3d602605b26c6ba1930033b5e2eeeb65010291";
        let req = ApiRequest {
            method: "GET",
            path: "/apps/3/channels",
            query,
            body: b"",
        };
        let params = verify(&req, KEY, &[SECRET], NOW).unwrap();
        assert_eq!(params.get("filter_by_prefix"), Some("presence-"));
        assert_eq!(params.get("info"), Some("user_count"));
        assert_eq!(
            params.get("auth_key"),
            None,
            "the signature's own are left out"
        );
        // The same request URL-encoded (as PHP sends it) and with an upper-case key reads the same.
        let encoded = query
            .replace("presence-", "presence%2D")
            .replace("info=", "INFO=");
        let req = ApiRequest {
            query: &encoded,
            ..req
        };
        assert!(verify(&req, KEY, &[SECRET], NOW).is_ok());
        assert_eq!(
            sign(
                &req,
                KEY,
                SECRET,
                NOW,
                &[("filter_by_prefix", "presence-"), ("info", "user_count")]
            ),
            query
        );
    }

    #[test]
    fn every_part_is_checked() {
        let ok = |q: &str, now: i64| verify(&post(q), KEY, &[SECRET], now);
        assert!(ok(DOC_QUERY, NOW + 600).is_ok());
        assert!(ok(DOC_QUERY, NOW - 600).is_ok());
        assert_eq!(ok(DOC_QUERY, NOW + 601), Err(ApiAuthError::Expired(601)));
        assert_eq!(ok(DOC_QUERY, NOW - 601), Err(ApiAuthError::Expired(-601)));
        assert_eq!(
            verify(&post(DOC_QUERY), KEY, &["other"], NOW),
            Err(ApiAuthError::Signature)
        );
        assert!(verify(&post(DOC_QUERY), KEY, &["other", SECRET], NOW).is_ok());
        assert_eq!(
            verify(&post(DOC_QUERY), KEY, &[] as &[&str], NOW),
            Err(ApiAuthError::Signature)
        );
        assert_eq!(
            verify(&post(DOC_QUERY), "another-app", &[SECRET], NOW),
            Err(ApiAuthError::WrongKey)
        );
        let other_body = ApiRequest {
            body: b"{}",
            ..post(DOC_QUERY)
        };
        assert_eq!(
            verify(&other_body, KEY, &[SECRET], NOW),
            Err(ApiAuthError::BodyMd5)
        );
        let no_md5 = DOC_QUERY.replace("&body_md5=ec365a775a4cd0599faeb73354201b6f", "");
        assert_eq!(ok(&no_md5, NOW), Err(ApiAuthError::Missing("body_md5")));
        assert_eq!(
            ok(&DOC_QUERY.replace("1.0", "2.0"), NOW),
            Err(ApiAuthError::Version)
        );
        assert_eq!(
            ok(
                &DOC_QUERY.replace("auth_timestamp=1353088179", "auth_timestamp=soon"),
                NOW
            ),
            Err(ApiAuthError::Timestamp)
        );
        assert_eq!(
            ok(&DOC_QUERY.replace("auth_key=", "key="), NOW),
            Err(ApiAuthError::Missing("auth_key"))
        );
        assert_eq!(
            ok(&DOC_QUERY.replace("&auth_signature", "&sig"), NOW),
            Err(ApiAuthError::Missing("auth_signature"))
        );
        // A parameter added after signing changes the string: refused.
        assert_eq!(
            ok(&format!("{DOC_QUERY}&socket_id=1.1"), NOW),
            Err(ApiAuthError::Signature)
        );
        // The method and the path are signed too.
        let get = ApiRequest {
            method: "PUT",
            ..post(DOC_QUERY)
        };
        assert_eq!(
            verify(&get, KEY, &[SECRET], NOW),
            Err(ApiAuthError::Signature)
        );
        let path = ApiRequest {
            path: "/apps/4/events",
            ..post(DOC_QUERY)
        };
        assert_eq!(
            verify(&path, KEY, &[SECRET], NOW),
            Err(ApiAuthError::Signature)
        );
    }

    #[test]
    fn hostile_queries() {
        for bad in ["a=%", "a=%4", "a=%zz", "a=%ff", "a=1&a=2", "A=1&a=2"] {
            assert!(
                matches!(parse_query(bad), Err(ApiAuthError::MalformedQuery(_))),
                "{bad}"
            );
        }
        assert_eq!(
            parse_query("b=x+y&a=%C3%A9&&c").unwrap(),
            vec![
                ("a".to_owned(), "é".to_owned()),
                ("b".to_owned(), "x y".to_owned()),
                ("c".to_owned(), String::new()),
            ]
        );
        assert_eq!(
            verify(&post(""), KEY, &[SECRET], NOW),
            Err(ApiAuthError::Missing("auth_key"))
        );
        // A timestamp far in the past cannot overflow the window check.
        let q = DOC_QUERY.replace("1353088179", &i64::MIN.to_string());
        assert!(matches!(
            verify(&post(&q), KEY, &[SECRET], i64::MAX),
            Err(ApiAuthError::Expired(_))
        ));
    }
}
