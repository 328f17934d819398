//! The native HTTP publish API, for callers without a MySQL driver (curl, serverless functions):
//! `POST /api/v1/publish` and `POST /api/v1/users_messages`, documented in docs/http-api.md.
//!
//! I/O only: the caller is the tenant named by `X-Dev-Id` whose secret key is the bearer token, checked as a
//! CometQL login checks it (`Tenants::check_key`: every key, a dummy for unknown tenants, the same
//! per-address block after repeated failures); the body is read within `[http_api] max_body_bytes` and
//! turned into the same validated values a CometQL INSERT makes, which the same commands publish, from
//! the same budget. A batch is one statement: all valid and paid for, or nothing published.

mod error;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::commands::pipes_messages::{self, Message, Published};
use crate::commands::users_messages::{self, Letter};
use crate::commands::{Caller, Ctx};
use error::ApiError;

/// The header naming the tenant (the CometQL user name), beside the bearer key.
const DEV_ID_HEADER: &str = "x-dev-id";

pub(super) fn router(ctx: Ctx) -> Router {
    Router::new()
        .route(
            "/api/v1/publish",
            post(publish).fallback(method_not_allowed),
        )
        .route(
            "/api/v1/users_messages",
            post(users_messages).fallback(method_not_allowed),
        )
        .route("/api/v1/{*rest}", axum::routing::any(not_found))
        .with_state(ctx)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Use POST.",
    )
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "No such API endpoint.")
}

/// One message to a pipe, as the request names it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PipeMessage {
    pipe: String,
    event: String,
    message: Value,
}

/// One private message to a user.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserMessage {
    user_id: Value,
    event: String,
    message: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch<T> {
    messages: Vec<T>,
}

async fn publish(
    State(ctx): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let caller = authenticate(&ctx, peer, &headers).await?;
    let (items, batch) = read_request::<PipeMessage>(&ctx, body).await?;
    let max = ctx.config.websocket.max_message_bytes;
    let messages = items
        .iter()
        .map(|m| {
            Message::new(&m.pipe, &m.event, &message_text(&m.message)?, max).map_err(Into::into)
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let published = pipes_messages::publish_all(&ctx, caller, messages).await?;
    let answers: Vec<Value> = published.iter().map(published_json).collect();
    Ok(Json(answer(answers, batch)))
}

async fn users_messages(
    State(ctx): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let caller = authenticate(&ctx, peer, &headers).await?;
    let (items, batch) = read_request::<UserMessage>(&ctx, body).await?;
    let letters = items
        .iter()
        .map(|m| {
            let user = match &m.user_id {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(ApiError::bad_request("user_id must be a number.")),
            };
            Ok(Letter::new(
                &ctx,
                &user,
                &m.event,
                &message_text(&m.message)?,
            )?)
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let reached = users_messages::send_all(&ctx, caller, letters).await?;
    let answers: Vec<Value> = reached
        .iter()
        .map(|&n| json!({"delivered": n, "queued": n == 0}))
        .collect();
    Ok(Json(answer(answers, batch)))
}

/// The tenant whose key the request carries. A missing header is refused without a lookup (it guesses
/// nothing); a failed check counts against the address like a failed CometQL login, and past that limit
/// keys are not even checked.
async fn authenticate(
    ctx: &Ctx,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let key = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .and_then(|v| {
            let (scheme, token) = v.split_at(v.len().min(7));
            scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
        })
        .ok_or_else(ApiError::unauthorized)?;
    if ctx.limits.login_blocked(peer.ip()) {
        return Err(ApiError::unauthorized());
    }
    let dev_id = headers
        .get(DEV_ID_HEADER)
        .map_or(&b""[..], |v| v.as_bytes());
    match ctx.tenants.check_key(dev_id, key.trim_ascii()).await {
        Ok(login) => Ok(Caller {
            dev_id: login.dev_id,
        }),
        Err(_) => {
            ctx.limits.login_failed(peer.ip());
            Err(ApiError::unauthorized())
        }
    }
}

/// The request's messages, and whether they came as a batch (`{"messages": [...]}`).
async fn read_request<T: serde::de::DeserializeOwned>(
    ctx: &Ctx,
    body: Body,
) -> Result<(Vec<T>, bool), ApiError> {
    let bytes = read_body(body, ctx.config.http_api.max_body_bytes).await?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("The body is not JSON: {e}.")))?;
    let shape = |e: serde_json::Error| ApiError::bad_request(format!("{e}."));
    let is_batch = value
        .as_object()
        .is_some_and(|o| o.contains_key("messages"));
    if !is_batch {
        return Ok((vec![serde_json::from_value(value).map_err(shape)?], false));
    }
    let batch: Batch<T> = serde_json::from_value(value).map_err(shape)?;
    let max = ctx.config.http_api.max_batch_messages;
    if batch.messages.is_empty() || batch.messages.len() > max {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "batch_size",
            format!("A batch holds 1 to {max} messages."),
        ));
    }
    Ok((batch.messages, true))
}

/// The body, refused with 413 as soon as it passes `max` bytes (whatever `Content-Length` claims).
async fn read_body(body: Body, max: usize) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::bad_request("The body could not be read."))?;
        if out.len() + chunk.len() > max {
            return Err(ApiError::too_large(max));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A message as the pipe carries it: a string as is, any other JSON value as its text.
fn message_text(message: &Value) -> Result<String, ApiError> {
    match message {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Err(ApiError::bad_request(
            "message must be a string or a JSON value other than null.",
        )),
        other => Ok(other.to_string()),
    }
}

fn published_json(p: &Published) -> Value {
    match &p.position {
        Some(pos) => json!({
            "delivered": p.delivered,
            "position": {"epoch": &*pos.epoch, "offset": pos.offset},
        }),
        None => json!({"delivered": p.delivered}),
    }
}

fn answer(mut answers: Vec<Value>, batch: bool) -> Value {
    match batch {
        true => json!({ "messages": answers }),
        false => answers.pop().unwrap_or_default(),
    }
}
