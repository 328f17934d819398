//! Authorized users and their live connections: private messages reach all of them, presence changes on
//! the first and the last, and revoking a user closes them all.
//!
//! A connection is linked *draining*: it is still writing the user's queued private messages straight to
//! its socket (with back-pressure), and its outbox is not attached yet. While every connection of a user is
//! draining, `send_to_user` delivers nothing, so a live message goes to the queue, behind the ones being
//! drained, instead of into an outbox that nobody writes until the drain ends (which overflowed it and
//! closed a reading client as a slow consumer). `drained` ends that state; see `ConnLoop::deliver_queue`
//! for why no message is lost or delivered twice around it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use super::registry::lock;
use super::{CloseReason, Frame, Outbox, Registry};
use crate::ids::{ConnId, DevId, UserId};

/// Connections linked to one user at most (docs/reference-cppcomet.md 2.3; docs/compatibility.md §5); more stay
/// anonymous.
pub const MAX_CONNECTIONS_PER_USER: usize = 16;

#[derive(Default)]
pub(super) struct Users {
    map: Mutex<HashMap<(DevId, UserId), Linked>>,
}

/// One user's live connections.
#[derive(Default)]
struct Linked {
    conns: Vec<Outbox>,
    /// Those of `conns` still draining the queue (usually none: a drain lasts a moment).
    draining: Vec<ConnId>,
    /// A message went to the queue while every connection was draining, since the last `drained`.
    queued_while_draining: bool,
}

impl Linked {
    /// Whether live messages can be delivered now: some connection is past its drain.
    fn ready(&self) -> bool {
        self.conns.len() > self.draining.len()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the user already has {MAX_CONNECTIONS_PER_USER} connections")]
    TooManyConnections,
}

impl Registry {
    /// Links an authorized connection to its user, draining (see the module doc) until `drained`.
    /// `Ok(true)` when it is the user's first live connection.
    pub fn link_user(
        &self,
        dev_id: DevId,
        user: UserId,
        outbox: Outbox,
        on_first: impl FnOnce(),
    ) -> Result<bool, LinkError> {
        let mut map = lock(&self.users.map);
        let linked = map.entry((dev_id, user)).or_default();
        if linked.conns.len() >= MAX_CONNECTIONS_PER_USER {
            return Err(LinkError::TooManyConnections);
        }
        linked.draining.push(outbox.conn());
        linked.conns.push(outbox);
        let first = linked.conns.len() == 1;
        if first {
            // Under the lock, so a user's online/offline announcements go out in the order they happened.
            on_first();
        }
        Ok(first)
    }

    /// The connection has read the user's queue to its end. `true` when a message was queued meanwhile
    /// (`queued`): it stays draining and reads the queue once more (see `ConnLoop::deliver_queue`).
    /// Otherwise live messages may be delivered to it from now on: every message queued before this call
    /// was read by that pass, and any queued after it is delivered by its sender.
    pub fn drained(&self, dev_id: DevId, user: UserId, conn: ConnId) -> bool {
        let mut map = lock(&self.users.map);
        let Some(linked) = map.get_mut(&(dev_id, user)) else {
            return false;
        };
        if std::mem::take(&mut linked.queued_while_draining) {
            return true;
        }
        linked.draining.retain(|c| *c != conn);
        false
    }

    /// A message to the user has been queued (committed) because `send_to_user` delivered it to nobody.
    /// `true` when a connection of the user is ready now: the caller claims it back from the queue and
    /// delivers it. Otherwise a draining connection reads the queue once more before it is ready.
    pub fn queued(&self, dev_id: DevId, user: UserId) -> bool {
        let mut map = lock(&self.users.map);
        let Some(linked) = map.get_mut(&(dev_id, user)) else {
            return false;
        };
        if linked.ready() {
            return true;
        }
        linked.queued_while_draining = true;
        false
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
        let Some(linked) = map.get_mut(&(dev_id, user)) else {
            return false;
        };
        let before = linked.conns.len();
        linked.conns.retain(|o| o.conn() != conn);
        linked.draining.retain(|c| *c != conn);
        let removed = linked.conns.len() < before;
        if linked.conns.is_empty() {
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

    /// Whether `send_to_user` would deliver now (a connection of the user is past its drain).
    pub fn user_ready(&self, dev_id: DevId, user: UserId) -> bool {
        lock(&self.users.map)
            .get(&(dev_id, user))
            .is_some_and(Linked::ready)
    }

    /// Queues `frame` on every live connection of the user; returns how many got it. 0 while every
    /// connection of the user is still draining the queue: the caller queues the message behind it.
    pub fn send_to_user(&self, dev_id: DevId, user: UserId, frame: &Frame) -> usize {
        let mut map = lock(&self.users.map);
        let Some(linked) = map.get_mut(&(dev_id, user)) else {
            return 0;
        };
        if !linked.ready() {
            return 0;
        }
        let conns = &linked.conns;
        let item = super::fanout::Item {
            frame: frame.clone(),
            except: None,
        };
        let tally = super::fanout::deliver_all(conns, &[item])[0];
        if tally.slow > 0 {
            self.stats
                .slow_consumers_dropped
                .fetch_add(tally.slow, Ordering::Relaxed);
        }
        tally.delivered
    }

    /// Closes every live connection of the user (users_auth DELETE, a revoked token).
    pub fn close_user(&self, dev_id: DevId, user: UserId) -> usize {
        let map = lock(&self.users.map);
        let Some(linked) = map.get(&(dev_id, user)) else {
            return 0;
        };
        for o in &linked.conns {
            o.close(CloseReason::Kicked);
        }
        linked.conns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::registry::tests::outbox;

    #[tokio::test]
    async fn first_and_last_connection_and_the_cap() {
        let r = Registry::default();
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

    #[tokio::test]
    async fn nothing_is_delivered_while_every_connection_drains() {
        let r = Registry::default();
        let (dev, user) = (DevId(1), UserId(5));
        let frame = crate::hub::outgoing::shared(crate::browser::frames::user_online(1));
        let (a, mut ra) = outbox(1, 4);
        let (b, mut rb) = outbox(2, 4);
        r.link_user(dev, user, a, || ()).unwrap();
        assert!(r.user_online(dev, user) && !r.user_ready(dev, user));
        assert_eq!(r.send_to_user(dev, user, &frame), 0, "goes to the queue");
        assert!(!r.queued(dev, user), "the drain delivers it");
        assert!(r.drained(dev, user, ConnId(1)), "read the queue again");
        assert!(!r.user_ready(dev, user), "still draining meanwhile");
        assert!(!r.queued(dev, user), "queued during the second pass");
        assert!(r.drained(dev, user, ConnId(1)), "and a third");
        assert!(
            !r.drained(dev, user, ConnId(1)),
            "a pass with nothing queued"
        );
        assert!(r.user_ready(dev, user));
        assert!(r.queued(dev, user), "its sender delivers it");
        // A second connection drains behind a ready one: it gets live messages after its queue.
        r.link_user(dev, user, b, || ()).unwrap();
        assert_eq!(r.send_to_user(dev, user, &frame), 2);
        assert!(
            !r.drained(dev, user, ConnId(2)),
            "nothing was queued meanwhile"
        );
        assert!(ra.try_recv().is_some() && rb.try_recv().is_some());
        assert!(!r.unlink_user(dev, user, ConnId(1), || ()));
        assert!(r.user_ready(dev, user), "the one left is past its drain");
    }
}
