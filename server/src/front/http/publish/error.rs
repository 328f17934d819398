//! The HTTP publish API's errors and their one mapping to HTTP: a status and a JSON body
//! `{"error": {"code": .., "message": ..}}`, `code` stable for programs, `message` a sentence for people.
//! Command errors (the same a CometQL INSERT gets) are mapped here and nowhere else.

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::commands::{CommandError, ErrorCode};

#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: Cow<'static, str>,
    /// Seconds, for 429.
    pub(super) retry_after: Option<u64>,
}

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Any failed key check, whatever its cause: no key, an unknown dev_id, a wrong or revoked key.
    pub(super) fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Send your dev_id in X-Dev-Id and one of its secret keys in Authorization: Bearer <key>.",
        )
    }

    pub(super) fn bad_request(message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(super) fn too_large(max: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("The request body is larger than {max} bytes."),
        )
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        use ErrorCode as E;
        let (status, code) = match e.code {
            E::TooLong => (StatusCode::BAD_REQUEST, "too_long"),
            E::TooShort => (StatusCode::BAD_REQUEST, "too_short"),
            E::Invalid => (StatusCode::BAD_REQUEST, "invalid"),
            E::NotImplemented
            | E::Syntax
            | E::ReadOnly
            | E::KeyRequired
            | E::Column
            | E::NoTable
            | E::TooManyConditions
            | E::TooManyValues
            | E::TooManyColumns => (StatusCode::BAD_REQUEST, "bad_request"),
            E::Auth => (StatusCode::UNAUTHORIZED, "unauthorized"),
            E::AccessDenied => (StatusCode::FORBIDDEN, "forbidden"),
            E::InsecureTransport => (StatusCode::FORBIDDEN, "insecure_transport"),
            E::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            E::QuotaExceeded => (StatusCode::INSUFFICIENT_STORAGE, "quota_exceeded"),
            E::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            E::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError {
            status,
            code,
            message: e.message,
            // Whole seconds, rounded up: a client that waits what it is told is not refused again.
            retry_after: e
                .retry_after
                .map(|d| d.as_millis().div_ceil(1000).max(1) as u64),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        let h = response.headers_mut();
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, secs.into());
        }
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"halley\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn command_errors_map_once() {
        let e = ApiError::from(CommandError::new(ErrorCode::TooLong, "Data is too long"));
        assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "too_long"));
        let mut refused = CommandError::new(ErrorCode::RateLimited, "publish budget");
        refused.retry_after = Some(Duration::from_millis(1200));
        let e = ApiError::from(refused);
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after, Some(2));
        let mut soon = CommandError::new(ErrorCode::RateLimited, "burst");
        soon.retry_after = Some(Duration::from_millis(1));
        assert_eq!(ApiError::from(soon).retry_after, Some(1));
        let e = ApiError::from(CommandError::new(ErrorCode::QuotaExceeded, "full"));
        assert_eq!(e.status, StatusCode::INSUFFICIENT_STORAGE);
    }
}
