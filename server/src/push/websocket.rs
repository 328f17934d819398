//! The browser front door: the HTTP upgrade on the comet-server URL forms, then one task per connection
//! that owns its socket: it reads client commands, drains the connection's outbox into the socket, pings
//! idle peers and closes on request (slow consumer, shutdown, revoked user).

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes, BytesMut};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tokio_util::task::TaskTracker;

use super::protocol::frames;
use super::protocol::wsframe::{self, FrameDecoder, Incoming};
use super::protocol::{parse_command, parse_connect_url, ConnectParams, UrlError};
use super::session::{announce_status, Answer, Session};
use crate::commands::users_messages::QUEUE_BATCH;
use crate::commands::{users_auth, Ctx};
use crate::http::serve::SocketGuard;
use crate::hub::{CloseReason, ConnInfo, Era, Outbox, OutboxRx};
use crate::ids::{ConnId, DevId, UserId};
use crate::tenant::limits::Refused;
use crate::tenant::unix_now;

/// Frames written to the socket in one vectored write at most.
const WRITE_BATCH: usize = 64;

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

fn header_has(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
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
            outbox.control().close(CloseReason::Shutdown);
        }
    }

    pub fn live_connections(&self) -> usize {
        lock(&self.live).len()
    }

    /// The tenant's connection limit and the per-address rate of new connections (contract §5).
    fn admit(&self, dev_id: DevId, peer: SocketAddr) -> Result<(), Refused> {
        let counters = self.ctx.hub.registry().tenant(dev_id);
        let open = counters.websocket_connections.load(Ordering::Relaxed);
        self.ctx
            .limits
            .websocket_connect(dev_id, peer.ip(), open)
            .inspect_err(|_| {
                counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            })
    }

    /// Answers the upgrade request and starts the connection's task. URL errors still upgrade, as in the
    /// reference, so that the browser reads the error frame instead of a bare failed handshake.
    pub async fn upgrade(self: Arc<Self>, mut req: Request, peer: SocketAddr) -> Response {
        let headers = req.headers();
        let key = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let is_upgrade = header_has(headers, header::UPGRADE, "websocket")
            && header_has(headers, header::CONNECTION, "upgrade");
        let Some(key) = key.filter(|_| is_upgrade) else {
            return (
                StatusCode::BAD_REQUEST,
                "This is a WebSocket endpoint: connect with a WebSocket client.\n",
            )
                .into_response();
        };
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
        {
            return (
                StatusCode::UPGRADE_REQUIRED,
                [(header::SEC_WEBSOCKET_VERSION, "13")],
                "Only WebSocket version 13 is supported.\n",
            )
                .into_response();
        }
        let protocol = headers
            .get(header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|p| p.trim().to_owned());
        let target = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
        let params = parse_connect_url(&target);
        if let Some(refused) = self.refuse_origin(&params, req.headers()).await {
            return refused;
        }
        // A refused URL still costs the address a connection: malformed requests are no way around it.
        let admitted = match &params {
            Ok(p) => self.admit(DevId(p.dev_id), peer),
            Err(_) => self.ctx.limits.new_connection(peer.ip()),
        };
        {
            if let Err(refused) = admitted {
                let retry = refused.retry_after.as_secs().max(1).to_string();
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, retry)],
                    format!("{refused}\n"),
                )
                    .into_response();
            }
        }
        let client = ClientHeaders::from(req.headers());
        // The socket stays counted against the server's connection cap for the WebSocket's whole life.
        let socket_guard = req.extensions().get::<Arc<SocketGuard>>().cloned();
        let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "upgrade unavailable\n").into_response();
        };
        let this = self.clone();
        self.tasks.spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => this.run(TokioIo::new(upgraded), params, client, peer).await,
                Err(e) => tracing::debug!(%peer, error = %e, "WebSocket upgrade failed"),
            }
            drop(socket_guard);
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = response.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&wsframe::accept_key(&key)) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        if let Some(v) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
        }
        response
    }

    /// The tenant's allowed origins (dashboard setting): a browser page from another origin gets 403. An empty
    /// list allows any origin; a request without `Origin` is not from a browser page and is not refused.
    async fn refuse_origin(
        &self,
        params: &Result<ConnectParams, UrlError>,
        headers: &HeaderMap,
    ) -> Option<Response> {
        let (Ok(params), Some(origin)) = (params, headers.get(header::ORIGIN)) else {
            return None;
        };
        let allowed = match self.ctx.storage.allowed_origins(DevId(params.dev_id)).await {
            Ok(list) => list,
            Err(e) => {
                tracing::error!(error = %e, "allowed origins lookup failed");
                return Some(
                    (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response(),
                );
            }
        };
        let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
        (!allowed.is_empty() && !allowed.contains(&origin)).then(|| {
            (
                StatusCode::FORBIDDEN,
                "This origin may not connect to this dev_id.\n",
            )
                .into_response()
        })
    }

    async fn run<S>(
        self: Arc<Self>,
        mut io: S,
        params: Result<ConnectParams, UrlError>,
        headers: ClientHeaders,
        peer: SocketAddr,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let write_timeout = self.ctx.config.websocket.write_timeout();
        let params = match params {
            Ok(p) => p,
            Err(e) => {
                let frame = frames::url_error(e, unix_now());
                close_with(&mut io, &frame, 1008, "invalid connect URL", write_timeout).await;
                return;
            }
        };
        let dev_id = DevId(params.dev_id);
        match self.ctx.tenants.exists(dev_id).await {
            Ok(true) => {}
            Ok(false) => {
                let frame = frames::error("Unknown dev_id: no such tenant", unix_now())
                    .encode(era_of(&params));
                close_with(&mut io, &frame, 1008, "unknown dev_id", write_timeout).await;
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "tenant lookup failed for a WebSocket connect");
                let frame =
                    frames::error("Internal server error", unix_now()).encode(era_of(&params));
                close_with(&mut io, &frame, 1011, "internal error", write_timeout).await;
                return;
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
            };
            Outbox::new(info, self.ctx.config.websocket.outbox_frames)
        };
        let registry = self.ctx.hub.registry();
        // An authorized connection is linked to its user; past the per-user cap it stays anonymous.
        let (user, first, (outbox, rx)) = match &hash {
            Some(_) => {
                let (outbox, rx) = make_outbox(claimed);
                let hub = &self.ctx.hub;
                let announce = || announce_status(hub, dev_id, claimed, true);
                match registry.link_user(dev_id, claimed, outbox.clone(), announce) {
                    Ok(first) => (claimed, first, (outbox, rx)),
                    Err(_) => (UserId(0), false, make_outbox(UserId(0))),
                }
            }
            None => (UserId(0), false, make_outbox(UserId(0))),
        };
        let authorized = user.0 != 0;
        lock(&self.live).insert(conn, outbox.clone());
        let counters = registry.tenant(dev_id);
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
            rbuf: BytesMut::new(),
            write_timeout,
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
        .encode(era);
        if first {
            conn_loop.session.record_status(&self.ctx, true).await;
        }
        let mut ok = write_all(&mut io, &hello, write_timeout).await.is_ok();
        // Not kept for the connection's life: ~230 bytes per idle connection (BENCHMARKS.md, idle memory).
        drop(hello);
        if ok && authorized {
            ok = conn_loop.deliver_queue(&mut io).await.is_ok();
        }
        if ok {
            conn_loop.serve(&mut io, rx, self.shutdown.clone()).await;
        }
        conn_loop.session.unsubscribe_all(&self.ctx);
        let announce = || announce_status(&self.ctx.hub, dev_id, user, false);
        if authorized && registry.unlink_user(dev_id, user, conn, announce) {
            conn_loop.session.record_status(&self.ctx, false).await;
        }
        lock(&self.live).remove(&conn);
        counters
            .websocket_connections
            .fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(%peer, conn = conn.0, "WebSocket closed");
    }
}

