//! Authorized users and their live connections: private messages reach all of them, presence changes on
//! the first and the last, and revoking a user closes them all.
//!
//! A connection is linked *draining*: it is still writing the user's queued private messages straight to
//! its socket (with back-pressure), and its outbox is not attached yet. While every connection of a user is
//! draining, `send_private` delivers nothing, so a live message goes to the queue, behind the ones being
//! drained, instead of into an outbox that nobody writes until the drain ends (which overflowed it and
//! closed a reading client as a slow consumer). `drained` ends that state; see `commands::users_messages::drain`
//! for why no message is lost or delivered twice around it.
//!
//! Lock discipline. The map is sharded by user, and a shard's lock is held only to read or change the
//! map, never while anything is pushed into an outbox: a push may write to the socket in place (`Outbox`),
//! and one slow write (a big frame, a publisher descheduled mid-write, the socket task's vectored write
//! holding the outbox) would otherwise hold up every user of the shard. So `send_private` and
//! `close_user` copy the user's outboxes (reference counts) under the lock and push after releasing it.
//! The drain protocol needs no more than that: whether a user is ready is decided under the lock, a
//! connection never goes back to draining, a push to an outbox not attached yet waits behind its drain,
//! and a push to a connection that went away meanwhile is not counted (its sender queues the message, as
//! if it had found the user offline). What the lock used to give on top is kept by two turns: sends to a
//! user take the user's `turn`, so that all of their connections get the user's messages in one order,
//! the order of the user's private-message window (`inbox`); and presence announcements, made after the
//! lock is released, go out in the order of the changes they announce (`Shard::announce_in_turn`).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};

use std::time::Instant;

use super::fanout::{deliver_all, Item};
use super::inbox::Inboxes;
use super::registry::lock;
use super::{CloseReason, Frame, Outbox, Registry, WindowLimits};
use crate::browser::frames;
use crate::ids::{ConnId, DevId, UserId};

/// Connections linked to one user at most (docs/reference-cppcomet.md 2.3; docs/compatibility.md §5); more stay
/// anonymous.
pub(super) const MAX_CONNECTIONS_PER_USER: usize = 16;

const SHARDS: usize = 64;

type Key = (DevId, UserId);

pub(super) struct Users {
    shards: Box<[Shard]>,
    hasher: RandomState,
    /// The private messages recently sent to each user, for connections that reconnect (`inbox`).
    inboxes: Inboxes,
}

impl Users {
    pub(super) fn new(windows: &WindowLimits) -> Users {
        Users {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            hasher: RandomState::new(),
            inboxes: Inboxes::new(windows.max_bytes),
        }
    }

    fn shard(&self, key: &Key) -> &Shard {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }
}

/// Some users and the order of their presence announcements.
#[derive(Default)]
struct Shard {
    map: Mutex<Map>,
    /// The ticket whose announcement goes out next.
    serving: Mutex<u64>,
    served: Condvar,
}

#[derive(Default)]
struct Map {
    users: HashMap<Key, Linked>,
    /// Tickets handed out, one per first or last connection, in the order those happened.
    tickets: u64,
}

impl Map {
    fn ticket(&mut self) -> u64 {
        self.tickets += 1;
        self.tickets - 1
    }
}

impl Shard {
    /// Runs `announce` once every announcement ticketed before `ticket` has gone out: a user's online and
    /// offline announcements are made outside the map's lock, and must not overtake each other.
    fn announce_in_turn(&self, ticket: u64, announce: impl FnOnce()) {
        let mut serving = lock(&self.serving);
        while *serving != ticket {
            serving = self.served.wait(serving).unwrap_or_else(|e| e.into_inner());
        }
        drop(serving);
        /// Passes the turn on even if `announce` panics: the shard's later announcements would wait forever.
        struct Next<'a>(&'a Shard);
        impl Drop for Next<'_> {
            fn drop(&mut self) {
                *lock(&self.0.serving) += 1;
                self.0.served.notify_all();
            }
        }
        let _next = Next(self);
        announce();
    }
}

/// One user's live connections.
#[derive(Default)]
struct Linked {
    conns: Vec<Outbox>,
    /// Those of `conns` still draining the queue (usually none: a drain lasts a moment).
    draining: Vec<ConnId>,
    /// A message went to the queue while every connection was draining, since the last `drained`.
    queued_while_draining: bool,
    /// Held while a message is pushed to the user's connections (see the module doc).
    turn: Arc<Mutex<()>>,
    /// Held by a connection while it resumes and drains the queue: connections of the user that come at
    /// once drain one after the other, so the second finds in the window what the first drained instead
    /// of each claiming part of the queue.
    drain_turn: Arc<tokio::sync::Mutex<()>>,
}

impl Linked {
    /// Whether live messages can be delivered now: some connection is past its drain.
    fn ready(&self) -> bool {
        self.conns.len() > self.draining.len()
    }
}

/// A private message as it goes out: without its id for the connections that did not ask for ids
/// (byte-identical to what they always got), with it for the others and for the window.
pub struct PrivateMessage {
    pub id: String,
    pub plain: Frame,
    pub with_id: frames::Frame,
    pub with_id_shared: Frame,
}

