//! Client → server commands (docs/reference-cppcomet.md 2.5): one text frame `<command>\n<arguments>`.
//!
//! Parsing borrows from the frame's text, so a `web_pipe2` message is not copied before the
//! frame that relays it is built.

use thiserror::Error;

use super::frames::{self, Frame};
use super::names::{
    check_command_pipe, check_event, is_name_byte, is_track, is_valid_marker, is_web, is_webauth,
    parse_id, EventNameError, PipeNameError, WS_PIPE_NAME_MIN, WS_PIPE_NAME_REFUSED,
};

/// Pipes one connection may subscribe to by default; the rest of a longer list is dropped.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 32;
/// Bytes of `subscription` text allowed per pipe (a name of up to 64 bytes plus separators).
pub(crate) const SUBSCRIPTION_TEXT_PER_PIPE: usize = 68;
/// Longest `subscription` argument text by default (the reference's 32 * 68).
#[cfg(test)]
pub(crate) const MAX_SUBSCRIPTION_TEXT: usize = MAX_SUBSCRIPTIONS * SUBSCRIPTION_TEXT_PER_PIPE;
/// Longest command word kept in [`Command::Unknown`] (for the log line).
const UNKNOWN_KEPT: usize = 64;

/// A parsed browser command; text fields borrow from the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// Replaces the connection's whole subscription set.
    Subscription(Subscription<'a>),
    /// `subscription` with positions: the same set replacement, and the connection gets offsets and a
    /// `subscribed` frame per pipe (with a replay when its position can be honoured).
    Subscription2(Subscription2<'a>),
    /// Publish from the browser; `anonymous` when the pipe was written `@web_...` (the sender's
    /// id is then hidden: 0). A `webauth_` pipe needs an authorized sender: the session checks
    /// that ([`CommandError::WebauthAnonymous`]).
    WebPipe2 {
        pipe: &'a str,
        anonymous: bool,
        event: &'a str,
        auth_type: char,
        /// The rest of the frame, verbatim (may contain newlines, may be empty).
        message: &'a str,
    },
    PipeLog {
        pipe: &'a str,
        marker: &'a str,
    },
    /// Only `web_` and `track_` pipes (checked here).
    PipeCount {
        pipe: &'a str,
        marker: &'a str,
    },
    /// Only `track_` pipes (checked here).
    TrackPipeUsers {
        pipe: &'a str,
        marker: &'a str,
    },
    UserStatus {
        user_id: u64,
    },
    UserData {
        marker: &'a str,
        user_id: u64,
    },
    /// Client statistics, ignored.
    Statistics,
    /// `cgi_call`, `CometQL_call`: stubs in the reference too.
    Noop,
    /// The reference closes the connection on an unknown command; the word (cut to 64 bytes) is
    /// kept for the log.
    Unknown(&'a str),
}

/// The pipes of a `subscription`, in order, without duplicates, each 2..=63 name bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription<'a> {
    pub pipes: Vec<&'a str>,
    /// Set when the list was cut to the limit (32): send its error frame, keep the connection.
    pub notice: Option<CommandError>,
}

/// One pipe of a `subscription2`: `<pipe>` or `<pipe>\t<epoch>\t<offset>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Positioned<'a> {
    pub pipe: &'a str,
    /// The last position the client processed.
    pub position: Option<(&'a str, u64)>,
}

/// The pipes of a `subscription2`, in order, without duplicates (the first line of a pipe wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription2<'a> {
    pub pipes: Vec<Positioned<'a>>,
    /// Set when the list was cut to the limit: send its error frame, keep the connection.
    pub notice: Option<CommandError>,
}

/// Longest epoch a client may send back (the server's are 16 hex digits).
pub(crate) const MAX_EPOCH_BYTES: usize = 64;
/// Bytes of `subscription2` text allowed per pipe: a name, an epoch, an offset and separators.
pub(crate) const SUBSCRIPTION2_TEXT_PER_PIPE: usize = 64 + 1 + MAX_EPOCH_BYTES + 1 + 20 + 1;

