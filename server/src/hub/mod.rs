//! Who is listening: a per-tenant registry of pipes → connections, sharded so that publishes to different
//! pipes do not contend. It deals in ids and already-encoded frame bytes only; a publish hands every
//! subscriber a clone of the same `Bytes` (a reference count, not a copy).
//!
//! Publishing goes through the `broker` so that a multi-node broker can be swapped in later; the broker
//! calls back into `Registry::deliver` on every node that has subscribers.

mod control;
mod registry;

pub use control::{CloseReason, Control};
pub use registry::{Registry, TenantCounters};

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::broker::{Broker, InProcessBroker};
use crate::ids::{ConnId, DevId, PipeName};

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

/// The sending side of one connection's bounded outbox, as stored in the registry.
#[derive(Clone)]
pub struct Outbox {
    pub conn: ConnId,
    pub era: Era,
    tx: mpsc::Sender<Bytes>,
    control: Arc<Control>,
}

impl Outbox {
    /// A new outbox of `capacity` frames; the receiver belongs to the connection's socket task.
    pub fn new(
        conn: ConnId,
        era: Era,
        capacity: usize,
    ) -> (Outbox, mpsc::Receiver<Bytes>, Arc<Control>) {
        let (tx, rx) = mpsc::channel(capacity);
        let control = Arc::new(Control::default());
        (
            Outbox {
                conn,
                era,
                tx,
                control: control.clone(),
            },
            rx,
            control,
        )
    }

    /// Queues a frame without waiting. A full outbox means the client stopped reading: it is closed (1008)
    /// rather than allowed to slow the publisher or anyone else.
    pub fn push(&self, frame: Bytes) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.control.close(CloseReason::SlowConsumer);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    pub fn control(&self) -> &Arc<Control> {
        &self.control
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
