//! Command packets: the first payload byte says which command, the rest is its argument.

use thiserror::Error;

use super::caps;
use super::wire::{Reader, WireError};

pub const COM_QUIT: u8 = 0x01;
pub const COM_INIT_DB: u8 = 0x02;
pub const COM_QUERY: u8 = 0x03;
pub const COM_FIELD_LIST: u8 = 0x04;
pub const COM_PING: u8 = 0x0E;
pub const COM_CHANGE_USER: u8 = 0x11;
pub const COM_STMT_PREPARE: u8 = 0x16;
pub const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
pub const COM_STMT_CLOSE: u8 = 0x19;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    Quit,
    InitDb(String),
    Query(&'a [u8]),
    Ping,
    ChangeUser(ChangeUser<'a>),
    StmtPrepare,
    FieldList,
    Other(u8),
}

/// COM_CHANGE_USER: a new login on the same connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeUser<'a> {
    pub user: &'a [u8],
    pub auth_response: &'a [u8],
    /// `None` when absent or empty.
    pub database: Option<&'a [u8]>,
    pub charset: Option<u16>,
    /// `None` when PLUGIN_AUTH is off or the client did not name one.
    pub plugin: Option<&'a [u8]>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CommandError {
    #[error("empty command packet")]
    Empty,
    #[error("malformed COM_CHANGE_USER: {0}")]
    ChangeUser(#[from] WireError),
}

/// Parses a command packet. `capabilities` are the connection's (client's flags intersected with ours).
pub fn parse(payload: &[u8], capabilities: u32) -> Result<Command<'_>, CommandError> {
    let (&code, arg) = payload.split_first().ok_or(CommandError::Empty)?;
    Ok(match code {
        COM_QUIT => Command::Quit,
        COM_INIT_DB => Command::InitDb(String::from_utf8_lossy(arg).into_owned()),
        COM_QUERY => Command::Query(arg),
        COM_FIELD_LIST => Command::FieldList,
        COM_PING => Command::Ping,
        COM_CHANGE_USER => Command::ChangeUser(parse_change_user(arg, capabilities)?),
        COM_STMT_PREPARE => Command::StmtPrepare,
        other => Command::Other(other),
    })
}

fn parse_change_user(arg: &[u8], capabilities: u32) -> Result<ChangeUser<'_>, WireError> {
    let mut r = Reader::new(arg);
    let user = r.nul_str("user name")?;
    let auth_response = if capabilities & caps::SECURE_CONNECTION != 0 {
        let len = r.u8("auth response length")?;
        r.bytes(usize::from(len), "auth response")?
    } else {
        r.nul_str("auth response")?
    };
    let database = Some(r.nul_str_or_rest()).filter(|db| !db.is_empty());
    // Old clients stop after the database; the rest is optional.
    let charset = if r.len() >= 2 {
        Some(r.u16("character set")?)
    } else {
        None
    };
    let plugin = if capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
        Some(r.nul_str_or_rest())
    } else {
        None
    };
    // Connection attributes (CONNECT_ATTRS) may follow; ignored as in the handshake.
    Ok(ChangeUser {
        user,
        auth_response,
        database,
        charset,
        plugin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: u32 = caps::SERVER;

    #[test]
    fn simple_commands() {
        assert_eq!(parse(b"\x01", CAPS), Ok(Command::Quit));
        assert_eq!(parse(b"\x0e", CAPS), Ok(Command::Ping));
        assert_eq!(
            parse(b"\x03SELECT 1", CAPS),
            Ok(Command::Query(b"SELECT 1"))
        );
        assert_eq!(parse(b"\x03", CAPS), Ok(Command::Query(b"")));
        assert_eq!(
            parse(b"\x02CometQL_v1", CAPS),
            Ok(Command::InitDb("CometQL_v1".into()))
        );
        assert_eq!(
            parse(b"\x02db\xff", CAPS),
            Ok(Command::InitDb("db\u{fffd}".into()))
        );
        assert_eq!(parse(b"\x04pipes\x00", CAPS), Ok(Command::FieldList));
        assert_eq!(parse(b"\x16SELECT ?", CAPS), Ok(Command::StmtPrepare));
        assert_eq!(parse(b"\x1f", CAPS), Ok(Command::Other(0x1F)));
        assert_eq!(parse(b"\xff\x00", CAPS), Ok(Command::Other(0xFF)));
        assert_eq!(parse(b"", CAPS), Err(CommandError::Empty));
    }

    // Captured from PHP 8.2 mysqli `$l->change_user("1", "secret-key", null)` with salt
    // "ABCDEFGHIJKLMNOPQRST": user, 1-byte auth length, scramble, empty db, charset 45, plugin, attrs.
    const MYSQLND_CHANGE_USER: &str = "11310014d73e224a97036c68bbf0dd30bc0375c5c7c103b5002d006d7973716c5f6e\
        61746976655f70617373776f7264002c0c5f636c69656e745f6e616d65076d7973716c6e640c5f7365727665725f686f73\
        74093132372e302e302e31";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn change_user_from_mysqlnd() {
        let bytes = unhex(MYSQLND_CHANGE_USER);
        let Ok(Command::ChangeUser(cu)) = parse(&bytes, CAPS) else {
            panic!("not a change user");
        };
        assert_eq!(cu.user, b"1");
        assert_eq!(
            cu.auth_response,
            unhex("d73e224a97036c68bbf0dd30bc0375c5c7c103b5")
        );
        assert_eq!(cu.database, None);
        assert_eq!(cu.charset, Some(45));
        assert_eq!(cu.plugin, Some(&b"mysql_native_password"[..]));
    }

    #[test]
    fn change_user_minimal_and_with_database() {
        let Ok(Command::ChangeUser(cu)) = parse(b"\x11u\x00\x00db\x00", CAPS) else {
            panic!("not parsed");
        };
        assert_eq!(
            (
                cu.user,
                cu.auth_response,
                cu.database,
                cu.charset,
                cu.plugin
            ),
            (&b"u"[..], &b""[..], Some(&b"db"[..]), None, None)
        );
        // Without SECURE_CONNECTION the password is NUL-terminated.
        let Ok(Command::ChangeUser(cu)) = parse(b"\x11u\x00pw\x00", caps::PROTOCOL_41) else {
            panic!("not parsed");
        };
        assert_eq!((cu.auth_response, cu.database), (&b"pw"[..], None));
    }

    #[test]
    fn truncated_change_user_is_an_error() {
        for bad in [&b"\x11"[..], b"\x11u", b"\x11u\x00", b"\x11u\x00\x14abc"] {
            assert!(
                matches!(parse(bad, CAPS), Err(CommandError::ChangeUser(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn random_payloads_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let mut p: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if !p.is_empty() && rng.gen_bool(0.5) {
                p[0] = COM_CHANGE_USER;
            }
            let caps = if rng.gen_bool(0.5) { CAPS } else { rng.gen() };
            let _ = parse(&p, caps);
        }
    }
}
