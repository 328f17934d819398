//! What travels on a pipe's channel (and is kept in its window): one message, as bytes, encoded and decoded
//! here only. Pure, bounded, and total: garbled or hostile input gives a [`WireError`], never a panic.
//!
//! ```text
//! H1 <kind> <origin> <except> <dev_id> <pipe> <epoch> <offset>\n<body>
//! ```
//! One ASCII header line of space-separated tokens (none can contain a space: names are validated), then the
//! body of the kind. `except` is the connection id the origin node does not deliver to (`web_pipe2`), `-` for
//! none. The node builds the part before `<epoch>` ([`head`]) and the body; the publish script puts the
//! position it assigns in between, so the offset is the one Redis gave. Kind `m`, a pipe message:
//!
//! ```text
//! <sent_at> <sender> <event>\n<text>
//! ```
//! `sender` is the `web_pipe2` sender's user id (`-`: a server-side publish, no `user_id` in the frame); the
//! event may be empty; the text is the rest, UTF-8. Kind `j`, a join marker (`receiver.rs`): the position
//! is the pipe's (epoch, top) that a positioned join read, published by the same script, and the body has
//! the shape of a message's with the join's id as its text (`0 - \n<id>`). Later kinds (presence,
//! control) take other letters.

use crate::ids::{ConnId, DevId, EventName, PipeName, UserId};

/// The format's version, first on every message: a node that meets another version drops the message.
pub const VERSION: &str = "H1";
/// The longest message decoded at all (the longest publishable text is far below it).
pub const MAX_WIRE_BYTES: usize = 4 << 20;
/// The longest header line.
const MAX_HEADER_BYTES: usize = 512;
/// An epoch: what `new_epoch()` and the database make, with room to spare.
const MAX_EPOCH_BYTES: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A message published to a pipe.
    Message,
    /// A positioned join's marker: where the join read the pipe's top, in the channel's order.
    Marker,
    /// A presence announcement (`presence.rs`): published by a presence script, never kept in a window;
    /// its position is the placeholder `p 0` and its body's event says what happened.
    Presence,
}

impl Kind {
    fn letter(self) -> &'static str {
        match self {
            Kind::Message => "m",
            Kind::Marker => "j",
            Kind::Presence => "p",
        }
    }
}

/// Who published what where: everything but the position and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    /// The node the publish came through.
    pub origin: String,
    pub except: Option<ConnId>,
    pub dev_id: DevId,
    pub pipe: PipeName,
}

/// A pipe message's content, from which every node builds the same frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub sent_at: i64,
    pub sender: Option<UserId>,
    pub event: EventName,
    pub text: String,
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wire {
    pub header: Header,
    pub epoch: String,
    pub offset: u64,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message of {0} bytes is over the limit")]
    TooLong(usize),
    #[error("no header line")]
    NoHeader,
    #[error("not version {VERSION}")]
    Version,
    #[error("unknown kind {0:?}")]
    Kind(String),
    #[error("bad field {0}")]
    Field(&'static str),
    #[error("extra fields in the header")]
    Extra,
    #[error("not UTF-8")]
    Utf8,
}

/// The header up to (and with the space before) the position: what the publish script is handed.
pub fn head(h: &Header) -> String {
    let except = match h.except {
        Some(c) => c.0.to_string(),
        None => "-".into(),
    };
    format!(
        "{VERSION} {} {} {except} {} {} ",
        h.kind.letter(),
        h.origin,
        h.dev_id.0,
        h.pipe.as_str()
    )
}

/// The body of a pipe message.
pub fn body(b: &Body) -> Vec<u8> {
    let sender = match b.sender {
        Some(u) => u.0.to_string(),
        None => "-".into(),
    };
    let mut out = Vec::with_capacity(b.text.len() + 48);
    out.extend_from_slice(format!("{} {sender} {}\n", b.sent_at, b.event.as_str()).as_bytes());
    out.extend_from_slice(b.text.as_bytes());
    out
}

/// The body of a join marker: the join's id as the text.
pub fn marker_body(join: u64) -> Vec<u8> {
    format!("0 - \n{join}").into_bytes()
}

/// The join id a marker carries (`None`: not a marker's body).
pub fn marker_id(w: &Wire) -> Option<u64> {
    (w.header.kind == Kind::Marker)
        .then(|| number(&w.body.text))
        .flatten()
}

/// A private message on a user's channel (`private.rs`): one header line, then the event line, then the
/// text. `H1 u <origin> <dev_id> <user> <id>\n<event>\n<text>`; the id is the message's uuid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Private {
    pub origin: String,
    pub dev_id: DevId,
    pub user: UserId,
    pub id: String,
    pub event: EventName,
    pub text: String,
}

