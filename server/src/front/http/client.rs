//! Who sent an HTTP request. A connection whose client is known (any peer that is not a trusted proxy, or
//! the client a proxy's PROXY header named) serves that client. A trusted proxy's connection that names no
//! client carries requests from many clients (a balancer reuses its upstream connections), so each request
//! is resolved on its own from `X-Forwarded-For` / `Forwarded` (`crate::proxy::forwarded`) and admitted by
//! the per-IP checks for that client while it runs; a WebSocket keeps the request's guard for its life.
//! Handlers read the result as `ConnectInfo<SocketAddr>` (port 0 when a header named the client).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::front::listen::{Admission, SocketGuard};
use crate::proxy::forwarded;
use crate::tenant::limits::Limit;

/// Sets the request's `ConnectInfo` to its client and its `Arc<SocketGuard>` to the guard counting it;
/// returns that guard (hold it until the response is made), or the limit refusing the request.
pub(super) fn admit<B>(
    admission: &Admission,
    conn_client: SocketAddr,
    conn: &Arc<SocketGuard>,
    req: &mut Request<B>,
) -> Result<Arc<SocketGuard>, Limit> {
    let (client, guard) = if conn.is_keyed() {
        (conn_client, conn.clone())
    } else {
        let h = req.headers();
        let named = forwarded::client(
            h.get_all("x-forwarded-for").iter().map(|v| v.as_bytes()),
            h.get_all(header::FORWARDED).iter().map(|v| v.as_bytes()),
            |ip| admission.is_trusted(ip),
        );
        let client = match named {
            Some(ip) if ip != conn_client.ip() => SocketAddr::new(ip, 0),
            _ => conn_client,
        };
        match admission.admit_request(client.ip(), conn) {
            Ok(guard) => (client, Arc::new(guard)),
            Err(limit) => {
                tracing::debug!(%client, "HTTP request refused: {}", limit.describe());
                return Err(limit);
            }
        }
    };
    req.extensions_mut().insert(ConnectInfo(client));
    req.extensions_mut().insert(guard.clone());
    Ok(guard)
}

/// The answer to a request refused by a per-IP limit. The connection stays open: it is the balancer's,
/// shared with other clients.
pub(super) fn refused(limit: Limit) -> Response {
    let text = format!("too many connections: {}\n", limit.describe());
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, "1")],
        text,
    )
        .into_response()
}
