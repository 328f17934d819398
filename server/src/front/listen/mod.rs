//! Where every connection of both ports comes in: the accept loop with the accept-time limits of
//! `admission` (per-IP caps, open-socket count) that a connection passes before it costs anything more,
//! and, for a trusted proxy's connection, the client its PROXY header names (`proxy`, read in the
//! connection's task).
mod admission;
mod proxy;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub(crate) use admission::{Admission, OpenSockets, SocketGuard};
pub(crate) use proxy::{connection_client, Header};

/// The next connection to serve, admitted by the accept-time limits; None once shutdown is asked. Accept
/// errors (out of file descriptors and the like) back off instead of spinning; refused connections are
/// closed unserved, without a byte (a refusal costs the server nothing more than the accept).
pub(crate) async fn accept(
    listener: &TcpListener,
    admission: &Admission,
    shutdown: &mut watch::Receiver<bool>,
    what: &'static str,
) -> Option<(TcpStream, SocketAddr, SocketGuard)> {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|stop| *stop) => return None,
        };
        match accepted {
            Ok((stream, peer)) => match admission.admit(peer.ip()) {
                Ok(guard) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, peer, guard));
                }
                // Summarized in the log by `Admission::log_refusals`, counted in `Stats` (shown by /metrics).
                Err(limit) => {
                    tracing::debug!(%peer, "{what} connection refused: {}", limit.describe())
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "{what} accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
