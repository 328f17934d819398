//! The browser front door: the HTTP upgrade on the comet-server URL forms, the limits and the login of a
//! new connection, its registration and presence, then `conn_loop` for its life, then the teardown.

mod budget;
mod conn_loop;
mod pusher;
mod pusher_loop;
mod session;
mod upgraded;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use hyper::upgrade::OnUpgrade;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::browser::frames;
use crate::browser::handshake::{self, HandshakeError, UpgradeRequest};
use crate::browser::wsframe::{self, FrameDecoder};
use crate::browser::{parse_connect_url, ConnectParams, UrlError};
use crate::commands::{presence, users_auth, Ctx};
use crate::front::listen::SocketGuard;
use crate::hub::{CloseReason, ConnInfo, Era, Outbox, OutboxRx};
use crate::ids::{ConnId, DevId, UserId};
use crate::stats::TenantCounters;
use crate::tenant::limits::{Limit, Refused, WebsocketSlot};
use crate::tenant::{unix_now, TenantError};
use budget::CommandBudget;
use conn_loop::{write_all, ConnLoop};
use session::Session;
use upgraded::Upgraded;

/// Room for a command's own text around its message (`web_pipe2\n@<pipe>\n<event>\n<auth>\n` is at most
/// 143 bytes): a message of exactly `max_message_bytes` fits in a frame, and one byte more reaches the
/// command, which answers with its `Data is too long` error frame. Frames past this close with 1009.
const COMMAND_OVERHEAD: usize = 256;

pub struct WsService {
    ctx: Ctx,
    tasks: TaskTracker,
    shutdown: watch::Receiver<bool>,
    next_conn: AtomicU64,
    live: Mutex<HashMap<ConnId, Outbox>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The upgrade request's headers that users_in_pipes reports, truncated as the reference does.
struct ClientHeaders {
    user_agent: String,
    origin: String,
    language: String,
}

impl From<&HeaderMap> for ClientHeaders {
    fn from(h: &HeaderMap) -> Self {
        let get = |name: header::HeaderName, max: usize| {
            let v = h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
            let mut end = v.len().min(max);
            while !v.is_char_boundary(end) {
                end -= 1;
            }
            v[..end].to_string()
        };
        ClientHeaders {
            user_agent: get(header::USER_AGENT, 250),
            origin: get(header::ORIGIN, 250),
            language: get(header::ACCEPT_LANGUAGE, 64),
        }
    }
}

/// RFC 6455 4.2.1 on the upgrade request: the client's key, or the rule it broke.
fn check_handshake(req: &Request) -> Result<String, HandshakeError> {
    let headers: Vec<(&str, &[u8])> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    handshake::check(&UpgradeRequest {
        method: req.method().as_str(),
        http11: req.version() >= axum::http::Version::HTTP_11,
        headers: &headers,
    })
    .map(|h| h.key.to_owned())
}

/// Whether a (lower-cased) `Origin` is this server's own: its authority is the `Host` the request was sent
/// to. Both come from the browser, which sets `Origin` itself; a page elsewhere cannot claim our host.
fn origin_is_host(origin: &str, host: &str) -> bool {
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| !host.is_empty() && authority.eq_ignore_ascii_case(host))
}

/// The one place handshake refusals become HTTP answers.
fn refuse_handshake(e: HandshakeError) -> Response {
    let text = format!("{e}\n");
    match e {
        HandshakeError::Method => (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET")],
            text,
        )
            .into_response(),
        HandshakeError::Version => (
            StatusCode::UPGRADE_REQUIRED,
            [(header::SEC_WEBSOCKET_VERSION, "13")],
            text,
        )
            .into_response(),
        HandshakeError::NotUpgrade
        | HandshakeError::Http10
        | HandshakeError::Host
        | HandshakeError::Key => (StatusCode::BAD_REQUEST, text).into_response(),
    }
}

impl WsService {
    pub fn new(ctx: Ctx, tasks: TaskTracker, shutdown: watch::Receiver<bool>) -> WsService {
        WsService {
            ctx,
            tasks,
            shutdown,
            next_conn: AtomicU64::new(1),
            live: Mutex::new(HashMap::new()),
        }
    }

    /// Asks every connection to close with 1001 (server shutdown).
    pub fn close_all(&self) {
        for outbox in lock(&self.live).values() {
            outbox.close(CloseReason::Shutdown);
        }
    }

