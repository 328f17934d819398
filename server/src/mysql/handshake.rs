//! The server greeting (HandshakeV10) and the client's answer (HandshakeResponse41, or an SSLRequest).

use thiserror::Error;

use super::caps;
use super::wire::{put_nul_str, put_u16, put_u32, Reader, WireError};
use super::{CHARSET_UTF8MB4, NATIVE_PASSWORD, SALT_LEN, SERVER_STATUS};

/// HandshakeV10 payload, advertising `capabilities` (`caps::SERVER`, plus `caps::SSL` when TLS is
/// offered).
pub fn encode_greeting(
    out: &mut Vec<u8>,
    server_version: &str,
    conn_id: u32,
    salt: &[u8; SALT_LEN],
    capabilities: u32,
) {
    out.push(10);
    // The version is a C string: a NUL inside it would end it early and shift every later field.
    out.extend(server_version.bytes().filter(|&b| b != 0));
    out.push(0);
    put_u32(out, conn_id);
    out.extend_from_slice(&salt[..8]);
    out.push(0);
    put_u16(out, (capabilities & 0xFFFF) as u16);
    out.push(CHARSET_UTF8MB4);
    put_u16(out, SERVER_STATUS);
    put_u16(out, (capabilities >> 16) as u16);
    out.push(SALT_LEN as u8 + 1);
    out.extend_from_slice(&[0; 10]);
    out.extend_from_slice(&salt[8..]);
    out.push(0);
    put_nul_str(out, NATIVE_PASSWORD.as_bytes());
}

/// What a client answers to the greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHello<'a> {
    /// The client wants TLS before it sends its credentials.
    SslRequest,
    Response(HandshakeResponse<'a>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse<'a> {
    /// The client's flags intersected with the server's: what this connection actually uses.
    pub capabilities: u32,
    pub max_packet: u32,
    pub charset: u8,
    pub user: &'a [u8],
    pub auth_response: &'a [u8],
    /// `None` when CONNECT_WITH_DB is off or the name is empty.
    pub database: Option<&'a [u8]>,
    /// `None` when PLUGIN_AUTH is off (the client then implicitly uses `mysql_native_password`).
    pub plugin: Option<&'a [u8]>,
}

impl HandshakeResponse<'_> {
    /// Whether the client must be asked (AuthSwitchRequest) for a `mysql_native_password` scramble: it
    /// answered for another plugin, or named ours but sent something that is not a scramble. An empty
    /// response is a client without a password and is passed on as is.
    pub fn needs_auth_switch(&self) -> bool {
        needs_auth_switch(self.plugin, self.auth_response)
    }
}

