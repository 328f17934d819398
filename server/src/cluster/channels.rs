//! Which pipe channels this node wants and which its pub/sub connection has: the registry notes first and
//! last subscribers here (under its shard lock: only a map insert and a wake-up), joins pin a channel while
//! they wait, and the subscriber task applies the changes in batches (many channels per SUBSCRIBE).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tokio::sync::{oneshot, Notify};

use crate::hub::Interest;
use crate::ids::{DevId, PipeName};

pub(super) type Key = (DevId, PipeName);

#[derive(Default)]
struct State {
    /// Pipes with local subscribers (as the registry said).
    listened: HashSet<Key>,
    /// Pipes a join holds while it waits for the channel (it has no subscriber in the registry yet).
    pinned: HashMap<Key, usize>,
    /// Pipes whose wish changed since the subscriber task last looked.
    changed: HashSet<Key>,
    /// Channels SUBSCRIBEd on the current pub/sub connection (confirmed by Redis).
    subscribed: HashSet<Key>,
    /// Who waits for a channel to be subscribed.
    waiters: HashMap<Key, Vec<oneshot::Sender<()>>>,
}

impl State {
    fn wanted(&self, key: &Key) -> bool {
        self.listened.contains(key) || self.pinned.contains_key(key)
    }
}

#[derive(Default)]
pub(super) struct Channels {
    state: Mutex<State>,
    pub(super) wake: Notify,
}

/// What the subscriber task is to do.
#[derive(Default)]
pub(super) struct Changes {
    pub(super) subscribe: Vec<Key>,
    pub(super) unsubscribe: Vec<Key>,
}

impl Channels {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn touch(&self, state: &mut State, key: Key) {
        state.changed.insert(key);
        self.wake.notify_one();
    }

    /// Resolves when the channel is subscribed; `None` when it already is.
    pub(super) fn wait(&self, key: &Key) -> Option<oneshot::Receiver<()>> {
        let mut state = self.lock();
        if state.subscribed.contains(key) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        state.waiters.entry(key.clone()).or_default().push(tx);
        Some(rx)
    }

    pub(super) fn pin(&self, key: &Key) {
        let mut state = self.lock();
        *state.pinned.entry(key.clone()).or_default() += 1;
        self.touch(&mut state, key.clone());
    }

    pub(super) fn unpin(&self, key: &Key) {
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
    pub(super) fn take_changes(&self) -> Changes {
        let mut state = self.lock();
        let mut changes = Changes::default();
        for key in std::mem::take(&mut state.changed) {
            match (state.wanted(&key), state.subscribed.contains(&key)) {
                (true, false) => changes.subscribe.push(key),
                (false, true) => changes.unsubscribe.push(key),
                _ => {}
            }
        }
        changes
    }

    /// Redis confirmed these: their waiters go on. A channel no longer wanted meanwhile is noted as a
    /// change, so the next round unsubscribes it.
    pub(super) fn subscribed(&self, keys: &[Key]) {
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

    pub(super) fn unsubscribed(&self, keys: &[Key]) {
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
        let wanted: Vec<Key> = state
            .listened
            .iter()
            .chain(state.pinned.keys())
            .cloned()
            .collect();
        state.changed.extend(wanted);
    }

    #[cfg(test)]
    pub(super) fn is_subscribed(&self, key: &Key) -> bool {
        self.lock().subscribed.contains(key)
    }

    pub(super) fn count(&self) -> usize {
        self.lock().subscribed.len()
    }
}

impl Interest for Channels {
    fn changed(&self, dev_id: DevId, pipe: &PipeName, listening: bool) {
        let mut state = self.lock();
        let key = (dev_id, pipe.clone());
        if listening {
            state.listened.insert(key.clone());
        } else {
            state.listened.remove(&key);
        }
        self.touch(&mut state, key);
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
        c.changed(DevId(1), &key("a").1, true);
        c.changed(DevId(1), &key("b").1, true);
        c.changed(DevId(1), &key("b").1, false);
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
        c.changed(DevId(1), &key("a").1, false);
        assert_eq!(c.take_changes().unsubscribe, vec![key("a")]);
    }

    #[test]
    fn a_pin_holds_a_channel_until_the_registry_does() {
        let c = Channels::default();
        c.pin(&key("a"));
        assert_eq!(c.take_changes().subscribe, vec![key("a")]);
        c.subscribed(&[key("a")]);
        c.changed(DevId(1), &key("a").1, true);
        c.unpin(&key("a"));
        let ch = c.take_changes();
        assert!(ch.subscribe.is_empty() && ch.unsubscribe.is_empty());
        c.pin(&key("b"));
        c.unpin(&key("b"));
        assert!(c.take_changes().subscribe.is_empty());
    }
}
