//! The Pusher HTTP API, `/apps/{id}/...`, as Laravel's broadcaster and the `pusher` server libraries call
//! it (docs/pusher.md): `app_id` is the dev_id, `auth_key` the tenant's app key, and the signature is made
//! with any of its active secret keys (`pusher::api_auth`: timestamp within 600 s, `body_md5`).
//!
//! I/O only: the request is checked and read into validated values here; `commands::channels_api`
//! publishes (through `pipes_messages`, from the publish budget CometQL uses) and reads the channels'
//! state. Errors are plain text with the status Pusher uses, mapped in [`ApiError`] once.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::commands::channels_api::{self, ChannelState, Trigger};
use crate::commands::{Caller, CommandError, Ctx, ErrorCode};
use crate::ids::EventName;
use crate::pusher::api_auth::{self, ApiAuthError, ApiRequest, Params};
use crate::pusher::limits::{CHANNELS_PER_EVENT_MAX, EVENTS_PER_BATCH_MAX, EVENT_DATA_MAX};
use crate::pusher::{Channel, ChannelKind, SocketId};
use crate::tenant::{parse_dev_id, unix_now};

pub(super) fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/apps/{app_id}/events", post(events))
        .route("/apps/{app_id}/batch_events", post(batch_events))
        .route("/apps/{app_id}/channels", get(channels))
        .route("/apps/{app_id}/channels/{channel}", get(channel))
        .route("/apps/{app_id}/channels/{channel}/users", get(users))
        .route(
            "/apps/{app_id}/users/{user_id}/terminate_connections",
            post(terminate),
        )
        .with_state(ctx)
}

/// An API error: a status and a sentence, as Pusher answers (plain text).
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(message: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.1),
        )
            .into_response()
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        use ErrorCode as E;
        let status = match e.code {
            E::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            E::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            E::QuotaExceeded => StatusCode::INSUFFICIENT_STORAGE,
            E::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            E::Auth => StatusCode::UNAUTHORIZED,
            E::AccessDenied | E::InsecureTransport => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(status, e.message.into_owned())
    }
}

impl From<ApiAuthError> for ApiError {
    fn from(e: ApiAuthError) -> Self {
        match e {
            ApiAuthError::MalformedQuery(_) => ApiError::bad(e.to_string()),
            _ => ApiError(StatusCode::UNAUTHORIZED, e.to_string()),
        }
    }
}

/// A request whose signature passed: the tenant and the request's other parameters and body.
struct Checked {
    caller: Caller,
    params: Params,
    body: Vec<u8>,
}

/// Finds the app (404 for none), reads the body within `[http_api] max_body_bytes` (413), and checks the
/// signature against every active key of the tenant (401). A failed check counts against the address
/// like a failed CometQL login, and past that limit requests are refused unchecked.
async fn check(
    ctx: &Ctx,
    peer: SocketAddr,
    app_id: &str,
    method: &Method,
    uri: &Uri,
    body: Body,
) -> Result<Checked, ApiError> {
    let unknown = || ApiError(StatusCode::NOT_FOUND, format!("Unknown app: {app_id}"));
    let dev_id = parse_dev_id(app_id.as_bytes()).ok_or_else(unknown)?;
    if ctx.limits.login_blocked(peer.ip()) {
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "Too many failed requests from this address; try again later".into(),
        ));
    }
    let internal = |e: crate::tenant::TenantError| {
        tracing::error!(error = %e, "Pusher API: tenant lookup failed");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, "Internal error".into())
    };
    let app_key = ctx
        .tenants
        .app_key(dev_id)
        .await
        .map_err(internal)?
        .ok_or_else(unknown)?;
    let body = read_body(body, ctx.config.http_api.max_body_bytes).await?;
    let keys = ctx.tenants.signing_keys(dev_id).await.map_err(internal)?;
    let request = ApiRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        body: &body,
    };
    match api_auth::verify(&request, &app_key, &keys, unix_now()) {
        Ok(params) => Ok(Checked {
            caller: Caller { dev_id },
            params,
            body,
        }),
        Err(e) => {
            ctx.limits.login_failed(peer.ip());
            Err(e.into())
        }
    }
}

