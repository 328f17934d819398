//! Who is listening, and the writing of what they are sent: a per-tenant registry of pipes → connections
//! and of authorized users → connections, both sharded so that deliveries to different pipes or users do
//! not contend. It deals in ids and already-encoded frame bytes only; a publish hands every subscriber a
//! clone of the same `Bytes` (a reference count, not a copy).
//!
//! A connection's `Outbox` owns the write half of its socket. A delivery is written into the socket in
//! place, by the publishing thread, when nothing is waiting there; the connection's task writes only what
//! the socket did not take at once (and its own answers). So a delivery is a system call made by whoever
//! publishes, and which lock is held across it matters: the pipe registry sends to a small pipe under its
//! shard's lock (cheaper than copying the list out) and to a big one outside it (`registry`); the users
//! map never pushes under its lock (`users`).
//!
//! Publishing goes through the `broker`: the in-process one, or a cluster's (`crate::cluster`), which calls
//! back into `Registry::deliver` on every node that has subscribers.

pub mod broker;
mod fanout;
mod inbox;
mod outbox;
pub mod outgoing;
pub mod pusher;
mod pusher_route;
mod registry;
mod shared_presence;
mod socket;
mod stale;
mod users;
mod window;

pub use outbox::{CloseReason, Flush, Outbox, OutboxRx, Pushed};
pub use pusher_route::{Joined, PresenceJoin, PresenceUser, PusherRoute};
pub use registry::Durable;
pub use registry::Registry;
pub use shared_presence::{Member, SharedPresence};
pub use socket::Socket;
pub use stale::{Stale, StaleSink};
pub use users::{LinkError, PrivateMessage};
pub use window::{new_epoch, TenantWindow, WindowLimits};

use std::sync::Arc;

use bytes::Bytes;

use crate::ids::{ConnId, DevId, PipeName, UserId};
use crate::stats::Stats;
use broker::{Broker, InProcessBroker};
pub use broker::{
    BrokerError, Interest, Join, Revoke, Sent, SharedLimits, StoredReplay, UserRoute,
};

use crate::browser::ApiEra;

/// Which frame dialect a connection speaks: the comet protocol's two eras (clients older than API 4.0 get
/// the reference's transform), or the Pusher protocol (`/app/{key}`). A publish is encoded at most once
/// per dialect that some subscriber speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Era {
    Legacy = 0,
    Modern = 1,
    Pusher = 2,
}

/// How many dialects there are (the fan-out keeps one encoding of a batch per dialect).
pub(crate) const ERAS: usize = 3;

impl Era {
    /// A comet connection's era, from the API version in its URL.
    pub fn from_version(version: (u32, u32)) -> Era {
        ApiEra::from_version(version).into()
    }

    /// The comet era whose frames a connection of this dialect reads for the comet protocol's own frames
    /// (a Pusher connection never gets one; Modern is the closest).
    pub fn api(self) -> ApiEra {
        match self {
            Era::Legacy => ApiEra::Legacy,
            Era::Modern | Era::Pusher => ApiEra::Modern,
        }
    }
}

impl From<ApiEra> for Era {
    fn from(era: ApiEra) -> Era {
        match era {
            ApiEra::Legacy => Era::Legacy,
            ApiEra::Modern => Era::Modern,
        }
    }
}

/// A frame encoded for the wire, once per publish. `wire` is called per subscriber and must be cheap
/// (return a clone of a cached `Bytes`).
pub trait Encoded: Send + Sync {
    fn wire(&self, era: Era) -> Bytes;

    /// The same frame with `"offset":N`, for connections that asked for positions (`subscription2`); made
    /// once per publish, only for pipes that have a recovery window. `None`: the frame has no such form.
    fn with_offset(&self, _offset: u64) -> Option<Frame> {
        None
    }

    /// The typed frame, for a broker that sends its content to other nodes. `None`: bytes only.
    fn frame(&self) -> Option<&crate::browser::frames::Frame> {
        None
    }
}