struct ConnLoop<'a> {
    ctx: &'a Ctx,
    session: Session,
    era: Era,
    decoder: FrameDecoder,
    rbuf: BytesMut,
    write_timeout: Duration,
}

/// What the connection does after handling input.
enum Next {
    Continue,
    Close(u16, &'static str),
}

impl ConnLoop<'_> {
    async fn serve<S>(&mut self, io: &mut S, mut rx: OutboxRx, mut shutdown: watch::Receiver<bool>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let period = self.ctx.config.websocket.ping_interval();
        let mut ticker = interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut batch: Vec<Bytes> = Vec::new();
        if *shutdown.borrow() {
            self.session.outbox.control().close(CloseReason::Shutdown);
        }
        loop {
            tokio::select! {
                biased;
                reason = self.session.outbox.control().closed() => {
                    let (code, text) = close_code(reason);
                    let _ = write_all(io, &wsframe::encode_close(code, text), Duration::from_secs(1)).await;
                    return;
                }
                changed = shutdown.changed() => {
                    // A dropped sender also means the server is going away.
                    if changed.is_err() || *shutdown.borrow() {
                        self.session.outbox.control().close(CloseReason::Shutdown);
                    }
                }
                frame = rx.recv() => {
                    batch.push(frame);
                    while batch.len() < WRITE_BATCH {
                        match rx.try_recv() {
                            Some(f) => batch.push(f),
                            None => break,
                        }
                    }
                    if write_batch(io, &mut batch, self.write_timeout).await.is_err() {
                        return;
                    }
                }
                read = io.read_buf(&mut self.rbuf) => {
                    match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    last_heard = Instant::now();
                    match self.drain_input(io).await {
                        Next::Continue => {}
                        Next::Close(code, text) => {
                            let _ = write_all(io, &wsframe::encode_close(code, text), Duration::from_secs(1)).await;
                            return;
                        }
                    }
                    if self.rbuf.is_empty() && self.rbuf.capacity() > 4096 {
                        // Give back a large buffer once a big message is handled: idle connections stay small.
                        self.rbuf = BytesMut::new();
                    }
                }
                _ = ticker.tick() => {
                    if last_heard.elapsed() >= period * 2 {
                        return;
                    }
                    if write_all(io, &wsframe::encode_ping(b""), self.write_timeout).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn drain_input<S>(&mut self, io: &mut S) -> Next
    where
        S: AsyncWrite + Unpin,
    {
        loop {
            let incoming = match self.decoder.decode(&mut self.rbuf) {
                Ok(Some(i)) => i,
                Ok(None) => return Next::Continue,
                Err(e) => return Next::Close(e.close_code(), "protocol error"),
            };
            let next = match incoming {
                Incoming::Text(text) => self.on_text(io, &text).await,
                // Binary is read as text, as the reference does.
                Incoming::Binary(data) => match std::str::from_utf8(&data) {
                    Ok(text) => self.on_text(io, text).await,
                    Err(_) => Next::Close(1007, "invalid UTF-8"),
                },
                Incoming::Ping(payload) => {
                    if write_all(io, &wsframe::encode_pong(&payload), self.write_timeout)
                        .await
                        .is_err()
                    {
                        return Next::Close(1001, "");
                    }
                    Next::Continue
                }
                Incoming::Pong => Next::Continue,
                Incoming::Close(..) => Next::Close(1000, ""),
            };
            if !matches!(next, Next::Continue) {
                return next;
            }
        }
    }

    async fn on_text<S>(&mut self, io: &mut S, text: &str) -> Next
    where
        S: AsyncWrite + Unpin,
    {
        let answer = match parse_command(text) {
            Ok(command) => self.session.handle(self.ctx, command).await,
            Err(e) => Answer::refuse(e),
        };
        for frame in &answer.frames {
            if write_all(io, &frame.encode(self.era), self.write_timeout)
                .await
                .is_err()
            {
                return Next::Close(wsframe::close_code::GOING_AWAY, "");
            }
        }
        if answer.close {
            return Next::Close(wsframe::close_code::POLICY_VIOLATION, "invalid command");
        }
        Next::Continue
    }

    /// Private messages queued while the user was away, in order and all of them, written straight to
    /// the socket. Each message is claimed (removed from the queue) before it is written, so a sender
    /// racing with this drain never delivers it a second time; a batch that cannot be written goes back
    /// into the queue.
    async fn deliver_queue<S>(&mut self, io: &mut S) -> std::io::Result<()>
    where
        S: AsyncWrite + Unpin,
    {
        let (ctx, dev_id, user) = (self.ctx, self.session.dev_id, self.session.user);
        loop {
            let batch = match ctx
                .storage
                .queued_messages(dev_id, user, unix_now(), QUEUE_BATCH)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "reading queued private messages failed");
                    return Ok(());
                }
            };
            let full = batch.len() as i64 == QUEUE_BATCH;
            let mut claimed = Vec::with_capacity(batch.len());
            for m in batch {
                match ctx.storage.claim_queued(dev_id, user, m.id).await {
                    Ok(true) => claimed.push(m),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "claiming a queued private message failed")
                    }
                }
            }
            let mut frames: Vec<Bytes> = claimed
                .iter()
                .map(|m| {
                    frames::queued_private_message(&m.event, &m.message, m.sent_at).encode(self.era)
                })
                .collect();
            if let Err(e) = write_batch(io, &mut frames, self.write_timeout).await {
                let ttl = ctx
                    .limits
                    .queue_ttl_secs(dev_id, ctx.config.messages.queue_ttl_secs);
                let expires = unix_now() + ttl as i64;
                for m in &claimed {
                    if let Err(e) = ctx.storage.enqueue_message(dev_id, user, m, expires).await {
                        tracing::error!(error = %e, "re-queuing an undelivered private message failed");
                    }
                }
                return Err(e);
            }
            if !full {
                return Ok(());
            }
        }
    }
}

