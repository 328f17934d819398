//! The local subscription registry. Short std mutexes, never held across an await; sharded by pipe.
//!
//! A pipe some connection asked positions for (`subscription2`) has a `Stream`: its publishes get offsets
//! and are kept in its recovery window, under the shard's lock, and are sent there too, so that the offset
//! order, the window and every subscriber's order are one; a resubscribe reads the window and joins under
//! the same lock, so that no publish falls between the replay and the live frames.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::fanout::{Item, Tally, MAX_BATCH, PARALLEL_MIN};
use super::window::{new_epoch, Stream, TenantWindow, WindowLimits, Windows};
use super::{Outbox, Publication};
use crate::browser::frames;
use crate::ids::{ConnId, DevId, PipeName, UserId};
use crate::stats::Stats;

const SHARDS: usize = 64;

type PipeKey = (DevId, PipeName);
type Shard = Mutex<HashMap<PipeKey, Pipe>>;

/// A durable pipe's position as the database holds it, for a positioned subscribe (see
/// `subscribe_positioned`).
pub struct Durable {
    pub epoch: Arc<str>,
    pub top: u64,
    /// The stored frames after the client's position (each carrying its offset), when the history holds
    /// every one of them.
    pub replay: Option<Vec<super::Frame>>,
}

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
    pub(super) windows: Windows,
    /// A cluster's: told when a pipe gets its first subscriber or loses its last. Set once, at start; its
    /// presence also means the pipes' offsets come from the cluster (see `deliver`).
    interest: OnceLock<Arc<dyn super::Interest>>,
    /// The commands' caches in front of the database, told what changed (`stale.rs`).
    pub stale: super::StaleSink,
    /// Closes the CometQL sessions of a revoked key (the CometQL door's, set once at start).
    key_sessions: OnceLock<KeyCloser>,
    /// Where a cluster node asks for users' queues to be delivered again (`redrain`).
    redrains: OnceLock<tokio::sync::mpsc::UnboundedSender<(DevId, UserId)>>,
}

