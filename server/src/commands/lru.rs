//! A least-recently-used map bounded by entry count and by total weight (bytes), for the caches that sit
//! in front of storage: past either bound the least recently used entries go, so a cache's memory is the
//! bound whatever callers insert. Not thread-safe on its own; its owner wraps it in a short mutex.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

struct Slot<V> {
    value: V,
    weight: usize,
    /// Position in the recency order: larger is more recent.
    tick: u64,
}

pub(super) struct Lru<K, V> {
    map: HashMap<K, Slot<V>>,
    order: BTreeMap<u64, K>,
    next_tick: u64,
    weight: usize,
    max_entries: usize,
    max_weight: usize,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    pub(super) fn new(max_entries: usize, max_weight: usize) -> Self {
        Lru {
            map: HashMap::new(),
            order: BTreeMap::new(),
            next_tick: 0,
            weight: 0,
            max_entries,
            max_weight,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Sum of the weights of the entries held.
    pub(super) fn weight(&self) -> usize {
        self.weight
    }

    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    /// The value, marked as the most recently used.
    pub(super) fn get(&mut self, key: &K) -> Option<&V> {
        let tick = self.tick();
        let slot = self.map.get_mut(key)?;
        if let Some(k) = self.order.remove(&slot.tick) {
            self.order.insert(tick, k);
        }
        slot.tick = tick;
        Some(&slot.value)
    }

    /// The value without touching the recency order.
    pub(super) fn peek(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|s| &s.value)
    }

    /// Inserts (or replaces) as the most recently used, then evicts the least recently used entries until
    /// both bounds hold. An entry heavier than the whole weight bound is not kept.
    pub(super) fn insert(&mut self, key: K, value: V, weight: usize) {
        self.remove(&key);
        if weight > self.max_weight || self.max_entries == 0 {
            return;
        }
        let tick = self.tick();
        self.order.insert(tick, key.clone());
        self.map.insert(
            key,
            Slot {
                value,
                weight,
                tick,
            },
        );
        self.weight += weight;
        while self.map.len() > self.max_entries || self.weight > self.max_weight {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(slot) = self.map.remove(&oldest) {
                self.weight -= slot.weight;
            }
        }
    }

    pub(super) fn remove(&mut self, key: &K) -> Option<V> {
        let slot = self.map.remove(key)?;
        self.order.remove(&slot.tick);
        self.weight -= slot.weight;
        Some(slot.value)
    }

    /// Keeps only the entries `keep` says yes to.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        let gone: Vec<K> = self.map.keys().filter(|k| !keep(k)).cloned().collect();
        for k in gone {
            self.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Lru;

    #[test]
    fn evicts_the_least_recently_used_past_the_entry_bound() {
        let mut lru = Lru::new(2, usize::MAX);
        lru.insert("a", 1, 0);
        lru.insert("b", 2, 0);
        assert_eq!(lru.get(&"a"), Some(&1));
        lru.insert("c", 3, 0);
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.peek(&"b"), None, "b was the least recently used");
        assert_eq!(lru.peek(&"a"), Some(&1));
        assert_eq!(lru.peek(&"c"), Some(&3));
    }

    #[test]
    fn evicts_past_the_weight_bound_and_refuses_what_cannot_fit() {
        let mut lru = Lru::new(100, 10);
        lru.insert(1, (), 4);
        lru.insert(2, (), 4);
        lru.insert(3, (), 4);
        assert_eq!(lru.weight(), 8);
        assert_eq!(lru.len(), 2);
        assert!(lru.peek(&1).is_none());
        lru.insert(4, (), 11);
        assert!(lru.peek(&4).is_none());
        assert_eq!(lru.weight(), 8);
        // Replacing an entry replaces its weight.
        lru.insert(2, (), 1);
        assert_eq!(lru.weight(), 5);
    }

    #[test]
    fn remove_and_retain_keep_the_weight_right() {
        let mut lru = Lru::new(100, 100);
        for i in 0..10 {
            lru.insert(i, i, i);
        }
        assert_eq!(lru.weight(), 45);
        assert_eq!(lru.remove(&9), Some(9));
        lru.retain(|k| k % 2 == 0);
        assert_eq!(lru.len(), 5);
        assert_eq!(lru.weight(), 2 + 4 + 6 + 8);
        for i in 0..100 {
            lru.insert(100 + i, 0, 1);
        }
        assert_eq!(lru.len(), 100);
        assert!(lru.weight() <= 100);
    }
}