/// A refused command: the reference's error text, the frame to send, and whether the
/// connection is then closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CommandError {
    #[error("Too many letters")]
    TooManyLetters,
    /// A `subscription2` line that is neither `<pipe>` nor `<pipe>\t<epoch>\t<offset>`.
    #[error("[subscription2] Invalid line. Expected <pipe> or <pipe>\\t<epoch>\\t<offset>")]
    InvalidPosition,
    #[error("Channel name is too long")]
    ChannelNameTooLong,
    #[error("The channel name can only contain characters A-Za-z0-9_-")]
    PipeNameChars,
    #[error("Invalid pipe name length")]
    PipeNameLength,
    #[error("The event name can only contain characters A-Za-z0-9_-")]
    EventNameChars,
    #[error("Invalid event name length")]
    EventNameLength,
    #[error("[pipe_msg2] Invalid channel name. The channel should begin with web_")]
    NotWebPipe,
    #[error("[webauth_pipe_msg2] Invalid user auth. In to channel with name like webauth_* can not send messages anonim users")]
    WebauthAnonymous,
    #[error("Invalid value auth_type")]
    AuthType,
    #[error("Invalid channel name.")]
    InvalidChannelName,
    #[error("Invalid marker value.")]
    InvalidMarkerValue,
    #[error("[pipe_count] Invalid channel name. The channel should start with web_")]
    PipeCountNotWeb,
    #[error("Invalid pipe name.")]
    InvalidPipeName,
    #[error("[track_pipe_users] Invalid channel name. The channel should start with track_")]
    NotTrackPipe,
    #[error("Invalid marker name.")]
    InvalidMarkerName,
    #[error("Invalid user id")]
    InvalidUserId,
    /// A `web_pipe2` message over the tenant's message size limit (checked by the session).
    #[error("Data is too long")]
    MessageTooLong,
    /// `pipe_log` of a `private_` pipe from an anonymous connection (checked by the session, with the
    /// rule of `subscription`). Not in the reference, which sent the history to anyone.
    #[error("[pipe_log] Invalid user auth. Anonymous users can not read channels named private_*")]
    PrivateAnonymous,
}

impl CommandError {
    /// Malformed commands close the connection as in the reference; refusals that depend on
    /// the situation (auth, limits, a count on the wrong kind of pipe) keep it open.
    pub fn closes_connection(self) -> bool {
        !matches!(
            self,
            Self::TooManyLetters
                | Self::WebauthAnonymous
                | Self::PipeCountNotWeb
                | Self::InvalidUserId
                | Self::MessageTooLong
                | Self::PrivateAnonymous
        )
    }

    /// The error frame to send (subscription errors carry `"code":"403"`, name checks only the
    /// text, the others `"number_messages":-1`).
    pub fn frame(self, now: i64) -> Frame {
        let text = self.to_string();
        match self {
            Self::TooManyLetters | Self::ChannelNameTooLong | Self::InvalidPosition => {
                frames::subscription_error(&text, now)
            }
            Self::PipeNameChars
            | Self::PipeNameLength
            | Self::EventNameChars
            | Self::EventNameLength => frames::error(&text, now),
            _ => frames::command_error(&text, now),
        }
    }
}

/// Limits that a tenant may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandLimits {
    /// Pipes per connection (the text limit scales with it: 68 bytes a pipe).
    pub max_subscriptions: usize,
}

impl Default for CommandLimits {
    fn default() -> Self {
        Self {
            max_subscriptions: MAX_SUBSCRIPTIONS,
        }
    }
}

/// Parses one text (or binary-as-text) frame with the default limits.
pub fn parse_command(text: &str) -> Result<Command<'_>, CommandError> {
    parse_command_with(text, CommandLimits::default())
}

