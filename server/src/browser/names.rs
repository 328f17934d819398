//! Pipe and event name rules, with the exact error texts of both front doors: CometQL (docs/reference-cppcomet.md
//! 1.6, MySQL error codes) and the WebSocket commands (docs/reference-cppcomet.md 2.4, error frames).

use thiserror::Error;

/// Longest pipe name CometQL accepts (and the longest a `web_pipe2` may target).
pub const PIPE_NAME_MAX: usize = 64;
/// Shortest pipe name CometQL accepts.
pub const COMETQL_PIPE_NAME_MIN: usize = 3;
/// A `subscription` stops at a shorter name.
pub const WS_PIPE_NAME_MIN: usize = 2;
/// A `subscription` name this long or longer is refused ("Channel name is too long").
pub const WS_PIPE_NAME_REFUSED: usize = 64;
/// Longest event name; an empty event is allowed.
pub const EVENT_NAME_MAX: usize = 64;
/// Longest marker echoed back in answers (markers are client-chosen tags).
pub const MARKER_MAX: usize = 64;

/// The virtual pipe of private messages (users_messages).
pub const MSG_PIPE: &str = "msg";
/// The server's system pipe (serverInfo, errors).
pub const SYS_PIPE: &str = "sys";

pub(crate) const USER_STATUS_PREFIX: &str = "user_status_";

/// `[A-Za-z0-9_-]`, the only bytes names, events and markers may contain.
pub fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Every byte is a name byte (true for the empty string).
pub fn is_name_text(s: &str) -> bool {
    s.bytes().all(is_name_byte)
}

/// Why a pipe name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PipeNameError {
    #[error("Channel name is too long")]
    TooLong,
    #[error("Channel name is too short")]
    TooShort,
    #[error("The channel name can contain only the characters A-Za-z0-9_-")]
    InvalidChars,
}

impl PipeNameError {
    /// CometQL error code (docs/reference-cppcomet.md 1.7): 11 too long, 17 too short, 12 invalid data.
    pub fn cometql_code(self) -> u16 {
        match self {
            Self::TooLong => 11,
            Self::TooShort => 17,
            Self::InvalidChars => 12,
        }
    }

    /// CometQL error text (`Display` gives the same).
    pub fn cometql_text(self) -> &'static str {
        match self {
            Self::TooLong => "Channel name is too long",
            Self::TooShort => "Channel name is too short",
            Self::InvalidChars => "The channel name can contain only the characters A-Za-z0-9_-",
        }
    }

    /// Text of the WebSocket error frame (the browser side words it differently).
    pub fn ws_text(self) -> &'static str {
        match self {
            Self::TooLong | Self::TooShort => "Invalid pipe name length",
            Self::InvalidChars => "The channel name can only contain characters A-Za-z0-9_-",
        }
    }
}

/// Why an event name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EventNameError {
    #[error("Channel event_name is too long")]
    TooLong,
    #[error("The channel name can contain only the characters A-Za-z0-9_-")]
    InvalidChars,
}

impl EventNameError {
    /// CometQL error code: 11 too long, 12 invalid characters.
    pub fn cometql_code(self) -> u16 {
        match self {
            Self::TooLong => 11,
            Self::InvalidChars => 12,
        }
    }

    /// CometQL error text (the reference reuses the channel text for bad event characters).
    pub fn cometql_text(self) -> &'static str {
        match self {
            Self::TooLong => "Channel event_name is too long",
            Self::InvalidChars => "The channel name can contain only the characters A-Za-z0-9_-",
        }
    }

    /// Text of the WebSocket error frame.
    pub fn ws_text(self) -> &'static str {
        match self {
            Self::TooLong => "Invalid event name length",
            Self::InvalidChars => "The event name can only contain characters A-Za-z0-9_-",
        }
    }
}

/// CometQL pipe name: checked in the reference's order (too long, too short, characters).
pub fn check_cometql_pipe(name: &str) -> Result<(), PipeNameError> {
    check_pipe(name, COMETQL_PIPE_NAME_MIN, PIPE_NAME_MAX)
}

/// A pipe a browser may subscribe to: 2..=63 name bytes.
pub fn check_ws_pipe(name: &str) -> Result<(), PipeNameError> {
    check_pipe(name, WS_PIPE_NAME_MIN, WS_PIPE_NAME_REFUSED - 1)
}

/// A pipe named in a browser command (`web_pipe2`, `pipe_log`, ...): 1..=64 name bytes.
pub fn check_command_pipe(name: &str) -> Result<(), PipeNameError> {
    check_pipe(name, 1, PIPE_NAME_MAX)
}

fn check_pipe(name: &str, min: usize, max: usize) -> Result<(), PipeNameError> {
    if name.len() > max {
        Err(PipeNameError::TooLong)
    } else if name.len() < min {
        Err(PipeNameError::TooShort)
    } else if !is_name_text(name) {
        Err(PipeNameError::InvalidChars)
    } else {
        Ok(())
    }
}

/// Event name: at most 64 name bytes, may be empty.
pub fn check_event(name: &str) -> Result<(), EventNameError> {
    if name.len() > EVENT_NAME_MAX {
        Err(EventNameError::TooLong)
    } else if !is_name_text(name) {
        Err(EventNameError::InvalidChars)
    } else {
        Ok(())
    }
}

/// Marker: at most 64 name bytes, may be empty.
pub fn is_valid_marker(marker: &str) -> bool {
    marker.len() <= MARKER_MAX && is_name_text(marker)
}

