//! The local subscription registry. Short std mutexes, never held across an await; sharded by pipe.
//!
//! A pipe some connection asked positions for (`subscription2`) has a `Stream`: its publishes get offsets
//! and are kept in its recovery window, under the shard's lock, and are sent there too, so that the offset
//! order, the window and every subscriber's order are one; a resubscribe reads the window and joins under
//! the same lock, so that no publish falls between the replay and the live frames.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::fanout::{Item, Tally, MAX_BATCH, PARALLEL_MIN};
use super::window::{Stream, WindowLimits, Windows};
use super::{Outbox, Publication};
use crate::browser::frames;
use crate::ids::{ConnId, DevId, PipeName};
use crate::stats::Stats;

const SHARDS: usize = 64;

type PipeKey = (DevId, PipeName);
type Shard = Mutex<HashMap<PipeKey, Pipe>>;

/// One pipe's subscribers, and the turn its publishes take to be sent.
#[derive(Default)]
struct Pipe {
    subs: HashMap<ConnId, Outbox>,
    /// Subscribers that asked for positions: they get the frames carrying `offset`.
    positioned: HashMap<ConnId, Outbox>,
    /// Offsets and the recovery window, once someone asked for positions (boxed: a pointer's worth on the
    /// pipes nobody asked).
    stream: Option<Box<Stream>>,
    turn: Arc<Turn>,
}

impl Pipe {
    fn len(&self) -> usize {
        self.subs.len() + self.positioned.len()
    }

    /// Nothing to remember: no subscriber and no stream.
    fn unused(&self) -> bool {
        self.subs.is_empty() && self.positioned.is_empty() && self.stream.is_none()
    }
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
    windows: Windows,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new(Stats::default())
    }
}

impl Registry {
    pub fn new(stats: Stats) -> Registry {
        Registry::with_windows(stats, WindowLimits::default())
    }

    pub fn with_windows(stats: Stats, windows: WindowLimits) -> Registry {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            users: Default::default(),
            stats,
            helpers: Default::default(),
            windows: Windows::new(windows),
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
        let entry = shard.entry((dev_id, pipe.clone())).or_default();
        if entry.positioned.remove(&outbox.conn()).is_some() {
            left_positions(entry);
        }
        entry.subs.insert(outbox.conn(), outbox);
    }

    /// Subscribes a connection that asked for positions (`subscription2`), with the last position it
    /// processed if it gave one: sends the frames it missed when they can all be replayed, then the pipe's
    /// `subscribed` frame, then it is a subscriber; all under the shard's lock, so that a concurrent publish
    /// is either replayed or delivered live, never both or neither. Returns whether it recovered.
    pub fn subscribe_positioned(
        &self,
        dev_id: DevId,
        pipe: &PipeName,
        outbox: Outbox,
        position: Option<(&str, u64)>,
    ) -> bool {
        let now = Instant::now();
        let mut shard = lock(self.shard(dev_id, pipe));
        let entry = shard.entry((dev_id, pipe.clone())).or_default();
        let conn = outbox.conn();
        entry.subs.remove(&conn);
        entry.positioned.remove(&conn);
        // A batch of a big pipe may still be on its way (sent outside the shard's lock): after it.
        let _turn = lock(&entry.turn.sending);
        self.flush_pending(&entry.turn, &entry.subs);
        let stream = entry
            .stream
            .get_or_insert_with(|| Box::new(Stream::new(now)));
        let resumed = stream.resume(&self.windows, position, now);
        let era = outbox.era();
        let recovered = resumed.replay.is_some();
        let mut frames: Vec<bytes::Bytes> = resumed
            .replay
            .unwrap_or_default()
            .iter()
            .map(|f| f.wire(era))
            .collect();
        let subscribed = frames::subscribed(pipe.as_str(), &resumed.epoch, resumed.top, recovered);
        frames.push(subscribed.encode(era));
        for frame in &frames {
            if outbox.push(frame) != super::Pushed::Accepted {
                break;
            }
        }
        entry.positioned.insert(conn, outbox);
        recovered
    }

