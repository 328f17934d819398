//! The comet-server connect URL: `/ws/sesion=KEY&myid=UID&devid=DEV&v=X.Y&uuid=...&api=js`.
//!
//! The reference reads it by position (the value after the n-th `=`); we read the same
//! parameters by name, in any order, percent-decoded, which every URL the JS API builds satisfies
//! and which does not break when a key contains `=`.

use thiserror::Error;

use super::names::parse_id;

/// Request-path prefixes that lead to the WebSocket endpoint.
pub const WS_PREFIXES: [&str; 4] = ["/ws", "//ws", "/comet-server/ws", "//comet-server/ws"];

/// Longest uuid kept (the JS API sends 32 characters).
pub const UUID_MAX: usize = 32;
/// Longest `api` value kept (the reference ignores it; we keep it for metrics).
pub const API_MAX: usize = 32;
/// Longest `msg_after` id (a uuid in its 36-character form).
pub const MSG_ID_MAX: usize = 36;

/// What a browser says about itself when it connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectParams {
    /// Hash or JWT to check; may be empty (`undefined` is read as empty).
    pub user_key: String,
    /// 0 = anonymous (also for a missing number, garbage or a value past i64::MAX).
    pub user_id: u64,
    /// Always > 0 and ≤ i64::MAX.
    pub dev_id: u64,
    /// (major, minor): "4.08" is (4, 8). Major < 4 selects the pre-4.0 frame format.
    pub api_version: (u32, u32),
    /// At most 32 characters of `[A-Za-z0-9_-]`, else empty.
    pub uuid: String,
    pub api: Option<String>,
    /// `msg_after`: `None` when absent (a legacy client: `msg` frames without `id`); `Some("")` when the
    /// client asks for ids but has processed none yet; else the id of the last private message it
    /// processed (a malformed one is kept as `-`, an id no message has: nothing can be replayed after it).
    pub msg_after: Option<String>,
}

/// Why a connect URL was refused; the reference still upgrades, sends one error frame built from
/// this (see `frames::url_error`) and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UrlError {
    #[error("Invalid request, session ID not found")]
    NoSession,
    #[error("Invalid request, the user ID can not be found")]
    NoUserId,
    #[error("Invalid request, no public key found [1]")]
    NoDevId,
    #[error("Invalid request Not assigned client api version")]
    NoApiVersion,
}

impl UrlError {
    pub fn code(self) -> u16 {
        match self {
            Self::NoSession | Self::NoUserId => 401,
            Self::NoDevId => 406,
            Self::NoApiVersion => 418,
        }
    }

    /// The reference's wording of the error, e.g. `Error code 401(Invalid request, session ID
    /// not found)`.
    pub fn error_text(self) -> String {
        format!("Error code {}({self})", self.code())
    }
}

/// True when the path (query included or not) addresses the WebSocket endpoint.
pub fn is_ws_path(path: &str) -> bool {
    params_part(path).is_some()
}

/// Reads the connect parameters from the request target (path + query, as received).
pub fn parse_connect_url(path_and_query: &str) -> Result<ConnectParams, UrlError> {
    let params = params_part(path_and_query).unwrap_or("");
    let mut found = Found::default();
    for pair in params.split('&') {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        let slot = match name {
            "sesion" => &mut found.sesion,
            "myid" => &mut found.myid,
            "devid" => &mut found.devid,
            "v" => &mut found.v,
            "uuid" => &mut found.uuid,
            "api" => &mut found.api,
            "msg_after" => &mut found.msg_after,
            _ => continue,
        };
        // The first occurrence wins, as the reference reads the first one it meets.
        if slot.is_none() {
            *slot = Some(value);
        }
    }

    let user_key = found
        .sesion
        .ok_or(UrlError::NoSession)
        .map(percent_decode)?;
    let user_key = if user_key == "undefined" {
        String::new()
    } else {
        user_key
    };
    let user_id = found
        .myid
        .ok_or(UrlError::NoUserId)
        .map(number)?
        .unwrap_or(0);
    let dev_id = found
        .devid
        .and_then(number)
        .filter(|&id| id > 0)
        .ok_or(UrlError::NoDevId)?;
    let api_version = found
        .v
        .and_then(|v| version(&percent_decode(v)))
        .ok_or(UrlError::NoApiVersion)?;
    Ok(ConnectParams {
        user_key,
        user_id,
        dev_id,
        api_version,
        uuid: found
            .uuid
            .map(|u| uuid(&percent_decode(u)))
            .unwrap_or_default(),
        api: found
            .api
            .map(|a| percent_decode(a).chars().take(API_MAX).collect()),
        msg_after: found.msg_after.map(|m| msg_id(&percent_decode(m))),
    })
}

#[derive(Default)]
struct Found<'a> {
    sesion: Option<&'a str>,
    myid: Option<&'a str>,
    devid: Option<&'a str>,
    v: Option<&'a str>,
    uuid: Option<&'a str>,
    api: Option<&'a str>,
    msg_after: Option<&'a str>,
}

