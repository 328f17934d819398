//! The HTTP accept loop. Ours rather than `axum::serve` because a hosted server needs what that one does
//! not offer: a deadline and a size cap for the request head (a half-open, trickling or bloated client is
//! dropped), the accept-time limits of `admission`, and a count of open sockets that follows a connection
//! into its WebSocket task.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::client;
use crate::front::listen::{accept, connection_client, Admission, Header};

pub(crate) struct HttpServer {
    pub router: Router,
    pub admission: Arc<Admission>,
    pub header_timeout: Duration,
    /// hyper's read buffer: a request head that does not fit gets 431 (WebSocket upgrades and the
    /// dashboard's requests need a few KiB).
    pub max_head_bytes: usize,
}

impl HttpServer {
    pub(crate) async fn run(
        self,
        listener: TcpListener,
        tasks: TaskTracker,
        mut shutdown: watch::Receiver<bool>,
    ) {
        while let Some((stream, peer, guard)) =
            accept(&listener, &self.admission, &mut shutdown, "HTTP").await
        {
            let router = self.router.clone();
            let admission = self.admission.clone();
            let (header_timeout, max_head) = (self.header_timeout, self.max_head_bytes);
            let mut stop = shutdown.clone();
            tasks.spawn(async move {
                let (mut stream, mut guard) = (stream, guard);
                // From a trusted proxy, an optional PROXY header before the first request.
                let deadline = tokio::time::Instant::now() + header_timeout;
                let Some(client) = connection_client(
                    &admission,
                    &mut stream,
                    peer,
                    &mut guard,
                    Header::Optional,
                    deadline,
                    "HTTP",
                )
                .await
                else {
                    return;
                };
                let guard = Arc::new(guard);
                let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    let admitted = client::admit(&admission, client, &guard, &mut req);
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
                    .header_read_timeout(header_timeout)
                    .max_buf_size(max_head)
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