/// Browsers may publish here with `web_pipe2`; `pipe_count` is allowed.
pub fn is_web(pipe: &str) -> bool {
    pipe.starts_with("web_")
}

/// Browsers may publish here only when authorized.
pub fn is_webauth(pipe: &str) -> bool {
    pipe.starts_with("webauth_")
}

/// Presence pipe: subscription/unsubscription events, `track_pipe_users`, `pipe_count`.
pub fn is_track(pipe: &str) -> bool {
    pipe.starts_with("track_")
}

/// Anonymous connections may not subscribe.
pub fn is_private(pipe: &str) -> bool {
    pipe.starts_with("private_")
}

/// Every message is kept in history, whatever pipes_settings says.
pub fn is_trust(pipe: &str) -> bool {
    pipe.starts_with("trust_")
}

/// The pipe on which a user's online/offline events are sent.
pub fn user_status_pipe(user_id: u64) -> String {
    format!("{USER_STATUS_PREFIX}{user_id}")
}

/// Decimal digits only (no sign, no spaces), at most i64::MAX so that every id fits the database.
pub fn parse_id(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<u64>()
        .ok()
        .filter(|&id| id <= i64::MAX as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cometql_pipe_rules_in_reference_order() {
        assert_eq!(check_cometql_pipe("web"), Ok(()));
        assert_eq!(check_cometql_pipe(&"a".repeat(64)), Ok(()));
        assert_eq!(
            check_cometql_pipe(&"a".repeat(65)),
            Err(PipeNameError::TooLong)
        );
        // Length is checked before characters.
        assert_eq!(
            check_cometql_pipe(&"!".repeat(65)),
            Err(PipeNameError::TooLong)
        );
        assert_eq!(check_cometql_pipe("ab"), Err(PipeNameError::TooShort));
        assert_eq!(check_cometql_pipe("a!"), Err(PipeNameError::TooShort));
        assert_eq!(
            check_cometql_pipe("web.x"),
            Err(PipeNameError::InvalidChars)
        );
        assert_eq!(check_cometql_pipe("wéb"), Err(PipeNameError::InvalidChars));
        assert_eq!(check_cometql_pipe("A-z_09"), Ok(()));
    }

    #[test]
    fn cometql_codes_and_texts() {
        assert_eq!(PipeNameError::TooLong.cometql_code(), 11);
        assert_eq!(PipeNameError::TooShort.cometql_code(), 17);
        assert_eq!(PipeNameError::InvalidChars.cometql_code(), 12);
        assert_eq!(
            PipeNameError::TooShort.cometql_text(),
            "Channel name is too short"
        );
        assert_eq!(
            PipeNameError::InvalidChars.to_string(),
            "The channel name can contain only the characters A-Za-z0-9_-"
        );
        assert_eq!(EventNameError::TooLong.cometql_code(), 11);
        assert_eq!(
            EventNameError::TooLong.to_string(),
            "Channel event_name is too long"
        );
        assert_eq!(EventNameError::InvalidChars.cometql_code(), 12);
        assert_eq!(
            EventNameError::InvalidChars.cometql_text(),
            "The channel name can contain only the characters A-Za-z0-9_-"
        );
    }

    #[test]
    fn ws_texts() {
        assert_eq!(
            PipeNameError::InvalidChars.ws_text(),
            "The channel name can only contain characters A-Za-z0-9_-"
        );
        assert_eq!(PipeNameError::TooLong.ws_text(), "Invalid pipe name length");
        assert_eq!(
            EventNameError::InvalidChars.ws_text(),
            "The event name can only contain characters A-Za-z0-9_-"
        );
        assert_eq!(
            EventNameError::TooLong.ws_text(),
            "Invalid event name length"
        );
    }

    #[test]
    fn ws_pipe_bounds() {
        assert_eq!(check_ws_pipe("ab"), Ok(()));
        assert_eq!(check_ws_pipe("a"), Err(PipeNameError::TooShort));
        assert_eq!(check_ws_pipe(&"a".repeat(63)), Ok(()));
        assert_eq!(check_ws_pipe(&"a".repeat(64)), Err(PipeNameError::TooLong));
        assert_eq!(check_command_pipe("a"), Ok(()));
        assert_eq!(check_command_pipe(""), Err(PipeNameError::TooShort));
        assert_eq!(check_command_pipe(&"a".repeat(64)), Ok(()));
    }

    #[test]
    fn events_may_be_empty() {
        assert_eq!(check_event(""), Ok(()));
        assert_eq!(check_event(&"e".repeat(64)), Ok(()));
        assert_eq!(check_event(&"e".repeat(65)), Err(EventNameError::TooLong));
        assert_eq!(check_event("a b"), Err(EventNameError::InvalidChars));
    }

    #[test]
    fn markers() {
        assert!(is_valid_marker(""));
        assert!(is_valid_marker("0123456789_abc-Z"));
        assert!(!is_valid_marker("a.b"));
        assert!(!is_valid_marker(&"m".repeat(65)));
    }

    #[test]
    fn prefixes() {
        assert!(is_web("web_chat") && !is_web("webauth_x") && !is_web("@web_x"));
        assert!(is_webauth("webauth_x") && !is_webauth("web_x"));
        assert!(is_track("track_room") && !is_track("tracks"));
        assert!(is_private("private_1") && !is_private("privat_1"));
        assert!(is_trust("trust_a") && !is_trust("trusted"));
    }

    #[test]
    fn user_status_pipes() {
        assert_eq!(user_status_pipe(7), "user_status_7");
    }
}
