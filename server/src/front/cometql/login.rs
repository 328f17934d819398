//! Logging in: the handshake at connect time and COM_CHANGE_USER later. Both end in `Handler::login`; a
//! client that answered for another plugin is first asked for a `mysql_native_password` scramble.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::timeout;

use super::conn::{ConnError, Io, SessionGuard};
use super::{ConnConfig, ConnInfo, Handler};
use crate::mysql::command::ChangeUser;
use crate::mysql::handshake::{self, needs_auth_switch, ClientHello};
use crate::mysql::packet::{Packet, PacketError};
use crate::mysql::{auth, caps, codes, response};
use crate::mysql::{ErrorPacket, LoginRequest, SALT_LEN};

/// The largest handshake answer accepted. Real ones are well under 1 KiB (connection attributes are
/// capped at 64 KiB by clients); a smaller limit turns most garbage (an HTTP request, random bytes) into an
/// immediate error instead of a wait for megabytes that never come.
const HANDSHAKE_MAX_PACKET: usize = 128 * 1024;

pub(super) struct LoggedIn<T> {
    pub(super) session: T,
    /// The client's flags intersected with ours.
    pub(super) capabilities: u32,
    /// Sequence id of the OK that confirms the login.
    pub(super) ok_seq: u8,
}

fn bad_handshake() -> ErrorPacket {
    ErrorPacket::new(codes::BAD_HANDSHAKE, "Bad handshake")
}

/// Sends the greeting (offering TLS when a certificate is configured) and reads the client's answer: a
/// handshake response, or an SSLRequest.
pub(super) async fn greet<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<S>,
    conn_id: u32,
    salt: &[u8; SALT_LEN],
    cfg: &ConnConfig,
    offer_tls: bool,
) -> Result<Packet, ConnError> {
    let capabilities = match offer_tls {
        true => caps::SERVER | caps::SSL,
        false => caps::SERVER,
    };
    io.out.set_seq(0);
    io.out.packet_with(|out| {
        handshake::encode_greeting(out, &cfg.server_version, conn_id, salt, capabilities)
    });
    io.flush().await?;
    read_response(io, cfg).await
}

/// Reads a handshake response (after the greeting, or inside TLS after an SSLRequest).
pub(super) async fn read_response<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<S>,
    cfg: &ConnConfig,
) -> Result<Packet, ConnError> {
    io.set_max_packet(cfg.max_packet.min(HANDSHAKE_MAX_PACKET));
    read_auth_packet(io).await
}

/// The handshake response, optional auth switch, `Handler::login`. On success the caller sends the OK; on
/// failure the ERR has been sent.
pub(super) async fn login<H: Handler, S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<S>,
    packet: Packet,
    handler: &H,
    conn: ConnInfo,
    salt: &[u8; SALT_LEN],
    cfg: &ConnConfig,
) -> Result<LoggedIn<H::Session>, ConnError> {
    let reply_seq = packet.seq.wrapping_add(1);
    let resp = match handshake::parse_response(&packet.payload) {
        Ok(ClientHello::Response(resp)) => resp,
        Ok(ClientHello::SslRequest) => {
            let msg = match conn.tls {
                true => "TLS is already on: a second SSLRequest is not allowed",
                false => {
                    "TLS is not offered by this server (no certificate is configured); connect \
                     without SSL"
                }
            };
            io.fail(reply_seq, &ErrorPacket::new(codes::SSL_ERROR, msg))
                .await;
            return Err(ConnError::SslRequested);
        }
        Err(e) => {
            io.fail(reply_seq, &bad_handshake()).await;
            return Err(e.into());
        }
    };
    let switched: Bytes;
    let (auth_response, ok_seq) = if resp.needs_auth_switch() {
        let answer = switch_to_native(io, reply_seq, salt).await?;
        switched = answer.payload;
        (&switched[..], answer.seq.wrapping_add(1))
    } else {
        (resp.auth_response, reply_seq)
    };
    io.set_max_packet(cfg.max_packet);
    let database = resp.database.map(String::from_utf8_lossy);
    let req = LoginRequest {
        user: resp.user,
        database: database.as_deref(),
        salt,
        auth_response,
    };
    match handler.login(req, conn).await {
        Ok(session) => Ok(LoggedIn {
            session,
            capabilities: resp.capabilities,
            ok_seq,
        }),
        Err(e) => {
            io.fail(ok_seq, &e).await;
            Err(ConnError::Refused(e))
        }
    }
}

/// COM_CHANGE_USER: a real credentials check, never a blind OK. A native scramble is checked against the
/// connection's original salt (the one clients scramble with); a client naming another plugin is switched
/// with a fresh salt. Success replaces the session and queues the OK in `io.out`; failure sends the ERR
/// and the caller closes the connection.
pub(super) async fn change_user<H: Handler, S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<S>,
    guard: &mut SessionGuard<'_, H>,
    cu: ChangeUser<'_>,
    salt: &[u8; SALT_LEN],
    conn: ConnInfo,
    cfg: &ConnConfig,
) -> Result<(), ConnError> {
    let handler = guard.handler;
    let attempt = async {
        let fresh_salt;
        let switched: Bytes;
        let (salt, auth_response, seq) = if needs_auth_switch(cu.plugin, cu.auth_response) {
            fresh_salt = auth::new_salt();
            let answer = switch_to_native(io, io.out.seq(), &fresh_salt).await?;
            switched = answer.payload;
            (&fresh_salt, &switched[..], answer.seq.wrapping_add(1))
        } else {
            (salt, cu.auth_response, io.out.seq())
        };
        let database = cu.database.map(String::from_utf8_lossy);
        let req = LoginRequest {
            user: cu.user,
            database: database.as_deref(),
            salt,
            auth_response,
        };
        Ok::<_, ConnError>((handler.login(req, conn).await, seq))
    };
    let (result, seq) = timeout(cfg.handshake_timeout, attempt)
        .await
        .map_err(|_| ConnError::HandshakeTimeout)??;
    match result {
        Ok(session) => {
            if let Some(old) = guard.session.replace(session) {
                handler.closed(old);
            }
            io.out.set_seq(seq);
            response::ok(&mut io.out, 0, 0);
            Ok(())
        }
        Err(e) => {
            io.fail(seq, &e).await;
            Err(ConnError::Refused(e))
        }
    }
}

/// Sends an AuthSwitchRequest and returns the client's answer (its scramble of `salt`).
async fn switch_to_native<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<S>,
    seq: u8,
    salt: &[u8; SALT_LEN],
) -> Result<Packet, ConnError> {
    io.out.set_seq(seq);
    auth::auth_switch_request(&mut io.out, salt);
    io.flush().await?;
    read_auth_packet(io).await
}

/// Reads a packet of a login exchange; a client hanging up or sending an oversized packet ends it.
async fn read_auth_packet<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<S>,
) -> Result<Packet, ConnError> {
    match io.read_packet().await {
        Ok(Some(packet)) => Ok(packet),
        Ok(None) => Err(ConnError::UnexpectedEof),
        Err(ConnError::Packet(e @ PacketError::TooLong { seq, .. })) => {
            io.fail(seq.wrapping_add(1), &bad_handshake()).await;
            Err(e.into())
        }
        Err(e) => Err(e),
    }
}