pub fn encode_private(p: &Private) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.text.len() + 96);
    out.extend_from_slice(
        format!(
            "{VERSION} u {} {} {} {}\n{}\n",
            p.origin,
            p.dev_id.0,
            p.user.0,
            p.id,
            p.event.as_str()
        )
        .as_bytes(),
    );
    out.extend_from_slice(p.text.as_bytes());
    out
}

pub fn decode_private(bytes: &[u8]) -> Result<Private, WireError> {
    if bytes.len() > MAX_WIRE_BYTES {
        return Err(WireError::TooLong(bytes.len()));
    }
    let (line, rest) = split_line(bytes, MAX_HEADER_BYTES).ok_or(WireError::NoHeader)?;
    let mut f = line.split(' ');
    if f.next() != Some(VERSION) {
        return Err(WireError::Version);
    }
    if f.next() != Some("u") {
        return Err(WireError::Kind("not u".into()));
    }
    let origin = f
        .next()
        .filter(|o| is_node_name(o))
        .ok_or(WireError::Field("origin"))?;
    let dev_id = f
        .next()
        .and_then(number)
        .ok_or(WireError::Field("dev_id"))?;
    let user = f.next().and_then(number).ok_or(WireError::Field("user"))?;
    let id = f
        .next()
        .filter(|e| is_epoch(e))
        .ok_or(WireError::Field("id"))?;
    if f.next().is_some() {
        return Err(WireError::Extra);
    }
    let (event, text) = split_line(rest, MAX_HEADER_BYTES).ok_or(WireError::Field("event"))?;
    let event = EventName::parse(event).map_err(|_| WireError::Field("event"))?;
    let text = std::str::from_utf8(text).map_err(|_| WireError::Utf8)?;
    Ok(Private {
        origin: origin.to_string(),
        dev_id: DevId(dev_id),
        user: UserId(user),
        id: id.to_string(),
        event,
        text: text.to_string(),
    })
}

/// The whole message, as the publish script assembles it (`head .. epoch .. ' ' .. offset .. '\n' .. body`).
pub fn assemble(head: &str, epoch: &str, offset: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + epoch.len() + 24 + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(format!("{epoch} {offset}\n").as_bytes());
    out.extend_from_slice(body);
    out
}

pub fn decode(bytes: &[u8]) -> Result<Wire, WireError> {
    if bytes.len() > MAX_WIRE_BYTES {
        return Err(WireError::TooLong(bytes.len()));
    }
    let (line, rest) = split_line(bytes, MAX_HEADER_BYTES).ok_or(WireError::NoHeader)?;
    let mut f = line.split(' ');
    if f.next() != Some(VERSION) {
        return Err(WireError::Version);
    }
    let kind = match f.next() {
        Some("m") => Kind::Message,
        Some("j") => Kind::Marker,
        Some("p") => Kind::Presence,
        other => {
            return Err(WireError::Kind(
                other.unwrap_or("").chars().take(8).collect(),
            ))
        }
    };
    let origin = f
        .next()
        .filter(|o| is_node_name(o))
        .ok_or(WireError::Field("origin"))?;
    let except = match f.next().ok_or(WireError::Field("except"))? {
        "-" => None,
        n => Some(ConnId(number(n).ok_or(WireError::Field("except"))?)),
    };
    let dev_id = f
        .next()
        .and_then(number)
        .ok_or(WireError::Field("dev_id"))?;
    let pipe = f
        .next()
        .and_then(|p| PipeName::parse_command(p).ok())
        .ok_or(WireError::Field("pipe"))?;
    let epoch = f
        .next()
        .filter(|e| is_epoch(e))
        .ok_or(WireError::Field("epoch"))?;
    let offset = f
        .next()
        .and_then(number)
        .ok_or(WireError::Field("offset"))?;
    if f.next().is_some() {
        return Err(WireError::Extra);
    }
    let header = Header {
        kind,
        origin: origin.to_string(),
        except,
        dev_id: DevId(dev_id),
        pipe,
    };
    let body = decode_body(rest)?;
    Ok(Wire {
        header,
        epoch: epoch.to_string(),
        offset,
        body,
    })
}

