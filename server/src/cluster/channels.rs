//! Which channels this node wants and which its pub/sub connection has: pipe channels (the registry notes
//! first and last subscribers here, under its shard lock: only a map insert and a wake-up; joins pin a
//! channel while they wait) and user channels (first and last local connection of a user, `private.rs`).
//! The subscriber task applies the changes in batches (many channels per SUBSCRIBE).

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, Notify};

use crate::hub::Interest;
use crate::ids::{DevId, PipeName, UserId};

pub(super) type Key = (DevId, PipeName);
/// A user's channel (their private messages, `private.rs`).
pub(super) type UserKey = (DevId, UserId);

struct State<K> {
    /// Channels with local listeners (as the registry said).
    listened: HashSet<K>,
    /// Channels a join holds while it waits for the channel (it has no subscriber in the registry yet).
    pinned: HashMap<K, usize>,
    /// Channels whose wish changed since the subscriber task last looked.
    changed: HashSet<K>,
    /// Channels SUBSCRIBEd on the current pub/sub connection (confirmed by Redis).
    subscribed: HashSet<K>,
    /// Who waits for a channel to be subscribed.
    waiters: HashMap<K, Vec<oneshot::Sender<()>>>,
}

impl<K> Default for State<K> {
    fn default() -> Self {
        State {
            listened: HashSet::new(),
            pinned: HashMap::new(),
            changed: HashSet::new(),
            subscribed: HashSet::new(),
            waiters: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash> State<K> {
    fn wanted(&self, key: &K) -> bool {
        self.listened.contains(key) || self.pinned.contains_key(key)
    }
}

pub(super) struct Channels<K = Key> {
    state: Mutex<State<K>>,
    pub(super) wake: Arc<Notify>,
}

impl<K> Channels<K> {
    /// Channels woken by `wake` (one for every set the subscriber task serves).
    pub(super) fn new(wake: Arc<Notify>) -> Channels<K> {
        Channels {
            state: Mutex::new(State::default()),
            wake,
        }
    }
}

impl<K> Default for Channels<K> {
    fn default() -> Self {
        Channels::new(Arc::new(Notify::new()))
    }
}

/// What the subscriber task is to do.
pub(super) struct Changes<K> {
    pub(super) subscribe: Vec<K>,
    pub(super) unsubscribe: Vec<K>,
}

impl<K: Eq + Hash + Clone> Channels<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn touch(&self, state: &mut State<K>, key: K) {
        state.changed.insert(key);
        self.wake.notify_one();
    }

    /// Resolves when the channel is subscribed; `None` when it already is.
    pub(super) fn wait(&self, key: &K) -> Option<oneshot::Receiver<()>> {
        let mut state = self.lock();
        if state.subscribed.contains(key) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        state.waiters.entry(key.clone()).or_default().push(tx);
        Some(rx)
    }

    pub(super) fn pin(&self, key: &K) {
        let mut state = self.lock();
        *state.pinned.entry(key.clone()).or_default() += 1;
        self.touch(&mut state, key.clone());
    }

    pub(super) fn unpin(&self, key: &K) {
        let mut state = self.lock();
        if let Some(n) = state.pinned.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                state.pinned.remove(key);
                self.touch(&mut state, key.clone());
            }
        }
    }

    /// The changes to apply now (coalesced: a pipe left and joined again meanwhile is no change).
    pub(super) fn take_changes(&self) -> Changes<K> {
        let mut state = self.lock();
        let mut changes = Changes {
            subscribe: Vec::new(),
            unsubscribe: Vec::new(),
        };
        for key in std::mem::take(&mut state.changed) {
            match (state.wanted(&key), state.subscribed.contains(&key)) {
                (true, false) => changes.subscribe.push(key),
                (false, true) => {
                    // As good as gone: whoever wants it from now on waits for it to be subscribed
                    // again, not for an UNSUBSCRIBE already on its way.
                    state.subscribed.remove(&key);
                    changes.unsubscribe.push(key);
                }
                _ => {}
            }
        }
        changes
    }

    /// Redis confirmed these: their waiters go on. A channel no longer wanted meanwhile is noted as a
    /// change, so the next round unsubscribes it.
    pub(super) fn subscribed(&self, keys: &[K]) {
        let mut state = self.lock();
        for key in keys {
            state.subscribed.insert(key.clone());
            for waiter in state.waiters.remove(key).unwrap_or_default() {
                let _ = waiter.send(());
            }
            if !state.wanted(key) {
                self.touch(&mut state, key.clone());
            }
        }
    }

