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
//! the shape of a message's with the join's id as its text (`0 - \n<id>`). Kind `p`, a presence
//! announcement (`presence.rs`). Kind `n`, a pipe message of the Pusher protocol (numbered and kept like
//! `m`): its event is any Pusher event name (`App\Events\OrderShipped`, spaces allowed), so it has a
//! line of its own, and it may name the socket id no node delivers it to (`toOthers()`):
//!
//! ```text
//! <sent_at> <sender> <socket_id>\n<event>\n<text>
//! ```
//! Kind `x`, a frame only Pusher connections get (a client event, `member_added`, `member_removed`), not
//! numbered (position `p 0`, as presence) and delivered as it is: body `0 - \n<frame JSON>`.
//!
//! A pipe is a comet pipe name, or `pusher:<channel>` for a Pusher channel that is not one
//! (`ids::PUSHER_ONLY`; Pusher channel names have no spaces either).

use crate::ids::{ConnId, DevId, EventName, PipeName, UserId};

/// The format's version, first on every message: a node that meets another version drops the message.
pub const VERSION: &str = "H1";
/// The longest message decoded at all (the longest publishable text is far below it).
pub const MAX_WIRE_BYTES: usize = 4 << 20;
/// The longest header line.
const MAX_HEADER_BYTES: usize = 512;
/// An epoch: what `new_epoch()` and the database make, with room to spare.
const MAX_EPOCH_BYTES: usize = 64;
/// A Pusher event name's line: 200 characters of up to 4 bytes.
const MAX_EVENT_LINE: usize = 800;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A message published to a pipe.
    Message,
    /// A positioned join's marker: where the join read the pipe's top, in the channel's order.
    Marker,
    /// A presence announcement (`presence.rs`): published by a presence script, never kept in a window;
    /// its position is the placeholder `p 0` and its body's event says what happened.
    Presence,
    /// A pipe message of the Pusher protocol (any Pusher event name, a socket id to leave out).
    Named,
    /// A Pusher-only frame, delivered at once as it is (client events, presence members).
    Pusher,
}

impl Kind {
    fn letter(self) -> &'static str {
        match self {
            Kind::Message => "m",
            Kind::Marker => "j",
            Kind::Presence => "p",
            Kind::Named => "n",
            Kind::Pusher => "x",
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
    /// The Pusher socket id that does not get it, on whichever node it is (kind `n` only).
    pub socket: Option<String>,
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

/// The body of a pipe message: of kind `m` when its event is a comet event name and it names no socket,
/// else of kind `n` (see [`kind_of`]).
pub fn body(b: &Body) -> Vec<u8> {
    let sender = match b.sender {
        Some(u) => u.0.to_string(),
        None => "-".into(),
    };
    let mut out = Vec::with_capacity(b.text.len() + 48);
    match kind_of(b) {
        Kind::Named => {
            let socket = b.socket.as_deref().unwrap_or("-");
            out.extend_from_slice(
                format!("{} {sender} {socket}\n{}\n", b.sent_at, b.event.as_str()).as_bytes(),
            );
        }
        _ => out
            .extend_from_slice(format!("{} {sender} {}\n", b.sent_at, b.event.as_str()).as_bytes()),
    }
    out.extend_from_slice(b.text.as_bytes());
    out
}

/// The kind a pipe message travels as: `m` (what every node of this version and the last reads) when
/// it can, `n` when its event is not a comet event name or it names a socket id.
pub fn kind_of(b: &Body) -> Kind {
    if b.socket.is_none() && EventName::parse(b.event.as_str()).is_ok() {
        Kind::Message
    } else {
        Kind::Named
    }
}

/// The body of a Pusher-only frame (kind `x`): the frame's JSON text.
pub fn pusher_body(json: &str) -> Vec<u8> {
    format!("0 - \n{json}").into_bytes()
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
        Some("n") => Kind::Named,
        Some("x") => Kind::Pusher,
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
        .and_then(pipe_name)
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
    let body = match kind {
        Kind::Named => decode_named_body(rest)?,
        _ => decode_body(rest)?,
    };
    Ok(Wire {
        header,
        epoch: epoch.to_string(),
        offset,
        body,
    })
}

/// The first two fields of a body's line: when it was sent and by whom (`-`: a server-side publish).
fn sent_and_sender<'a>(
    f: &mut impl Iterator<Item = &'a str>,
) -> Result<(i64, Option<UserId>), WireError> {
    let sent_at = f
        .next()
        .filter(|s| (1..=20).contains(&s.len()))
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(WireError::Field("sent_at"))?;
    let sender = match f.next().ok_or(WireError::Field("sender"))? {
        "-" => None,
        n => Some(UserId(number(n).ok_or(WireError::Field("sender"))?)),
    };
    Ok((sent_at, sender))
}

fn decode_body(bytes: &[u8]) -> Result<Body, WireError> {
    let (line, text) = split_line(bytes, MAX_HEADER_BYTES).ok_or(WireError::Field("body"))?;
    let mut f = line.split(' ');
    let (sent_at, sender) = sent_and_sender(&mut f)?;
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
        socket: None,
    })
}

/// A kind `n` body: `<sent_at> <sender> <socket_id>\n<event>\n<text>`.
fn decode_named_body(bytes: &[u8]) -> Result<Body, WireError> {
    let (line, rest) = split_line(bytes, MAX_HEADER_BYTES).ok_or(WireError::Field("body"))?;
    let mut f = line.split(' ');
    let (sent_at, sender) = sent_and_sender(&mut f)?;
    let socket = match f.next().ok_or(WireError::Field("socket"))? {
        "-" => None,
        s => Some(
            crate::pusher::SocketId::parse(s)
                .map_err(|_| WireError::Field("socket"))?
                .as_str()
                .to_owned(),
        ),
    };
    if f.next().is_some() {
        return Err(WireError::Extra);
    }
    // The event line is UTF-8 (a Pusher event name may be any text without control characters).
    let end = rest
        .iter()
        .take(MAX_EVENT_LINE + 1)
        .position(|&b| b == b'\n')
        .ok_or(WireError::Field("event"))?;
    let event = std::str::from_utf8(&rest[..end])
        .ok()
        .and_then(|e| EventName::pusher(e).ok())
        .ok_or(WireError::Field("event"))?;
    let text = std::str::from_utf8(&rest[end + 1..]).map_err(|_| WireError::Utf8)?;
    Ok(Body {
        sent_at,
        sender,
        event,
        text: text.to_string(),
        socket,
    })
}

/// A pipe of the header: a comet pipe name, or a Pusher channel under `ids::PUSHER_ONLY`.
pub fn pipe_name(s: &str) -> Option<PipeName> {
    match s.strip_prefix(crate::ids::PUSHER_ONLY) {
        Some(channel) => crate::pusher::Channel::parse(channel)
            .ok()
            .map(|_| PipeName::pusher_only(channel)),
        None => PipeName::parse_command(s).ok(),
    }
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
#[path = "wire_tests.rs"]
mod tests;