/// The text after the WebSocket prefix and its `/` or `?` (or both), None when the path is not
/// a WebSocket path.
fn params_part(path: &str) -> Option<&str> {
    WS_PREFIXES.iter().find_map(|prefix| {
        let rest = path.strip_prefix(prefix)?;
        match rest.as_bytes().first() {
            None => Some(rest),
            Some(b'?') => Some(&rest[1..]),
            Some(b'/') => Some(rest[1..].strip_prefix('?').unwrap_or(&rest[1..])),
            Some(_) => None,
        }
    })
}

fn number(raw: &str) -> Option<u64> {
    parse_id(percent_decode(raw).trim())
}

fn version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.split_once('.').unwrap_or((v, "0"));
    let digits = |s: &str| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return None;
    }
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn uuid(raw: &str) -> String {
    let cut: String = raw.chars().take(UUID_MAX).collect();
    if cut.bytes().all(super::names::is_name_byte) {
        cut
    } else {
        String::new()
    }
}

fn msg_id(raw: &str) -> String {
    let well_formed =
        raw.len() <= MSG_ID_MAX && raw.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if well_formed {
        raw.to_ascii_lowercase()
    } else {
        "-".into()
    }
}

/// `%XX` decoding; a malformed escape stays as written, `+` stays `+` (hashes contain it), and
/// bytes that do not form UTF-8 become U+FFFD (the key then simply fails to authenticate).
pub fn percent_decode(raw: &str) -> String {
    if !raw.contains('%') {
        return raw.to_owned();
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match escaped {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "0123456789abcdef0123456789abcdef";

    fn ok(path: &str) -> ConnectParams {
        parse_connect_url(path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn js_params() -> ConnectParams {
        ConnectParams {
            user_key: "abc".into(),
            user_id: 5,
            dev_id: 15,
            api_version: (4, 8),
            uuid: UUID.into(),
            api: Some("js".into()),
            msg_after: None,
        }
    }

    #[test]
    fn msg_after_asks_for_ids_with_or_without_a_last_id() {
        let after = |q: &str| ok(&format!("/ws/sesion=a&myid=1&devid=2&v=4.08{q}")).msg_after;
        assert_eq!(after(""), None, "a legacy client");
        assert_eq!(after("&msg_after="), Some(String::new()));
        let id = "01890a5d-ac96-774b-bcce-b302099a8057";
        assert_eq!(after(&format!("&msg_after={id}")), Some(id.into()));
        assert_eq!(
            after("&msg_after=01890A5D-AC96-774B-BCCE-B302099A8057"),
            Some(id.into())
        );
        assert_eq!(after("&msg_after=%3Cscript%3E"), Some("-".into()));
        assert_eq!(after(&format!("&msg_after={id}0")), Some("-".into()));
    }

    #[test]
    fn every_prefix_and_query_form() {
        let q = format!("sesion=abc&myid=5&devid=15&v=4.08&uuid={UUID}&api=js");
        for prefix in WS_PREFIXES {
            for sep in ["/", "?", "/?"] {
                let path = format!("{prefix}{sep}{q}");
                assert!(is_ws_path(&path), "{path}");
                assert_eq!(ok(&path), js_params(), "{path}");
            }
        }
    }

    #[test]
    fn parameters_by_name_in_any_order() {
        let path = format!("/ws/api=js&uuid={UUID}&v=4.08&devid=15&myid=5&sesion=abc");
        assert_eq!(ok(&path), js_params());
        // Unknown and valueless parameters are ignored; the first occurrence wins.
        let path =
            format!("/ws/x=1&flag&sesion=abc&myid=5&myid=6&devid=15&v=4.08&uuid={UUID}&api=js");
        assert_eq!(ok(&path), js_params());
    }

    #[test]
    fn user_key_forms() {
        let key = |s: &str| ok(&format!("/ws/sesion={s}&myid=1&devid=2&v=4.08")).user_key;
        assert_eq!(key(""), "");
        assert_eq!(key("undefined"), "");
        assert_eq!(key("abc=="), "abc==");
        assert_eq!(key("abc%3D%3D"), "abc==");
        assert_eq!(key("a+b/c"), "a+b/c");
        assert_eq!(key("eyJh.eyJ1.sig-_"), "eyJh.eyJ1.sig-_");
        assert_eq!(key("%zz%4"), "%zz%4");
        assert_eq!(key("%C3%A9"), "é");
        assert_eq!(key("%FF"), "\u{FFFD}");
    }

    #[test]
    fn user_id_forms() {
        let uid = |s: &str| ok(&format!("/ws/sesion=k&myid={s}&devid=2&v=4.08")).user_id;
        assert_eq!(uid("42"), 42);
        assert_eq!(uid(""), 0);
        assert_eq!(uid("abc"), 0);
        assert_eq!(uid("-5"), 0);
        assert_eq!(uid("5x"), 0);
        assert_eq!(uid("undefined"), 0);
        assert_eq!(uid("9223372036854775807"), 9_223_372_036_854_775_807);
        assert_eq!(uid("9223372036854775808"), 0);
    }

    #[test]
    fn versions() {
        let v = |s: &str| parse_connect_url(&format!("/ws/sesion=&myid=1&devid=2&v={s}"));
        assert_eq!(v("4.08").map(|p| p.api_version), Ok((4, 8)));
        assert_eq!(v("3.25").map(|p| p.api_version), Ok((3, 25)));
        assert_eq!(v("4").map(|p| p.api_version), Ok((4, 0)));
        for bad in ["", "x", "4.", ".8", "4.x", "4.0.1", "-4.0", "99999999999.0"] {
            assert_eq!(v(bad), Err(UrlError::NoApiVersion), "{bad:?}");
        }
    }

    #[test]
    fn uuid_and_api() {
        let p = |s: &str| ok(&format!("/ws/sesion=&myid=1&devid=2&v=4.08&{s}"));
        assert_eq!(p("uuid=short").uuid, "short");
        assert_eq!(p(&format!("uuid={UUID}EXTRA")).uuid, UUID);
        assert_eq!(p("uuid=a b").uuid, "");
        assert_eq!(p("uuid=<script>").uuid, "");
        assert_eq!(p("").uuid, "");
        assert_eq!(p("").api, None);
        assert_eq!(p("api=js").api.as_deref(), Some("js"));
    }

    #[test]
    fn errors_in_reference_order() {
        let err = |s: &str| parse_connect_url(s).err();
        assert_eq!(err("/ws/"), Some(UrlError::NoSession));
        assert_eq!(err("/ws"), Some(UrlError::NoSession));
        assert_eq!(err("/ws/myid=1&devid=2&v=4.08"), Some(UrlError::NoSession));
        assert_eq!(err("/ws/sesion=a&devid=2&v=4.08"), Some(UrlError::NoUserId));
        assert_eq!(err("/ws/sesion=a&myid=1&v=4.08"), Some(UrlError::NoDevId));
        assert_eq!(
            err("/ws/sesion=a&myid=1&devid=0&v=4.08"),
            Some(UrlError::NoDevId)
        );
        assert_eq!(
            err("/ws/sesion=a&myid=1&devid=-3&v=4.08"),
            Some(UrlError::NoDevId)
        );
        assert_eq!(
            err("/ws/sesion=a&myid=1&devid=x&v=4.08"),
            Some(UrlError::NoDevId)
        );
        assert_eq!(
            err("/ws/sesion=a&myid=1&devid=2"),
            Some(UrlError::NoApiVersion)
        );
        assert_eq!(
            err("/ws/sesion=a&myid=1&devid=2&v="),
            Some(UrlError::NoApiVersion)
        );
    }

    #[test]
    fn error_codes_and_texts() {
        assert_eq!(UrlError::NoSession.code(), 401);
        assert_eq!(
            UrlError::NoSession.error_text(),
            "Error code 401(Invalid request, session ID not found)"
        );
        assert_eq!(UrlError::NoUserId.code(), 401);
        assert_eq!(
            UrlError::NoUserId.error_text(),
            "Error code 401(Invalid request, the user ID can not be found)"
        );
        assert_eq!(UrlError::NoDevId.code(), 406);
        assert_eq!(
            UrlError::NoDevId.error_text(),
            "Error code 406(Invalid request, no public key found [1])"
        );
        assert_eq!(UrlError::NoApiVersion.code(), 418);
        assert_eq!(
            UrlError::NoApiVersion.error_text(),
            "Error code 418(Invalid request Not assigned client api version)"
        );
    }

    #[test]
    fn ws_paths() {
        for yes in [
            "/ws",
            "/ws/",
            "/ws?",
            "//ws/x",
            "/comet-server/ws/a",
            "//comet-server/ws?a",
        ] {
            assert!(is_ws_path(yes), "{yes}");
        }
        for no in [
            "/",
            "/wsx",
            "/info",
            "/comet-server/info",
            "/comet-server/wsx",
            "ws/",
            "",
        ] {
            assert!(!is_ws_path(no), "{no}");
        }
    }

    #[test]
    fn random_input_never_panics() {
        use rand::{Rng, SeedableRng};
        let alphabet = "/ws?&=%.0123456789aAfF-_é+comet-server sesionmyiddevidvuuidapi".as_bytes();
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        for _ in 0..5000 {
            let len = rng.gen_range(0..80);
            let bytes: Vec<u8> = if rng.gen_bool(0.5) {
                (0..len)
                    .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                    .collect()
            } else {
                (0..len).map(|_| rng.gen()).collect()
            };
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_connect_url(&text);
            let _ = parse_connect_url(&format!("/ws/{text}"));
            let _ = is_ws_path(&text);
        }
    }
}
