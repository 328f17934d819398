//! Allowed origins for the tenant's WebSocket connections. An empty list means any origin may connect;
//! otherwise an upgrade whose `Origin` is not listed gets HTTP 403 (enforced in `push::websocket`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, JsonBody};
use super::session::Owner;
use super::Api;

pub(super) const MAX_ORIGINS: usize = 100;

#[derive(Deserialize)]
pub(super) struct Origins {
    origins: Vec<String>,
}

/// `https://App.example.com/` → `https://app.example.com`: how browsers send it (scheme, host, port only).
pub(super) fn normalize_origin(text: &str) -> Option<String> {
    let text = text.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, host) = text.split_once("://")?;
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    ((scheme == "http" || scheme == "https") && host_ok).then_some(text)
}

pub(super) async fn get(
    State(api): State<Api>,
    owner: Owner,
) -> Result<Json<serde_json::Value>, ApiError> {
    let origins = api.ctx().tenants.stored_origins(owner.dev_id).await?;
    Ok(Json(json!({ "origins": origins })))
}

pub(super) async fn put(
    State(api): State<Api>,
    owner: Owner,
    JsonBody(body): JsonBody<Origins>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if body.origins.len() > MAX_ORIGINS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_origin",
            format!("At most {MAX_ORIGINS} origins."),
        ));
    }
    let mut origins = Vec::with_capacity(body.origins.len());
    for text in body.origins.iter().filter(|o| !o.trim().is_empty()) {
        let origin = normalize_origin(text).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_origin",
                format!(
                    "{text:?} is not an origin. Write the scheme, host and port only, like https://app.example.com"
                ),
            )
        })?;
        origins.push(origin);
    }
    origins.sort();
    origins.dedup();
    api.ctx()
        .tenants
        .set_allowed_origins(owner.dev_id, &origins)
        .await?;
    Ok(Json(json!({ "origins": origins })))
}

#[cfg(test)]
mod tests {
    use super::normalize_origin as n;

    #[test]
    fn origins_are_scheme_host_port() {
        assert_eq!(
            n("https://App.Example.com/").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            n("http://localhost:3000").as_deref(),
            Some("http://localhost:3000")
        );
        assert_eq!(n("http://[::1]:80").as_deref(), Some("http://[::1]:80"));
        assert_eq!(n("app.example.com"), None);
        assert_eq!(n("ftp://example.com"), None);
        assert_eq!(n("https://example.com/path"), None);
        assert_eq!(n("https://"), None);
    }
}
