//! The owner's secret keys: list (never the values), create, reveal one, revoke one.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, JsonBody};
use super::session::Owner;
use super::Api;

/// A key id from the path; anything but a number names no key (a JSON 404, not axum's plain-text 400).
fn key_id(text: &str) -> Result<i64, ApiError> {
    text.parse()
        .map_err(|_| crate::tenant::AccountError::NoSuchKey.into())
}

#[derive(Deserialize)]
pub(super) struct NewKey {
    name: String,
}

#[derive(Deserialize, Default)]
struct Revoke {
    #[serde(default)]
    confirm_last: bool,
}

pub(super) async fn list(
    State(api): State<Api>,
    owner: Owner,
) -> Result<Json<serde_json::Value>, ApiError> {
    let keys = api.ctx().tenants.list_keys(owner.dev_id).await?;
    Ok(Json(json!({ "keys": keys })))
}

pub(super) async fn create(
    State(api): State<Api>,
    owner: Owner,
    JsonBody(k): JsonBody<NewKey>,
) -> Result<Response, ApiError> {
    let (info, key) = api.ctx().tenants.create_key(owner.dev_id, &k.name).await?;
    let mut body = serde_json::to_value(info).map_err(|_| ApiError::internal())?;
    body["key"] = key.into();
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub(super) async fn reveal(
    State(api): State<Api>,
    owner: Owner,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = key_id(&id)?;
    let key = api.ctx().tenants.reveal_key(owner.dev_id, id).await?;
    Ok(Json(json!({ "id": id, "key": key })))
}

/// The body is optional: `{"confirm_last": true}` is needed only to revoke the last active key.
pub(super) async fn revoke(
    State(api): State<Api>,
    owner: Owner,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let id = key_id(&id)?;
    let options: Revoke = if body.iter().all(u8::is_ascii_whitespace) {
        Revoke::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("The request body is not what this endpoint expects: {e}"),
            )
        })?
    };
    api.ctx()
        .tenants
        .revoke_key(owner.dev_id, id, options.confirm_last)
        .await?;
    // Backends logged in with this key lose their session now, not at their next login, on every node.
    if let Err(e) = api.ctx().hub.revoke(crate::hub::Revoke::Key(id)).await {
        tracing::warn!(error = %e, key_id = id, "other nodes were not told to close the key's sessions");
    }
    tracing::info!(dev_id = %owner.dev_id, key_id = id, "key revoked");
    Ok(StatusCode::NO_CONTENT)
}
