//! Dashboard sessions: an HS256 JWT in an HttpOnly, SameSite=Strict cookie, signed with a secret derived from
//! the master key (so every node that can open tenants' keys agrees on sessions). Changing the password ends
//! every other session: the token carries a stamp of the password hash that must still match. Logging out
//! ends the session on the server too: its random `sid` is stored until the token would have expired, and a
//! token whose `sid` is stored is refused (a copied cookie does not outlive the logout).
//!
//! CSRF: besides SameSite=Strict, every state-changing request must carry the header `X-Halley-CSRF` equal
//! to the token's `csrf` claim (handed to the page in the login answer and by `GET /me`, never in a cookie),
//! and an `Origin` header, when present, must name this server.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::Api;
use crate::front::http::Scheme;
use crate::ids::DevId;
use crate::tenant::unix_now;
use crate::tenant::{Account, AccountError};

pub(super) const SESSION_COOKIE: &str = "halley_session";
pub(super) const CSRF_HEADER: &str = "x-halley-csrf";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Claims {
    /// The tenant's dev_id.
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    /// The anti-CSRF token that state-changing requests echo in `X-Halley-CSRF`.
    pub csrf: String,
    /// A stamp of the password hash at login: a password change invalidates older sessions.
    pub pwd: String,
    /// This session's id: logout records it as ended.
    pub sid: String,
}

pub(super) struct SessionKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    lifetime_secs: i64,
    /// `dashboard.secure_cookies`: every cookie `Secure`, for TLS terminated by a proxy in front.
    always_secure: bool,
}

/// Whether this request's cookie is marked `Secure` (sent back over HTTPS only): it came over this
/// server's own TLS, or the configuration says browsers always use HTTPS.
#[derive(Debug, Clone, Copy)]
pub(super) struct SecureCookie(pub bool);

impl FromRequestParts<Api> for SecureCookie {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        api: &Api,
    ) -> Result<SecureCookie, Self::Rejection> {
        let tls = parts.extensions.get::<Scheme>() == Some(&Scheme::Https);
        Ok(SecureCookie(api.sessions().always_secure || tls))
    }
}

fn random_token() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// A digest of the stored password hash: enough to notice a change, useless for guessing the password.
fn password_stamp(account: &Account) -> String {
    let digest = Sha256::digest(account.password_hash.as_deref().unwrap_or("").as_bytes());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

impl SessionKeys {
    pub(super) fn new(secret: &[u8; 32], lifetime_hours: u64, always_secure: bool) -> SessionKeys {
        SessionKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            lifetime_secs: (lifetime_hours * 3600) as i64,
            always_secure,
        }
    }

    /// A new session for the account: the claims and the `Set-Cookie` value.
    pub(super) fn issue(
        &self,
        account: &Account,
        secure: SecureCookie,
    ) -> Result<(Claims, HeaderValue), ApiError> {
        let now = unix_now();
        let claims = Claims {
            sub: account.dev_id.0.to_string(),
            iat: now,
            exp: now + self.lifetime_secs,
            csrf: random_token(),
            pwd: password_stamp(account),
            sid: random_token(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| {
            tracing::error!(error = %e, "could not sign a dashboard session");
            ApiError::internal()
        })?;
        Ok((claims, set_cookie(&token, self.lifetime_secs, secure)))
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub(super) fn clear(&self, secure: SecureCookie) -> HeaderValue {
        set_cookie("", 0, secure)
    }

    pub(super) fn decode(&self, token: &str) -> Result<Claims, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => {
                Err(ApiError::session_expired())
            }
            // A forged, truncated or old-secret token: the same as no session, without saying why.
            Err(_) => Err(ApiError::not_logged_in()),
        }
    }
}

/// The session cookie's `Set-Cookie` value.
fn set_cookie(value: &str, max_age: i64, SecureCookie(secure): SecureCookie) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&text).expect("cookie text is ASCII without control characters")
}

/// The session cookie's value, when the request carries one.
pub(super) fn session_token(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE)
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v)
}

pub(super) fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A browser sends `Origin` with every state-changing fetch; it must name the host the request was sent to,
/// and over this server's TLS an https page (over plain HTTP either: a TLS-terminating proxy's pages are
/// https). No `Origin` (a script, curl) is allowed: such a caller can set any header it likes anyway.
pub(super) fn check_origin(headers: &HeaderMap, scheme: Option<Scheme>) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let tls = scheme == Some(Scheme::Https);
    let authority = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .filter(|(origin_scheme, _)| !tls || origin_scheme.eq_ignore_ascii_case("https"))
        .map(|(_, rest)| rest);
    match authority {
        Some(a) if !host.is_empty() && a.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(ApiError::csrf("it came from another site")),
    }
}

