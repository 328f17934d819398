//! Who is listening: a per-tenant registry of pipes → connections, sharded so that publishes to different
//! pipes do not contend. It deals in ids and already-encoded frame bytes only; a publish hands every
//! subscriber a clone of the same `Bytes` (a reference count, not a copy).
//!
//! Publishing goes through the `broker` so that a multi-node broker can be swapped in later; the broker
//! calls back into `Registry::deliver` on every node that has subscribers.

mod control;
mod queue;
mod registry;
mod users;

pub use control::{CloseReason, Control};
pub use registry::{Registry, TenantCounters};
pub use users::LinkError;

use std::sync::Arc;

use bytes::Bytes;

use crate::broker::{Broker, InProcessBroker};
use crate::ids::{ConnId, DevId, PipeName, UserId};

/// Which frame dialect a connection speaks: clients older than API 4.0 get the reference's transform.
pub use crate::push::protocol::ApiEra as Era;

/// A frame encoded for the wire, once per publish. `wire` is called per subscriber and must be cheap
/// (return a clone of a cached `Bytes`).
pub trait Encoded: Send + Sync {
    fn wire(&self, era: Era) -> Bytes;
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
}

struct Conn {
    info: ConnInfo,
    queue: queue::Queue,
    control: Control,
}

/// What became of a frame offered to a connection's outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// The outbox was full and this frame closed the connection as a slow consumer: counted once per
    /// connection, not once per frame it then misses.
    Overflowed,
    /// Not queued: the connection is already closing (a full outbox again) or gone.
    Dropped,
}

/// The sending side of one connection's bounded outbox, as stored in the registry. One pointer: every pipe
/// a connection subscribes to costs the registry one `Arc` clone.
#[derive(Clone)]
pub struct Outbox(Arc<Conn>);

impl Outbox {
    /// A new outbox of `capacity` frames; the receiver belongs to the connection's socket task.
    pub fn new(info: ConnInfo, capacity: usize) -> (Outbox, OutboxRx) {
        let conn = Arc::new(Conn {
            info,
            queue: queue::Queue::new(capacity),
            control: Control::default(),
        });
        (Outbox(conn.clone()), OutboxRx(conn))
    }

    pub fn conn(&self) -> ConnId {
        self.0.info.conn
    }

    pub fn era(&self) -> Era {
        self.0.info.era
    }

    pub fn info(&self) -> &ConnInfo {
        &self.0.info
    }

    /// Queues a frame without waiting. A full outbox means the client stopped reading: it is closed (1008)
    /// rather than allowed to slow the publisher or anyone else.
    pub fn push(&self, frame: Bytes) -> Pushed {
        match self.0.queue.offer(frame) {
            queue::Offer::Queued => Pushed::Queued,
            queue::Offer::Full => {
                if self.0.control.close(CloseReason::SlowConsumer) {
                    Pushed::Overflowed
                } else {
                    Pushed::Dropped
                }
            }
            queue::Offer::ReceiverGone => Pushed::Dropped,
        }
    }

    pub fn control(&self) -> &Control {
        &self.0.control
    }
}

/// The receiving side of an outbox, owned by the connection's socket task.
pub struct OutboxRx(Arc<Conn>);

impl OutboxRx {
    /// The next queued frame; waits until one comes.
    pub async fn recv(&mut self) -> Bytes {
        std::future::poll_fn(|cx| self.0.queue.poll_recv(cx)).await
    }

    pub fn try_recv(&mut self) -> Option<Bytes> {
        self.0.queue.try_recv()
    }
}

impl Drop for OutboxRx {
    fn drop(&mut self) {
        self.0.queue.close();
    }
}

/// The hub handle: cheap to clone, shared by every front door.
#[derive(Clone)]
pub struct Hub {
    registry: Arc<Registry>,
    broker: Arc<dyn Broker>,
}

impl Hub {
    /// A single node: publishes go straight to the local registry.
    pub fn in_process() -> Hub {
        let registry = Arc::new(Registry::new());
        let broker = Arc::new(InProcessBroker::new(registry.clone()));
        Hub { registry, broker }
    }

    /// Sends `publication` to every subscriber of its pipe; returns how many local connections got it.
    pub fn publish(&self, publication: Publication) -> usize {
        self.broker.publish(publication)
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
