//! The local subscription registry. Short std mutexes, never held across an await; sharded by pipe.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::fanout::{Item, Tally, MAX_BATCH, PARALLEL_MIN};
use super::{Outbox, Publication};
use crate::ids::{ConnId, DevId, PipeName};
use crate::stats::Stats;

const SHARDS: usize = 64;

type PipeKey = (DevId, PipeName);
type Shard = Mutex<HashMap<PipeKey, Pipe>>;

/// One pipe's subscribers, and the turn its publishes take to be sent.
#[derive(Default)]
struct Pipe {
    subs: HashMap<ConnId, Outbox>,
    turn: Arc<Turn>,
}

/// Publishes to one pipe are sent one batch at a time, so that every subscriber gets the pipe's messages in
/// the same order. A big pipe's sends (milliseconds) happen under `sending` only, not the shard's lock, so
/// other pipes of the shard and subscribes are not held up meanwhile. Publishes that arrive while a batch
/// is being sent wait in `pending`; whoever gets the turn next sends all of them together, several frames
/// per socket write (flat combining), and each publisher returns once its own is sent.
#[derive(Default)]
struct Turn {
    sending: Mutex<()>,
    pending: Mutex<VecDeque<Arc<Waiting>>>,
}

struct Waiting {
    item: Item,
    sent: Mutex<Option<Tally>>,
}

pub struct Registry {
    shards: Box<[Shard]>,
    hasher: std::collections::hash_map::RandomState,
    pub(super) users: super::users::Users,
    /// Deliveries and slow consumers are counted here, once per publish.
    pub(super) stats: Stats,
    helpers: super::fanout::Helpers,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(Stats::default())
    }
}

impl Registry {
    pub fn new(stats: Stats) -> Registry {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            users: Default::default(),
            stats,
            helpers: Default::default(),
        }
    }

    fn shard(&self, dev_id: DevId, pipe: &PipeName) -> &Shard {
        let mut h = self.hasher.build_hasher();
        dev_id.hash(&mut h);
        pipe.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    pub fn subscribe(&self, dev_id: DevId, pipe: &PipeName, outbox: Outbox) {
        let mut shard = lock(self.shard(dev_id, pipe));
        shard
            .entry((dev_id, pipe.clone()))
            .or_default()
            .subs
            .insert(outbox.conn(), outbox);
    }

    pub fn unsubscribe(&self, dev_id: DevId, pipe: &PipeName, conn: ConnId) {
        let mut shard = lock(self.shard(dev_id, pipe));
        let key = (dev_id, pipe.clone());
        if let Some(entry) = shard.get_mut(&key) {
            entry.subs.remove(&conn);
            if entry.subs.is_empty() {
                shard.remove(&key);
            }
        }
    }

    /// Number of local connections subscribed to the pipe.
    pub fn subscribers(&self, dev_id: DevId, pipe: &PipeName) -> usize {
        let shard = lock(self.shard(dev_id, pipe));
        shard
            .get(&(dev_id, pipe.clone()))
            .map_or(0, |entry| entry.subs.len())
    }

    /// Who is subscribed to the pipe (for users_in_pipes and track_pipe_users).
    pub fn members(&self, dev_id: DevId, pipe: &PipeName) -> Vec<Outbox> {
        let shard = lock(self.shard(dev_id, pipe));
        shard
            .get(&(dev_id, pipe.clone()))
            .map(|entry| entry.subs.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Sends the publication's frame to every local subscriber (see `fanout`).
    pub fn deliver(&self, p: &Publication) -> usize {
        let item = Item {
            frame: p.frame.clone(),
            except: p.except,
        };
        let tally = {
            let shard = lock(self.shard(p.dev_id, &p.pipe));
            let Some(entry) = shard.get(&(p.dev_id, p.pipe.clone())) else {
                return 0;
            };
            if entry.subs.len() < PARALLEL_MIN {
                // A few sends: done under the shard lock, cheaper than copying the list out.
                let _turn = lock(&entry.turn.sending);
                self.helpers.deliver(entry.subs.values(), &[item])[0]
            } else {
                let mine = Arc::new(Waiting {
                    item,
                    sent: Mutex::new(None),
                });
                lock(&entry.turn.pending).push_back(mine.clone());
                let outboxes: Vec<Outbox> = entry.subs.values().cloned().collect();
                let turn = entry.turn.clone();
                drop(shard);
                self.send_in_turn(&turn, &outboxes, &mine)
            }
        };
        if tally.slow > 0 {
            self.stats
                .slow_consumers_dropped
                .fetch_add(tally.slow, Ordering::Relaxed);
        }
        self.stats
            .count_deliveries(p.dev_id, tally.delivered as u64);
        tally.delivered
    }

    /// Waits for the pipe's turn, then sends what is pending (ours and any that came meanwhile) in batches
    /// until ours is sent.
    fn send_in_turn(&self, turn: &Turn, outboxes: &[Outbox], mine: &Waiting) -> Tally {
        let _sending = lock(&turn.sending);
        loop {
            if let Some(tally) = lock(&mine.sent).take() {
                return tally;
            }
            let batch: Vec<Arc<Waiting>> = {
                let mut pending = lock(&turn.pending);
                let n = pending.len().min(MAX_BATCH);
                pending.drain(..n).collect()
            };
            if batch.is_empty() {
                // Not reachable: ours is pending until someone sends it.
                return Tally::default();
            }
            let items: Vec<Item> = batch.iter().map(|w| w.item.clone()).collect();
            let tallies = self.helpers.deliver(outboxes.iter(), &items);
            for (waiting, tally) in batch.iter().zip(tallies) {
                *lock(&waiting.sent) = Some(tally);
            }
        }
    }

    /// Subscriptions across all pipes (walks the shards: for scrapes, not hot paths).
    pub fn total_subscriptions(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                lock(s)
                    .values()
                    .map(|entry| entry.subs.len())
                    .sum::<usize>()
            })
            .sum()
    }
}

