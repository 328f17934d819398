//! The domain's error vocabulary. CometQL's numeric codes are what existing users' code matches on, so they
//! are the identity of an error here; each front door maps them once (MySQL ERR packet, WebSocket error
//! frame, HTTP status).

use std::borrow::Cow;

use crate::browser::names::{EventNameError, PipeNameError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NotImplemented = 2,
    Syntax = 3,
    ReadOnly = 10,
    TooLong = 11,
    Invalid = 12,
    KeyRequired = 13,
    Column = 14,
    NoTable = 15,
    Auth = 16,
    TooShort = 17,
    TooManyConditions = 18,
    TooManyValues = 19,
    TooManyColumns = 20,
    AccessDenied = 403,
    RateLimited = 429,
    Internal = 500,
    /// The cluster's Redis cannot be reached: nothing was published (a node fails closed).
    Unavailable = 503,
    /// MySQL's ER_RECORD_FILE_FULL ("The table is full"): a storage quota of the tenant is reached.
    QuotaExceeded = 1114,
    /// MySQL's ER_SECURE_TRANSPORT_REQUIRED: the tenant accepts CometQL logins over TLS only.
    InsecureTransport = 3159,
}

impl ErrorCode {
    /// The code a pure layer (parser, name rules) reported.
    pub fn from_code(code: u16) -> ErrorCode {
        match code {
            2 => ErrorCode::NotImplemented,
            10 => ErrorCode::ReadOnly,
            11 => ErrorCode::TooLong,
            12 => ErrorCode::Invalid,
            13 => ErrorCode::KeyRequired,
            14 => ErrorCode::Column,
            15 => ErrorCode::NoTable,
            16 => ErrorCode::Auth,
            17 => ErrorCode::TooShort,
            18 => ErrorCode::TooManyConditions,
            19 => ErrorCode::TooManyValues,
            20 => ErrorCode::TooManyColumns,
            403 => ErrorCode::AccessDenied,
            429 => ErrorCode::RateLimited,
            500 => ErrorCode::Internal,
            503 => ErrorCode::Unavailable,
            1114 => ErrorCode::QuotaExceeded,
            3159 => ErrorCode::InsecureTransport,
            _ => ErrorCode::Syntax,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ERROR {} {message}", *code as u16)]
pub struct CommandError {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
    /// When a refusal by a rate limit ends: what an HTTP answer's `Retry-After` says.
    pub retry_after: Option<std::time::Duration>,
}

impl CommandError {
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> CommandError {
        CommandError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn internal(what: &'static str, err: impl std::fmt::Display) -> CommandError {
        tracing::error!(error = %err, "{what}");
        CommandError::new(
            ErrorCode::Internal,
            format!("internal server error: {what}"),
        )
    }
}

impl From<PipeNameError> for CommandError {
    fn from(e: PipeNameError) -> Self {
        CommandError::new(ErrorCode::from_code(e.cometql_code()), e.cometql_text())
    }
}

impl From<EventNameError> for CommandError {
    fn from(e: EventNameError) -> Self {
        CommandError::new(ErrorCode::from_code(e.cometql_code()), e.cometql_text())
    }
}

impl From<crate::cometql::ParseError> for CommandError {
    fn from(e: crate::cometql::ParseError) -> Self {
        CommandError::new(ErrorCode::from_code(e.code), e.message)
    }
}

impl From<crate::storage::StorageError> for CommandError {
    fn from(e: crate::storage::StorageError) -> Self {
        CommandError::internal("storage failure", e)
    }
}

impl From<crate::hub::BrokerError> for CommandError {
    fn from(e: crate::hub::BrokerError) -> Self {
        CommandError::new(ErrorCode::Unavailable, e.to_string())
    }
}
