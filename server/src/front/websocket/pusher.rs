//! The Pusher protocol's WebSocket door, `/app/{key}?protocol=7` on the HTTP port: the same accept path,
//! limits, allowed origins, outbox and hub as the comet URL, with the Pusher protocol's frames. The
//! tenant is the one whose public app key is in the path. What each frame does is `commands::channels`'.
//!
//! A refused connect still upgrades, as Pusher does, so that the client reads the `pusher:error` with its
//! code (4001 unknown app, 4005-4008 a bad URL) and the close with the same code, which tells pusher-js
//! not to retry.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use tokio::io::AsyncWriteExt;

use super::budget::CommandBudget;
use super::conn_loop::write_all;
use super::pusher_loop::PusherLoop;
use super::upgraded::Upgraded;
use super::{
    check_handshake, close_with, lock, offered_protocol, refuse_handshake, switching_protocols,
    too_many, ClientHeaders, WsService,
};
use crate::browser::wsframe::{encode_close, FrameDecoder};
use crate::commands::channels::PusherConn;
use crate::front::listen::SocketGuard;
use crate::hub::outgoing::pusher_bytes;
use crate::hub::{ConnInfo, Era, Outbox};
use crate::ids::{ConnId, DevId, UserId};
use crate::pusher::limits::CLIENT_FRAME_MAX;
use crate::pusher::{parse_connect, ErrorCode, ServerFrame, SocketId};
use crate::tenant::limits::WebsocketSlot;

/// What the decoder buffers past the largest client frame the protocol allows: a frame up to twice that
/// is read and refused with a `pusher:error` 4200 and the close (`FrameError::TooLarge`); a larger one is
/// refused by the decoder from its header (close 1009) before it is buffered.
const FRAME_OVERHEAD: usize = CLIENT_FRAME_MAX;