impl PrivateMessage {
    pub fn new(id: String, plain: frames::Frame) -> PrivateMessage {
        let with_id = plain
            .clone()
            .with("id", crate::browser::json::Value::str(id.as_str()));
        PrivateMessage {
            plain: super::outgoing::shared(plain),
            with_id_shared: super::outgoing::shared(with_id.clone()),
            with_id,
            id,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the user already has {MAX_CONNECTIONS_PER_USER} connections")]
    TooManyConnections,
}

impl Registry {
    /// Links an authorized connection to its user, draining (see the module doc) until `drained`.
    /// `Ok(true)` when it is the user's first live connection; `on_first` has then been called, after the
    /// announcements of changes before this one.
    pub fn link_user(
        &self,
        dev_id: DevId,
        user: UserId,
        outbox: Outbox,
        on_first: impl FnOnce(),
    ) -> Result<bool, LinkError> {
        let key = (dev_id, user);
        let shard = self.users.shard(&key);
        let ticket = {
            let mut map = lock(&shard.map);
            let linked = map.users.entry(key).or_default();
            if linked.conns.len() >= MAX_CONNECTIONS_PER_USER {
                return Err(LinkError::TooManyConnections);
            }
            linked.draining.push(outbox.conn());
            linked.conns.push(outbox);
            if linked.conns.len() > 1 {
                return Ok(false);
            }
            self.note_user(dev_id, user, true);
            map.ticket()
        };
        shard.announce_in_turn(ticket, on_first);
        Ok(true)
    }

    /// The connection has read the user's queue to its end. `true` when a message was queued meanwhile
    /// (`queued`): it stays draining and reads the queue once more (see `commands::users_messages::drain`).
    /// Otherwise live messages may be delivered to it from now on: every message queued before this call
    /// was read by that pass, and any queued after it is delivered by its sender.
    pub fn drained(&self, dev_id: DevId, user: UserId, conn: ConnId) -> bool {
        let key = (dev_id, user);
        let mut map = lock(&self.users.shard(&key).map);
        let Some(linked) = map.users.get_mut(&key) else {
            return false;
        };
        if std::mem::take(&mut linked.queued_while_draining) {
            return true;
        }
        linked.draining.retain(|c| *c != conn);
        false
    }

    /// A message to the user has been queued (committed) because `send_private` delivered it to nobody.
    /// `true` when a connection of the user is ready now: the caller claims it back from the queue and
    /// delivers it. Otherwise a draining connection reads the queue once more before it is ready.
    pub fn queued(&self, dev_id: DevId, user: UserId) -> bool {
        let key = (dev_id, user);
        let mut map = lock(&self.users.shard(&key).map);
        let Some(linked) = map.users.get_mut(&key) else {
            return false;
        };
        if linked.ready() {
            return true;
        }
        linked.queued_while_draining = true;
        false
    }

    /// Unlinks a connection. `true` (and `on_last` called, after the announcements of changes before
    /// this one) when it was the user's last live connection.
    pub fn unlink_user(
        &self,
        dev_id: DevId,
        user: UserId,
        conn: ConnId,
        on_last: impl FnOnce(),
    ) -> bool {
        let key = (dev_id, user);
        let shard = self.users.shard(&key);
        let ticket = {
            let mut map = lock(&shard.map);
            let Some(linked) = map.users.get_mut(&key) else {
                return false;
            };
            let before = linked.conns.len();
            linked.conns.retain(|o| o.conn() != conn);
            linked.draining.retain(|c| *c != conn);
            let removed = linked.conns.len() < before;
            if !linked.conns.is_empty() {
                return false;
            }
            map.users.remove(&key);
            if !removed {
                return false;
            }
            self.note_user(dev_id, user, false);
            map.ticket()
        };
        shard.announce_in_turn(ticket, on_last);
        true
    }

    /// How many live connections the user has on this node.
    pub fn user_connections(&self, dev_id: DevId, user: UserId) -> usize {
        let key = (dev_id, user);
        lock(&self.users.shard(&key).map)
            .users
            .get(&key)
            .map_or(0, |l| l.conns.len())
    }

    /// Every user with a live connection on this node (a cluster node writes them again after Redis was
    /// unavailable). One shard's lock at a time.
    pub fn linked_users(&self) -> Vec<(DevId, UserId)> {
        let mut out = Vec::new();
        for shard in self.users.shards.iter() {
            out.extend(lock(&shard.map).users.keys().copied());
        }
        out
    }

    pub fn user_online(&self, dev_id: DevId, user: UserId) -> bool {
        let key = (dev_id, user);
        lock(&self.users.shard(&key).map).users.contains_key(&key)
    }

    /// This node's users and whether each has a connection past its drain (a cluster node writes them
    /// to Redis again after Redis lost them). One shard's lock at a time.
    pub fn users_held(&self) -> Vec<(DevId, UserId, bool)> {
        let mut out = Vec::new();
        for shard in self.users.shards.iter() {
            let map = lock(&shard.map);
            out.extend(map.users.iter().map(|(k, l)| (k.0, k.1, l.ready())));
        }
        out
    }

    /// Whether `send_private` would deliver now (a connection of the user is past its drain).
    pub fn user_ready(&self, dev_id: DevId, user: UserId) -> bool {
        let key = (dev_id, user);
        lock(&self.users.shard(&key).map)
            .users
            .get(&key)
            .is_some_and(Linked::ready)
    }

    /// Queues a private message on every live connection of the user (with its id to those that asked
    /// for ids) and keeps it in the user's window; returns how many got it. 0 while every connection of
    /// the user is still draining the queue, or when those it was pushed to are gone: the caller queues the
    /// message behind the drain (or for the next connection).
    ///
    /// The user's turn is taken before the window is written and held until every push is done, so that
    /// the window's order is the order every connection got the messages in: a client that processed a
    /// message has been sent every one the window holds before it. And the message is kept before the
    /// connections are looked up: one that links after that finds it in the window when it resumes.
    pub fn send_private(&self, dev_id: DevId, user: UserId, message: &PrivateMessage) -> usize {
        self.push_private(dev_id, user, message, true)
    }

    /// A cluster's private message, off the user's channel: the cluster decided that some node holding
    /// the user is ready, so it goes to every connection of the user here, draining ones too (behind
    /// their drain), as `send_private` does once one of them is ready.
    pub fn push_private_here(
        &self,
        dev_id: DevId,
        user: UserId,
        message: &PrivateMessage,
    ) -> usize {
        self.push_private(dev_id, user, message, false)
    }

    fn push_private(
        &self,
        dev_id: DevId,
        user: UserId,
        message: &PrivateMessage,
        when_ready: bool,
    ) -> usize {
        let key = (dev_id, user);
        let shard = self.users.shard(&key);
        let turn = match lock(&shard.map).users.get(&key) {
            Some(linked) if linked.ready() || !when_ready => linked.turn.clone(),
            _ => return 0,
        };
        let _turn = lock(&turn);
        let targets = {
            let map = lock(&shard.map);
            let Some(linked) = map.users.get(&key) else {
                return 0;
            };
            if when_ready && !linked.ready() {
                return 0;
            }
            self.users.inboxes.keep(
                key,
                &message.id,
                message.with_id.clone(),
                Instant::now(),
                || self.windows.share(dev_id),
            );
            linked.conns.clone()
        };
        let (with_ids, plain): (Vec<Outbox>, Vec<Outbox>) =
            targets.into_iter().partition(|o| o.info().msg_ids);
        let mut delivered = 0;
        for (outboxes, frame) in [(plain, &message.plain), (with_ids, &message.with_id_shared)] {
            if outboxes.is_empty() {
                continue;
            }
            let item = [Item {
                frame: frame.clone(),
                except: None,
            }];
            let tally = deliver_all(&outboxes, &item)[0];
            if tally.slow > 0 {
                self.stats
                    .slow_consumers_dropped
                    .fetch_add(tally.slow, Ordering::Relaxed);
            }
            delivered += tally.delivered;
        }
        delivered
    }

    /// Keeps a private message drained from the queue to one of the user's connections in their window.
    pub fn keep_private(&self, dev_id: DevId, user: UserId, id: &str, with_id: frames::Frame) {
        self.users
            .inboxes
            .keep((dev_id, user), id, with_id, Instant::now(), || {
                self.windows.share(dev_id)
            });
    }

    /// The private messages after `after` (the id of the last one a client processed), from the user's
    /// window: `None` when the window cannot tell what followed it (see `inbox`).
    pub fn resume_private(
        &self,
        dev_id: DevId,
        user: UserId,
        after: &str,
    ) -> Option<Vec<frames::Frame>> {
        self.users
            .inboxes
            .resume((dev_id, user), after, Instant::now())
    }

    /// The turn a connection of the user takes to resume and drain (`None`: the user is not linked).
    pub fn drain_turn(&self, dev_id: DevId, user: UserId) -> Option<Arc<tokio::sync::Mutex<()>>> {
        let key = (dev_id, user);
        lock(&self.users.shard(&key).map)
            .users
            .get(&key)
            .map(|linked| linked.drain_turn.clone())
    }

    /// Bytes held by the private-message windows of the node.
    pub fn private_window_bytes(&self) -> usize {
        self.users.inboxes.bytes()
    }

    /// Drops aged-out private messages (the maintenance sweep).
    pub fn sweep_private(&self) {
        self.users.inboxes.sweep(Instant::now());
    }

    /// Closes every live connection of the user (users_auth DELETE, a revoked token).
    pub fn close_user(&self, dev_id: DevId, user: UserId) -> usize {
        let key = (dev_id, user);
        let conns = match lock(&self.users.shard(&key).map).users.get(&key) {
            Some(linked) => linked.conns.clone(),
            None => return 0,
        };
        for o in &conns {
            o.close(CloseReason::Kicked);
        }
        conns.len()
    }
}

#[cfg(test)]
#[path = "users_tests.rs"]
mod tests;
