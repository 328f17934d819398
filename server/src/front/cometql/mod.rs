//! The CometQL front door: the accept loop on port 3300, one MySQL connection loop per client (`conn`,
//! logging in with `login`) that knows a [`Handler`] and not the commands, and the one handler
//! (`handler::CometQl`) that runs each query through `commands` and maps every outcome to packets.
mod conn;
pub(crate) mod handler;
mod login;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

pub use conn::{serve_connection, ConnError};

use crate::front::listen::{accept, connection_client, Admission, Header};
use crate::front::tls::Tls;
use crate::mysql::{ErrorPacket, LoginRequest, Reply};

/// Who is on the other end of a connection: what a login may depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// The client's address (behind a trusted proxy: the one the proxy reported).
    pub peer: SocketAddr,
    /// Whether the connection switched to TLS before logging in.
    pub tls: bool,
}

/// Serves CometQL connections until shutdown: each admitted connection gets its own task and a connection
/// id (MySQL's thread id, never 0). With `tls`, clients may ask for TLS.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<handler::CometQl>,
    config: Arc<ConnConfig>,
    admission: Arc<Admission>,
    tls: Option<Arc<Tls>>,
    tasks: TaskTracker,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut next_id: u32 = 1;
    while let Some((stream, peer, guard)) =
        accept(&listener, &admission, &mut shutdown, "CometQL").await
    {
        let (handler, config, tls) = (handler.clone(), config.clone(), tls.clone());
        let admission = admission.clone();
        let conn_id = next_id;
        next_id = next_id.wrapping_add(1).max(1);
        tasks.spawn(async move {
            let (mut stream, mut guard) = (stream, guard);
            // From a trusted proxy, its PROXY header first: the client it names is the peer from here on.
            let deadline = tokio::time::Instant::now() + config.handshake_timeout;
            let Some(peer) = connection_client(
                &admission,
                &mut stream,
                peer,
                &mut guard,
                Header::Required,
                deadline,
                "CometQL",
            )
            .await
            else {
                return;
            };
            let conn = ConnInfo { peer, tls: false };
            let (tls, cfg) = (tls.as_deref(), &*config);
            let served = serve_connection(stream, conn, conn_id, &*handler, cfg, tls, deadline);
            if let Err(e) = served.await {
                tracing::debug!(%peer, error = %e, "CometQL connection ended with an error");
            }
            drop(guard);
        });
    }
}

/// Per-connection limits.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// Sent in the greeting; must start with a MySQL-style number (drivers parse it).
    pub server_version: String,
    /// The largest payload of one command (continuation packets included). Larger: ERR 11 and close.
    pub max_packet: usize,
    /// Time allowed from accept to a logged-in session (also bounds a COM_CHANGE_USER exchange).
    pub handshake_timeout: Duration,
    /// Time allowed between commands (and for writing one reply) before the connection is closed.
    pub idle_timeout: Duration,
}

impl Default for ConnConfig {
    fn default() -> Self {
        Self {
            server_version: "5.7.99-Halley".to_owned(),
            max_packet: 1024 * 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(3600),
        }
    }
}

/// What the connection loop calls. One handler serves every connection; a `Session` is one logged-in
/// connection's state.
pub trait Handler: Send + Sync + 'static {
    type Session: Send + 'static;

    /// Checks a login. `Err` is sent to the client as is and the connection is closed.
    fn login(
        &self,
        req: LoginRequest<'_>,
        conn: ConnInfo,
    ) -> impl Future<Output = Result<Self::Session, ErrorPacket>> + Send;

    /// COM_INIT_DB. `Err` is sent to the client; the connection stays open.
    fn init_db(
        &self,
        session: &mut Self::Session,
        db: &str,
    ) -> impl Future<Output = Result<(), ErrorPacket>> + Send;

    /// COM_QUERY with the raw query bytes (not necessarily UTF-8).
    fn query(&self, session: &mut Self::Session, sql: &[u8]) -> impl Future<Output = Reply> + Send;

    /// The next rows of the result a [`Reply::Stream`] started: `Some(Ok(rows))` (maybe none this time),
    /// `Some(Err(e))` to end it with an ERR packet, `None` once it is complete.
    fn more_rows(
        &self,
        _session: &mut Self::Session,
    ) -> impl Future<Output = Option<Result<Vec<Vec<String>>, ErrorPacket>>> + Send {
        async { None }
    }

    /// Signalled (notify_one) when the session must end from outside: its key revoked, server shutdown.
    fn closer(&self, session: &Self::Session) -> Arc<tokio::sync::Notify>;

    /// Called exactly once for every session `login` returned: when the connection ends, however it ends
    /// (error, timeout, closer, task cancelled), or when COM_CHANGE_USER replaces the session.
    fn closed(&self, session: Self::Session);
}