fn era_of(params: &ConnectParams) -> Era {
    Era::from_version(params.api_version)
}

/// The one place close reasons become WebSocket close codes.
fn close_code(reason: CloseReason) -> (u16, &'static str) {
    match reason {
        CloseReason::SlowConsumer => (1008, "slow consumer: outbox overflow"),
        CloseReason::Shutdown => (1001, "server shutting down"),
        CloseReason::Kicked => (1008, "closed by the server"),
        CloseReason::TooBig => (1009, "message too big"),
    }
}

async fn write_all<S: AsyncWrite + Unpin>(
    io: &mut S,
    bytes: &[u8],
    limit: Duration,
) -> std::io::Result<()> {
    match tokio::time::timeout(limit, io.write_all(bytes)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Writes queued frames with vectored writes; a socket that accepts nothing for `limit` is given up on.
async fn write_batch<S: AsyncWrite + Unpin>(
    io: &mut S,
    batch: &mut Vec<Bytes>,
    limit: Duration,
) -> std::io::Result<()> {
    let work = async {
        let mut start = 0;
        while start < batch.len() {
            let slices: Vec<IoSlice<'_>> = batch[start..].iter().map(|b| IoSlice::new(b)).collect();
            let mut n = io.write_vectored(&slices).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            while start < batch.len() && n >= batch[start].len() {
                n -= batch[start].len();
                start += 1;
            }
            if n > 0 {
                batch[start].advance(n);
            }
        }
        io.flush().await
    };
    let result = match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    };
    batch.clear();
    result
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
