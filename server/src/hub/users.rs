//! Authorized users and their live connections: private messages reach all of them, presence changes on
//! the first and the last, and revoking a user closes them all.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use super::registry::lock;
use super::{CloseReason, Frame, Outbox, Registry};
use crate::ids::{ConnId, DevId, UserId};

/// Connections linked to one user at most (reference and contract §5); more stay anonymous.
pub const MAX_CONNECTIONS_PER_USER: usize = 16;

#[derive(Default)]
pub(super) struct Users {
    map: Mutex<HashMap<(DevId, UserId), Vec<Outbox>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the user already has {MAX_CONNECTIONS_PER_USER} connections")]
    TooManyConnections,
}

impl Registry {
    /// Links an authorized connection to its user. `Ok(true)` when it is the user's first live connection.
    pub fn link_user(
        &self,
        dev_id: DevId,
        user: UserId,
        outbox: Outbox,
        on_first: impl FnOnce(),
    ) -> Result<bool, LinkError> {
        let mut map = lock(&self.users.map);
        let conns = map.entry((dev_id, user)).or_default();
        if conns.len() >= MAX_CONNECTIONS_PER_USER {
            return Err(LinkError::TooManyConnections);
        }
        conns.push(outbox);
        let first = conns.len() == 1;
        if first {
            // Under the lock, so a user's online/offline announcements go out in the order they happened.
            on_first();
        }
        Ok(first)
    }

    /// Unlinks a connection. `true` (and `on_last` called, under the lock) when it was the user's last live
    /// connection.
    pub fn unlink_user(
        &self,
        dev_id: DevId,
        user: UserId,
        conn: ConnId,
        on_last: impl FnOnce(),
    ) -> bool {
        let mut map = lock(&self.users.map);
        let Some(conns) = map.get_mut(&(dev_id, user)) else {
            return false;
        };
        let before = conns.len();
        conns.retain(|o| o.conn() != conn);
        let removed = conns.len() < before;
        if conns.is_empty() {
            map.remove(&(dev_id, user));
        }
        let last = removed && !map.contains_key(&(dev_id, user));
        if last {
            on_last();
        }
        last
    }

    pub fn user_online(&self, dev_id: DevId, user: UserId) -> bool {
        lock(&self.users.map).contains_key(&(dev_id, user))
    }

    /// Queues `frame` on every live connection of the user; returns how many got it.
    pub fn send_to_user(&self, dev_id: DevId, user: UserId, frame: &Frame) -> usize {
        let map = lock(&self.users.map);
        let Some(conns) = map.get(&(dev_id, user)) else {
            return 0;
        };
        let item = super::fanout::Item {
            frame: frame.clone(),
            except: None,
        };
        let tally = super::fanout::deliver_all(conns, &[item])[0];
        if tally.slow > 0 {
            self.slow_consumers_dropped
                .fetch_add(tally.slow, Ordering::Relaxed);
        }
        tally.delivered
    }

    /// Closes every live connection of the user (users_auth DELETE, a revoked token).
    pub fn close_user(&self, dev_id: DevId, user: UserId) -> usize {
        let map = lock(&self.users.map);
        let Some(conns) = map.get(&(dev_id, user)) else {
            return 0;
        };
        for o in conns {
            o.close(CloseReason::Kicked);
        }
        conns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::registry::tests::outbox;

    #[tokio::test]
    async fn first_and_last_connection_and_the_cap() {
        let r = Registry::new();
        let (dev, user) = (DevId(1), UserId(5));
        let (a, _ra) = outbox(1, 4);
        let (b, _rb) = outbox(2, 4);
        assert_eq!(r.link_user(dev, user, a.clone(), || ()), Ok(true));
        assert_eq!(r.link_user(dev, user, b.clone(), || ()), Ok(false));
        assert!(r.user_online(dev, user));
        assert!(!r.unlink_user(dev, user, ConnId(1), || ()));
        assert!(r.unlink_user(dev, user, ConnId(2), || ()));
        assert!(!r.user_online(dev, user));
        let keep: Vec<_> = (0..MAX_CONNECTIONS_PER_USER as u64)
            .map(|i| {
                let (o, rx) = outbox(10 + i, 1);
                r.link_user(dev, user, o, || ()).unwrap();
                rx
            })
            .collect();
        let (extra, _rx) = outbox(99, 1);
        assert_eq!(
            r.link_user(dev, user, extra, || ()),
            Err(LinkError::TooManyConnections)
        );
        assert_eq!(r.close_user(dev, user), MAX_CONNECTIONS_PER_USER);
        drop(keep);
    }
}
