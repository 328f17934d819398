//! The node's name in the cluster: a key with a TTL that the node's heartbeat renews. A node that starts
//! with a name a live node holds fails with a clear error; a node that died frees its name after the TTL.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::watch;

use super::scripts::{RELEASE, RENEW};
use super::{ClusterError, Keys, Shared};

/// How long a name outlives its node's last heartbeat.
pub(super) const LEASE_TTL: Duration = Duration::from_secs(10);
const HEARTBEAT: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub(super) struct Lease {
    conn: ConnectionManager,
    key: String,
    token: String,
}

impl Lease {
    pub(super) async fn take(
        mut conn: ConnectionManager,
        keys: &Keys,
        node: &str,
    ) -> Result<Lease, ClusterError> {
        let key = keys.lease(node);
        let token = format!("{:032x}", rand::random::<u128>());
        let taken: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(LEASE_TTL.as_millis() as u64)
            .query_async(&mut conn)
            .await
            .map_err(ClusterError::Connect)?;
        if taken.is_none() {
            return Err(ClusterError::NameTaken(node.to_string(), key));
        }
        Ok(Lease { conn, key, token })
    }

    /// Renews the lease until shutdown; the node is not ready while it cannot.
    pub(super) async fn heartbeat(self, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(HEARTBEAT) => {}
                _ = shutdown.changed() => return,
            }
            let mut conn = self.conn.clone();
            let renewed: Result<i64, _> = RENEW
                .key(&self.key)
                .arg(&self.token)
                .arg(LEASE_TTL.as_millis() as u64)
                .invoke_async(&mut conn)
                .await;
            let ok = match renewed {
                Ok(1) => true,
                Ok(2) => {
                    // The lease had expired: survivors may have swept this node's presence.
                    tracing::warn!(key = %self.key, "the node's lease had expired; taken again");
                    shared.presence.resync();
                    true
                }
                Ok(_) => {
                    tracing::error!(key = %self.key, "another node took this node's name");
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew the node's lease");
                    false
                }
            };
            shared.lease_ok.store(ok, Ordering::Relaxed);
        }
    }

    pub(super) async fn release(&self) {
        let mut conn = self.conn.clone();
        let released: Result<i64, _> = RELEASE
            .key(&self.key)
            .arg(&self.token)
            .invoke_async(&mut conn)
            .await;
        if let Err(e) = released {
            tracing::warn!(error = %e, "could not release the node's name");
        }
    }
}
