//! The dashboard: static pages (`dashboard/` at the repository root, embedded at compile time) and the JSON
//! API they use, `/api/dashboard/v1`. The pages are a client of the API like any script; every endpoint is
//! documented in docs/dashboard-api.md.

mod accounts;
mod assets;
mod console;
mod error;
mod keys;
mod origins;
mod pusher;
mod security;
mod session;
mod throttle;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::commands::Ctx;
use crate::usage::UsageBook;

pub use error::ApiError;

/// The label of the session-signing secret derived from the master key; bump it to log everyone out.
pub const SESSION_SECRET_LABEL: &str = "halley dashboard sessions v1";

/// Everything the dashboard API needs, cheap to clone.
#[derive(Clone)]
pub struct Api(Arc<Inner>);

struct Inner {
    ctx: Ctx,
    usage: Arc<UsageBook>,
    /// The CometQL address actually bound, for the quick-start snippets.
    cometql_addr: SocketAddr,
    sessions: session::SessionKeys,
    throttle: throttle::Throttle,
}

impl Api {
    /// A revoked key's CometQL sessions are closed through the hub (`Hub::revoke`), on every node.
    pub fn new(ctx: Ctx, usage: Arc<UsageBook>, cometql_addr: SocketAddr) -> Api {
        let config = &ctx.config.dashboard;
        let sessions = session::SessionKeys::new(
            &ctx.tenants.derive_secret(SESSION_SECRET_LABEL),
            config.session_hours,
            config.secure_cookies,
        );
        Api(Arc::new(Inner {
            ctx,
            usage,
            cometql_addr,
            sessions,
            throttle: throttle::Throttle::default(),
        }))
    }

    fn ctx(&self) -> &Ctx {
        &self.0.ctx
    }

    fn sessions(&self) -> &session::SessionKeys {
        &self.0.sessions
    }
}

/// The pages at `/` and `/dashboard/...`, and the API at `/api/dashboard/v1/...`.
pub fn router(api: Api) -> Router {
    let v1 = Router::new()
        .route(
            "/signup",
            get(accounts::sign_up_status).post(accounts::sign_up),
        )
        .route("/login", post(accounts::log_in))
        .route("/logout", post(accounts::log_out))
        .route("/me", get(accounts::me))
        .route("/password", post(accounts::change_password))
        .route("/keys", get(keys::list).post(keys::create))
        .route("/keys/{id}", axum::routing::delete(keys::revoke))
        .route("/keys/{id}/secret", get(keys::reveal))
        .route("/origins", get(origins::get).put(origins::put))
        .route("/security", get(security::get).put(security::put))
        .route("/pusher", get(pusher::get).put(pusher::put))
        .route("/usage", get(console::usage))
        .route("/test-message", post(console::test_message))
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "No such API endpoint.",
            )
        })
        .layer(middleware::from_fn(api_guard))
        .with_state(api);
    Router::new()
        .route("/", get(assets::index))
        .route("/dashboard/{*file}", get(assets::file))
        .nest("/api/dashboard/v1", v1)
        .layer(middleware::map_response(security_headers))
}

/// Every state-changing API request from a browser must come from this site's own pages.
async fn api_guard(req: Request, next: Next) -> Response {
    if session::is_state_changing(req.method()) {
        let scheme = req.extensions().get::<super::Scheme>().copied();
        if let Err(e) = session::check_origin(req.headers(), scheme) {
            return e.into_response();
        }
    }
    let mut response = next.run(req).await;
    // Answers carry keys and session state: never stored by a browser or a proxy.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Pages and API answers alike: no inline scripts, no framing, no sniffing, no referrer leaking the URL.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
             frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}
