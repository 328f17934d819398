//! How a publish reaches the nodes that hold subscribers. One node: the in-process broker hands the
//! publication straight to the local registry, at once (`Sent::Delivered`, no allocation, no await). A
//! cluster (`crate::cluster`) implements the same trait: its publish is done once Redis took it
//! (`Sent::Pending`), and every node, the origin too, delivers from the pipe's channel. Nothing that
//! publishes needs to know which one runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{Frame, Outbox, Publication, Registry};
use crate::ids::{DevId, PipeName, UserId};

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

/// A tenant's budgets shared by a cluster's nodes (`crate::cluster`, `limits.rs`): publishes as a token
/// bucket in Redis that nodes lease from (`tenant::leases`), WebSocket connections as a count per node.
pub trait SharedLimits: Send + Sync {
    /// Takes up to `want` publish tokens from the tenant's bucket (`rate` a second, at most `burst`
    /// held): how many it got, and how long until the rest would be there.
    fn take_publishes(
        &self,
        dev_id: DevId,
        want: u32,
        rate: u32,
        burst: u32,
    ) -> Pending<(u32, std::time::Duration)>;

    /// Puts back tokens taken and not spent (a node that stops).
    fn give_back_publishes(&self, dev_id: DevId, n: u32, burst: u32) -> Pending<()>;

    /// Counts a new WebSocket connection of the tenant when the cluster has fewer than `max` open:
    /// `false` when it has that many (nothing counted). Counted until `leave_connection`.
    fn join_connection(&self, dev_id: DevId, max: i64) -> Pending<bool>;

    /// A connection counted by `join_connection` ended.
    fn leave_connection(&self, dev_id: DevId);
}

/// Sessions to close on every node: a user's connections (users_auth deleted, a token revoked), or the
/// CometQL sessions that logged in with a key (the key was revoked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoke {
    User(DevId, UserId),
    Key(i64),
}

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

    /// Publishes a revocation to every other node (a cluster); `None`: there are none (one node).
    fn revoke(&self, _revoke: Revoke) -> Option<Pending<()>> {
        None
    }

    /// Tells the other nodes what their caches must forget (a cluster): done once Redis has handed it to
    /// their links. `None`: there are none (one node).
    fn stale(&self, _stale: super::Stale) -> Option<Pending<()>> {
        None
    }

    /// Limits that hold across a cluster's nodes; `None`: each node's own (one node).
    fn limits(&self) -> Option<&dyn SharedLimits> {
        None
    }

    /// Private messages across nodes; `None`: the registry's own (one node).
    fn users(&self) -> Option<&dyn UserRoute> {
        None
    }

    /// The Pusher protocol across nodes; `None`: this node's own (one node).
    fn pusher(&self) -> Option<&dyn super::PusherRoute> {
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

    /// The user's first connection on this node linked (`true`), or their last unlinked: a cluster
    /// subscribes or unsubscribes the user's channel (private messages).
    fn user_changed(&self, _dev_id: DevId, _user: UserId, _linked: bool) {}
}

/// Private messages through a cluster (`crate::cluster`, `private.rs`): which nodes hold a user's
/// connections, and whether one of them is past its drain, is decided in Redis, atomically with the
/// sender's look (see `commands::users_messages` for the protocol these steps make).
pub trait UserRoute: Send + Sync {
    /// Sends the message to the user's connections on every node, when some node holding them is past
    /// its drain: the number of nodes it reached, 0 when none (the caller queues it).
    fn send(
        &self,
        dev_id: DevId,
        user: UserId,
        id: &str,
        event: &str,
        text: &str,
    ) -> Pending<usize>;

    /// The message was queued because `send` reached nobody. `true` when a node holding the user is
    /// ready now (the caller claims it back and sends it); otherwise every draining node reads the queue
    /// once more before it is ready.
    fn queued(&self, dev_id: DevId, user: UserId) -> Pending<bool>;

    /// Before a connection's first read of the queue: this node holds the user (its channel subscribed,
    /// and noted draining in Redis, unless already ready).
    fn hold(&self, dev_id: DevId, user: UserId) -> Pending<()>;

    /// A drain pass found the queue empty: `true` when a message was queued meanwhile (read again),
    /// otherwise this node is ready for the user from now on.
    fn drained(&self, dev_id: DevId, user: UserId) -> Pending<bool>;

    /// The user's last connection on this node is gone: this node no longer holds them (their channel
    /// is left later), so that a sender from now on queues the message or sends it to the nodes that do.
    fn release(&self, dev_id: DevId, user: UserId) -> Pending<()>;
}