    pub fn unsubscribe(&self, dev_id: DevId, pipe: &PipeName, conn: ConnId) {
        let mut shard = lock(self.shard(dev_id, pipe));
        let key = (dev_id, pipe.clone());
        if let Some(entry) = shard.get_mut(&key) {
            entry.subs.remove(&conn);
            if entry.positioned.remove(&conn).is_some() {
                left_positions(entry);
            }
            if entry.unused() {
                shard.remove(&key);
            }
        }
    }

    /// Drops the streams nobody listened to with positions for a window's age, and ages out kept frames
    /// (the periodic sweep; publishes and resubscribes trim their own pipe).
    pub fn sweep_windows(&self) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            lock(shard).retain(|_, entry| {
                if let Some(stream) = &mut entry.stream {
                    stream.trim(&self.windows, now);
                    if entry.positioned.is_empty() && stream.expired(&self.windows, now) {
                        stream.clear(&self.windows);
                        entry.stream = None;
                    }
                }
                !entry.unused()
            });
        }
    }

    /// Bytes held by every recovery window of the node.
    pub fn window_bytes(&self) -> usize {
        self.windows.bytes()
    }

    /// Number of local connections subscribed to the pipe.
    pub fn subscribers(&self, dev_id: DevId, pipe: &PipeName) -> usize {
        let shard = lock(self.shard(dev_id, pipe));
        shard
            .get(&(dev_id, pipe.clone()))
            .map_or(0, |entry| entry.len())
    }

    /// Who is subscribed to the pipe (for users_in_pipes and track_pipe_users).
    pub fn members(&self, dev_id: DevId, pipe: &PipeName) -> Vec<Outbox> {
        let shard = lock(self.shard(dev_id, pipe));
        shard
            .get(&(dev_id, pipe.clone()))
            .map(|entry| {
                let all = entry.subs.values().chain(entry.positioned.values());
                all.cloned().collect()
            })
            .unwrap_or_default()
    }

    /// Sends the publication's frame to every local subscriber (see `fanout`).
    pub fn deliver(&self, p: &Publication) -> usize {
        let item = Item {
            frame: p.frame.clone(),
            except: p.except,
        };
        let tally = {
            let mut shard = lock(self.shard(p.dev_id, &p.pipe));
            let Some(entry) = shard.get_mut(&(p.dev_id, p.pipe.clone())) else {
                return 0;
            };
            if let Some(stream) = &mut entry.stream {
                // Positions asked for: the offset, the window and the sends in one turn, under the lock.
                let offset = stream.next();
                let positioned = p
                    .frame
                    .with_offset(offset)
                    .unwrap_or_else(|| p.frame.clone());
                stream.keep(&self.windows, positioned.clone(), Instant::now());
                let _turn = lock(&entry.turn.sending);
                self.flush_pending(&entry.turn, &entry.subs);
                let mut tally = self.helpers.deliver(entry.subs.values(), &[item])[0];
                let item = Item {
                    frame: positioned,
                    except: p.except,
                };
                let theirs = self.helpers.deliver(entry.positioned.values(), &[item])[0];
                tally.delivered += theirs.delivered;
                tally.slow += theirs.slow;
                tally
            } else if entry.subs.len() < PARALLEL_MIN {
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

    /// Sends what publishes made before the pipe had a stream still wait to send (they took the big-pipe
    /// path and have not had their turn yet), so that they do not come after a publish with an offset.
    /// Those publishes have no offset: they go to the plain subscribers only (a positioned one joined after
    /// them). Called with the turn held; nothing to do but one lock when nothing waits.
    fn flush_pending(&self, turn: &Turn, subs: &HashMap<ConnId, Outbox>) {
        loop {
            let batch: Vec<Arc<Waiting>> = {
                let mut pending = lock(&turn.pending);
                let n = pending.len().min(MAX_BATCH);
                pending.drain(..n).collect()
            };
            if batch.is_empty() {
                return;
            }
            let items: Vec<Item> = batch.iter().map(|w| w.item.clone()).collect();
            let tallies = self.helpers.deliver(subs.values(), &items);
            for (waiting, tally) in batch.iter().zip(tallies) {
                *lock(&waiting.sent) = Some(tally);
            }
        }
    }

    /// Subscriptions across all pipes (walks the shards: for scrapes, not hot paths).
    pub fn total_subscriptions(&self) -> usize {
        self.shards
            .iter()
            .map(|s| lock(s).values().map(|entry| entry.len()).sum::<usize>())
            .sum()
    }
}

/// A connection with positions left the pipe: when it was the last, the stream's idle time starts.
fn left_positions(entry: &mut Pipe) {
    if entry.positioned.is_empty() {
        if let Some(stream) = &mut entry.stream {
            stream.idle_since = Instant::now();
        }
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

    fn message(n: u64) -> Publication {
        let frame = crate::browser::frames::pipe_message("web_p", "e", &n.to_string(), 1);
        Publication {
            dev_id: DevId(1),
            pipe: pipe("web_p"),
            frame: crate::hub::outgoing::shared(frame),
            except: None,
        }
    }

    fn texts(rx: &mut crate::hub::OutboxRx) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv())
            .map(|b| String::from_utf8_lossy(&b[2..]).into_owned())
            .collect()
    }

    fn subscribed(text: &str) -> Option<(String, u64, bool)> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        (v["event"] == "subscribed").then(|| {
            let d = &v["data"];
            let epoch = d["epoch"].as_str().unwrap().to_string();
            (
                epoch,
                d["offset"].as_u64().unwrap(),
                d["recovered"].as_bool().unwrap(),
            )
        })
    }

    fn offset(text: &str) -> Option<u64> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        v["offset"].as_u64()
    }

    #[tokio::test]
    async fn positions_go_to_those_who_asked_and_legacy_bytes_stay() {
        let r = Registry::default();
        let (legacy, mut rl) = outbox(1, 64);
        let (pos, mut rp) = outbox(2, 64);
        r.subscribe(DevId(1), &pipe("web_p"), legacy);
        r.deliver(&message(0));
        assert_eq!(
            texts(&mut rl),
            [r#"{"data":"0","event":"e","message_send_time":1,"pipe":"web_p"}"#]
        );
        assert!(!r.subscribe_positioned(DevId(1), &pipe("web_p"), pos, None));
        let got = texts(&mut rp);
        let (epoch, top, recovered) = subscribed(&got[0]).unwrap();
        assert_eq!((got.len(), top, recovered), (1, 0, false));
        r.deliver(&message(1));
        r.deliver(&message(2));
        assert_eq!(
            texts(&mut rl),
            [
                r#"{"data":"1","event":"e","message_send_time":1,"pipe":"web_p"}"#,
                r#"{"data":"2","event":"e","message_send_time":1,"pipe":"web_p"}"#
            ],
            "legacy frames are byte-identical"
        );
        assert_eq!(
            texts(&mut rp),
            [
                r#"{"data":"1","event":"e","message_send_time":1,"offset":1,"pipe":"web_p"}"#,
                r#"{"data":"2","event":"e","message_send_time":1,"offset":2,"pipe":"web_p"}"#
            ]
        );
        // Gone, three more published, back with its position: the three, then subscribed.
        r.unsubscribe(DevId(1), &pipe("web_p"), ConnId(2));
        for n in 3..=5 {
            r.deliver(&message(n));
        }
        let (pos, mut rp) = outbox(3, 64);
        assert!(r.subscribe_positioned(DevId(1), &pipe("web_p"), pos, Some((&epoch, 2))));
        let got = texts(&mut rp);
        let offsets: Vec<Option<u64>> = got.iter().map(|t| offset(t)).collect();
        assert_eq!(offsets, [Some(3), Some(4), Some(5), None]);
        assert_eq!(subscribed(&got[3]), Some((epoch.clone(), 5, true)));
        // A wrong epoch: nothing replayed.
        let (pos, mut rp) = outbox(4, 64);
        assert!(!r.subscribe_positioned(DevId(1), &pipe("web_p"), pos, Some(("0", 2))));
        let got = texts(&mut rp);
        assert_eq!(got.len(), 1);
        assert_eq!(subscribed(&got[0]), Some((epoch, 5, false)));
    }

    #[test]
    fn a_stream_nobody_listens_to_is_dropped_and_the_next_has_a_new_epoch() {
        let r = Registry::with_windows(
            Stats::default(),
            super::WindowLimits {
                max_age: std::time::Duration::ZERO,
                ..Default::default()
            },
        );
        let (pos, mut rp) = outbox(1, 64);
        r.subscribe_positioned(DevId(1), &pipe("web_p"), pos, None);
        let (first, _, _) = subscribed(&texts(&mut rp)[0]).unwrap();
        r.deliver(&message(1));
        r.unsubscribe(DevId(1), &pipe("web_p"), ConnId(1));
        assert_eq!(r.total_subscriptions(), 0);
        std::thread::sleep(std::time::Duration::from_millis(2));
        r.sweep_windows();
        assert_eq!(r.window_bytes(), 0);
        assert!(
            lock(r.shard(DevId(1), &pipe("web_p"))).is_empty(),
            "entry gone"
        );
        let (pos, mut rp) = outbox(2, 64);
        assert!(!r.subscribe_positioned(DevId(1), &pipe("web_p"), pos, Some((&first, 1))));
        let (second, top, _) = subscribed(&texts(&mut rp)[0]).unwrap();
        assert_ne!(first, second);
        assert_eq!(top, 0);
    }

    #[test]
    fn a_resubscribe_racing_publishes_gets_each_exactly_once() {
        let r = Arc::new(Registry::default());
        let (first, mut r0) = outbox(1, 1024);
        r.subscribe_positioned(DevId(1), &pipe("web_p"), first, None);
        let (epoch, _, _) = subscribed(&texts(&mut r0)[0]).unwrap();
        let publisher = {
            let r = r.clone();
            std::thread::spawn(move || {
                for n in 1..=60 {
                    r.deliver(&message(n));
                }
            })
        };
        // Resubscribe repeatedly on fresh connections with the last offset seen; every message must come
        // once, either replayed or live.
        let mut seen: Vec<u64> = Vec::new();
        let mut rx = r0;
        let mut conn = 2;
        while seen.last() != Some(&60) {
            let got = texts(&mut rx);
            for t in &got {
                if let Some(o) = offset(t) {
                    seen.push(o);
                }
            }
            if conn < 40 {
                r.unsubscribe(DevId(1), &pipe("web_p"), ConnId(conn - 1));
                let (o, next) = outbox(conn, 1024);
                let last = seen.last().copied().unwrap_or(0);
                assert!(r.subscribe_positioned(DevId(1), &pipe("web_p"), o, Some((&epoch, last))));
                rx = next;
                conn += 1;
            }
            std::thread::yield_now();
        }
        publisher.join().unwrap();
        seen.extend(texts(&mut rx).iter().filter_map(|t| offset(t)));
        assert_eq!(seen, (1..=60).collect::<Vec<u64>>());
    }

    #[test]
    fn a_big_pipe_with_positions_keeps_one_order_for_everyone() {
        let r = Arc::new(Registry::default());
        let n = PARALLEL_MIN as u64 + 20;
        let mut rxs = Vec::new();
        for conn in 0..n {
            let (o, rx) = outbox(conn, 1024);
            r.subscribe(DevId(1), &pipe("web_p"), o);
            rxs.push(rx);
        }
        let publishers: Vec<_> = (0..2u64)
            .map(|who| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        r.deliver(&message(who * 1000 + i));
                    }
                })
            })
            .collect();
        // Positions asked for while the publishes go on: from then on, offsets, in the plain order.
        let (pos, mut rp) = outbox(n, 1024);
        r.subscribe_positioned(DevId(1), &pipe("web_p"), pos, None);
        for p in publishers {
            p.join().unwrap();
        }
        let first = texts(&mut rxs[0]);
        assert_eq!(first.len(), 200);
        for (i, rx) in rxs.iter_mut().enumerate().skip(1) {
            assert!(texts(rx) == first, "subscriber {i} saw another order");
        }
        let got = texts(&mut rp);
        let (_, top, _) = subscribed(&got[0]).unwrap();
        let offsets: Vec<u64> = got[1..].iter().map(|t| offset(t).unwrap()).collect();
        assert_eq!(
            offsets,
            (top + 1..=top + offsets.len() as u64).collect::<Vec<_>>()
        );
        // The same messages as the plain subscribers' last ones, in the same order.
        let data =
            |t: &String| serde_json::from_str::<serde_json::Value>(t).unwrap()["data"].clone();
        let tail: Vec<_> = first[first.len() - offsets.len()..]
            .iter()
            .map(data)
            .collect();
        assert_eq!(got[1..].iter().map(data).collect::<Vec<_>>(), tail);
    }
}