/// Parses one text (or binary-as-text) frame.
pub fn parse_command_with(text: &str, limits: CommandLimits) -> Result<Command<'_>, CommandError> {
    let (word, args) = text.split_once('\n').unwrap_or((text, ""));
    match word {
        "subscription" => subscription(args, limits.max_subscriptions).map(Command::Subscription),
        "subscription2" => {
            subscription2(args, limits.max_subscriptions).map(Command::Subscription2)
        }
        "web_pipe2" => web_pipe2(args),
        "pipe_log" => {
            let (pipe, marker) = pipe_and_marker(args);
            if check_command_pipe(pipe).is_err() {
                return Err(CommandError::InvalidChannelName);
            }
            Ok(Command::PipeLog {
                pipe,
                marker: marker_or(marker, CommandError::InvalidMarkerValue)?,
            })
        }
        "pipe_count" => {
            let (pipe, marker) = pipe_and_marker(args);
            if check_command_pipe(pipe).is_err() {
                return Err(CommandError::InvalidPipeName);
            }
            let marker = marker_or(marker, CommandError::InvalidMarkerValue)?;
            if !is_web(pipe) && !is_track(pipe) {
                return Err(CommandError::PipeCountNotWeb);
            }
            Ok(Command::PipeCount { pipe, marker })
        }
        "track_pipe_users" => {
            let (pipe, marker) = pipe_and_marker(args);
            if !is_track(pipe) {
                return Err(CommandError::NotTrackPipe);
            }
            if check_command_pipe(pipe).is_err() {
                return Err(CommandError::InvalidPipeName);
            }
            let marker = marker_or(marker, CommandError::InvalidMarkerValue)?;
            Ok(Command::TrackPipeUsers { pipe, marker })
        }
        "user_status" => Ok(Command::UserStatus {
            user_id: user_id(first_line(args))?,
        }),
        "user_data" => {
            let (marker, rest) = args.split_once('\n').unwrap_or((args, ""));
            let marker = marker_or(marker, CommandError::InvalidMarkerName)?;
            Ok(Command::UserData {
                marker,
                user_id: user_id(first_line(rest))?,
            })
        }
        "statistics" => Ok(Command::Statistics),
        "cgi_call" | "CometQL_call" => Ok(Command::Noop),
        other => Ok(Command::Unknown(cut(other, UNKNOWN_KEPT))),
    }
}

/// Names are runs of `[A-Za-z0-9_-]`; any other character separates them (so `web_x.ev` is
/// `web_x` and `ev`, as in the reference). A name shorter than 2 ends the list. Text longer than
/// the limit is refused whole (`TooManyLetters`, nothing subscribed; the reference had already
/// dropped the old set by then).
fn subscription(args: &str, max: usize) -> Result<Subscription<'_>, CommandError> {
    if args.len() > max.saturating_mul(SUBSCRIPTION_TEXT_PER_PIPE) {
        return Err(CommandError::TooManyLetters);
    }
    let mut pipes: Vec<&str> = Vec::new();
    let mut notice = None;
    let is_separator = |c: char| !(c.is_ascii() && is_name_byte(c as u8));
    for name in args.split(is_separator).filter(|n| !n.is_empty()) {
        if name.len() >= WS_PIPE_NAME_REFUSED {
            return Err(CommandError::ChannelNameTooLong);
        }
        if name.len() < WS_PIPE_NAME_MIN {
            break;
        }
        if pipes.contains(&name) {
            continue;
        }
        if pipes.len() >= max {
            notice = Some(CommandError::TooManyLetters);
            break;
        }
        pipes.push(name);
    }
    Ok(Subscription { pipes, notice })
}