/// A poisoned registry mutex only means another thread panicked mid-update of a map whose every state is
/// valid, so keep serving rather than take the whole node down.
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hub::{Encoded, Era, Outbox};
    use bytes::Bytes;

    struct Fixed(Bytes);
    impl Encoded for Fixed {
        fn wire(&self, _: Era) -> Bytes {
            self.0.clone()
        }
    }

    fn pipe(s: &str) -> PipeName {
        PipeName::parse(s).unwrap()
    }

    pub(crate) fn outbox(conn: u64, capacity: usize) -> (Outbox, crate::hub::OutboxRx) {
        Outbox::new(
            crate::hub::ConnInfo {
                conn: ConnId(conn),
                era: Era::Modern,
                user_id: crate::ids::UserId(0),
                uuid: String::new(),
                ip: String::new(),
                user_agent: String::new(),
                origin: String::new(),
                language: String::new(),
            },
            capacity,
        )
    }

    #[tokio::test]
    async fn delivers_same_bytes_to_each_subscriber_of_the_tenant_only() {
        let r = Registry::default();
        let (a, mut ra) = outbox(1, 4);
        let (b, mut rb) = outbox(2, 4);
        let (c, mut rc) = outbox(3, 4);
        r.subscribe(DevId(1), &pipe("chat"), a);
        r.subscribe(DevId(1), &pipe("chat"), b);
        r.subscribe(DevId(2), &pipe("chat"), c);
        let frame = Bytes::from_static(b"hello");
        let p = Publication {
            dev_id: DevId(1),
            pipe: pipe("chat"),
            frame: Arc::new(Fixed(frame.clone())),
            except: Some(ConnId(2)),
        };
        assert_eq!(r.deliver(&p), 1);
        let got = ra.try_recv().unwrap();
        assert_eq!(got.as_ptr(), frame.as_ptr(), "shared, not copied");
        assert!(rb.try_recv().is_none(), "the sender is excluded");
        assert!(rc.try_recv().is_none(), "another tenant never sees it");
        r.unsubscribe(DevId(1), &pipe("chat"), ConnId(1));
        r.unsubscribe(DevId(1), &pipe("chat"), ConnId(2));
        assert_eq!(r.subscribers(DevId(1), &pipe("chat")), 0);
    }

    #[tokio::test]
    async fn a_full_outbox_closes_that_connection_only() {
        let r = Registry::default();
        let (a, _ra) = outbox(1, 1);
        let (b, mut rb) = outbox(2, 8);
        r.subscribe(DevId(1), &pipe("chat"), a.clone());
        r.subscribe(DevId(1), &pipe("chat"), b.clone());
        let p = Publication {
            dev_id: DevId(1),
            pipe: pipe("chat"),
            frame: Arc::new(Fixed(Bytes::from_static(b"x"))),
            except: None,
        };
        r.deliver(&p);
        r.deliver(&p);
        assert_eq!(
            a.close_reason(),
            Some(crate::hub::CloseReason::SlowConsumer)
        );
        assert_eq!(b.close_reason(), None);
        assert_eq!(rb.try_recv().unwrap(), Bytes::from_static(b"x"));
        assert_eq!(rb.try_recv().unwrap(), Bytes::from_static(b"x"));
        assert_eq!(r.stats.slow_consumers_dropped.load(Ordering::Relaxed), 1);
        // Frames it misses while closing do not count it again.
        r.deliver(&p);
        r.deliver(&p);
        assert_eq!(r.stats.slow_consumers_dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn concurrent_publishers_to_a_big_pipe_reach_everyone_in_one_order() {
        let r = Arc::new(Registry::default());
        let n = crate::hub::fanout::PARALLEL_MIN as u64 + 44;
        let mut rxs = Vec::new();
        for conn in 0..n {
            let (o, rx) = outbox(conn, 1024);
            r.subscribe(DevId(1), &pipe("big"), o);
            rxs.push(rx);
        }
        let publishers: Vec<_> = (0..2u8)
            .map(|who| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for i in 0..100u8 {
                        r.deliver(&Publication {
                            dev_id: DevId(1),
                            pipe: pipe("big"),
                            frame: Arc::new(Fixed(Bytes::from(vec![who, i]))),
                            except: None,
                        });
                    }
                })
            })
            .collect();
        for p in publishers {
            p.join().unwrap();
        }
        let first: Vec<Bytes> = std::iter::from_fn(|| rxs[0].try_recv()).collect();
        assert_eq!(first.len(), 200);
        for (i, rx) in rxs.iter_mut().enumerate().skip(1) {
            let got: Vec<Bytes> = std::iter::from_fn(|| rx.try_recv()).collect();
            assert!(got == first, "subscriber {i} saw another order");
        }
    }
}
