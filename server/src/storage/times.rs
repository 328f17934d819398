//! users_time values waiting for the storage writer: a connect or disconnect notes its user's newest value
//! and never waits; each batch takes what is waiting, and reads see a value from the moment it is noted
//! until it is written (`writer/`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::ids::{DevId, UserId};

type Key = (DevId, UserId);

/// users_time values not yet written: the newest per user, waiting, and those the batch being written
/// took (still what a read must see until it commits).
#[derive(Default)]
struct TimesMaps {
    waiting: HashMap<(DevId, UserId), i64>,
    flight: HashMap<(DevId, UserId), i64>,
}

pub(super) struct Times {
    map: Mutex<TimesMaps>,
    max: usize,
    /// Wakes the writer: values are waiting.
    pub(super) wake: Notify,
    dropped: AtomicU64,
}

impl Times {
    pub(super) fn new(max: usize) -> Times {
        Times {
            map: Mutex::default(),
            max,
            wake: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    /// Notes the user's newest value; `false` (counted) when `max` other users' values are waiting.
    pub(super) fn note(&self, key: Key, time: i64) -> bool {
        let mut m = self.lock();
        if m.waiting.len() >= self.max && !m.waiting.contains_key(&key) {
            drop(m);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        m.waiting.insert(key, time);
        drop(m);
        self.wake.notify_one();
        true
    }

    /// Values not recorded because `max` were waiting.
    pub(super) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, TimesMaps> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// At most `n` of the values waiting, now in flight (the next batch takes the rest: it is woken for
    /// them).
    pub(super) fn take(&self, n: usize) -> Vec<((DevId, UserId), i64)> {
        let mut m = self.lock();
        let more = m.waiting.len() > n;
        let keys: Vec<_> = m.waiting.keys().take(n).copied().collect();
        let out: Vec<_> = keys
            .into_iter()
            .filter_map(|k| m.waiting.remove(&k).map(|t| (k, t)))
            .collect();
        m.flight = out.iter().copied().collect();
        drop(m);
        if more {
            self.wake.notify_one();
        }
        out
    }

    /// The batch that took the values in flight ended: written, or back to waiting (unless a newer
    /// value came meanwhile) for the next batch.
    pub(super) fn settle(&self, written: bool) {
        let mut m = self.lock();
        let flight = std::mem::take(&mut m.flight);
        if !written {
            for (k, t) in flight {
                m.waiting.entry(k).or_insert(t);
            }
        }
    }

    pub(super) fn get(&self, key: (DevId, UserId)) -> Option<i64> {
        let m = self.lock();
        m.waiting.get(&key).or_else(|| m.flight.get(&key)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Key = (DevId(1), UserId(5));
    const B: Key = (DevId(1), UserId(6));

    #[test]
    fn the_newest_value_per_user_is_written_and_readable_until_then() {
        let t = Times::new(10);
        assert!(t.note(A, 0));
        assert!(t.note(A, 1700));
        assert_eq!(t.get(A), Some(1700));
        let taken = t.take(10);
        assert_eq!(taken, vec![(A, 1700)]);
        assert_eq!(t.get(A), Some(1700), "in flight: still what a read sees");
        t.settle(true);
        assert_eq!(t.get(A), None);
    }

    #[test]
    fn a_failed_batch_gives_its_values_back_unless_newer_came() {
        let t = Times::new(10);
        t.note(A, 100);
        t.note(B, 200);
        let _ = t.take(10);
        t.note(A, 0);
        t.settle(false);
        assert_eq!(t.get(A), Some(0), "the newer value wins");
        assert_eq!(t.get(B), Some(200));
    }

    #[test]
    fn past_the_bound_a_new_user_is_counted_not_kept() {
        let t = Times::new(1);
        assert!(t.note(A, 1));
        assert!(
            t.note(A, 2),
            "a waiting user's value is replaced, not added"
        );
        assert!(!t.note(B, 3));
        assert_eq!((t.get(B), t.dropped()), (None, 1));
    }
}
