//! Live usage figures and the quick start's "send a test message", which publishes through the same command
//! as a CometQL `INSERT INTO pipes_messages`.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, JsonBody};
use super::session::Owner;
use super::Api;
use crate::commands::pipes_messages::{publish, Message};
use crate::commands::{Caller, ErrorCode};

#[derive(Deserialize)]
pub(super) struct TestMessage {
    pipe: String,
    event: String,
    message: String,
}

/// The server's own counters: live connections and sessions from the node's stats, messages from the usage book
/// (stored per day plus what this node counted since its last flush).
pub(super) async fn usage(
    State(api): State<Api>,
    owner: Owner,
) -> Result<Json<serde_json::Value>, ApiError> {
    let counters = api.ctx().stats.tenant(owner.dev_id);
    let messages = api.0.usage.messages(owner.dev_id).await?;
    Ok(Json(json!({
        "websocket_connections": counters.websocket_connections.load(Ordering::Relaxed).max(0),
        "cometql_sessions": counters.cometql_sessions.load(Ordering::Relaxed).max(0),
        "messages_today": messages.today,
        "messages_this_month": messages.this_month,
        "rate_limited": counters.rate_limited.load(Ordering::Relaxed),
        "storage": storage_usage(api.ctx(), owner.dev_id),
    })))
}

/// What the tenant keeps stored against its quotas (running totals: no query).
fn storage_usage(ctx: &crate::commands::Ctx, dev_id: crate::ids::DevId) -> serde_json::Value {
    let (used, limit) = crate::commands::quota::in_use(ctx, dev_id);
    let pair = |used: i64, limit: i64| json!({ "used": used.max(0), "limit": limit });
    json!({
        "history_bytes": pair(used.history_bytes, limit.history_bytes),
        "history_rows": pair(used.history_rows, limit.history_rows),
        "queued_messages": pair(used.queued_messages, limit.queued_per_tenant),
        "queued_messages_per_user_limit": limit.queued_per_user,
        "users_data": pair(used.users_data, limit.users_data),
        "revoked_tokens": pair(used.revoked_tokens, limit.revoked_tokens),
    })
}

pub(super) async fn test_message(
    State(api): State<Api>,
    owner: Owner,
    JsonBody(t): JsonBody<TestMessage>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let max = api.ctx().config.websocket.max_message_bytes;
    let message = Message::new(&t.pipe, &t.event, &t.message, max)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_message", e.message))?;
    let caller = Caller {
        dev_id: owner.dev_id,
    };
    let receivers = publish(api.ctx(), caller, message, None)
        .await
        .map_err(|e| match e.code {
            ErrorCode::RateLimited => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.message)
            }
            ErrorCode::QuotaExceeded => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "quota_exceeded",
                e.message,
            ),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.message),
        })?;
    Ok(Json(json!({ "receivers": receivers.delivered })))
}