/// What closes the CometQL sessions that logged in with a key.
pub(crate) type KeyCloser = Arc<dyn Fn(i64) + Send + Sync>;

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
            users: super::users::Users::new(&windows),
            stats,
            helpers: Default::default(),
            windows: Windows::new(windows),
            interest: OnceLock::new(),
            stale: Default::default(),
            key_sessions: OnceLock::new(),
            redrains: OnceLock::new(),
        }
    }

    /// Makes this a cluster node's registry: `interest` hears of first and last subscribers.
    pub fn set_interest(&self, interest: Arc<dyn super::Interest>) {
        let _ = self.interest.set(interest);
    }

    /// The CometQL door says how its sessions of a key are closed (at start).
    pub(crate) fn set_key_closer(&self, closer: KeyCloser) {
        let _ = self.key_sessions.set(closer);
    }

    /// The command layer takes the users whose queue is to be delivered again (a cluster node).
    pub(crate) fn set_redrain(&self, to: tokio::sync::mpsc::UnboundedSender<(DevId, UserId)>) {
        let _ = self.redrains.set(to);
    }

    /// Asks for the user's queued private messages to be delivered to their connections here (a cluster
    /// node whose pub/sub connection came back: what was queued meanwhile because no node heard it).
    pub fn redrain(&self, dev_id: DevId, user: UserId) {
        if let Some(to) = self.redrains.get() {
            let _ = to.send((dev_id, user));
        }
    }

    /// Closes what `revoke` names on this node (also what a cluster node does when told by another).
    pub fn revoke_here(&self, revoke: super::Revoke) {
        match revoke {
            super::Revoke::User(dev_id, user) => {
                self.close_user(dev_id, user);
            }
            super::Revoke::Key(key_id) => {
                if let Some(close) = self.key_sessions.get() {
                    close(key_id);
                }
            }
        }
    }

    fn clustered(&self) -> bool {
        self.interest.get().is_some()
    }

    /// Tells the cluster (if any) of a user's first or last connection on this node. Under the users
    /// shard's lock: the cluster only notes it.
    pub(super) fn note_user(&self, dev_id: DevId, user: UserId, linked: bool) {
        if let Some(interest) = self.interest.get() {
            interest.user_changed(dev_id, user, linked);
        }
    }

    /// Tells the cluster (if any) that the pipe's local subscribers went from none to some, or back.
    fn note(&self, dev_id: DevId, pipe: &PipeName, before: usize, after: usize) {
        if let Some(interest) = self.interest.get() {
            if (before == 0) != (after == 0) {
                interest.changed(dev_id, pipe, after > 0);
            }
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
        let before = entry.len();
        if entry.positioned.remove(&outbox.conn()).is_some() {
            left_positions(entry);
        }
        entry.subs.insert(outbox.conn(), outbox);
        self.note(dev_id, pipe, before, entry.len());
    }

    /// Subscribes a connection that asked for positions (`subscription2`), with the last position it
    /// processed if it gave one: sends the frames it missed when they can all be replayed, then the pipe's
    /// `subscribed` frame, then it is a subscriber; all under the shard's lock, so that a concurrent publish
    /// is either replayed or delivered live, never both or neither. Returns whether it recovered.
    ///
    /// `durable`: the pipe keeps history, and its epoch and top offset are the database's (read under the
    /// pipe's publish lock, so that no publish of it is between that read and this call): the stream is
    /// made (or set) to them, and when the window cannot serve the position the rows read from the
    /// history are replayed instead. Without it, a stream that was durable (history since switched off)
    /// starts a new epoch in memory. Either change tells the pipe's other positioned subscribers `gap`.
    pub fn subscribe_positioned(
        &self,
        dev_id: DevId,
        pipe: &PipeName,
        outbox: Outbox,
        position: Option<(&str, u64)>,
        durable: Option<Durable>,
    ) -> bool {
        let now = Instant::now();
        let mut shard = lock(self.shard(dev_id, pipe));
        let entry = shard.entry((dev_id, pipe.clone())).or_default();
        let before = entry.len();
        let conn = outbox.conn();
        entry.subs.remove(&conn);
        entry.positioned.remove(&conn);
        // A batch of a big pipe may still be on its way (sent outside the shard's lock): after it.
        let _turn = lock(&entry.turn.sending);
        self.flush_pending(&entry.turn, &entry.subs);
        let stream = entry
            .stream
            .get_or_insert_with(|| Box::new(Stream::new(now, self.windows.share(dev_id))));
        let (renumbered, stored) = match durable {
            Some(d) => {
                let same = stream.durable && *stream.epoch() == d.epoch && stream.top() == d.top;
                if !same {
                    stream.reset(&self.windows, d.epoch, d.top, true);
                }
                (!same, d.replay)
            }
            None if stream.durable => {
                stream.reset(&self.windows, new_epoch().into(), 0, false);
                (true, None)
            }
            None => (false, None),
        };
        let resumed = stream.resume(&self.windows, position, now);
        if renumbered {
            self.send_gap(pipe, &entry.positioned);
        }
        let era = outbox.era();
        let replay = resumed.replay.or(stored);
        let recovered = replay.is_some();
        let mut frames: Vec<bytes::Bytes> = replay
            .unwrap_or_default()
            .iter()
            .map(|f| f.wire(era))
            .collect();
        let subscribed = frames::subscribed(pipe.as_str(), &resumed.epoch, resumed.top, recovered);
        frames.push(subscribed.encode(era.api()));
        for frame in &frames {
            if outbox.push(frame) != super::Pushed::Accepted {
                break;
            }
        }
        entry.positioned.insert(conn, outbox);
        self.note(dev_id, pipe, before, entry.len());
        recovered
    }

    /// Whether the pipe's window holds everything after `offset` of `epoch` (so that a durable resubscribe
    /// need not read the history).
    pub fn window_covers(&self, dev_id: DevId, pipe: &PipeName, epoch: &str, offset: u64) -> bool {
        let mut shard = lock(self.shard(dev_id, pipe));
        shard
            .get_mut(&(dev_id, pipe.clone()))
            .and_then(|entry| entry.stream.as_mut())
            .is_some_and(|s| s.covers(&self.windows, epoch, offset, Instant::now()))
    }

    /// The (epoch, top) of the pipe's stream when its offsets come from outside (a durable or a cluster's
    /// numbering): where a positioned join of this node stands.
    pub fn stream_position(&self, dev_id: DevId, pipe: &PipeName) -> Option<(Arc<str>, u64)> {
        let shard = lock(self.shard(dev_id, pipe));
        let stream = shard.get(&(dev_id, pipe.clone()))?.stream.as_ref()?;
        stream
            .durable
            .then(|| (stream.epoch().clone(), stream.top()))
    }

    /// The pipe's numbering is lost (a cluster's Redis forgot it): its positioned subscribers are told
    /// `gap` (they ask again, and learn `recovered:false`), and the stream starts a numbering of its own
    /// that the next message of the pipe replaces.
    pub fn renumbered(&self, dev_id: DevId, pipe: &PipeName) {
        let mut shard = lock(self.shard(dev_id, pipe));
        let Some(entry) = shard.get_mut(&(dev_id, pipe.clone())) else {
            return;
        };
        let Some(stream) = &mut entry.stream else {
            return;
        };
        stream.reset(&self.windows, new_epoch().into(), 0, true);
        let _turn = lock(&entry.turn.sending);
        self.flush_pending(&entry.turn, &entry.subs);
        self.send_gap(pipe, &entry.positioned);
    }

    /// Whether any local connection listens to the pipe.
    pub fn listened(&self, dev_id: DevId, pipe: &PipeName) -> bool {
        self.subscribers(dev_id, pipe) > 0
    }

    /// Most messages one resubscribe replays.
    pub fn replay_max(&self) -> u64 {
        self.windows.limits.replay_max
    }

    /// Tells positioned subscribers that the pipe's numbering changed under them (`gap`): they ask again.
    fn send_gap(&self, pipe: &PipeName, to: &HashMap<ConnId, Outbox>) {
        let item = Item {
            frame: super::outgoing::shared(frames::gap(pipe.as_str())),
            except: None,
        };
        let tally = self.helpers.deliver(to.values(), &[item])[0];
        if tally.slow > 0 {
            self.stats
                .slow_consumers_dropped
                .fetch_add(tally.slow, Ordering::Relaxed);
        }
    }

    pub fn unsubscribe(&self, dev_id: DevId, pipe: &PipeName, conn: ConnId) {
        let mut shard = lock(self.shard(dev_id, pipe));
        let key = (dev_id, pipe.clone());
        if let Some(entry) = shard.get_mut(&key) {
            let before = entry.len();
            entry.subs.remove(&conn);
            if entry.positioned.remove(&conn).is_some() {
                left_positions(entry);
            }
            self.note(dev_id, pipe, before, entry.len());
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
        self.windows.prune();
    }

    /// Sets a tenant's window (its override of the node's, and the bytes its quota leaves free).
    pub fn set_tenant_window(&self, dev_id: DevId, window: TenantWindow) {
        self.windows.set_tenant(dev_id, window);
    }

    /// Bytes held by the tenant's recovery windows.
    pub fn tenant_window_bytes(&self, dev_id: DevId) -> usize {
        self.windows.tenant_bytes(dev_id)
    }

    /// The tenants whose windows the node bounds (those with streams).
    pub fn window_tenants(&self) -> Vec<DevId> {
        self.windows.tenants()
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

    /// The connection's subscription to the pipe, if it has one (a cluster's presence writes what is).
    pub fn member(&self, dev_id: DevId, pipe: &PipeName, conn: ConnId) -> Option<Outbox> {
        let shard = lock(self.shard(dev_id, pipe));
        let entry = shard.get(&(dev_id, pipe.clone()))?;
        entry
            .subs
            .get(&conn)
            .or_else(|| entry.positioned.get(&conn))
            .cloned()
    }

    /// Every local subscription, as (tenant, pipe, connection): what a cluster node writes again to Redis
    /// after Redis was unavailable. One shard's lock at a time.
    pub fn all_members(&self) -> Vec<(DevId, PipeName, ConnId)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            for ((dev_id, pipe), entry) in shard.iter() {
                for conn in entry.subs.keys().chain(entry.positioned.keys()) {
                    out.push((*dev_id, pipe.clone(), *conn));
                }
            }
        }
        out
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
            let before_join =
                self.clustered() && entry.stream.as_ref().is_some_and(|s| s.joined_after(p));
            if before_join {
                // A cluster's message that positioned subscribers joined after (their replay had it):
                // for the plain subscribers only.
                let _turn = lock(&entry.turn.sending);
                self.flush_pending(&entry.turn, &entry.subs);
                self.helpers.deliver(entry.subs.values(), &[item])[0]
            } else if let Some(stream) = &mut entry.stream {
                // Positions asked for: the offset, the window and the sends in one turn, under the lock.
                let (offset, gap) = stream.number(&self.windows, p);
                let positioned = match offset {
                    Some(offset) => {
                        let framed = p
                            .frame
                            .with_offset(offset)
                            .unwrap_or_else(|| p.frame.clone());
                        stream.keep(&self.windows, framed.clone(), Instant::now());
                        framed
                    }
                    None => p.frame.clone(),
                };
                let _turn = lock(&entry.turn.sending);
                self.flush_pending(&entry.turn, &entry.subs);
                let mut tally = self.helpers.deliver(entry.subs.values(), &[item])[0];
                let item = Item {
                    // A positioned subscriber that would see a hole is told instead, and asks again.
                    frame: if gap {
                        super::outgoing::shared(frames::gap(p.pipe.as_str()))
                    } else {
                        positioned
                    },
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

    /// A tenant's pipes that have subscribers and whose name starts with `prefix`, with their subscriber
    /// counts (walks the shards: for the HTTP API's channel list, not hot paths).
    pub fn pipes_of(&self, dev_id: DevId, prefix: &str) -> Vec<(PipeName, usize)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            for ((owner, pipe), entry) in lock(shard).iter() {
                if *owner == dev_id && entry.len() > 0 && pipe.as_str().starts_with(prefix) {
                    out.push((pipe.clone(), entry.len()));
                }
            }
        }
        out.sort();
        out
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
#[path = "registry_tests.rs"]
pub(crate) mod tests;
