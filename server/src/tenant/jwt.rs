//! Browser users' JWTs (docs/compatibility.md §4): HS256 only, signed with a tenant key followed by the decimal
//! dev_id, a numeric `exp` in the future, a numeric `nbf` (when present) not in the future, and a numeric `user_id`
//! equal to the connecting user's. `exp` and `nbf` have the same leeway: none.

use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::ids::{DevId, UserId};

/// Longest token considered; anything longer is not a token of ours.
pub(crate) const MAX_TOKEN_LEN: usize = 4096;

/// Looks like a JWT (three base64url parts) rather than a users_auth hash.
pub(crate) fn looks_like_jwt(key: &str) -> bool {
    key.len() <= MAX_TOKEN_LEN && key.split('.').count() == 3 && key.len() > 32
}

/// A valid token: the user it names and when it expires (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verified {
    pub user: UserId,
    pub exp: i64,
}

/// The user the token names, if it is valid for this tenant under one of `secret_keys`. `user` restricts it
/// to that user (browser login); None accepts any user (revoking a token).
pub(crate) fn verify(
    secret_keys: &[String],
    dev_id: DevId,
    token: &str,
    user: Option<UserId>,
) -> Option<UserId> {
    verify_claims(secret_keys, dev_id, token, user).map(|v| v.user)
}

/// As `verify`, with the token's expiry.
pub(crate) fn verify_claims(
    secret_keys: &[String],
    dev_id: DevId,
    token: &str,
    user: Option<UserId>,
) -> Option<Verified> {
    if !looks_like_jwt(token) {
        return None;
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 0;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp"]);
    for key in secret_keys {
        let secret = format!("{key}{}", dev_id.0);
        let Ok(data) = decode::<Value>(
            token,
            &DecodingKey::from_secret(secret.as_bytes()),
            &validation,
        ) else {
            continue;
        };
        // `exp` (and `nbf` when present) must be numbers: jsonwebtoken skips a claim it cannot parse, so a
        // string `nbf` would otherwise be no `nbf` at all. `user_id` a number equal to the URL's.
        let exp = data.claims.get("exp").filter(|v| v.is_number())?;
        if data.claims.get("nbf").is_some_and(|v| !v.is_number()) {
            return None;
        }
        let exp = exp
            .as_i64()
            .or_else(|| exp.as_f64().map(|f| f as i64))
            .unwrap_or(i64::MAX);
        let claimed = data
            .claims
            .get("user_id")
            .and_then(Value::as_u64)
            .filter(|&u| u > 0)?;
        return match user {
            Some(u) if u.0 != claimed => None,
            _ => Some(Verified {
                user: UserId(claimed),
                exp,
            }),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn token(alg: Algorithm, secret: &str, claims: Value) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn far() -> i64 {
        crate::tenant::unix_now() + 3600
    }

    #[test]
    fn accepts_only_a_valid_token_for_the_user() {
        let keys = vec!["k1".to_string(), "k2".to_string()];
        let ok = token(Algorithm::HS256, "k27", json!({"user_id": 5, "exp": far()}));
        assert_eq!(
            verify(&keys, DevId(7), &ok, Some(UserId(5))),
            Some(UserId(5))
        );
        assert_eq!(verify(&keys, DevId(7), &ok, None), Some(UserId(5)));
        assert_eq!(
            verify(&keys, DevId(7), &ok, Some(UserId(6))),
            None,
            "wrong user"
        );
        assert_eq!(
            verify(&keys, DevId(8), &ok, Some(UserId(5))),
            None,
            "other tenant"
        );
        let expired = token(Algorithm::HS256, "k17", json!({"user_id": 5, "exp": 1000}));
        assert_eq!(verify(&keys, DevId(7), &expired, Some(UserId(5))), None);
        let no_exp = token(Algorithm::HS256, "k17", json!({"user_id": 5}));
        assert_eq!(verify(&keys, DevId(7), &no_exp, Some(UserId(5))), None);
        let string_user = token(
            Algorithm::HS256,
            "k17",
            json!({"user_id": "5", "exp": far()}),
        );
        assert_eq!(verify(&keys, DevId(7), &string_user, Some(UserId(5))), None);
        let hs512 = token(Algorithm::HS512, "k17", json!({"user_id": 5, "exp": far()}));
        assert_eq!(verify(&keys, DevId(7), &hs512, Some(UserId(5))), None);
        let wrong_key = token(
            Algorithm::HS256,
            "other7",
            json!({"user_id": 5, "exp": far()}),
        );
        assert_eq!(verify(&keys, DevId(7), &wrong_key, Some(UserId(5))), None);
    }

    #[test]
    fn nbf_is_honoured_without_leeway_and_must_be_a_number() {
        let keys = vec!["k1".to_string()];
        let now = crate::tenant::unix_now();
        let at = |nbf: Value| {
            let t = token(
                Algorithm::HS256,
                "k17",
                json!({"user_id": 5, "exp": far(), "nbf": nbf}),
            );
            verify(&keys, DevId(7), &t, Some(UserId(5)))
        };
        assert_eq!(at(json!(now - 10)), Some(UserId(5)), "already valid");
        assert_eq!(at(json!(now)), Some(UserId(5)), "valid from now");
        assert_eq!(at(json!(now + 30)), None, "not yet valid");
        assert_eq!(at(json!((now + 30).to_string())), None, "string nbf");
        let t = token(
            Algorithm::HS256,
            "k17",
            json!({"user_id": 5, "exp": 2_000_000_000i64}),
        );
        let v = verify_claims(&keys, DevId(7), &t, Some(UserId(5))).unwrap();
        assert_eq!(v.exp, 2_000_000_000);
    }

    #[test]
    fn alg_none_is_refused() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = b64.encode(format!(r#"{{"user_id":5,"exp":{}}}"#, far()));
        let t = format!("{header}.{claims}.");
        assert_eq!(verify(&["k1".into()], DevId(7), &t, Some(UserId(5))), None);
    }
}
