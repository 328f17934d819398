//! Signatures of subscriptions and sign-ins: `auth` is `key:signature`, the signature the hex
//! HMAC-SHA256 of a string under the app's secret, made by the tenant's auth endpoint (Laravel's
//! broadcaster, the `pusher` server libraries) and checked here.
//!
//! - a channel: `socket_id:channel_name`, with `:channel_data` on presence channels;
//! - a sign-in: `socket_id::user::user_data`.
//!
//! A tenant may hold several secrets at once (key rotation): every one is tried, without stopping at a
//! match, and a tenant with none is checked against a dummy, so the time a check takes says nothing about
//! which secret matched or whether any exists. Comparisons are constant-time (`subtle`).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use thiserror::Error;

use super::socket_id::SocketId;

type HmacSha256 = Hmac<Sha256>;

/// Why an `auth` was refused. Deliberately coarse: the client learns that its signature is wrong, not
/// which part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SignatureError {
    #[error("Invalid signature: auth is not key:signature")]
    Malformed,
    #[error("Invalid key in auth")]
    WrongKey,
    #[error("Invalid signature")]
    Mismatch,
}

/// Hex HMAC-SHA256 of `message` under `secret`.
pub fn hmac_hex(secret: &[u8], message: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts a key of any length");
    mac.update(message);
    hex(&mac.finalize().into_bytes())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// The string a channel subscription signs.
pub fn channel_string(socket_id: &SocketId, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// The string a sign-in signs.
pub fn signin_string(socket_id: &SocketId, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// `key:signature` of a channel subscription, as an auth endpoint makes it.
pub fn channel_auth(
    key: &str,
    secret: &str,
    socket_id: &SocketId,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    let sig = hmac_hex(
        secret.as_bytes(),
        channel_string(socket_id, channel, channel_data).as_bytes(),
    );
    format!("{key}:{sig}")
}

/// `key:signature` of a sign-in.
pub fn signin_auth(key: &str, secret: &str, socket_id: &SocketId, user_data: &str) -> String {
    let sig = hmac_hex(
        secret.as_bytes(),
        signin_string(socket_id, user_data).as_bytes(),
    );
    format!("{key}:{sig}")
}

/// Checks a channel subscription's `auth` against the app's `key` and every one of its `secrets`.
pub fn check_channel_auth<S: AsRef<str>>(
    auth: &str,
    key: &str,
    secrets: &[S],
    socket_id: &SocketId,
    channel: &str,
    channel_data: Option<&str>,
) -> Result<(), SignatureError> {
    check(
        auth,
        key,
        secrets,
        channel_string(socket_id, channel, channel_data).as_bytes(),
    )
}

/// Checks a sign-in's `auth`.
pub fn check_signin_auth<S: AsRef<str>>(
    auth: &str,
    key: &str,
    secrets: &[S],
    socket_id: &SocketId,
    user_data: &str,
) -> Result<(), SignatureError> {
    check(
        auth,
        key,
        secrets,
        signin_string(socket_id, user_data).as_bytes(),
    )
}

fn check<S: AsRef<str>>(
    auth: &str,
    key: &str,
    secrets: &[S],
    signed: &[u8],
) -> Result<(), SignatureError> {
    let (given_key, given_sig) = auth.split_once(':').ok_or(SignatureError::Malformed)?;
    let key_ok = bool::from(given_key.as_bytes().ct_eq(key.as_bytes()));
    let sig_ok = matches_any(secrets, signed, given_sig);
    match (key_ok, sig_ok) {
        (true, true) => Ok(()),
        (false, _) => Err(SignatureError::WrongKey),
        (true, false) => Err(SignatureError::Mismatch),
    }
}

/// Whether `signature` is the hex HMAC of `signed` under any of `secrets`: each is computed and compared,
/// a tenant without secrets costs one computation against a dummy.
pub(crate) fn matches_any<S: AsRef<str>>(secrets: &[S], signed: &[u8], signature: &str) -> bool {
    const DUMMY: &str = "halley-no-secret-matches-this";
    let mut found = subtle::Choice::from(0);
    if secrets.is_empty() {
        let _ = hmac_hex(DUMMY.as_bytes(), signed)
            .as_bytes()
            .ct_eq(signature.as_bytes());
        return false;
    }
    for secret in secrets {
        let expected = hmac_hex(secret.as_ref().as_bytes(), signed);
        found |= expected.as_bytes().ct_eq(signature.as_bytes());
    }
    found.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    fn sid() -> SocketId {
        SocketId::parse("1234.1234").unwrap()
    }

    /// The worked example of Pusher's authentication docs.
    #[test]
    fn the_documented_private_channel_example() {
        let auth = channel_auth(KEY, SECRET, &sid(), "private-foobar", None);
        assert_eq!(
            auth,
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        assert_eq!(
            check_channel_auth(&auth, KEY, &[SECRET], &sid(), "private-foobar", None),
            Ok(())
        );
    }

    /// Made with the npm `pusher` server library 5.3.4 (`authorizeChannel` and `authenticateUser` with
    /// the key and secret above; run in a scratch directory, not committed).
    #[test]
    fn vectors_from_the_pusher_server_library() {
        let channel_data = r#"{"user_id":"10","user_info":{"name":"Mr. Channels"}}"#;
        let presence =
            "278d425bdf160c739803:4c6d8fc42a207ba96a0779844171b0bb819d96ffceef9609f5cce596ab17a800";
        assert_eq!(
            channel_auth(KEY, SECRET, &sid(), "presence-foobar", Some(channel_data)),
            presence
        );
        assert_eq!(
            check_channel_auth(
                presence,
                KEY,
                &[SECRET],
                &sid(),
                "presence-foobar",
                Some(channel_data)
            ),
            Ok(())
        );
        let user_data = r#"{"id":"12345","name":"Ada"}"#;
        let signin =
            "278d425bdf160c739803:7206f57027410b0d4d247ad4bc76b3cdca5dacda4878ea6cd8fb9a9d32c8bf5e";
        assert_eq!(signin_auth(KEY, SECRET, &sid(), user_data), signin);
        assert_eq!(
            check_signin_auth(signin, KEY, &[SECRET], &sid(), user_data),
            Ok(())
        );
    }

    #[test]
    fn any_secret_of_the_tenant_and_nothing_else() {
        let auth = channel_auth(KEY, SECRET, &sid(), "private-a", None);
        let ok =
            |secrets: &[&str]| check_channel_auth(&auth, KEY, secrets, &sid(), "private-a", None);
        assert_eq!(ok(&["old", SECRET, "new"]), Ok(()));
        assert_eq!(ok(&["old"]), Err(SignatureError::Mismatch));
        assert_eq!(ok(&[]), Err(SignatureError::Mismatch));
        // Another socket, channel or member data: another string, another signature.
        let other = SocketId::parse("1234.1235").unwrap();
        assert!(check_channel_auth(&auth, KEY, &[SECRET], &other, "private-a", None).is_err());
        assert!(check_channel_auth(&auth, KEY, &[SECRET], &sid(), "private-b", None).is_err());
        assert!(
            check_channel_auth(&auth, KEY, &[SECRET], &sid(), "private-a", Some("{}")).is_err()
        );
        assert_eq!(
            check_channel_auth(&auth, "otherkey", &[SECRET], &sid(), "private-a", None),
            Err(SignatureError::WrongKey)
        );
        for bad in [
            "",
            "nocolon",
            ":",
            "278d425bdf160c739803:",
            "278d425bdf160c739803:XYZ",
        ] {
            assert!(
                check_channel_auth(bad, KEY, &[SECRET], &sid(), "private-a", None).is_err(),
                "{bad:?}"
            );
        }
        // A sign-in signature is not a channel signature.
        let signin = signin_auth(KEY, SECRET, &sid(), "{\"id\":\"1\"}");
        assert!(check_channel_auth(&signin, KEY, &[SECRET], &sid(), "private-a", None).is_err());
        // Upper-case hex is not what the libraries send.
        let upper = format!("{KEY}:{}", auth.split_once(':').unwrap().1.to_uppercase());
        assert!(check_channel_auth(&upper, KEY, &[SECRET], &sid(), "private-a", None).is_err());
    }
}