async fn read_body(body: Body, max: usize) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::bad("The body could not be read"))?;
        if out.len() + chunk.len() > max {
            return Err(ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Request body larger than {max} bytes"),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// One event as the libraries send it.
#[derive(Deserialize)]
struct Event {
    name: Option<String>,
    data: Option<Value>,
    channels: Option<Vec<String>>,
    channel: Option<String>,
    socket_id: Option<String>,
    /// Attributes of the channels to answer with (`user_count`, `subscription_count`), counted after the
    /// event was published.
    info: Option<String>,
}

#[derive(Deserialize)]
struct Batch {
    batch: Vec<Event>,
}

/// An event read into a [`Trigger`], within Pusher's limits, with the attributes its `info` asks for.
fn read_event(e: Event) -> Result<(Trigger, Vec<String>), ApiError> {
    let attributes = attribute_list(e.info.as_deref().unwrap_or(""))
        .into_iter()
        .map(str::to_owned)
        .collect();
    let name = e.name.ok_or_else(|| ApiError::bad("Missing event name"))?;
    let event =
        EventName::pusher(&name).map_err(|e| ApiError::bad(format!("Invalid event name: {e}")))?;
    let data = match e.data {
        Some(Value::String(s)) => s,
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    if data.len() > EVENT_DATA_MAX {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Event data larger than {EVENT_DATA_MAX} bytes"),
        ));
    }
    let names = match (e.channels, e.channel) {
        (Some(list), None) => list,
        (None, Some(one)) => vec![one],
        _ => return Err(ApiError::bad("Give either channels or channel")),
    };
    if names.is_empty() || names.len() > CHANNELS_PER_EVENT_MAX {
        return Err(ApiError::bad(format!(
            "An event goes to 1 to {CHANNELS_PER_EVENT_MAX} channels"
        )));
    }
    let channels = names
        .iter()
        .map(|n| {
            Channel::parse(n).map_err(|e| ApiError::bad(format!("Invalid channel name {n:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let socket_id = e
        .socket_id
        .map(|s| SocketId::parse(&s).map_err(|e| ApiError::bad(e.to_string())))
        .transpose()?;
    let trigger = Trigger {
        channels,
        event,
        data,
        socket_id,
    };
    Ok((trigger, attributes))
}

/// The asked attributes of each channel an event went to: `{name: {attribute: n}}`.
async fn event_info(
    ctx: &Ctx,
    caller: Caller,
    channels: &[Channel],
    attributes: &[String],
) -> Result<Value, ApiError> {
    let mut info = Map::new();
    for ch in channels {
        let state = channel_info(ctx, caller, ch, attributes).await?;
        info.insert(ch.name().to_owned(), state);
    }
    Ok(Value::Object(info))
}

async fn channel_info(
    ctx: &Ctx,
    caller: Caller,
    channel: &Channel,
    attributes: &[String],
) -> Result<Value, ApiError> {
    let attributes: Vec<&str> = attributes.iter().map(String::as_str).collect();
    let state = channels_api::channel(ctx, caller.dev_id, channel).await?;
    Ok(Value::Object(state_json(&state, &attributes)))
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("Invalid JSON body: {e}")))
}

async fn events(
    State(ctx): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(app_id): Path<String>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let c = check(&ctx, peer, &app_id, &method, &uri, body).await?;
    let (trigger, attributes) = read_event(json_body(&c.body)?)?;
    let channels = trigger.channels.clone();
    channels_api::trigger(&ctx, c.caller, vec![trigger]).await?;
    if attributes.is_empty() {
        return Ok(Json(json!({})));
    }
    let info = event_info(&ctx, c.caller, &channels, &attributes).await?;
    Ok(Json(json!({ "channels": info })))
}

async fn batch_events(
    State(ctx): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(app_id): Path<String>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let c = check(&ctx, peer, &app_id, &method, &uri, body).await?;
    let batch: Batch = json_body(&c.body)?;
    if batch.batch.is_empty() || batch.batch.len() > EVENTS_PER_BATCH_MAX {
        return Err(ApiError::bad(format!(
            "A batch holds 1 to {EVENTS_PER_BATCH_MAX} events"
        )));
    }
    let (triggers, attributes): (Vec<_>, Vec<_>) = batch
        .batch
        .into_iter()
        .map(read_event)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    let channels: Vec<Vec<Channel>> = triggers.iter().map(|t| t.channels.clone()).collect();
    channels_api::trigger(&ctx, c.caller, triggers).await?;
    // One object per event: the attributes of its channel (a batch event names one), or `{}`.
    let mut answers: Vec<Value> = Vec::with_capacity(channels.len());
    for (chans, attrs) in channels.iter().zip(&attributes) {
        answers.push(match (chans.first(), attrs.is_empty()) {
            (Some(ch), false) => channel_info(&ctx, c.caller, ch, attrs).await?,
            _ => json!({}),
        });
    }
    Ok(Json(json!({ "batch": answers })))
}

/// The `info` parameter's attributes.
fn info(params: &Params) -> Vec<&str> {
    attribute_list(params.get("info").unwrap_or(""))
}

fn attribute_list(info: &str) -> Vec<&str> {
    info.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect()
}

fn state_json(state: &ChannelState, attributes: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    if attributes.contains(&"user_count") {
        if let Some(n) = state.user_count {
            out.insert("user_count".into(), n.into());
        }
    }
    if attributes.contains(&"subscription_count") {
        out.insert("subscription_count".into(), state.subscription_count.into());
    }
    out
}

async fn channels(
    State(ctx): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(app_id): Path<String>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let c = check(&ctx, peer, &app_id, &method, &uri, body).await?;
    let prefix = c.params.get("filter_by_prefix").unwrap_or("");
    let attributes = info(&c.params);
    if attributes.contains(&"user_count") && !prefix.starts_with("presence-") {
        return Err(ApiError::bad(
            "info=user_count needs filter_by_prefix=presence-",
        ));
    }
    let list: Map<String, Value> = channels_api::channels(&ctx, c.caller.dev_id, prefix)
        .await?
        .iter()
        .map(|s| (s.name.clone(), Value::Object(state_json(s, &attributes))))
        .collect();
    Ok(Json(json!({ "channels": list })))
}

fn parse_channel(name: &str) -> Result<Channel, ApiError> {
    Channel::parse(name).map_err(|e| ApiError::bad(format!("Invalid channel name: {e}")))
}

async fn channel(
    State(ctx): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((app_id, name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let c = check(&ctx, peer, &app_id, &method, &uri, body).await?;
    let ch = parse_channel(&name)?;
    let attributes = info(&c.params);
    if attributes.contains(&"user_count") && ch.kind() != ChannelKind::Presence {
        return Err(ApiError::bad("info=user_count is for presence channels"));
    }
    let state = channels_api::channel(&ctx, c.caller.dev_id, &ch).await?;
    let mut out = state_json(&state, &attributes);
    out.insert("occupied".into(), (state.subscription_count > 0).into());
    Ok(Json(Value::Object(out)))
}

async fn users(
    State(ctx): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((app_id, name)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let c = check(&ctx, peer, &app_id, &method, &uri, body).await?;
    let ch = parse_channel(&name)?;
    if ch.kind() != ChannelKind::Presence {
        return Err(ApiError::bad("Users are listed for presence channels only"));
    }
    let users: Vec<Value> = channels_api::users(&ctx, c.caller.dev_id, &ch)
        .await?
        .into_iter()
        .map(|id| json!({ "id": id }))
        .collect();
    Ok(Json(json!({ "users": users })))
}

async fn terminate(
    State(ctx): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((app_id, user_id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let c = check(&ctx, peer, &app_id, &method, &uri, body).await?;
    channels_api::terminate(&ctx, c.caller.dev_id, &user_id).await?;
    Ok(Json(json!({})))
}
