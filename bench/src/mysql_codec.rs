//! The client side of the MySQL protocol subset CometQL needs, pure: packet framing, the v10 handshake,
//! mysql_native_password, COM_QUERY, and OK / ERR / text result sets.

use sha1::{Digest, Sha1};

const CLIENT_LONG_PASSWORD: u32 = 0x1;
const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
const CLIENT_PROTOCOL_41: u32 = 0x200;
const CLIENT_TRANSACTIONS: u32 = 0x2000;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x80000;
const CLIENT_SSL: u32 = 0x800;
const UTF8MB4: u8 = 45;
pub const NATIVE_PASSWORD: &str = "mysql_native_password";

#[derive(Debug, PartialEq, Eq)]
pub struct CodecError(pub String);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

fn err(text: impl Into<String>) -> CodecError {
    CodecError(text.into())
}

/// `(sequence id, payload length)` of a packet header, once its payload is complete in `buf`.
pub fn packet_at(buf: &[u8]) -> Option<(u8, usize)> {
    if buf.len() < 4 {
        return None;
    }
    let len = usize::from(buf[0]) | usize::from(buf[1]) << 8 | usize::from(buf[2]) << 16;
    (buf.len() >= 4 + len).then_some((buf[3], len))
}

pub fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&len.to_le_bytes()[..3]);
    out.push(seq);
    out.extend_from_slice(payload);
    out
}

/// The server's greeting: the 20-byte scramble and the plugin it starts with.
#[derive(Debug, PartialEq, Eq)]
pub struct Greeting {
    pub scramble: Vec<u8>,
    pub plugin: String,
}

pub fn parse_greeting(p: &[u8]) -> Result<Greeting, CodecError> {
    if p.first() != Some(&10) {
        return Err(err("not a protocol 10 handshake"));
    }
    let version_end = 1 + p[1..]
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| err("no server version"))?;
    let mut at = version_end + 1 + 4; // connection id
    let part1 = p.get(at..at + 8).ok_or_else(|| err("short greeting"))?;
    let mut scramble = part1.to_vec();
    at += 8 + 1 + 2 + 1 + 2 + 2; // filler, caps low, charset, status, caps high
    let auth_len = usize::from(*p.get(at).ok_or_else(|| err("short greeting"))?);
    at += 1 + 10;
    let part2_len = auth_len.saturating_sub(8).max(13);
    let part2 = p
        .get(at..at + part2_len)
        .ok_or_else(|| err("short greeting"))?;
    scramble.extend(part2.iter().take_while(|&&b| b != 0).take(12));
    at += part2_len;
    let plugin = p
        .get(at..)
        .map(|rest| rest.split(|&b| b == 0).next().unwrap_or(&[]))
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    Ok(Greeting { scramble, plugin })
}

/// SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password))).
pub fn native_password(password: &str, scramble: &[u8]) -> [u8; 20] {
    let stage1: [u8; 20] = Sha1::digest(password.as_bytes()).into();
    let stage2: [u8; 20] = Sha1::digest(stage1).into();
    let mut sha = Sha1::new();
    sha.update(scramble);
    sha.update(stage2);
    let mix: [u8; 20] = sha.finalize().into();
    std::array::from_fn(|i| stage1[i] ^ mix[i])
}

const CLIENT_CAPS: u32 = CLIENT_LONG_PASSWORD
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_PROTOCOL_41
    | CLIENT_TRANSACTIONS
    | CLIENT_SECURE_CONNECTION
    | CLIENT_PLUGIN_AUTH;

/// The 32 bytes every response starts with: flags, max packet, charset, reserved.
fn response_head(caps: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(128);
    p.extend_from_slice(&caps.to_le_bytes());
    p.extend_from_slice(&(16u32 << 20).to_le_bytes());
    p.push(UTF8MB4);
    p.extend_from_slice(&[0; 23]);
    p
}

/// SSLRequest: the response's head alone, with CLIENT_SSL; the TLS handshake follows.
pub fn ssl_request() -> Vec<u8> {
    response_head(CLIENT_CAPS | CLIENT_SSL)
}

/// HandshakeResponse41; `tls` when it follows an SSLRequest (inside TLS).
pub fn handshake_response(
    user: &str,
    password: &str,
    db: &str,
    scramble: &[u8],
    tls: bool,
) -> Vec<u8> {
    let mut p = response_head(if tls {
        CLIENT_CAPS | CLIENT_SSL
    } else {
        CLIENT_CAPS
    });
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    p.push(20);
    p.extend_from_slice(&native_password(password, scramble));
    p.extend_from_slice(db.as_bytes());
    p.push(0);
    p.extend_from_slice(NATIVE_PASSWORD.as_bytes());
    p.push(0);
    p
}

pub fn com_query(sql: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(sql.len() + 1);
    p.push(0x03);
    p.extend_from_slice(sql.as_bytes());
    p
}

/// What the first packet of an answer says.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Ok,
    Err {
        code: u16,
        message: String,
    },
    /// An AuthSwitchRequest during login: the plugin and its new scramble.
    AuthSwitch {
        plugin: String,
        scramble: Vec<u8>,
    },
    /// The start of a result set with this many columns.
    Columns(u64),
}