pub fn needs_auth_switch(plugin: Option<&[u8]>, auth_response: &[u8]) -> bool {
    match plugin {
        Some(p) if p != NATIVE_PASSWORD.as_bytes() => true,
        Some(_) => !auth_response.is_empty() && auth_response.len() != SALT_LEN,
        None => false,
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("client does not speak protocol 4.1")]
    OldProtocol,
    #[error(transparent)]
    Wire(#[from] WireError),
}

const SSL_REQUEST_LEN: usize = 32;

/// Parses the client's answer to the greeting.
pub fn parse_response(payload: &[u8]) -> Result<ClientHello<'_>, HandshakeError> {
    let mut r = Reader::new(payload);
    let client_caps = r.u32("capability flags")?;
    if client_caps & caps::PROTOCOL_41 == 0 {
        return Err(HandshakeError::OldProtocol);
    }
    // An SSLRequest is the first 32 bytes of a response, sent alone. A longer packet with the SSL bit set
    // is a full response: sent inside TLS, or by a client that ignored our flags.
    if client_caps & caps::SSL != 0 && payload.len() == SSL_REQUEST_LEN {
        return Ok(ClientHello::SslRequest);
    }
    let capabilities = client_caps & caps::SERVER;
    let max_packet = r.u32("max packet size")?;
    let charset = r.u8("character set")?;
    r.bytes(23, "reserved bytes")?;
    let user = r.nul_str("user name")?;
    let auth_response = if capabilities & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        r.lenenc_bytes("auth response")?
    } else if capabilities & caps::SECURE_CONNECTION != 0 {
        let len = r.u8("auth response length")?;
        r.bytes(usize::from(len), "auth response")?
    } else {
        r.nul_str("auth response")?
    };
    // Clients disagree on whether a trailing field's NUL is sent, and some set a flag but send nothing.
    let database = if capabilities & caps::CONNECT_WITH_DB != 0 && !r.is_empty() {
        Some(r.nul_str_or_rest()).filter(|db| !db.is_empty())
    } else {
        None
    };
    let plugin = if capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
        Some(r.nul_str_or_rest())
    } else {
        None
    };
    // Connection attributes (CONNECT_ATTRS) follow; we have no use for them and do not read them.
    Ok(ClientHello::Response(HandshakeResponse {
        capabilities,
        max_packet,
        charset,
        user,
        auth_response,
        database,
        plugin,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::auth;

    const SALT: &[u8; 20] = b"ABCDEFGHIJKLMNOPQRST";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn response(payload: &[u8]) -> HandshakeResponse<'_> {
        match parse_response(payload) {
            Ok(ClientHello::Response(r)) => r,
            other => panic!("not a response: {other:?}"),
        }
    }

    #[test]
    fn greeting_bytes() {
        let mut out = Vec::new();
        encode_greeting(&mut out, "5.7.99-Halley-0.1.0", 7, SALT, caps::SERVER);
        let mut want = b"\x0a5.7.99-Halley-0.1.0\x00\x07\x00\x00\x00ABCDEFGH\x00".to_vec();
        // caps low 0xA20F (no SSL 0x0800, no COMPRESS 0x20), charset 45, status 0x0202, caps high 0x003A
        want.extend_from_slice(b"\x0f\xa2\x2d\x02\x02\x3a\x00\x15");
        want.extend_from_slice(&[0; 10]);
        want.extend_from_slice(b"IJKLMNOPQRST\x00mysql_native_password\x00");
        assert_eq!(out, want);

        // With TLS offered: the same bytes but for SSL (0x0800) in the low flags.
        let mut tls = Vec::new();
        encode_greeting(
            &mut tls,
            "5.7.99-Halley-0.1.0",
            7,
            SALT,
            caps::SERVER | caps::SSL,
        );
        let at = b"\x0a5.7.99-Halley-0.1.0\x00\x07\x00\x00\x00ABCDEFGH\x00".len();
        want[at..at + 2].copy_from_slice(b"\x0f\xaa");
        assert_eq!(tls, want);
    }

    #[test]
    fn greeting_never_advertises_what_we_do_not_do() {
        for flag in [
            caps::SSL,
            caps::COMPRESS,
            caps::DEPRECATE_EOF,
            caps::MULTI_STATEMENTS,
        ] {
            assert_eq!(caps::SERVER & flag, 0);
        }
    }

    #[test]
    fn greeting_strips_nul_from_the_version() {
        let mut out = Vec::new();
        encode_greeting(&mut out, "5.7\0x", 1, SALT, caps::SERVER);
        assert_eq!(&out[..7], b"\x0a5.7x\x00\x01");
    }

    // Captured from `mariadb --skip-ssl -u1 -psecret-key -D CometQL_v1` (libmariadb 3.3.20) against a
    // greeting with SALT.
    const MARIADB_CLI: &str = "8da2bf0000001000210000000000000000000000000000000000000000000000310014\
        d73e224a97036c68bbf0dd30bc0375c5c7c103b5436f6d6574514c5f7631006d7973716c5f6e61746976655f7061737377\
        6f7264007f035f6f73054c696e75780c5f636c69656e745f6e616d650a6c69626d617269616462045f706964053136393630\
        0f5f636c69656e745f76657273696f6e06332e332e3230095f706c6174666f726d067838365f36340c70726f6772616d5f\
        6e616d65056d7973716c0c5f7365727665725f686f7374093132372e302e302e31";

    #[test]
    fn parses_a_real_mariadb_cli_response() {
        let bytes = unhex(MARIADB_CLI);
        let r = response(&bytes);
        assert_eq!(r.user, b"1");
        assert_eq!(r.database, Some(&b"CometQL_v1"[..]));
        assert_eq!(r.plugin, Some(NATIVE_PASSWORD.as_bytes()));
        assert_eq!(r.charset, 33);
        assert_eq!(r.max_packet, 0x10_0000);
        assert!(!r.needs_auth_switch());
        let v = auth::verifier(b"secret-key");
        assert!(auth::check_scramble(SALT, r.auth_response, &v));
    }

    // Captured from pymysql 1.2 (`database='CometQL_v1'`): lenenc auth data, charset 45.
    const PYMYSQL: &str = "0da23a00ffffff002d0000000000000000000000000000000000000000000000310014\
        d73e224a97036c68bbf0dd30bc0375c5c7c103b5436f6d6574514c5f7631006d7973716c5f6e61746976655f7061737377\
        6f726400360c5f636c69656e745f6e616d650770796d7973716c0f5f636c69656e745f76657273696f6e05312e322e3404\
        5f706964053137303935";

    #[test]
    fn parses_a_real_pymysql_response() {
        let bytes = unhex(PYMYSQL);
        let r = response(&bytes);
        assert_eq!(
            (r.user, r.database, r.charset),
            (&b"1"[..], Some(&b"CometQL_v1"[..]), 45)
        );
        assert!(auth::check_scramble(
            SALT,
            r.auth_response,
            &auth::verifier(b"secret-key")
        ));
    }

    // Captured from PHP 8.2 mysqli (mysqlnd).
    const MYSQLND: &str = "8da21a00000000c02d0000000000000000000000000000000000000000000000310014\
        d73e224a97036c68bbf0dd30bc0375c5c7c103b5436f6d6574514c5f7631006d7973716c5f6e61746976655f7061737377\
        6f7264002c0c5f636c69656e745f6e616d65076d7973716c6e640c5f7365727665725f686f7374093132372e302e302e31";

    #[test]
    fn parses_a_real_mysqlnd_response() {
        let bytes = unhex(MYSQLND);
        let r = response(&bytes);
        assert_eq!(r.database, Some(&b"CometQL_v1"[..]));
        assert_eq!(r.auth_response.len(), 20);
        assert!(!r.needs_auth_switch());
    }

    // Captured from `mariadb --default-auth=caching_sha2_password` (MySQL 8 style): empty auth data for
    // another plugin, no database.
    const CACHING_SHA2: &str =
        "85a2bf000000100021000000000000000000000000000000000000000000000031000063\
        616368696e675f736861325f70617373776f7264007f035f6f73054c696e7578";

    #[test]
    fn another_plugin_needs_an_auth_switch() {
        let bytes = unhex(CACHING_SHA2);
        let r = response(&bytes);
        assert_eq!(r.plugin, Some(&b"caching_sha2_password"[..]));
        assert_eq!((r.auth_response, r.database), (&b""[..], None));
        assert!(r.needs_auth_switch());
    }

    #[test]
    fn auth_switch_decision() {
        let native = Some(NATIVE_PASSWORD.as_bytes());
        assert!(!needs_auth_switch(native, &[1; 20]));
        assert!(!needs_auth_switch(native, b""));
        assert!(needs_auth_switch(native, &[1; 32]));
        assert!(needs_auth_switch(Some(b"caching_sha2_password"), &[1; 20]));
        assert!(!needs_auth_switch(None, &[1; 8]));
    }

    #[test]
    fn ssl_request_is_detected() {
        // caps 0x00bfaa8d (SSL 0x0800 set), max packet, charset 33, 23 zero bytes: 32 bytes in all.
        let mut p = b"\x8d\xaa\xbf\x00\x00\x00\x00\x01\x21".to_vec();
        p.extend_from_slice(&[0; 23]);
        assert_eq!(parse_response(&p), Ok(ClientHello::SslRequest));
    }

    #[test]
    fn old_and_truncated_responses_are_errors() {
        assert_eq!(
            parse_response(b"\x85\x00\x00\x00\x00\x00\x00\x01"),
            Err(HandshakeError::OldProtocol)
        );
        let bytes = unhex(MARIADB_CLI);
        for cut in [0, 3, 8, 31, 32, 33, 34, 40] {
            assert!(parse_response(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // Cut after the scramble: still a valid response with no database and no plugin.
        let r = response(&bytes[..55]);
        assert_eq!((r.database, r.plugin), (None, None));
    }

    #[test]
    fn no_secure_connection_means_a_nul_terminated_password() {
        // caps PROTOCOL_41 only; user "u", password "pw\0".
        let mut p = b"\x00\x02\x00\x00\x00\x00\x00\x01\x21".to_vec();
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(b"u\0pw\0");
        let r = response(&p);
        assert_eq!(
            (r.user, r.auth_response, r.plugin),
            (&b"u"[..], &b"pw"[..], None)
        );
    }

    #[test]
    fn mutated_real_responses_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let originals = [
            unhex(MARIADB_CLI),
            unhex(PYMYSQL),
            unhex(MYSQLND),
            unhex(CACHING_SHA2),
        ];
        for _ in 0..20_000 {
            let mut p = originals[rng.gen_range(0..originals.len())].clone();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..p.len());
                p[i] = rng.gen();
            }
            p.truncate(rng.gen_range(0..=p.len()));
            if let Ok(ClientHello::Response(r)) = parse_response(&p) {
                assert!(r.user.len() + r.auth_response.len() <= p.len());
                let _ = r.needs_auth_switch();
            }
        }
    }
}
