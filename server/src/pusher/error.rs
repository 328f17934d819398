//! The Pusher protocol's error vocabulary: the documented close and `pusher:error` codes, and why a client
//! frame was refused.
//!
//! Pusher's ranges tell the client what to do next, so a code is chosen for what the client should do, not
//! for how the input was wrong: 4000-4099 do not reconnect (same parameters will fail again), 4100-4199
//! reconnect after backing off, 4200-4299 reconnect at once, 4300-4399 anything else. An error about one
//! subscription or one client event leaves the connection as it is; Pusher sends those with `"code": null`,
//! and so do we ([`FrameError::code`] is `None`).

use thiserror::Error;

/// Every code of Pusher's WebSocket protocol (the "Error Codes" section of its protocol page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 4000: the application only accepts TLS connections.
    SslOnly = 4000,
    /// 4001: no app has this key.
    AppDoesNotExist = 4001,
    /// 4003: the app is disabled.
    AppDisabled = 4003,
    /// 4004: the app is over its connection quota.
    OverConnectionQuota = 4004,
    /// 4005: the path is not `/app/{key}`.
    PathNotFound = 4005,
    /// 4006: the `protocol` parameter is not a version number.
    InvalidVersion = 4006,
    /// 4007: a protocol version this server does not speak.
    UnsupportedProtocol = 4007,
    /// 4008: no `protocol` parameter.
    NoProtocol = 4008,
    /// 4009: the connection is unauthorized (a failed sign-in, or none in time where one is required).
    Unauthorized = 4009,
    /// 4100: over capacity, back off and retry.
    OverCapacity = 4100,
    /// 4200: generic, reconnect at once (a frame this server could not read).
    GenericReconnect = 4200,
    /// 4201: the client did not answer a ping in time.
    PongNotReceived = 4201,
    /// 4202: closed after a period of inactivity.
    ClosedAfterInactivity = 4202,
    /// 4301: a client event refused by the rate limit.
    ClientEventRateLimit = 4301,
}

/// What a client is expected to do after an error or a close with a code, from the code's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// 4000-4099: the same parameters will fail again.
    Never,
    /// 4100-4199: try again after backing off.
    BackOff,
    /// 4200-4299: try again now.
    Now,
    /// 4300-4399: the connection is not at fault.
    NotNeeded,
}

impl ErrorCode {
    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn reconnect(self) -> Reconnect {
        match self.code() {
            4000..=4099 => Reconnect::Never,
            4100..=4199 => Reconnect::BackOff,
            4200..=4299 => Reconnect::Now,
            _ => Reconnect::NotNeeded,
        }
    }

    /// The message sent with the code (Pusher's wording where it documents one).
    pub fn message(self) -> &'static str {
        match self {
            Self::SslOnly => "Application only accepts SSL connections",
            Self::AppDoesNotExist => "Application does not exist",
            Self::AppDisabled => "Application disabled",
            Self::OverConnectionQuota => "Application is over connection quota",
            Self::PathNotFound => "Path not found",
            Self::InvalidVersion => "Invalid version string format",
            Self::UnsupportedProtocol => "Unsupported protocol version",
            Self::NoProtocol => "No protocol version supplied",
            Self::Unauthorized => "Connection is unauthorized",
            Self::OverCapacity => "Over capacity",
            Self::GenericReconnect => "Generic reconnect immediately",
            Self::PongNotReceived => "Pong reply not received",
            Self::ClosedAfterInactivity => "Closed after inactivity",
            Self::ClientEventRateLimit => "Client event rejected due to rate limit",
        }
    }
}

/// Why a client frame was refused. [`FrameError::code`] says which `pusher:error` code it carries (none:
/// the connection is fine, only this frame failed), [`FrameError::closes`] whether the door closes the
/// connection after sending it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("Message too large: {len} bytes, at most {max}")]
    TooLarge { len: usize, max: usize },
    #[error("Invalid message format: not a JSON object")]
    NotJson,
    #[error("Invalid message format: no event name")]
    NoEvent,
    #[error("Invalid message format: {0}")]
    BadField(&'static str),
    #[error("Unsupported event: {0}")]
    UnknownEvent(String),
    #[error("Invalid channel name: {0}")]
    Channel(#[from] ChannelError),
    #[error("Invalid event name: {0}")]
    Event(#[from] EventError),
    #[error("Event data too large: {len} bytes, at most {max}")]
    DataTooLarge { len: usize, max: usize },
    #[error("Invalid channel_data: {0}")]
    ChannelData(&'static str),
    #[error("Invalid user_data: {0}")]
    UserData(&'static str),
}

impl FrameError {
    /// The `pusher:error` code: unreadable frames say "reconnect" (4200, the client's state may be off);
    /// a refused subscription or event carries none.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::TooLarge { .. } | Self::NotJson | Self::NoEvent | Self::BadField(_) => {
                Some(ErrorCode::GenericReconnect)
            }
            Self::UnknownEvent(_)
            | Self::Channel(_)
            | Self::Event(_)
            | Self::DataTooLarge { .. }
            | Self::ChannelData(_)
            | Self::UserData(_) => None,
        }
    }

    /// Whether the connection ends after the error: a frame past the size limit is a client that does not
    /// follow the protocol (or an attack), and reading on would mean buffering it.
    pub fn closes(&self) -> bool {
        matches!(self, Self::TooLarge { .. })
    }
}

/// Why a channel name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ChannelError {
    #[error("empty")]
    Empty,
    #[error("longer than 200 characters")]
    TooLong,
    #[error("only A-Za-z0-9_-=@,.; are allowed")]
    InvalidChars,
    #[error("a user channel names no user")]
    NoUser,
}

/// Why an event name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EventError {
    #[error("empty")]
    Empty,
    #[error("longer than 200 characters")]
    TooLong,
    #[error("control characters are not allowed")]
    InvalidChars,
    #[error("the pusher: and pusher_internal: prefixes are reserved")]
    Reserved,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_tell_the_client_what_to_do() {
        assert_eq!(ErrorCode::AppDoesNotExist.code(), 4001);
        assert_eq!(ErrorCode::AppDoesNotExist.reconnect(), Reconnect::Never);
        assert_eq!(ErrorCode::Unauthorized.reconnect(), Reconnect::Never);
        assert_eq!(ErrorCode::OverCapacity.reconnect(), Reconnect::BackOff);
        assert_eq!(ErrorCode::GenericReconnect.reconnect(), Reconnect::Now);
        assert_eq!(ErrorCode::PongNotReceived.code(), 4201);
        assert_eq!(ErrorCode::ClosedAfterInactivity.code(), 4202);
        assert_eq!(
            ErrorCode::ClientEventRateLimit.reconnect(),
            Reconnect::NotNeeded
        );
        assert_eq!(ErrorCode::ClientEventRateLimit.code(), 4301);
    }

    #[test]
    fn unreadable_frames_say_reconnect_and_refusals_carry_no_code() {
        assert_eq!(
            FrameError::NotJson.code(),
            Some(ErrorCode::GenericReconnect)
        );
        assert!(FrameError::TooLarge { len: 2, max: 1 }.closes());
        assert!(!FrameError::NotJson.closes());
        assert_eq!(FrameError::Channel(ChannelError::TooLong).code(), None);
        assert_eq!(
            FrameError::Channel(ChannelError::TooLong).to_string(),
            "Invalid channel name: longer than 200 characters"
        );
    }
}