/// Whether a key can be an app key at all (20 lowercase hex characters, `tenant::generate_app_key`):
/// anything else names no app without a database read.
fn may_be_app_key(key: &str) -> bool {
    key.len() == 20
        && key
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What the upgrade request said, kept until the upgraded socket arrives.
struct Accepted {
    /// The tenant and its app key, or the code the connection is refused with.
    app: Result<(DevId, Arc<str>), ErrorCode>,
    headers: ClientHeaders,
    peer: SocketAddr,
    socket_guard: Option<Arc<SocketGuard>>,
    ip_slot: Option<WebsocketSlot>,
}

impl WsService {
    /// Answers an upgrade on `/app/{key}` and starts the connection's task.
    pub async fn upgrade_pusher(self: Arc<Self>, mut req: Request, peer: SocketAddr) -> Response {
        let key = match check_handshake(&req) {
            Ok(key) => key,
            Err(e) => return refuse_handshake(e),
        };
        let protocol = offered_protocol(req.headers());
        let app = match parse_connect(req.uri().path(), req.uri().query()) {
            Err(code) => Err(code),
            Ok(c) if !may_be_app_key(&c.key) => Err(ErrorCode::AppDoesNotExist),
            // An unknown key costs one query, paid from the address's budget of new connections.
            Ok(c) => match self.ctx.tenants.by_app_key(&c.key).await {
                Ok(Some(dev_id)) => Ok((dev_id, Arc::from(c.key.as_str()))),
                Ok(None) => Err(ErrorCode::AppDoesNotExist),
                Err(e) => {
                    tracing::error!(error = %e, "app key lookup failed for a Pusher connect");
                    Err(ErrorCode::OverCapacity)
                }
            },
        };
        let dev_id = app.as_ref().ok().map(|(d, _)| *d);
        let ip_slot = match dev_id {
            Some(d) => match self.admit(d, peer) {
                Ok(slot) => slot,
                Err(refused) => return too_many(&refused),
            },
            None => None,
        };
        if let Some(refused) = self.refuse_origin(dev_id, req.headers()).await {
            return refused;
        }
        let headers = ClientHeaders::from(req.headers());
        let socket_guard = req.extensions().get::<Arc<SocketGuard>>().cloned();
        let Some(on_upgrade) = req.extensions_mut().remove::<OnUpgrade>() else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "upgrade unavailable\n").into_response();
        };
        let accepted = Box::new(Accepted {
            app,
            headers,
            peer,
            socket_guard,
            ip_slot,
        });
        self.tasks
            .spawn(self.clone().pusher_connection(on_upgrade, accepted));
        switching_protocols(&key, protocol)
    }

    async fn pusher_connection(self: Arc<Self>, on_upgrade: OnUpgrade, accepted: Box<Accepted>) {
        let peer = accepted.peer;
        let upgraded = on_upgrade.await.map_err(std::io::Error::other);
        let (mut io, early) = match upgraded.and_then(Upgraded::take) {
            Ok(taken) => taken,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "Pusher upgrade failed");
                return;
            }
        };
        let write_timeout = self.ctx.config.websocket.write_timeout();
        let Accepted {
            app,
            headers,
            socket_guard,
            ip_slot,
            ..
        } = *accepted;
        let (dev_id, app_key) = match app {
            Ok(app) => app,
            Err(code) => {
                let frame = pusher_bytes(&ServerFrame::Error {
                    code: Some(code),
                    message: code.message(),
                });
                close_with(&mut io, &frame, code.code(), code.message(), write_timeout).await;
                return;
            }
        };
        let conn = ConnId(self.next_conn.fetch_add(1, Ordering::Relaxed));
        let socket_id = SocketId::parse(&format!("{}.{}", conn.0, rand::random::<u32>()))
            .expect("digits.digits is a socket id");
        let info = ConnInfo {
            conn,
            era: Era::Pusher,
            user_id: UserId(0),
            uuid: socket_id.as_str().to_owned(),
            ip: peer.ip().to_string(),
            user_agent: headers.user_agent,
            origin: headers.origin,
            language: headers.language,
            msg_ids: false,
        };
        let (outbox, rx) = Outbox::new(info, self.ctx.config.websocket.outbox_frames);
        lock(&self.live).insert(conn, outbox.clone());
        let counters = self.ctx.stats.tenant(dev_id);
        counters
            .websocket_connections
            .fetch_add(1, Ordering::Relaxed);
        let hello = pusher_bytes(&ServerFrame::ConnectionEstablished {
            socket_id: &socket_id,
            activity_timeout: self.ctx.config.pusher.activity_timeout_secs,
        });
        let channels = PusherConn::new(&self.ctx, dev_id, app_key, socket_id, outbox);
        let mut pusher_loop = PusherLoop {
            ctx: &self.ctx,
            conn: channels,
            decoder: FrameDecoder::new(CLIENT_FRAME_MAX + FRAME_OVERHEAD),
            rbuf: early,
            held: false,
            budget: CommandBudget::new(&self.ctx.config.websocket),
        };
        let greeted =
            write_all(&mut io, &hello, write_timeout).await.is_ok() && io.flush().await.is_ok();
        if greeted {
            rx.attach(io.into_socket());
            let shutting_down = *self.shutdown.borrow();
            pusher_loop.serve(rx, shutting_down).await;
        } else {
            let _ = write_all(&mut io, &encode_close(1011, ""), write_timeout).await;
        }
        pusher_loop.conn.close(&self.ctx);
        lock(&self.live).remove(&conn);
        drop(ip_slot);
        drop(socket_guard);
        counters
            .websocket_connections
            .fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(%peer, conn = conn.0, "Pusher connection closed");
    }
}

#[cfg(test)]
mod tests {
    use super::may_be_app_key;

    #[test]
    fn only_twenty_lowercase_hex_characters_are_looked_up() {
        assert!(may_be_app_key("0123456789abcdef0123"));
        assert!(!may_be_app_key("0123456789ABCDEF0123"));
        assert!(!may_be_app_key("0123456789abcdef012"));
        assert!(!may_be_app_key("app-key"));
    }
}