fn decode_body(bytes: &[u8]) -> Result<Body, WireError> {
    let (line, text) = split_line(bytes, MAX_HEADER_BYTES).ok_or(WireError::Field("body"))?;
    let mut f = line.split(' ');
    let sent_at = f
        .next()
        .filter(|s| (1..=20).contains(&s.len()))
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(WireError::Field("sent_at"))?;
    let sender = match f.next().ok_or(WireError::Field("sender"))? {
        "-" => None,
        n => Some(UserId(number(n).ok_or(WireError::Field("sender"))?)),
    };
    let event = f
        .next()
        .and_then(|e| EventName::parse(e).ok())
        .ok_or(WireError::Field("event"))?;
    if f.next().is_some() {
        return Err(WireError::Extra);
    }
    let text = std::str::from_utf8(text).map_err(|_| WireError::Utf8)?;
    Ok(Body {
        sent_at,
        sender,
        event,
        text: text.to_string(),
    })
}

/// The first line (ASCII, at most `max` bytes) and what follows its `\n`.
fn split_line(bytes: &[u8], max: usize) -> Option<(&str, &[u8])> {
    let end = bytes.iter().take(max + 1).position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&bytes[..end]).ok()?;
    line.is_ascii().then_some((line, &bytes[end + 1..]))
}

/// A decimal u64: digits only (no sign, no spaces), at most 20 of them, no overflow.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn is_node_name(s: &str) -> bool {
    crate::config::is_cluster_name(s)
}

