//! One browser connection's state: who it is, what it is subscribed to, and its outbox in the hub.

use crate::hub::{Hub, Outbox};
use crate::ids::{ConnId, DevId, PipeName};

/// Most pipes one connection may hold (reference and contract §5).
pub const MAX_PIPES: usize = 32;

pub struct Session {
    pub conn: ConnId,
    pub dev_id: DevId,
    pub authorized: bool,
    pub outbox: Outbox,
    pipes: Vec<PipeName>,
}

impl Session {
    pub fn new(dev_id: DevId, authorized: bool, outbox: Outbox) -> Session {
        Session {
            conn: outbox.conn(),
            dev_id,
            authorized,
            outbox,
            pipes: Vec::new(),
        }
    }

    /// `subscription` replaces the whole set (reference 2.5). `private_` pipes are skipped for anonymous
    /// connections; duplicates are kept once.
    pub fn replace_subscriptions(&mut self, hub: &Hub, names: &[&str]) {
        self.unsubscribe_all(hub);
        for name in names.iter().take(MAX_PIPES) {
            let Ok(pipe) = PipeName::parse_subscription(name) else {
                continue;
            };
            if pipe.as_str().starts_with("private_") && !self.authorized {
                continue;
            }
            if self.pipes.contains(&pipe) {
                continue;
            }
            hub.registry()
                .subscribe(self.dev_id, &pipe, self.outbox.clone());
            self.pipes.push(pipe);
        }
    }

    pub fn unsubscribe_all(&mut self, hub: &Hub) {
        for pipe in self.pipes.drain(..) {
            hub.registry().unsubscribe(self.dev_id, &pipe, self.conn);
        }
    }
}
