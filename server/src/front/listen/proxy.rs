//! The client a trusted proxy names for a whole connection: its PROXY protocol header (v1 or v2, parsed by
//! `crate::proxy`), read in the connection's own task under its handshake deadline (never in the accept
//! loop, which must not wait on any one peer), then the per-IP checks of `Admission` for that client.
//!
//! Only the header's bytes are taken from the socket (peeked, then read exactly), so what follows reaches
//! the MySQL loop or hyper untouched and the socket stays a plain `TcpStream` (the WebSocket door writes to
//! it directly). On the CometQL port a trusted peer must send a header: the server speaks first, so
//! "no header" could only be told from "a slow header" by waiting out the deadline. On the HTTP port the
//! client speaks first and the header is optional: a balancer may send `X-Forwarded-For` instead.

use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::{sleep, timeout_at, Instant};

use super::{Admission, SocketGuard};
use crate::proxy::{self, Parsed, ProxyError, ProxyHeader, V2_MAX_LEN};
use crate::tenant::limits::Limit;

/// How often to look again at a few bytes that may yet be a header's signature or a request's start (a
/// peer trickling its first bytes; real balancers send the header in one segment).
const AMBIGUOUS_POLL: Duration = Duration::from_millis(10);

/// Whether a trusted proxy must start its connections with a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    /// CometQL: the server greets first, so the header must come before anything else.
    Required,
    /// HTTP: a connection from a trusted proxy may start with a request instead.
    Optional,
}

/// Why a trusted proxy's connection is closed before it is served.
#[derive(Debug, Error)]
enum IntakeError {
    #[error("a trusted proxy sent no PROXY protocol header")]
    Missing,
    #[error(transparent)]
    Malformed(#[from] ProxyError),
    #[error("the PROXY header did not arrive before the handshake deadline")]
    Timeout,
    #[error("closed before the PROXY header ended")]
    Closed,
    #[error("i/o error reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    #[error("refused for the client the proxy named: {}", .0.describe())]
    Refused(Limit),
}

impl IntakeError {
    /// A trusted proxy that speaks the protocol wrongly is misconfigured: worth the operator's attention.
    fn is_misconfiguration(&self) -> bool {
        matches!(self, IntakeError::Missing | IntakeError::Malformed(_))
    }
}

/// The client of a connection from `peer`: `peer` itself unless it is a trusted proxy, else the client its
/// PROXY header names (the proxy itself for LOCAL or UNKNOWN, or, on HTTP, when it sends none). A client
/// that is not itself a trusted proxy (and, on CometQL, any client) is admitted by the per-IP checks and
/// `guard` counts under it; on HTTP, a connection still naming a trusted proxy stays unkeyed and each
/// request is admitted for the client its forwarding headers name. None: the connection is to be closed
/// (logged here, `what` naming the port).
pub(crate) async fn connection_client(
    admission: &Admission,
    stream: &mut TcpStream,
    peer: SocketAddr,
    guard: &mut SocketGuard,
    header: Header,
    deadline: Instant,
    what: &'static str,
) -> Option<SocketAddr> {
    match client_of(admission, stream, peer, guard, header, deadline).await {
        Ok(client) => Some(client),
        Err(e) if e.is_misconfiguration() => {
            tracing::warn!(%peer, "{what} connection from a trusted proxy closed: {e}");
            None
        }
        Err(e) => {
            tracing::debug!(%peer, "{what} connection from a trusted proxy closed: {e}");
            None
        }
    }
}

async fn client_of(
    admission: &Admission,
    stream: &mut TcpStream,
    peer: SocketAddr,
    guard: &mut SocketGuard,
    header: Header,
    deadline: Instant,
) -> Result<SocketAddr, IntakeError> {
    if !admission.is_trusted(peer.ip()) {
        return Ok(peer);
    }
    let required = header == Header::Required;
    let read = timeout_at(deadline, read_header(stream, required))
        .await
        .map_err(|_| IntakeError::Timeout)??;
    let client = match read {
        Some(ProxyHeader::Proxied { source, .. }) => source,
        Some(ProxyHeader::Local) => peer,
        None if required => return Err(IntakeError::Missing),
        None => peer,
    };
    if required || !admission.is_trusted(client.ip()) {
        admission
            .rekey(guard, client.ip())
            .map_err(IntakeError::Refused)?;
    }
    Ok(client)
}

/// Takes a PROXY header off the start of `stream`, if it starts with one (`None`: it does not, and nothing
/// was taken). With `required`, bytes that could only be the start of a header are taken at once.
async fn read_header(
    stream: &mut TcpStream,
    required: bool,
) -> Result<Option<ProxyHeader>, IntakeError> {
    // Bytes of the header taken so far are in buf[..have]; the socket holds the rest.
    let mut buf = vec![0u8; V2_MAX_LEN];
    let mut have = 0;
    loop {
        // Blocks until the socket has bytes we have not taken (everything taken is gone from it).
        let n = stream.peek(&mut buf[have..]).await?;
        if n == 0 {
            return Err(IntakeError::Closed);
        }
        match proxy::parse(&buf[..have + n])? {
            Parsed::Complete { header, len } => {
                stream.read_exact(&mut buf[have..len]).await?;
                return Ok(Some(header));
            }
            Parsed::NotProxy => return Ok(None),
            Parsed::Incomplete { committed } if committed || required => {
                stream.read_exact(&mut buf[have..have + n]).await?;
                have += n;
            }
            // "PRO" may yet be "PROXY " or "PROPFIND": look again shortly, without taking anything.
            Parsed::Incomplete { .. } => sleep(AMBIGUOUS_POLL).await,
        }
    }
}