    /// The tenant's connection limit and its per-address count (docs/compatibility.md §5); the address's rate was
    /// applied at accept. The slot keeps the connection counted against its address until it ends.
    fn admit(&self, dev_id: DevId, peer: SocketAddr) -> Result<Option<WebsocketSlot>, Refused> {
        // Looked up, not created: a URL naming any dev_id must not grow the server's tenant map.
        let counters = self.ctx.stats.existing_tenant(dev_id);
        let open = counters
            .as_ref()
            .map_or(0, |c| c.websocket_connections.load(Ordering::Relaxed));
        self.ctx
            .limits
            .websocket_connect(dev_id, peer.ip(), open)
            .map(Some)
            .inspect_err(|_| {
                if let Some(c) = &counters {
                    c.rate_limited.fetch_add(1, Ordering::Relaxed);
                }
            })
    }

    /// On a cluster: the tenant's cap on connections holds across nodes (`crate::cluster`'s `limits.rs`);
    /// the slot uncounts the connection there too when it ends.
    async fn admit_cluster(
        &self,
        dev_id: DevId,
        slot: WebsocketSlot,
    ) -> Result<WebsocketSlot, Response> {
        let Some(shared) = self.ctx.hub.shared_limits() else {
            return Ok(slot);
        };
        let cap = self.ctx.limits.websocket_cap(dev_id);
        match shared.join_connection(dev_id, cap).await {
            Ok(true) => {
                let hub = self.ctx.hub.clone();
                Ok(slot.also_uncount(move || {
                    if let Some(shared) = hub.shared_limits() {
                        shared.leave_connection(dev_id);
                    }
                }))
            }
            Ok(false) => {
                let refused = self
                    .ctx
                    .limits
                    .refuse(Limit::TenantConnections, Duration::from_secs(1));
                if let Some(c) = self.ctx.stats.existing_tenant(dev_id) {
                    c.rate_limited.fetch_add(1, Ordering::Relaxed);
                }
                Err((
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "1".to_string())],
                    format!("{refused}\n"),
                )
                    .into_response())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot count a connection in the cluster");
                Err((StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response())
            }
        }
    }

    /// Answers the upgrade request and starts the connection's task. URL errors still upgrade, as in the
    /// reference, so that the browser reads the error frame instead of a bare failed handshake.
    pub async fn upgrade(self: Arc<Self>, mut req: Request, peer: SocketAddr) -> Response {
        let key = match check_handshake(&req) {
            Ok(key) => key,
            Err(e) => return refuse_handshake(e),
        };
        let protocol = offered_protocol(req.headers());
        let target = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
        let params = parse_connect_url(&target);
        // Limits first (no I/O), then the origin check (a query): an unthrottled client cannot make the
        // server query its database. The address's rate was counted when its connection was accepted, and
        // a refused upgrade closes the connection (`http::fallback`), so each attempt costs a connection.
        let admitted = match &params {
            Ok(p) => self.admit(DevId(p.dev_id), peer),
            Err(_) => Ok(None),
        };
        if let Err(refused) = &admitted {
            return too_many(refused);
        }
        let ip_slot = admitted.ok().flatten();
        let dev_id = params.as_ref().ok().map(|p| DevId(p.dev_id));
        if let Some(refused) = self.refuse_origin(dev_id, req.headers()).await {
            return refused;
        }
        // Last (a round trip, and it counts): the tenant's connections across a cluster.
        let ip_slot = match (ip_slot, &params) {
            (Some(slot), Ok(p)) => match self.admit_cluster(DevId(p.dev_id), slot).await {
                Ok(slot) => Some(slot),
                Err(refused) => return refused,
            },
            (slot, _) => slot,
        };
        let client = ClientHeaders::from(req.headers());
        let socket_guard = req.extensions().get::<Arc<SocketGuard>>().cloned();
        let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "upgrade unavailable\n").into_response();
        };
        let accepted = Box::new(Accepted {
            params,
            headers: client,
            peer,
            socket_guard,
            ip_slot,
        });
        self.tasks
            .spawn(self.clone().connection(on_upgrade, accepted));
        switching_protocols(&key, protocol)
    }

    /// The tenant's allowed origins (dashboard setting): a browser page from another origin gets 403. An empty
    /// list allows any origin; a request without `Origin` is not from a browser page and is not refused. A
    /// page served by this server itself (its dashboard's live view) is always allowed: its `Origin` names
    /// the `Host` the upgrade was sent to, which a page from another site cannot make its browser send.
    async fn refuse_origin(&self, dev_id: Option<DevId>, headers: &HeaderMap) -> Option<Response> {
        let dev_id = dev_id?;
        match self.origin_allowed(dev_id, headers).await {
            Ok(true) => None,
            Ok(false) => Some(
                (
                    StatusCode::FORBIDDEN,
                    "This origin may not connect to this dev_id.\n",
                )
                    .into_response(),
            ),
            Err(e) => {
                tracing::error!(error = %e, "allowed origins lookup failed");
                Some((StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response())
            }
        }
    }

    /// Whether an upgrade for `dev_id` with these headers passes the origin check. `/info?dev_id=` answers
    /// it too, so that the SDK can tell a page whose sockets fail why (a browser never sees the 403).
    pub async fn origin_allowed(
        &self,
        dev_id: DevId,
        headers: &HeaderMap,
    ) -> Result<bool, TenantError> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(true);
        };
        let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if origin_is_host(&origin, host.unwrap_or("")) {
            return Ok(true);
        }
        let allowed = self.ctx.tenants.allowed_origins(dev_id).await?;
        Ok(allowed.is_empty() || allowed.contains(&origin))
    }

    /// One connection's task. Its setup and teardown are boxed: their futures (database queries) are large
    /// and short-lived, and inline they would be part of every idle connection's task for its whole life.
    async fn connection(self: Arc<Self>, on_upgrade: OnUpgrade, accepted: Box<Accepted>) {
        let peer = accepted.peer;
        // The socket itself (TCP, or TLS over TCP): the outbox writes to it from the publishing thread
        // (see hub::Outbox).
        let upgraded = on_upgrade.await.map_err(io::Error::other);
        let (io, early) = match upgraded.and_then(Upgraded::take) {
            Ok(taken) => taken,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "WebSocket upgrade failed");
                return;
            }
        };
        let Some((mut conn_loop, rx, live)) = Box::pin(self.open(io, early, accepted)).await else {
            return;
        };
        let shutting_down = *self.shutdown.borrow();
        conn_loop.serve(rx, shutting_down).await;
        Box::pin(self.teardown(conn_loop, live)).await;
    }

    /// Checks the tenant and the user, registers the connection, writes the greeting and the user's stored
    /// private messages. None when the connection was refused (after its error frame) or broke.
    async fn open(
        &self,
        mut io: Upgraded,
        early: BytesMut,
        accepted: Box<Accepted>,
    ) -> Option<(ConnLoop<'_>, OutboxRx, Live)> {
        let Accepted {
            params,
            headers,
            peer,
            socket_guard,
            ip_slot,
        } = *accepted;
        let write_timeout = self.ctx.config.websocket.write_timeout();
        let params = match params {
            Ok(p) => p,
            Err(e) => {
                let frame = frames::url_error(e, unix_now());
                close_with(&mut io, &frame, 1008, "invalid connect URL", write_timeout).await;
                return None;
            }
        };
        let dev_id = DevId(params.dev_id);
        match self.ctx.tenants.exists(dev_id).await {
            Ok(true) => {}
            Ok(false) => {
                let frame = frames::error("Unknown dev_id: no such tenant", unix_now())
                    .encode(era_of(&params).api());
                close_with(&mut io, &frame, 1008, "unknown dev_id", write_timeout).await;
                return None;
            }
            Err(e) => {
                tracing::error!(error = %e, "tenant lookup failed for a WebSocket connect");
                let frame = frames::error("Internal server error", unix_now())
                    .encode(era_of(&params).api());
                close_with(&mut io, &frame, 1011, "internal error", write_timeout).await;
                return None;
            }
        }
        let era = era_of(&params);
        let conn = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        let claimed = UserId(params.user_id);
        let hash = match users_auth::authorize(&self.ctx, dev_id, claimed, &params.user_key).await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "browser authorization failed");
                None
            }
        };
        let make_outbox = |user_id: UserId| {
            let info = ConnInfo {
                conn,
                era,
                user_id,
                uuid: params.uuid.clone(),
                ip: peer.ip().to_string(),
                user_agent: headers.user_agent.clone(),
                origin: headers.origin.clone(),
                language: headers.language.clone(),
                msg_ids: params.msg_after.is_some(),
            };
            Outbox::new(info, self.ctx.config.websocket.outbox_frames)
        };
        // An authorized connection is linked to its user; past the per-user cap it stays anonymous.
        let (user, (outbox, rx)) = match &hash {
            Some(_) => {
                let (outbox, rx) = make_outbox(claimed);
                match presence::connect(&self.ctx, dev_id, claimed, outbox.clone()).await {
                    Ok(()) => (claimed, (outbox, rx)),
                    Err(_) => (UserId(0), make_outbox(UserId(0))),
                }
            }
            None => (UserId(0), make_outbox(UserId(0))),
        };
        let authorized = user.0 != 0;
        lock(&self.live).insert(conn, outbox.clone());
        let counters = self.ctx.stats.tenant(dev_id);
        counters
            .websocket_connections
            .fetch_add(1, Ordering::Relaxed);

        let mut conn_loop = ConnLoop {
            ctx: &self.ctx,
            session: Session::new(dev_id, user, outbox),
            era,
            decoder: FrameDecoder::new(
                self.ctx.config.websocket.max_message_bytes + COMMAND_OVERHEAD,
            ),
            rbuf: early,
            write_timeout,
            budget: CommandBudget::new(&self.ctx.config.websocket),
            history: None,
            held: false,
        };
        let data = if authorized {
            hash.as_deref().unwrap_or("")
        } else {
            ""
        };
        let hello = frames::server_info(
            authorized,
            data,
            &crate::commands::server_version(),
            unix_now(),
        )
        .encode(era.api());
        let mut ok = write_all(&mut io, &hello, write_timeout).await.is_ok();
        drop(hello);
        if ok && authorized {
            ok = conn_loop
                .deliver_queue(&mut io, params.msg_after.as_deref())
                .await
                .is_ok();
        }
        let live = Live {
            dev_id,
            conn,
            user,
            counters,
            peer,
            _socket: socket_guard,
            ip_slot,
        };
        if !ok {
            drop(rx);
            Box::pin(self.teardown(conn_loop, live)).await;
            return None;
        }
        // Written by the outbox from here on: it must hold everything the async writes above left (a
        // TLS stream keeps nothing between writes once flushed).
        if io.flush().await.is_err() {
            drop(rx);
            Box::pin(self.teardown(conn_loop, live)).await;
            return None;
        }
        rx.attach(io.into_socket());
        Some((conn_loop, rx, live))
    }

    /// Unsubscribes, unlinks the user (announcing and recording them offline if this was their last
    /// connection) and uncounts the connection.
    async fn teardown(&self, mut conn_loop: ConnLoop<'_>, live: Live) {
        let Live {
            dev_id,
            conn,
            user,
            counters,
            peer,
            ip_slot,
            ..
        } = live;
        conn_loop.session.unsubscribe_all(&self.ctx);
        presence::disconnect(&self.ctx, dev_id, user, conn).await;
        lock(&self.live).remove(&conn);
        // Its address's place first: once the tenant's count drops, the connection is fully gone.
        drop(ip_slot);
        counters
            .websocket_connections
            .fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(%peer, conn = conn.0, "WebSocket closed");
    }
}

