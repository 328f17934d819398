//! Asking a connection's socket task to close, from anywhere (a full outbox, a revoked user, shutdown).

use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::Notify;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseReason {
    SlowConsumer = 1,
    Shutdown = 2,
    Kicked = 3,
    TooBig = 4,
}

#[derive(Default, Debug)]
pub struct Control {
    reason: AtomicU8,
    notify: Notify,
}

impl Control {
    /// The first reason wins; later ones are ignored. `true` when this call was the first.
    pub fn close(&self, reason: CloseReason) -> bool {
        let first = self
            .reason
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if first {
            // notify_one stores a permit, so a task that is not waiting right now still sees it.
            self.notify.notify_one();
        }
        first
    }

    pub fn reason(&self) -> Option<CloseReason> {
        match self.reason.load(Ordering::Acquire) {
            1 => Some(CloseReason::SlowConsumer),
            2 => Some(CloseReason::Shutdown),
            3 => Some(CloseReason::Kicked),
            4 => Some(CloseReason::TooBig),
            _ => None,
        }
    }

    pub async fn closed(&self) -> CloseReason {
        loop {
            if let Some(r) = self.reason() {
                return r;
            }
            self.notify.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_reason_wins_and_is_seen_late() {
        let c = Control::default();
        assert!(c.close(CloseReason::SlowConsumer));
        assert!(!c.close(CloseReason::Shutdown));
        assert_eq!(c.closed().await, CloseReason::SlowConsumer);
    }
}
