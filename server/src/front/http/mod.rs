//! The one router on the HTTP port: every route is listed here. WebSocket upgrades arrive on the
//! comet-server URL forms (`/ws/...`, `//ws/...`, `/comet-server/ws/...`), which are not ordinary routes
//! (the parameters sit in the path), so the fallback recognises them before answering 404. The dashboard's
//! pages (`/`, `/dashboard/...`) and API (`/api/dashboard/v1/...`) are listed in `dashboard::router`, the
//! HTTP publish API (`/api/v1/...`) in `publish::router`.

pub mod dashboard;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

mod client;
mod metrics;
mod publish;
mod pusher_api;
mod sdk;
pub(crate) mod serve;

use crate::browser::url::is_ws_path;
use crate::commands::Ctx;
use crate::front::websocket::WsService;
use crate::pusher::is_pusher_path;

/// Which protocol a request came in on, a request extension set by the accept loop: `Https` when this
/// server terminated TLS itself (a proxy's TLS is not seen here; `dashboard.secure_cookies` covers it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
}

#[derive(Clone)]
struct HttpState {
    ctx: Ctx,
    ws: Arc<WsService>,
}

pub fn router(ctx: Ctx, ws: Arc<WsService>, dashboard: dashboard::Api) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/info", get(info))
        .route("/sdk/halley.mjs", get(sdk::module))
        .route("/sdk/halley.js", get(sdk::classic))
        .route("/sdk/halley.d.ts", get(sdk::types))
        .route("/CometServerApi.js", get(sdk::classic))
        .route("/comet-server/CometServerApi.js", get(sdk::classic))
        .route("/comet-server/info", get(info))
        .fallback(fallback)
        .with_state(HttpState {
            ctx: ctx.clone(),
            ws,
        })
        .merge(publish::router(ctx.clone()))
        .merge(pusher_api::router(ctx))
        .merge(dashboard::router(dashboard))
}

/// The node's name; with `?dev_id=N` also whether this request's `Origin` may open WebSockets for that
/// tenant (`origin_allowed`), which the SDK asks after its sockets keep failing: a browser sees a refused
/// upgrade only as a failed socket. It tells a caller nothing it could not learn by trying an upgrade.
async fn info(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<InfoQuery>,
    headers: axum::http::HeaderMap,
) -> Response {
    // The reference pads the node name with underscores (a bug); we send it as configured.
    let mut body = serde_json::json!({"status": "ok", "node": s.ctx.config.node_name});
    if s.ctx.hub.clustered() {
        // For a load balancer's health check: a cluster node that cannot use Redis takes no publishes.
        // (A single node answers as it always did.)
        body["ready"] = s.ctx.hub.ready().into();
    }
    if let Some(dev_id) = q.dev_id {
        // The answer may cost a database read (a dev_id whose list is not cached), and one keep-alive
        // connection can ask many times: each question is paid from the address's budget of new
        // connections, as the upgrade it stands for would be.
        if let Err(refused) = s.ctx.limits.new_connection(peer.ip()) {
            let retry = refused.retry_after.as_secs().max(1).to_string();
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, retry)],
                refused.to_string(),
            )
                .into_response();
        }
        match s
            .ws
            .origin_allowed(crate::ids::DevId(dev_id), &headers)
            .await
        {
            Ok(allowed) => body["origin_allowed"] = allowed.into(),
            Err(e) => tracing::error!(error = %e, "allowed origins lookup failed"),
        }
    }
    ([(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")], Json(body)).into_response()
}

#[derive(serde::Deserialize)]
struct InfoQuery {
    dev_id: Option<u64>,
}

async fn metrics(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
) -> Response {
    let token = &s.ctx.config.metrics_token;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let allowed = peer.ip().is_loopback()
        || (!token.is_empty()
            && bearer.is_some_and(|b| {
                use subtle::ConstantTimeEq;
                bool::from(b.as_bytes().ct_eq(token.as_bytes()))
            }));
    if !allowed {
        return (
            StatusCode::FORBIDDEN,
            "metrics are available to loopback clients or with the metrics token\n",
        )
            .into_response();
    }
    let mut body = metrics::render(&s.ctx.stats, s.ctx.hub.registry().total_subscriptions());
    metrics::render_caches(&mut body, crate::commands::history::cache_sizes(&s.ctx));
    s.ctx.hub.render_broker_metrics(&mut body);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn fallback(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let path = req.uri().path();
    if is_ws_path(path) || is_pusher_path(path) {
        let mut answer = match is_pusher_path(path) {
            true => s.ws.clone().upgrade_pusher(req, peer).await,
            false => s.ws.clone().upgrade(req, peer).await,
        };
        if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
            // A refused upgrade ends its connection: another attempt needs a new connection, which the
            // accept-time limits count (the rate of new connections is counted there, not here).
            answer.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        return answer;
    }
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}
