//! The HTTP accept loop. Ours rather than `axum::serve` because a hosted server needs what that one does
//! not offer: a deadline and a size cap for the request head (a half-open, trickling or bloated client is
//! dropped), the accept-time limits of `admission`, and a count of open sockets that follows a connection
//! into its WebSocket task.
//!
//! The same loop serves HTTPS (with a `Tls`): the handshake runs in the connection's own task, after the
//! accept-time limits and within `header_timeout` (the request head then has its own `header_timeout`),
//! never in the accept loop, so a client that stalls its handshake holds only its own connection. Handlers
//! learn which it was from the `Scheme` request extension; WebSocket upgrades get the TLS stream itself
//! (`front::websocket`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::{client, Scheme};
use crate::front::listen::{accept, connection_client, Admission, Header, SocketGuard};
use crate::front::tls::{self, Tls};

#[derive(Clone)]
pub(crate) struct HttpServer {
    pub router: Router,
    pub admission: Arc<Admission>,
    pub header_timeout: Duration,
    /// hyper's read buffer: a request head that does not fit gets 431 (WebSocket upgrades and the
    /// dashboard's requests need a few KiB).
    pub max_head_bytes: usize,
    /// Set: this listener speaks HTTPS (and WSS) with this certificate.
    pub tls: Option<Arc<Tls>>,
}

impl HttpServer {
    pub(crate) async fn run(
        self,
        listener: TcpListener,
        tasks: TaskTracker,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let what = if self.tls.is_some() { "HTTPS" } else { "HTTP" };
        while let Some((stream, peer, guard)) =
            accept(&listener, &self.admission, &mut shutdown, what).await
        {
            let server = self.clone();
            let mut stop = shutdown.clone();
            // The common case (plain HTTP, a client that is not a proxy) spawns only what it runs: a task
            // sized for the PROXY header and TLS handshake states would be the first allocation of every
            // connection, and freed between long-lived WebSocket allocations it fragments the heap.
            if server.tls.is_none() && guard.is_keyed() {
                tasks.spawn(server.serve(stream, peer, guard, Scheme::Http, stop));
                continue;
            }
            tasks.spawn(async move {
                let (mut stream, mut guard) = (stream, guard);
                let deadline = Instant::now() + server.header_timeout;
                // From a trusted proxy, an optional PROXY header first (before TLS: a balancer sends it in
                // clear); the client it names is the connection's from here on.
                let (admission, header) = (&server.admission, Header::Optional);
                let client = connection_client(
                    admission,
                    &mut stream,
                    peer,
                    &mut guard,
                    header,
                    deadline,
                    what,
                );
                let Some(peer) = client.await else {
                    return;
                };
                let Some(tls) = &server.tls else {
                    return server.serve(stream, peer, guard, Scheme::Http, stop).await;
                };
                let handshake = tls.accept(tls::Port::Http, stream, deadline);
                let stream = tokio::select! {
                    r = handshake => match r {
                        Ok(stream) => stream,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "HTTPS connection ended before a request");
                            return;
                        }
                    },
                    _ = stop.wait_for(|s| *s) => return,
                };
                server.serve(stream, peer, guard, Scheme::Https, stop).await
            });
        }
    }

    /// One connection's requests (and its upgrade), until it ends or the server shuts down.
    async fn serve<S>(
        self,
        stream: S,
        peer: SocketAddr,
        guard: SocketGuard,
        scheme: Scheme,
        mut stop: watch::Receiver<bool>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (router, admission) = (self.router, self.admission);
        let guard = Arc::new(guard);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            // The request's client (`ConnectInfo`) and the guard counting it (see `client`).
            let admitted = client::admit(&admission, peer, &guard, &mut req);
            req.extensions_mut().insert(scheme);
            let router = router.clone();
            async move {
                match admitted {
                    Ok(_held_for_the_request) => router.oneshot(req.map(Body::new)).await,
                    Err(limit) => Ok(client::refused(limit)),
                }
            }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_buf_size(self.max_head_bytes)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
                }
            }
            _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
            }
        }
    }
}