pub fn parse_reply(p: &[u8]) -> Result<Reply, CodecError> {
    match p.first() {
        Some(0x00) => Ok(Reply::Ok),
        Some(0xFF) => {
            let code = u16::from_le_bytes([*p.get(1).unwrap_or(&0), *p.get(2).unwrap_or(&0)]);
            let text = p.get(3..).unwrap_or(&[]);
            let text = text
                .strip_prefix(b"#")
                .map_or(text, |t| t.get(5..).unwrap_or(&[]));
            Ok(Reply::Err {
                code,
                message: String::from_utf8_lossy(text).into_owned(),
            })
        }
        Some(0xFE) => {
            let rest = &p[1..];
            let mut parts = rest.splitn(2, |&b| b == 0);
            let plugin = String::from_utf8_lossy(parts.next().unwrap_or(&[])).into_owned();
            let data = parts.next().unwrap_or(&[]);
            let scramble = data.strip_suffix(&[0]).unwrap_or(data).to_vec();
            Ok(Reply::AuthSwitch { plugin, scramble })
        }
        Some(_) => {
            let (n, _) = lenenc(p).ok_or_else(|| err("bad column count"))?;
            Ok(Reply::Columns(n))
        }
        None => Err(err("empty packet")),
    }
}

/// An EOF packet (end of column definitions or rows).
pub fn is_eof(p: &[u8]) -> bool {
    p.first() == Some(&0xFE) && p.len() < 9
}

/// A text row: one string per column (NULL as empty).
pub fn parse_row(mut p: &[u8]) -> Result<Vec<String>, CodecError> {
    let mut row = Vec::new();
    while !p.is_empty() {
        if p[0] == 0xFB {
            row.push(String::new());
            p = &p[1..];
            continue;
        }
        let (len, used) = lenenc(p).ok_or_else(|| err("bad row value length"))?;
        let end = used + len as usize;
        let v = p.get(used..end).ok_or_else(|| err("short row"))?;
        row.push(String::from_utf8_lossy(v).into_owned());
        p = &p[end..];
    }
    Ok(row)
}

/// A length-encoded integer and how many bytes it used.
fn lenenc(p: &[u8]) -> Option<(u64, usize)> {
    let n = |k: usize| -> Option<(u64, usize)> {
        let b = p.get(1..1 + k)?;
        let mut v = 0u64;
        for (i, x) in b.iter().enumerate() {
            v |= u64::from(*x) << (8 * i);
        }
        Some((v, 1 + k))
    };
    match *p.first()? {
        x if x < 0xFB => Some((u64::from(x), 1)),
        0xFC => n(2),
        0xFD => n(3),
        0xFE => n(8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn greeting(scramble: &[u8; 20]) -> Vec<u8> {
        let mut p = vec![10];
        p.extend_from_slice(b"5.7.99-Halley\0");
        p.extend_from_slice(&7u32.to_le_bytes());
        p.extend_from_slice(&scramble[..8]);
        p.push(0);
        p.extend_from_slice(&[0xFF, 0xF7, 45, 2, 0, 0xFF, 0x81, 21]);
        p.extend_from_slice(&[0; 10]);
        p.extend_from_slice(&scramble[8..]);
        p.push(0);
        p.extend_from_slice(b"mysql_native_password\0");
        p
    }

    #[test]
    fn greeting_gives_the_20_byte_scramble() {
        let s: [u8; 20] = std::array::from_fn(|i| i as u8 + 1);
        let g = parse_greeting(&greeting(&s)).unwrap();
        assert_eq!(g.scramble, s.to_vec());
        assert_eq!(g.plugin, NATIVE_PASSWORD);
    }

    #[test]
    fn native_password_undoes_to_the_password_hash() {
        let scramble = [7u8; 20];
        let token = native_password("secret", &scramble);
        let stage1: [u8; 20] = Sha1::digest(b"secret").into();
        let stage2: [u8; 20] = Sha1::digest(stage1).into();
        let mut sha = Sha1::new();
        sha.update(scramble);
        sha.update(stage2);
        let mix: [u8; 20] = sha.finalize().into();
        let back: [u8; 20] = std::array::from_fn(|i| token[i] ^ mix[i]);
        assert_eq!(back, stage1);
    }

    #[test]
    fn packets_frame_and_unframe() {
        let bytes = packet(3, b"abc");
        assert_eq!(bytes, [3, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(packet_at(&bytes), Some((3, 3)));
        assert_eq!(packet_at(&bytes[..5]), None);
    }

    #[test]
    fn replies_and_rows() {
        assert_eq!(parse_reply(&[0, 0, 0, 2, 0, 0, 0]).unwrap(), Reply::Ok);
        let e = parse_reply(b"\xFF\x10\x00#HY000Authentication failure").unwrap();
        assert_eq!(
            e,
            Reply::Err {
                code: 16,
                message: "Authentication failure".into()
            }
        );
        assert_eq!(parse_reply(&[2]).unwrap(), Reply::Columns(2));
        let sw = parse_reply(b"\xFEmysql_native_password\0abcdefghijklmnopqrst\0").unwrap();
        assert_eq!(
            sw,
            Reply::AuthSwitch {
                plugin: NATIVE_PASSWORD.into(),
                scramble: b"abcdefghijklmnopqrst".to_vec()
            }
        );
        assert_eq!(
            parse_row(b"\x04chat\x0212\xFB").unwrap(),
            vec!["chat", "12", ""]
        );
        assert!(is_eof(&[0xFE, 0, 0, 2, 0]));
    }
}