/// A logged-in owner. Extracting it checks the session cookie, and for state-changing methods the CSRF
/// header; the tenant must still exist with the password the session was issued for.
pub(super) struct Owner {
    pub dev_id: DevId,
    pub account: Account,
    pub claims: Claims,
}

impl FromRequestParts<Api> for Owner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Owner, ApiError> {
        let token = cookie(&parts.headers, SESSION_COOKIE).ok_or_else(ApiError::not_logged_in)?;
        let claims = api.sessions().decode(token)?;
        if api.ctx().tenants.session_ended(&claims.sid).await? {
            return Err(ApiError::not_logged_in());
        }
        if is_state_changing(&parts.method) {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .map(HeaderValue::as_bytes)
                .unwrap_or(b"");
            if sent.is_empty() || !bool::from(sent.ct_eq(claims.csrf.as_bytes())) {
                return Err(ApiError::csrf("the anti-CSRF token is missing or wrong"));
            }
        }
        let dev_id = claims
            .sub
            .parse::<u64>()
            .map(DevId)
            .map_err(|_| ApiError::not_logged_in())?;
        let account = match api.ctx().tenants.account(dev_id).await {
            // The tenant is gone: its sessions with it.
            Err(AccountError::BadCredentials) => return Err(ApiError::not_logged_in()),
            other => other?,
        };
        if password_stamp(&account) != claims.pwd {
            return Err(ApiError::session_expired());
        }
        Ok(Owner {
            dev_id,
            account,
            claims,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Account {
        Account {
            dev_id: DevId(7),
            email: "a@example.com".into(),
            password_hash: Some("$argon2id$x".into()),
            created_at: 0,
            app_key: "0123456789abcdef0123".into(),
        }
    }

    #[test]
    fn cookie_attributes() {
        let keys = SessionKeys::new(&[1; 32], 12, false);
        let (claims, cookie) = keys.issue(&account(), SecureCookie(false)).unwrap();
        let text = cookie.to_str().unwrap();
        assert!(
            text.contains("HttpOnly; SameSite=Strict; Max-Age=43200"),
            "{text}"
        );
        assert!(!text.contains("Secure"));
        assert_eq!(claims.exp - claims.iat, 43200);
        let secure = keys.clear(SecureCookie(true));
        assert!(secure.to_str().unwrap().ends_with("Max-Age=0; Secure"));
        let (_, secure) = keys.issue(&account(), SecureCookie(true)).unwrap();
        assert!(secure.to_str().unwrap().ends_with("Max-Age=43200; Secure"));
    }

    #[test]
    fn tokens_round_trip_and_forgeries_fail() {
        let keys = SessionKeys::new(&[1; 32], 12, false);
        let (claims, cookie) = keys.issue(&account(), SecureCookie(false)).unwrap();
        let token = cookie
            .to_str()
            .unwrap()
            .split(['=', ';'])
            .nth(1)
            .unwrap()
            .to_owned();
        assert_eq!(keys.decode(&token).unwrap().csrf, claims.csrf);
        let other = SessionKeys::new(&[2; 32], 12, false);
        assert_eq!(other.decode(&token).unwrap_err().code, "not_logged_in");
        let expired = Claims {
            exp: unix_now() - 1,
            ..claims
        };
        let old = jsonwebtoken::encode(&Header::default(), &expired, &keys.encoding).unwrap();
        assert_eq!(keys.decode(&old).unwrap_err().code, "session_expired");
    }

    #[test]
    fn origin_must_name_this_host() {
        let (http, https) = (Some(Scheme::Http), Some(Scheme::Https));
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8087".parse().unwrap());
        assert!(check_origin(&h, http).is_ok());
        h.insert(header::ORIGIN, "http://127.0.0.1:8087".parse().unwrap());
        assert!(check_origin(&h, http).is_ok());
        assert!(check_origin(&h, https).is_err(), "an http page over TLS");
        h.insert(header::ORIGIN, "https://127.0.0.1:8087".parse().unwrap());
        assert!(check_origin(&h, https).is_ok());
        assert!(
            check_origin(&h, http).is_ok(),
            "behind a TLS-terminating proxy"
        );
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(check_origin(&h, http).is_err());
        h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(check_origin(&h, https).is_err());
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(check_origin(&h, http).is_err());
    }
}
