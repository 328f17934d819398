//! The server side of the MySQL wire protocol: what CometQL clients (mysqli, PDO, pymysql, the `mariadb`
//! CLI, Node's mysql2...) speak on port 3300.
//!
//! A pure codec (`packet`, `wire`, `handshake`, `auth`, `response`, `command`) and the typed values a
//! connection loop exchanges with its handler (`Reply`, `LoginRequest`...): bytes in, typed values out, no
//! I/O. The connection loop that drives it is the CometQL front door (`front::cometql`). This module knows
//! nothing about CometQL: the handler decides who may log in and what a query means.
//!
//! Protocol subset: HandshakeV10, HandshakeResponse41, `mysql_native_password` (switching other plugins
//! to it with an AuthSwitchRequest), COM_QUERY, COM_PING, COM_INIT_DB, COM_QUIT, COM_CHANGE_USER (with a
//! real credentials check), COM_FIELD_LIST, a clear error for COM_STMT_PREPARE, text result sets in
//! utf8mb4, OK/ERR/EOF packets. No TLS, no compression, no CLIENT_DEPRECATE_EOF, no multi-statements.

pub mod auth;
pub mod command;
pub mod handshake;
pub mod packet;
pub(crate) mod response;
pub(crate) mod wire;

/// Capability flags (protocol constants, `CLIENT_*`).
pub mod caps {
    pub const LONG_PASSWORD: u32 = 1;
    pub const FOUND_ROWS: u32 = 1 << 1;
    pub const LONG_FLAG: u32 = 1 << 2;
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const COMPRESS: u32 = 1 << 5;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const SSL: u32 = 1 << 11;
    pub const TRANSACTIONS: u32 = 1 << 13;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
    pub const DEPRECATE_EOF: u32 = 1 << 24;

    /// What this server advertises, plus SSL when a certificate is configured (the front door adds it).
    /// Never DEPRECATE_EOF (we always send EOF packets), never MULTI_STATEMENTS, never COMPRESS:
    /// advertising them would make clients use them.
    pub const SERVER: u32 = LONG_PASSWORD
        | FOUND_ROWS
        | LONG_FLAG
        | CONNECT_WITH_DB
        | PROTOCOL_41
        | TRANSACTIONS
        | SECURE_CONNECTION
        | MULTI_RESULTS
        | PLUGIN_AUTH
        | CONNECT_ATTRS
        | PLUGIN_AUTH_LENENC_CLIENT_DATA;
}

/// AUTOCOMMIT | NO_BACKSLASH_ESCAPES, in the greeting and in every OK and EOF packet. docs/compatibility.md §2
/// requires NO_BACKSLASH_ESCAPES everywhere so that escaping clients double quotes instead of backslashing them.
pub const SERVER_STATUS: u16 = 0x0002 | 0x0200;

/// utf8mb4_general_ci: the greeting's charset and every result column's, so 4-byte UTF-8 survives.
pub const CHARSET_UTF8MB4: u8 = 45;

/// The only authentication method this server speaks.
pub const NATIVE_PASSWORD: &str = "mysql_native_password";

/// Length of a connection's salt and of a `mysql_native_password` scramble.
pub const SALT_LEN: usize = 20;

/// The error codes this module sends on its own (the handler's errors carry their own codes).
pub(crate) mod codes {
    /// CometQL's "not implemented" code: unsupported commands and prepared statements.
    pub(crate) const NOT_SUPPORTED: u16 = 2;
    /// CometQL's "too long" code: a command bigger than `ConnConfig::max_packet`.
    pub(crate) const TOO_LONG: u16 = 11;
    /// MySQL's ER_HANDSHAKE_ERROR: bytes that are not a handshake response.
    pub(crate) const BAD_HANDSHAKE: u16 = 1043;
    /// MySQL's CR_SSL_CONNECTION_ERROR: what clients print for TLS trouble.
    pub(crate) const SSL_ERROR: u16 = 2026;
}

/// An ERR packet. The SQLSTATE is always "HY000", as in the original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorPacket {
    pub code: u16,
    pub message: String,
}

impl ErrorPacket {
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A text result set: every column is VAR_STRING utf8mb4, every value is text, NULL is never sent.
/// A row shorter than `columns` is padded with empty strings and a longer one is cut, so the packet
/// always matches its column count. A result set needs at least one column (without any it is sent as an
/// OK packet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// The first part of a result too large to build at once. Its column definitions declare `widths`
/// (the later rows are not known yet); the rest comes from the front door's `Handler::more_rows`, one bounded part at a
/// time, each written to the socket before the next is asked for, so a client that does not read holds
/// up the server's reading rather than growing its memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowStream {
    pub columns: Vec<String>,
    pub widths: Vec<u32>,
    pub rows: Vec<Vec<String>>,
}

/// What a query produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ok {
        affected_rows: u64,
        last_insert_id: u64,
    },
    Error(ErrorPacket),
    Rows(ResultSet),
    Stream(RowStream),
}

/// A login attempt (handshake or COM_CHANGE_USER), for the handler to check.
#[derive(Debug, Clone, Copy)]
pub struct LoginRequest<'a> {
    pub user: &'a [u8],
    /// The database named at login (CONNECT_WITH_DB or COM_CHANGE_USER); `None` when none or empty.
    pub database: Option<&'a str>,
    /// The salt the client scrambled its password with.
    pub salt: &'a [u8; SALT_LEN],
    /// The client's `mysql_native_password` scramble: 20 bytes, or empty (no password), or anything else a
    /// misbehaving client sent. Check it with [`auth::check_scramble`].
    pub auth_response: &'a [u8],
}
