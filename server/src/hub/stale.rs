//! What a node's caches in front of the database must forget because the database changed: told by the
//! command that changed it on this node, and by the other nodes of a cluster (`crate::cluster::stale`), so
//! that a cluster keeps the history and history-length caches on (issue 17). The caches live with the
//! commands (`commands::Ctx`), which set the sink; the hub only carries what changed.

use std::sync::{Arc, OnceLock};

use crate::ids::{DevId, PipeName};

/// A change to durable state that cached copies of it must drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// The pipe's history (a publish committed, the history cleared).
    History(DevId, PipeName),
    /// The pipe's settings (its length), and with them its history.
    Settings(DevId, PipeName),
    /// Some history entry of the tenant (which pipe is not known).
    Tenant(DevId),
    /// `trust_` history expired.
    Trust,
    /// Anything may have changed unseen (a node's link to the others came back).
    All,
}

type Forget = Arc<dyn Fn(&Stale) + Send + Sync>;

/// Where the node's caches are told (set once, by the commands' context).
#[derive(Default)]
pub struct StaleSink(OnceLock<Forget>);

impl StaleSink {
    /// Sets what forgets; a second call is ignored (one context per node).
    pub fn set(&self, forget: Forget) {
        let _ = self.0.set(forget);
    }

    /// Tells this node's caches.
    pub fn tell(&self, stale: &Stale) {
        if let Some(forget) = self.0.get() {
            forget(stale);
        }
    }
}