pub type Frame = Arc<dyn Encoded>;

/// One message on its way to a pipe's subscribers.
#[derive(Clone)]
pub struct Publication {
    pub dev_id: DevId,
    pub pipe: PipeName,
    pub frame: Frame,
    /// A `web_pipe2` sender does not receive its own message.
    pub except: Option<ConnId>,
    /// The (epoch, offset) a pipe that keeps history gave the message when it was stored; the pipe's
    /// stream takes it instead of numbering the message itself.
    pub position: Option<(Arc<str>, u64)>,
    /// A presence announcement (`track_` events, `user_status_`): not stored, so on a pipe whose numbering
    /// is durable it takes no offset (it is sent to positioned subscribers without one).
    pub presence: bool,
    /// A Pusher socket id that must not get it (`toOthers()`), on whichever node it is connected: a
    /// cluster carries it to every node, each leaves its own connection of that id out.
    pub socket: Option<Arc<str>>,
}

/// What the hub knows of a connection: enough to answer `users_in_pipes` and `track_pipe_users`.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub conn: ConnId,
    pub era: Era,
    /// 0 for an anonymous connection.
    pub user_id: UserId,
    pub uuid: String,
    pub ip: String,
    pub user_agent: String,
    pub origin: String,
    pub language: String,
    /// The connection asked for private-message ids (`msg_after` in its URL): its `msg` frames carry `id`.
    pub msg_ids: bool,
}

/// The hub handle: cheap to clone, shared by every front door.
#[derive(Clone)]
pub struct Hub {
    registry: Arc<Registry>,
    pusher: Arc<pusher::PusherState>,
    broker: Arc<dyn Broker>,
    /// A cluster's shared presence (`None` on one node).
    presence: Option<Arc<dyn SharedPresence>>,
    stats: Stats,
    clustered: bool,
}

impl Hub {
    /// A single node with figures of its own (tests, benches).
    pub fn in_process() -> Hub {
        Hub::with_stats(Stats::default())
    }

    /// A single node: publishes go straight to the local registry, which counts into `stats`.
    pub fn with_stats(stats: Stats) -> Hub {
        Hub::with_windows(stats, WindowLimits::default())
    }

    /// A single node whose pipes keep recovery windows within `windows`.
    pub fn with_windows(stats: Stats, windows: WindowLimits) -> Hub {
        let registry = Arc::new(Registry::with_windows(stats.clone(), windows));
        let broker = Arc::new(InProcessBroker::new(registry.clone()));
        Hub {
            registry,
            pusher: Arc::default(),
            broker,
            presence: None,
            stats,
            clustered: false,
        }
    }

    /// A node whose publishes go through `broker` (a cluster's), made from the registry it delivers into
    /// and the Pusher state it leaves socket ids out by.
    pub(crate) fn with_broker(
        stats: Stats,
        windows: WindowLimits,
        broker: impl FnOnce(Arc<Registry>, Arc<pusher::PusherState>) -> Arc<dyn Broker>,
    ) -> Hub {
        let registry = Arc::new(Registry::with_windows(stats.clone(), windows));
        let pusher: Arc<pusher::PusherState> = Arc::default();
        let broker = broker(registry.clone(), pusher.clone());
        Hub {
            registry,
            pusher,
            presence: broker.presence(),
            broker,
            stats,
            clustered: true,
        }
    }

    /// Sends `publication` to every subscriber of its pipe, on every node; returns how many local
    /// connections got it (one node), or 0 once a cluster's Redis took it (delivered from its channel).
    /// An error: nothing was published.
    pub async fn publish(&self, publication: Publication) -> Result<usize, BrokerError> {
        match self.broker.publish(publication) {
            Sent::Delivered(n) => Ok(n),
            Sent::Pending(taken) => taken.await,
        }
    }

    /// The publish as the broker answers it, for a caller that cannot wait (the storage writer).
    pub fn publish_sent(&self, publication: Publication) -> Sent {
        self.broker.publish(publication)
    }