/// The answer to an upgrade request that passed every check.
fn switching_protocols(key: &str, protocol: Option<String>) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&wsframe::accept_key(key)) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(v) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    response
}

/// The first subprotocol the client offered, echoed back.
fn offered_protocol(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|p| p.trim().to_owned())
}

/// An upgrade over the tenant's or the address's connection limit.
fn too_many(refused: &Refused) -> Response {
    let retry = refused.retry_after.as_secs().max(1).to_string();
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, retry)],
        format!("{refused}\n"),
    )
        .into_response()
}

/// What the upgrade request said, kept until the upgraded socket arrives. Boxed: the connection's task
/// holds it only until `open` takes it apart.
struct Accepted {
    params: Result<ConnectParams, UrlError>,
    headers: ClientHeaders,
    peer: SocketAddr,
    /// The socket stays counted against the server's connection cap for the WebSocket's whole life.
    socket_guard: Option<Arc<SocketGuard>>,
    /// And against its tenant's per-address count.
    ip_slot: Option<WebsocketSlot>,
}

/// What the teardown needs of a registered connection.
struct Live {
    dev_id: DevId,
    conn: ConnId,
    user: UserId,
    counters: Arc<TenantCounters>,
    peer: SocketAddr,
    _socket: Option<Arc<SocketGuard>>,
    ip_slot: Option<WebsocketSlot>,
}

fn era_of(params: &ConnectParams) -> Era {
    Era::from_version(params.api_version)
}

/// Sends one last frame and a close frame, for connections refused right after the upgrade.
async fn close_with<S: AsyncWrite + Unpin>(
    io: &mut S,
    frame: &[u8],
    code: u16,
    reason: &str,
    limit: Duration,
) {
    if write_all(io, frame, limit).await.is_ok() {
        let _ = write_all(io, &wsframe::encode_close(code, reason), limit).await;
    }
    let _ = io.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::origin_is_host;

    #[test]
    fn own_origin_is_the_host_the_request_named() {
        assert!(origin_is_host("http://127.0.0.1:8087", "127.0.0.1:8087"));
        assert!(origin_is_host("https://comet.example", "Comet.Example"));
        assert!(!origin_is_host("http://127.0.0.1:8087", "127.0.0.1:8088"));
        assert!(!origin_is_host("http://evil.example", "comet.example"));
        assert!(!origin_is_host("null", "comet.example"));
        assert!(!origin_is_host("http://", ""));
        assert!(!origin_is_host(
            "http://comet.example/path",
            "comet.example"
        ));
    }
}
