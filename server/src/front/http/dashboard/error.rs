//! The API's errors and their one mapping to HTTP: a status and a JSON body `{"error": code, "message":
//! text}` where `code` is stable for programs and `message` is a sentence the page shows as it is.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use crate::tenant::{AccountError, TenantError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn not_logged_in() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "not_logged_in",
            "You are not logged in.",
        )
    }

    pub fn session_expired() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "session_expired",
            "Your session has expired. Please log in again.",
        )
    }

    pub fn csrf(why: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            format!("Request refused: {why}. Reload the page and try again."),
        )
    }

    pub fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Something went wrong on the server. Please try again in a moment.",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.code, "message": self.message});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> Self {
        AccountError::Tenant(e).into()
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        use AccountError as A;
        let (status, code) = match &e {
            A::InvalidEmail => (StatusCode::BAD_REQUEST, "invalid_email"),
            A::PasswordTooShort | A::PasswordTooLong => (StatusCode::BAD_REQUEST, "weak_password"),
            A::BadKeyName => (StatusCode::BAD_REQUEST, "invalid_key_name"),
            A::EmailTaken => (StatusCode::CONFLICT, "email_taken"),
            A::BadCredentials => (StatusCode::UNAUTHORIZED, "wrong_password"),
            A::NoSuchKey => (StatusCode::NOT_FOUND, "no_such_key"),
            A::LastKey => (StatusCode::CONFLICT, "last_key"),
            A::Busy => {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    "The server is checking too many passwords right now. Please try again in a moment.",
                );
                e.retry_after = Some(1);
                return e;
            }
            A::Tenant(TenantError::TooManyKeys(cap)) => {
                return ApiError::new(
                    StatusCode::CONFLICT,
                    "too_many_keys",
                    format!(
                        "You already have {cap} active keys, the most a tenant may have. \
                         Revoke one you no longer use, then create the new one."
                    ),
                );
            }
            A::Tenant(TenantError::Storage(s)) => {
                tracing::error!(error = %s, "dashboard API storage error");
                return ApiError::internal();
            }
            A::Tenant(other) => {
                tracing::error!(error = %other, "dashboard API tenant error");
                return ApiError::internal();
            }
        };
        let message = match &e {
            A::InvalidEmail => "Please enter a valid email address, like you@example.com.".into(),
            A::EmailTaken => "An account with this email already exists. Log in instead.".into(),
            A::BadCredentials => "Wrong email or password.".into(),
            A::NoSuchKey => "No such key.".into(),
            A::LastKey => {
                "This is your last active key: revoking it stops every backend that uses it. \
                           Send {\"confirm_last\": true} to revoke it anyway."
                    .into()
            }
            other => {
                let mut text = other.to_string();
                text[..1].make_ascii_uppercase();
                text + "."
            }
        };
        ApiError::new(status, code, message)
    }
}

/// `Json<T>` whose rejections (wrong content type, bad JSON, missing field) are `ApiError`s with a clear
/// message. Requiring `application/json` also means a cross-site HTML form cannot post here.
pub(super) struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "content_type",
                "Send the request body as JSON (Content-Type: application/json).",
            )),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!(
                    "The request body is not what this endpoint expects: {}",
                    e.body_text()
                ),
            )),
        }
    }
}