    /// Sends to this node's subscribers only: a single node's presence announcements (a cluster's are
    /// published by its presence scripts).
    pub fn publish_local(&self, publication: Publication) -> usize {
        self.registry.deliver(&publication)
    }

    /// Waits until the pipe's messages published from now on reach this node (a cluster: its channel is
    /// subscribed); at once on a single node.
    pub async fn listen(&self, dev_id: DevId, pipe: &PipeName) -> Result<(), BrokerError> {
        match self.broker.listen(dev_id, pipe) {
            None => Ok(()),
            Some(listening) => listening.await,
        }
    }

    /// A positioned subscribe ordered by a cluster's broker; `None` on a single node (the caller joins
    /// through the registry).
    pub fn join(&self, join: Join) -> Option<broker::Pending<bool>> {
        self.broker.join(join)
    }

    /// Closes the sessions `revoke` names here at once, and on every other node of a cluster (an error:
    /// the cluster could not be told; this node's are closed, and the revocation itself is stored).
    pub async fn revoke(&self, revoke: Revoke) -> Result<(), BrokerError> {
        self.registry.revoke_here(revoke);
        match self.broker.revoke(revoke) {
            None => Ok(()),
            Some(told) => told.await,
        }
    }

    /// Tells every other node of a cluster that cached copies of `stale` must go (this node's caches
    /// were told by the caller); resolves once Redis handed it to their links (`None`: a single node).
    /// At most once: a failure is logged, and a node whose link came back forgets everything
    /// (`Stale::All`). A write answers its client after this, so that another node asked next has
    /// the news in its link already.
    pub fn stale(&self, stale: Stale) -> Option<broker::Pending<()>> {
        self.broker.stale(stale)
    }

    /// `stale`, waited for; a failure is only logged (the write it follows is done).
    pub async fn tell_stale(&self, stale: Stale) {
        if let Some(told) = self.stale(stale) {
            if let Err(e) = told.await {
                tracing::warn!(error = %e, "cannot tell the other nodes what their caches must forget");
            }
        }
    }

    /// A cluster's limits that hold across nodes; `None` on a single node.
    pub fn shared_limits(&self) -> Option<&dyn SharedLimits> {
        self.broker.limits()
    }

    /// Private messages across a cluster's nodes; `None` on a single node (the registry decides alone).
    pub fn users(&self) -> Option<&dyn UserRoute> {
        self.broker.users()
    }

    /// The Pusher protocol across a cluster's nodes; `None` on one node (`pusher()` is the truth).
    pub fn pusher_route(&self) -> Option<&dyn PusherRoute> {
        self.broker.pusher()
    }

    /// The presence the nodes share (a cluster's); `None` on one node, where the registry is the truth.
    pub fn shared_presence(&self) -> Option<&Arc<dyn SharedPresence>> {
        self.presence.as_ref()
    }

    /// Resolves once the presence changes this node made so far are in the shared presence (a cluster's
    /// Redis); at once on one node, whose registry is the truth.
    pub async fn presence_written(&self) -> Result<(), BrokerError> {
        match &self.presence {
            Some(p) => p.written().await,
            None => Ok(()),
        }
    }

    /// Whether publishes go through a cluster (positions are joined through `join`).
    pub fn clustered(&self) -> bool {
        self.clustered
    }

    /// Whether publishes can be taken now (`/info`'s `ready`).
    pub fn ready(&self) -> bool {
        self.broker.ready()
    }

    /// The broker's figures for `/metrics` (none on a single node).
    pub fn render_broker_metrics(&self, out: &mut String) {
        self.broker.render_metrics(out);
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Presence members, signed-in users, socket ids and cached events of the Pusher protocol.
    pub fn pusher(&self) -> &pusher::PusherState {
        &self.pusher
    }

    /// The figures this hub counts into: the node's one `Stats`.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}
