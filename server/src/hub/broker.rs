//! How a publish reaches the nodes that hold subscribers. Today one node: the in-process broker hands the
//! publication straight to the local registry. A Redis broker will implement the same trait; nothing that
//! publishes needs to know which one runs.

use std::sync::Arc;

use super::{Publication, Registry};

pub(crate) trait Broker: Send + Sync {
    /// Returns the number of local deliveries (remote ones are not counted synchronously).
    fn publish(&self, publication: Publication) -> usize;
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
    fn publish(&self, publication: Publication) -> usize {
        self.registry.deliver(&publication)
    }
}