    /// Redis confirmed these gone; one wanted again meanwhile is subscribed again next round.
    pub(super) fn unsubscribed(&self, keys: &[K]) {
        let mut state = self.lock();
        for key in keys {
            state.subscribed.remove(key);
            if state.wanted(key) {
                self.touch(&mut state, key.clone());
            }
        }
    }

    /// The pub/sub connection is gone: nothing is subscribed, everything wanted is to be again.
    pub(super) fn lost(&self) {
        let mut state = self.lock();
        state.subscribed.clear();
        let wanted: Vec<K> = state
            .listened
            .iter()
            .chain(state.pinned.keys())
            .cloned()
            .collect();
        state.changed.extend(wanted);
    }

    /// Subscribed on the current pub/sub connection, and not being left (the subscriber task took it
    /// out when it decided to UNSUBSCRIBE).
    pub(super) fn is_subscribed(&self, key: &K) -> bool {
        self.lock().subscribed.contains(key)
    }

    /// Neither wanted nor subscribed: the node has left the channel (or is leaving it).
    pub(super) fn is_left(&self, key: &K) -> bool {
        let state = self.lock();
        !state.wanted(key) && !state.subscribed.contains(key)
    }

    pub(super) fn count(&self) -> usize {
        self.lock().subscribed.len()
    }

    /// The registry's word: the channel has local listeners now (`true`), or no longer.
    pub(super) fn listen(&self, key: K, listening: bool) {
        let mut state = self.lock();
        if listening {
            state.listened.insert(key.clone());
        } else {
            state.listened.remove(&key);
        }
        self.touch(&mut state, key);
    }
}

/// What the registry tells the cluster: first and last subscribers of pipes, first and last
/// connections of users.
pub(super) struct Interests {
    pub(super) pipes: Arc<Channels<Key>>,
    pub(super) users: Arc<Channels<UserKey>>,
}

impl Interest for Interests {
    fn changed(&self, dev_id: DevId, pipe: &PipeName, listening: bool) {
        self.pipes.listen((dev_id, pipe.clone()), listening);
    }

    fn user_changed(&self, dev_id: DevId, user: UserId, linked: bool) {
        self.users.listen((dev_id, user), linked);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &str) -> Key {
        (DevId(1), PipeName::parse_command(p).unwrap())
    }

    #[test]
    fn changes_coalesce_and_survive_a_lost_connection() {
        let c = Channels::default();
        c.listen(key("a"), true);
        c.listen(key("b"), true);
        c.listen(key("b"), false);
        let ch = c.take_changes();
        assert_eq!(ch.subscribe, vec![key("a")]);
        assert!(ch.unsubscribe.is_empty());
        let mut waiter = c.wait(&key("a")).unwrap();
        c.subscribed(&[key("a")]);
        assert!(waiter.try_recv().is_ok());
        assert!(c.wait(&key("a")).is_none());
        c.lost();
        assert!(!c.is_subscribed(&key("a")));
        assert_eq!(c.take_changes().subscribe, vec![key("a")]);
        c.subscribed(&[key("a")]);
        c.listen(key("a"), false);
        assert_eq!(c.take_changes().unsubscribe, vec![key("a")]);
        // Wanted again while its UNSUBSCRIBE is on the way: a subscriber waits for the next SUBSCRIBE.
        c.listen(key("a"), true);
        let mut again = c.wait(&key("a")).expect("not subscribed while leaving");
        c.unsubscribed(&[key("a")]);
        assert_eq!(c.take_changes().subscribe, vec![key("a")]);
        assert!(again.try_recv().is_err());
        c.subscribed(&[key("a")]);
        assert!(again.try_recv().is_ok());
    }

    #[test]
    fn a_pin_holds_a_channel_until_the_registry_does() {
        let c = Channels::default();
        c.pin(&key("a"));
        assert_eq!(c.take_changes().subscribe, vec![key("a")]);
        c.subscribed(&[key("a")]);
        c.listen(key("a"), true);
        c.unpin(&key("a"));
        let ch = c.take_changes();
        assert!(ch.subscribe.is_empty() && ch.unsubscribe.is_empty());
        c.pin(&key("b"));
        c.unpin(&key("b"));
        assert!(c.take_changes().subscribe.is_empty());
    }
}