/// One line per pipe, `<pipe>` or `<pipe>\t<epoch>\t<offset>`; empty lines (a trailing newline) are
/// skipped. Stricter than `subscription` (a new command has no old clients to tolerate): a line that is not
/// one of the two forms refuses the whole command and nothing changes.
fn subscription2(args: &str, max: usize) -> Result<Subscription2<'_>, CommandError> {
    if args.len() > max.saturating_mul(SUBSCRIPTION2_TEXT_PER_PIPE) {
        return Err(CommandError::TooManyLetters);
    }
    let mut pipes: Vec<Positioned<'_>> = Vec::new();
    let mut notice = None;
    for line in args.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split('\t');
        let pipe = fields.next().unwrap_or("");
        let position = match (fields.next(), fields.next(), fields.next()) {
            (None, _, _) => None,
            (Some(epoch), Some(offset), None) => Some((epoch, offset)),
            _ => return Err(CommandError::InvalidPosition),
        };
        if pipe.len() >= WS_PIPE_NAME_REFUSED {
            return Err(CommandError::ChannelNameTooLong);
        }
        if pipe.len() < WS_PIPE_NAME_MIN || !pipe.bytes().all(is_name_byte) {
            return Err(CommandError::InvalidPosition);
        }
        let position = match position {
            None => None,
            Some((epoch, offset)) => {
                let epoch_ok = !epoch.is_empty()
                    && epoch.len() <= MAX_EPOCH_BYTES
                    && epoch.bytes().all(is_name_byte);
                let offset = (!offset.is_empty() && offset.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| offset.parse::<u64>().ok())
                    .flatten();
                match offset {
                    Some(offset) if epoch_ok => Some((epoch, offset)),
                    _ => return Err(CommandError::InvalidPosition),
                }
            }
        };
        if pipes.iter().any(|p| p.pipe == pipe) {
            continue;
        }
        if pipes.len() >= max {
            notice = Some(CommandError::TooManyLetters);
            break;
        }
        pipes.push(Positioned { pipe, position });
    }
    Ok(Subscription2 { pipes, notice })
}

/// `<pipe>\n<event>\n<auth_type>\n<message>`, checked in the reference's order.
fn web_pipe2(args: &str) -> Result<Command<'_>, CommandError> {
    let (target, rest) = args.split_once('\n').unwrap_or((args, ""));
    let (pipe, anonymous) = match target.strip_prefix('@') {
        Some(pipe) if is_web(pipe) => (pipe, true),
        None if is_web(target) || is_webauth(target) => (target, false),
        _ => return Err(CommandError::NotWebPipe),
    };
    check_command_pipe(pipe).map_err(|e| match e {
        PipeNameError::InvalidChars => CommandError::PipeNameChars,
        PipeNameError::TooLong | PipeNameError::TooShort => CommandError::PipeNameLength,
    })?;
    let (event, rest) = rest.split_once('\n').unwrap_or((rest, ""));
    check_event(event).map_err(|e| match e {
        EventNameError::InvalidChars => CommandError::EventNameChars,
        EventNameError::TooLong => CommandError::EventNameLength,
    })?;
    // Exactly one byte, then the newline; an ASCII byte, since the next one is '\n'.
    match rest.as_bytes() {
        [auth, b'\n', ..] if auth.is_ascii() => Ok(Command::WebPipe2 {
            pipe,
            anonymous,
            event,
            auth_type: char::from(*auth),
            message: &rest[2..],
        }),
        _ => Err(CommandError::AuthType),
    }
}

/// `<pipe>\n<marker>[\n...]`; a missing marker is empty.
fn pipe_and_marker(args: &str) -> (&str, &str) {
    let (pipe, rest) = args.split_once('\n').unwrap_or((args, ""));
    (pipe, first_line(rest))
}

fn marker_or(marker: &str, err: CommandError) -> Result<&str, CommandError> {
    if is_valid_marker(marker) {
        Ok(marker)
    } else {
        Err(err)
    }
}

fn first_line(text: &str) -> &str {
    text.split('\n').next().unwrap_or("")
}

fn user_id(text: &str) -> Result<u64, CommandError> {
    parse_id(text.trim()).ok_or(CommandError::InvalidUserId)
}

fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;
