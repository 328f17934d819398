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
//! Publishing goes through the `broker` so that a multi-node broker can be swapped in later; the broker
//! calls back into `Registry::deliver` on every node that has subscribers.

pub(crate) mod broker;
mod fanout;
mod inbox;
mod outbox;
pub mod outgoing;
pub mod pusher;
mod registry;
mod socket;
mod users;
mod window;

pub use outbox::{CloseReason, Flush, Outbox, OutboxRx, Pushed};
pub use registry::Durable;
pub use registry::Registry;
pub use socket::Socket;
pub use users::{LinkError, PrivateMessage};
pub use window::{new_epoch, TenantWindow, WindowLimits};

use std::sync::Arc;

use bytes::Bytes;

use crate::ids::{ConnId, DevId, PipeName, UserId};
use crate::stats::Stats;
use broker::{Broker, InProcessBroker};

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
    stats: Stats,
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
            stats,
        }
    }

    /// Sends `publication` to every subscriber of its pipe; returns how many local connections got it.
    pub fn publish(&self, publication: Publication) -> usize {
        self.broker.publish(publication)
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
