//! The HTTP accept loop. Ours rather than `axum::serve` because a hosted server needs what that one does
//! not offer: a deadline for the request head (a half-open or trickling client is dropped), a cap on open
//! connections, and a count of open sockets that follows a connection into its WebSocket task.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Open sockets across both listeners, compared with `limits.max_connections`.
#[derive(Default, Debug)]
pub struct OpenSockets(AtomicUsize);

/// One open socket; the count drops when the last clone is gone (a WebSocket task keeps a clone).
#[derive(Debug)]
pub struct SocketGuard(Arc<OpenSockets>);

impl OpenSockets {
    /// Counts a new socket, unless `max` are open already.
    pub fn open(self: &Arc<Self>, max: usize) -> Option<SocketGuard> {
        let mut n = self.0.load(Ordering::Relaxed);
        loop {
            if n >= max {
                return None;
            }
            match self
                .0
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(SocketGuard(self.clone())),
                Err(actual) => n = actual,
            }
        }
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The next connection to serve, counted against the connection cap; None once shutdown is asked. Accept
/// errors (out of file descriptors and the like) back off instead of spinning; connections past the cap are
/// closed unserved.
pub async fn accept(
    listener: &TcpListener,
    sockets: &Arc<OpenSockets>,
    max_connections: usize,
    shutdown: &mut watch::Receiver<bool>,
    what: &'static str,
) -> Option<(TcpStream, SocketAddr, SocketGuard)> {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|stop| *stop) => return None,
        };
        match accepted {
            Ok((stream, peer)) => match sockets.open(max_connections) {
                Some(guard) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, peer, guard));
                }
                None => {
                    tracing::warn!(%peer, "{what} connection refused: server connection limit reached")
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "{what} accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

pub struct HttpServer {
    pub router: Router,
    pub sockets: Arc<OpenSockets>,
    pub max_connections: usize,
    pub header_timeout: Duration,
}

impl HttpServer {
    pub async fn run(
        self,
        listener: TcpListener,
        tasks: TaskTracker,
        mut shutdown: watch::Receiver<bool>,
    ) {
        while let Some((stream, peer, guard)) = accept(
            &listener,
            &self.sockets,
            self.max_connections,
            &mut shutdown,
            "HTTP",
        )
        .await
        {
            let router = self.router.clone();
            let header_timeout = self.header_timeout;
            let mut stop = shutdown.clone();
            tasks.spawn(async move {
                let guard = Arc::new(guard);
                let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req.extensions_mut().insert(guard.clone());
                    router.clone().oneshot(req.map(Body::new))
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
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
            });
        }
    }
}

/// The address a request came from, as the accept loop recorded it.
pub fn peer(req: &axum::extract::Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_sockets_are_capped_and_released() {
        let s = Arc::new(OpenSockets::default());
        let a = s.open(2).unwrap();
        let b = s.open(2).unwrap();
        assert!(s.open(2).is_none());
        drop(a);
        assert_eq!(s.count(), 1);
        assert!(s.open(2).is_some());
        drop(b);
    }
}
