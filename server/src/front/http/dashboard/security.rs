//! The tenant's transport setting: whether its CometQL logins must come over TLS (`require_tls`, stored
//! with its limits; enforced at login in `front::cometql::handler`, after the key check).

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, JsonBody};
use super::session::Owner;
use super::Api;

#[derive(Deserialize)]
pub(super) struct Security {
    require_tls: bool,
}

/// `tls_offered`: whether this server has a certificate, so the page can warn that requiring TLS without
/// one would refuse every login.
fn answer(api: &Api, require_tls: bool) -> Json<serde_json::Value> {
    Json(json!({
        "require_tls": require_tls,
        "tls_offered": api.ctx().config.tls.enabled(),
    }))
}

pub(super) async fn get(
    State(api): State<Api>,
    owner: Owner,
) -> Result<Json<serde_json::Value>, ApiError> {
    let require_tls = api.ctx().tenants.require_tls(owner.dev_id).await?;
    Ok(answer(&api, require_tls))
}

pub(super) async fn put(
    State(api): State<Api>,
    owner: Owner,
    JsonBody(body): JsonBody<Security>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ctx = api.ctx();
    ctx.tenants
        .set_require_tls(owner.dev_id, body.require_tls, &ctx.limits)
        .await?;
    Ok(answer(&api, body.require_tls))
}