fn is_epoch(s: &str) -> bool {
    (1..=MAX_EPOCH_BYTES).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(except: Option<u64>) -> Header {
        Header {
            kind: Kind::Message,
            origin: "node-a".into(),
            except: except.map(ConnId),
            dev_id: DevId(15),
            pipe: PipeName::parse_command("web_chat").unwrap(),
        }
    }

    fn message_body(sender: Option<u64>, event: &str, text: &str) -> Body {
        Body {
            sent_at: 1_700_000_000,
            sender: sender.map(UserId),
            event: EventName::parse(event).unwrap(),
            text: text.into(),
        }
    }

    #[test]
    fn encodes_to_the_documented_bytes() {
        let h = head(&header(Some(42)));
        assert_eq!(h, "H1 m node-a 42 15 web_chat ");
        let b = body(&message_body(Some(9), "ev", "héllo\nworld"));
        let bytes = assemble(&h, "00ab", 7, &b);
        assert_eq!(
            bytes,
            b"H1 m node-a 42 15 web_chat 00ab 7\n1700000000 9 ev\nh\xc3\xa9llo\nworld".to_vec()
        );
        let plain = assemble(
            &head(&header(None)),
            "e",
            1,
            &body(&message_body(None, "", "")),
        );
        assert_eq!(
            plain,
            b"H1 m node-a - 15 web_chat e 1\n1700000000 - \n".to_vec()
        );
    }

    #[test]
    fn decodes_what_it_encodes() {
        let b = message_body(Some(9), "ev", "a b\nc");
        let bytes = assemble(&head(&header(Some(42))), "00ab", 7, &body(&b));
        let w = decode(&bytes).unwrap();
        assert_eq!(w.header, header(Some(42)));
        assert_eq!((w.epoch.as_str(), w.offset), ("00ab", 7));
        assert_eq!(w.body, b);
        let w = decode(b"H1 m n - 1 p e 18446744073709551615\n-5 - \n").unwrap();
        assert_eq!(w.offset, u64::MAX);
        assert_eq!(w.body.sent_at, -5);
        assert_eq!(w.body.sender, None);
        assert_eq!(w.body.event.as_str(), "");
    }

    #[test]
    fn a_join_marker_carries_its_id_and_the_top_it_read() {
        let h = Header {
            kind: Kind::Marker,
            ..header(None)
        };
        let bytes = assemble(&head(&h), "ep", 41, &marker_body(7));
        assert_eq!(bytes, b"H1 j node-a - 15 web_chat ep 41\n0 - \n7".to_vec());
        let w = decode(&bytes).unwrap();
        assert_eq!(w.header.kind, Kind::Marker);
        assert_eq!((w.epoch.as_str(), w.offset), ("ep", 41));
        assert_eq!(marker_id(&w), Some(7));
        let not_an_id = decode(b"H1 j n - 1 p e 1\n0 - \nx").unwrap();
        assert_eq!(marker_id(&not_an_id), None);
        let message = decode(b"H1 m n - 1 p e 1\n0 - \n7").unwrap();
        assert_eq!(marker_id(&message), None);
    }

    #[test]
    fn private_messages_encode_to_the_documented_bytes_and_back() {
        let p = Private {
            origin: "node-a".into(),
            dev_id: DevId(15),
            user: UserId(7),
            id: "0190-ab".into(),
            event: EventName::parse("ev").unwrap(),
            text: "h\u{e9}\nllo".into(),
        };
        let bytes = encode_private(&p);
        assert_eq!(
            bytes,
            b"H1 u node-a 15 7 0190-ab\nev\nh\xc3\xa9\nllo".to_vec()
        );
        assert_eq!(decode_private(&bytes), Ok(p));
        for (bad, want) in [
            (&b"H1 m a 1 2 x e\n"[..], WireError::Kind("not u".into())),
            (b"H1 u a 1 x id\ne\n", WireError::Field("user")),
            (b"H1 u a 1 2 i.d\ne\n", WireError::Field("id")),
            (b"H1 u a 1 2 id\n", WireError::Field("event")),
            (b"H1 u a 1 2 id x\ne\n", WireError::Extra),
            (b"H1 u a 1 2 id\ne\n\xff", WireError::Utf8),
        ] {
            assert_eq!(decode_private(bad), Err(want), "{bad:?}");
        }
    }

    #[test]
    fn presence_announcements_decode_with_their_placeholder_position() {
        let w = decode(b"H1 p node-b 5 1 track_a p 0\n17 - unsubscription\n42\nu\n\n\n\n").unwrap();
        assert_eq!(w.header.kind, Kind::Presence);
        assert_eq!(w.header.except, Some(ConnId(5)));
        assert_eq!((w.epoch.as_str(), w.offset), ("p", 0));
        assert_eq!(w.body.event.as_str(), "unsubscription");
        assert_eq!(w.body.text, "42\nu\n\n\n\n");
        let h = Header {
            kind: Kind::Presence,
            ..header(None)
        };
        assert_eq!(head(&h), "H1 p node-a - 15 web_chat ");
    }

    #[test]
    fn garbage_is_a_typed_error() {
        let cases: &[(&[u8], WireError)] = &[
            (b"", WireError::NoHeader),
            (b"H1 m n - 1 p e 1", WireError::NoHeader),
            (b"H2 m n - 1 p e 1\n0 - \n", WireError::Version),
            (b"H1 x n - 1 p e 1\n0 - \n", WireError::Kind("x".into())),
            (b"H1 m n/1 - 1 p e 1\n0 - \n", WireError::Field("origin")),
            (b"H1 m n -1 1 p e 1\n0 - \n", WireError::Field("except")),
            (b"H1 m n - +1 p e 1\n0 - \n", WireError::Field("dev_id")),
            (b"H1 m n - 1 p{x} e 1\n0 - \n", WireError::Field("pipe")),
            (b"H1 m n - 1 p e.1 1\n0 - \n", WireError::Field("epoch")),
            (
                b"H1 m n - 1 p e 18446744073709551616\n0 - \n",
                WireError::Field("offset"),
            ),
            (b"H1 m n - 1 p e 1 x\n0 - \n", WireError::Extra),
            (b"H1 m n - 1 p e 1\n", WireError::Field("body")),
            (b"H1 m n - 1 p e 1\nx - \n", WireError::Field("sent_at")),
            (b"H1 m n - 1 p e 1\n0 u \n", WireError::Field("sender")),
            (b"H1 m n - 1 p e 1\n0 - a\"b\n", WireError::Field("event")),
            (b"H1 m n - 1 p e 1\n0 - e\n\xff", WireError::Utf8),
            (b"H1 m n - 1 p e 1 \xc3\xa9\n0 - \n", WireError::NoHeader),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode(bytes).as_ref().err(), Some(want), "{bytes:?}");
        }
        let long_header = format!("H1 m n - 1 p {} 1\n0 - \n", "e".repeat(600));
        assert_eq!(decode(long_header.as_bytes()), Err(WireError::NoHeader));
        let huge = vec![b'a'; MAX_WIRE_BYTES + 1];
        assert_eq!(decode(&huge), Err(WireError::TooLong(MAX_WIRE_BYTES + 1)));
    }

    #[test]
    fn no_input_panics() {
        // Every prefix and every single-byte change of a valid message decodes or errs, never panics.
        let good = assemble(
            &head(&header(Some(3))),
            "ep",
            12,
            &body(&message_body(Some(1), "e", "t\u{e9}xt")),
        );
        for n in 0..=good.len() {
            let _ = decode(&good[..n]);
        }
        for i in 0..good.len() {
            for b in [0u8, b' ', b'\n', 0xff, b'9', b'-'] {
                let mut bad = good.clone();
                bad[i] = b;
                let _ = decode(&bad);
            }
        }
    }
}
