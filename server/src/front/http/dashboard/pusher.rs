//! The tenant's Pusher setting: whether its Pusher connections may send client events (`client_events`,
//! stored with its limits; enforced in `commands::channels`). Off by default: with it on, browsers send to
//! each other through the server on private and presence channels.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, JsonBody};
use super::session::Owner;
use super::Api;

#[derive(Deserialize)]
pub(super) struct PusherSettings {
    client_events: bool,
}

fn answer(client_events: bool) -> Json<serde_json::Value> {
    Json(json!({ "client_events": client_events }))
}

pub(super) async fn get(
    State(api): State<Api>,
    owner: Owner,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(answer(api.ctx().tenants.client_events(owner.dev_id).await?))
}

pub(super) async fn put(
    State(api): State<Api>,
    owner: Owner,
    JsonBody(body): JsonBody<PusherSettings>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let ctx = api.ctx();
    ctx.tenants
        .set_client_events(owner.dev_id, body.client_events, &ctx.limits)
        .await?;
    Ok(answer(body.client_events))
}
