//! How a publish reaches the nodes that hold subscribers. One node: the in-process broker hands the
//! publication straight to the local registry, at once (`Sent::Delivered`, no allocation, no await). A
//! cluster (`crate::cluster`) implements the same trait: its publish is done once Redis took it
//! (`Sent::Pending`), and every node, the origin too, delivers from the pipe's channel. Nothing that
//! publishes needs to know which one runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{Frame, Outbox, Publication, Registry};
use crate::ids::{DevId, PipeName};

/// A publish on its way through a broker that answers later.
pub type Publishing = Pin<Box<dyn Future<Output = Result<usize, BrokerError>> + Send>>;

/// What a publish did: delivered locally at once (the number of local connections), or pending until a
/// shared broker took it (remote deliveries are not counted).
pub enum Sent {
    Delivered(usize),
    Pending(Publishing),
}

/// A broker that is not there: the publish was not taken, and nothing was delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    #[error("the cluster is unavailable ({0}); nothing was published")]
    Unavailable(String),
}

/// A boxed future of the broker's (`listen`, `join`).
pub type Pending<T> = Pin<Box<dyn Future<Output = Result<T, BrokerError>> + Send>>;

/// The frames a durable pipe's history holds after `offset` of `epoch` up to `top` (all of them or none),
/// for a positioned join the shared window cannot serve: asked of the command layer, which holds storage.
pub type StoredReplay = Box<
    dyn FnOnce(Arc<str>, u64, u64) -> Pin<Box<dyn Future<Output = Option<Vec<Frame>>> + Send>>
        + Send,
>;

/// A positioned subscribe (`subscription2`) through a shared broker: the position comes from where the
/// pipe's numbering lives, in the pipe's delivery order (see `crate::cluster`).
pub struct Join {
    pub dev_id: DevId,
    pub pipe: PipeName,
    pub outbox: Outbox,
    /// The last position the client processed.
    pub position: Option<(String, u64)>,
    /// The database's (epoch, top) for a pipe that keeps history: the numbering to start from when the
    /// broker has none yet.
    pub durable: Option<(Arc<str>, u64)>,
    pub stored: Option<StoredReplay>,
}

pub(crate) trait Broker: Send + Sync {
    fn publish(&self, publication: Publication) -> Sent;

    /// Resolves once messages of the pipe published from now on reach this node (a cluster: its channel is
    /// subscribed). `None`: at once (one node).
    fn listen(&self, _dev_id: DevId, _pipe: &PipeName) -> Option<Pending<()>> {
        None
    }

    /// A positioned subscribe the broker orders itself; `None`: the registry's own (one node).
    fn join(&self, _join: Join) -> Option<Pending<bool>> {
        None
    }

    /// Whether publishes can be taken (a load balancer's readiness).
    fn ready(&self) -> bool {
        true
    }

    /// Appends the broker's figures to `/metrics`.
    fn render_metrics(&self, _out: &mut String) {}

    /// Presence shared by the nodes; `None`: the registry's own (one node).
    fn presence(&self) -> Option<Arc<dyn super::SharedPresence>> {
        None
    }
}

pub(crate) struct InProcessBroker {
    registry: Arc<Registry>,
}

impl InProcessBroker {
    pub(crate) fn new(registry: Arc<Registry>) -> InProcessBroker {
        InProcessBroker { registry }
    }
}

impl Broker for InProcessBroker {
    fn publish(&self, publication: Publication) -> Sent {
        Sent::Delivered(self.registry.deliver(&publication))
    }
}

/// Told by the registry when a pipe gets its first local subscriber (`true`) or loses its last: a cluster
/// subscribes or unsubscribes the pipe's channel. Called under the registry's shard lock: must only note.
pub trait Interest: Send + Sync {
    fn changed(&self, dev_id: DevId, pipe: &PipeName, listening: bool);
}
