//! The one router on the HTTP port: every route is listed here. WebSocket upgrades arrive on the
//! comet-server URL forms (`/ws/...`, `//ws/...`, `/comet-server/ws/...`), which are not ordinary routes
//! (the parameters sit in the path), so the fallback recognises them before answering 404. The dashboard's
//! pages (`/`, `/dashboard/...`) and API (`/api/dashboard/v1/...`) are listed in `dashboard::router`.

pub mod dashboard;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::commands::Ctx;
use crate::push::protocol::url::is_ws_path;
use crate::push::websocket::WsService;

#[derive(Clone)]
struct HttpState {
    ctx: Ctx,
    ws: Arc<WsService>,
}

pub fn router(ctx: Ctx, ws: Arc<WsService>, dashboard: dashboard::Api) -> Router {
    Router::new()
        .route("/info", get(info))
        .route("/comet-server/info", get(info))
        .fallback(fallback)
        .with_state(HttpState { ctx, ws })
        .merge(dashboard::router(dashboard))
}

async fn info(State(s): State<HttpState>) -> impl IntoResponse {
    // The reference pads the node name with underscores (a bug); we send it as configured.
    (
        [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
        Json(serde_json::json!({"status": "ok", "node": s.ctx.config.node_name})),
    )
}

async fn fallback(
    State(s): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    if is_ws_path(req.uri().path()) {
        return s.ws.clone().upgrade(req, peer).await;
    }
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}
