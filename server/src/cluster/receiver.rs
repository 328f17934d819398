//! Delivering a pipe's messages on this node in offset order, whatever the channel did: per pipe, the last
//! delivered position; what follows is delivered at once (under the pipe's lock, by the subscriber task),
//! anything else (a hole, a positioned join, a check after a reconnect) is queued and worked off in order by
//! one task per pipe, so later messages of that pipe wait behind the repair and other pipes do not.

//! A positioned join takes its place in that order (`join.rs`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use super::channels::Key;
use super::join;
use super::metrics::Metrics;
use super::order::{step, Step};
use super::scripts::SYNC;
use super::wire::{self, Header, Kind, Wire};
use super::{Shared, COMMAND_TIMEOUT};
use crate::hub::{outgoing, BrokerError, Frame, Join, Publication};

/// How long a hole may wait for its messages (a durable pipe's writers on two nodes can publish offsets
/// out of order): tries of the window, this far apart.
const HOLD_TRIES: u32 = 6;
const HOLD_STEP: Duration = Duration::from_millis(50);

/// Every pipe this node receives, with its order.
pub(super) type Pipes = Mutex<HashMap<Key, Arc<Mutex<PipeOrder>>>>;

#[derive(Default)]
pub(super) struct PipeOrder {
    pub(super) last: Option<(Arc<str>, u64)>,
    /// A task is working the queue off.
    busy: bool,
    pub(super) queue: VecDeque<Work>,
    /// Joins waiting for their marker.
    pub(super) marked: Vec<join::Marked>,
    /// The sync after this node subscribed found no numbering: whatever the window holds came after.
    fresh: bool,
}

pub(super) type Reply = oneshot::Sender<Result<bool, BrokerError>>;

pub(super) enum Work {
    Message(Wire),
    Join(Join, Reply),
    /// This node's join marker (its id) came in the channel's order.
    Marker(u64),
    /// This node's sync marker came: the pipe's (epoch, top) when the node had just subscribed.
    Sync(String, u64),
    /// After a reconnect: compare the last position with Redis's and repair.
    Check,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn order_of(s: &Shared, key: &Key) -> Arc<Mutex<PipeOrder>> {
    lock(&s.pipes).entry(key.clone()).or_default().clone()
}

pub(super) fn start(s: &Arc<Shared>, key: &Key, order: &Arc<Mutex<PipeOrder>>, o: &mut PipeOrder) {
    if !o.busy {
        o.busy = true;
        tokio::spawn(work(s.clone(), key.clone(), order.clone()));
    }
}

/// A message off the pipe's channel (decoded, and checked to be of that channel).
pub(super) fn receive(s: &Arc<Shared>, w: Wire) {
    let key = (w.header.dev_id, w.header.pipe.clone());
    if w.header.kind == Kind::Marker {
        // Another node's join, or not a marker at all: nothing to this node's order.
        let Some(id) = wire::marker_id(&w).filter(|_| w.header.origin == s.node) else {
            return;
        };
        let Some(order) = lock(&s.pipes).get(&key).cloned() else {
            return;
        };
        let mut o = lock(&order);
        o.queue.push_back(match id {
            0 => Work::Sync(w.epoch, w.offset),
            id => Work::Marker(id),
        });
        start(s, &key, &order, &mut o);
        return;
    }
    if !s.channels.is_subscribed(&key) {
        // Came in while the node leaves the channel (read after its UNSUBSCRIBE was decided): no local
        // subscriber wants it, and an order made for it now would outlive the channel, so that a later
        // join here would stand at this message instead of at Redis's top, with the messages published
        // meanwhile (which this node never receives) silently behind it.
        return;
    }
    let order = order_of(s, &key);
    let mut o = lock(&order);
    if !o.busy && o.queue.is_empty() {
        let last = o.last.as_ref().map(|(e, l)| (&**e, *l));
        match step(last, &w.epoch, w.offset) {
            Step::Deliver | Step::NewEpoch => {
                deliver(s, &w, &mut o);
                return;
            }
            Step::Duplicate => {
                Metrics::add(&s.metrics.duplicates, 1);
                return;
            }
            Step::Gap { .. } => {}
        }
    }
    o.queue.push_back(Work::Message(w));
    start(s, &key, &order, &mut o);
}

/// After a reconnect of the pub/sub connection: every pipe checks what it may have missed.
pub(super) fn check_all(s: &Arc<Shared>) {
    let pipes: Vec<(Key, Arc<Mutex<PipeOrder>>)> = lock(&s.pipes)
        .iter()
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect();
    for (key, order) in pipes {
        let mut o = lock(&order);
        if o.last.is_some() || o.fresh {
            o.queue.push_back(Work::Check);
            start(s, &key, &order, &mut o);
        }
        // Their markers went with the old connection: the joins run again, on this one.
        let again: Vec<join::Marked> = o.marked.drain(..).collect();
        for m in again {
            o.queue.push_back(Work::Join(m.join, m.reply));
            start(s, &key, &order, &mut o);
        }
    }
}

/// The node just subscribed these pipes' channels: those whose place in the order it does not know yet
/// get it from a sync marker (the script reads the pipe's top and PUBLISHes it on the channel, so it
/// comes after everything up to that top), so that a pub/sub connection lost before the first message
/// arrives is repaired after the reconnect like any other hole. Pipes that know their place, or know
/// there was no numbering when they subscribed (`fresh`, checked after a reconnect), need none.
pub(super) fn sync(s: &Arc<Shared>, keys: &[Key]) {
    let mut pipe = redis::pipe();
    pipe.load_script(&SYNC).ignore();
    let mut any = false;
    for key in keys {
        let order = order_of(s, key);
        let o = lock(&order);
        if o.last.is_some() || o.fresh {
            continue;
        }
        let head = wire::head(&Header {
            kind: Kind::Marker,
            origin: s.node.clone(),
            except: None,
            dev_id: key.0,
            pipe: key.1.clone(),
        });
        let mut call = SYNC.key(s.keys.meta(key.0, &key.1));
        call.key(s.keys.channel(key.0, &key.1))
            .arg(head)
            .arg(wire::marker_body(0));
        pipe.invoke_script(&call).ignore();
        any = true;
    }
    if !any {
        return;
    }
    let mut conn = s.conn.clone();
    tokio::spawn(async move {
        let synced = tokio::time::timeout(COMMAND_TIMEOUT, pipe.query_async::<()>(&mut conn)).await;
        if !matches!(synced, Ok(Ok(()))) {
            tracing::warn!("cannot sync newly subscribed pipes' positions; a drop before their first message is not repaired");
        }
    });
}

/// The node unsubscribed these pipes: their order is forgotten (a later subscribe starts afresh).
pub(super) fn forget(s: &Shared, keys: &[Key]) {
    let mut pipes = lock(&s.pipes);
    for key in keys {
        let idle = pipes.get(key).is_some_and(|o| {
            let o = lock(o);
            !o.busy && o.queue.is_empty() && o.marked.is_empty()
        });
        if idle {
            pipes.remove(key);
        }
    }
}

/// An order whose channel was left while it worked (`forget` keeps a busy one) goes once it is idle:
/// its place would be stale by the time the node subscribes the channel again.
fn forget_left(s: &Shared, key: &Key, order: &Arc<Mutex<PipeOrder>>) {
    if !s.channels.is_left(key) {
        return;
    }
    let mut pipes = lock(&s.pipes);
    let ours = pipes.get(key).is_some_and(|o| Arc::ptr_eq(o, order));
    let idle = {
        let o = lock(order);
        !o.busy && o.queue.is_empty() && o.marked.is_empty()
    };
    if ours && idle {
        pipes.remove(key);
    }
}

async fn work(s: Arc<Shared>, key: Key, order: Arc<Mutex<PipeOrder>>) {
    loop {
        let next = {
            let mut o = lock(&order);
            match o.queue.pop_front() {
                Some(w) => w,
                None => {
                    o.busy = false;
                    drop(o);
                    forget_left(&s, &key, &order);
                    return;
                }
            }
        };
        match next {
            Work::Message(w) => message(&s, &order, w).await,
            Work::Join(join, reply) => join::joined(&s, &order, join, reply).await,
            Work::Marker(id) => join::marked(&s, &order, id).await,
            Work::Sync(epoch, top) => {
                let mut o = lock(&order);
                if o.last.is_none() {
                    if epoch == NO_NUMBERING {
                        o.fresh = true;
                    } else {
                        o.last = Some((epoch.as_str().into(), top));
                        o.fresh = false;
                    }
                }
            }
            Work::Check => check(&s, &key, &order).await,
        }
    }
}

async fn message(s: &Shared, order: &Mutex<PipeOrder>, w: Wire) {
    let last = lock(order).last.clone();
    match step(last.as_ref().map(|(e, l)| (&**e, *l)), &w.epoch, w.offset) {
        Step::Deliver | Step::NewEpoch => deliver(s, &w, &mut lock(order)),
        Step::Duplicate => Metrics::add(&s.metrics.duplicates, 1),
        Step::Gap { from, to } => {
            fill(
                s,
                order,
                &w.header.dev_id,
                &w.header.pipe,
                &w.epoch,
                from,
                to,
            )
            .await;
            let mut o = lock(order);
            let last = o.last.as_ref().map(|(e, l)| (&**e, *l));
            if step(last, &w.epoch, w.offset) != Step::Duplicate {
                deliver(s, &w, &mut o);
            }
        }
    }
}

/// Delivers offsets `from..=to` of `epoch` from the window (and from what the channel brought meanwhile),
/// waiting a little for late ones. Returns whether every one was delivered; when not, those found are
/// delivered in order and the registry tells positioned subscribers `gap` at the hole.
async fn fill(
    s: &Shared,
    order: &Mutex<PipeOrder>,
    dev_id: &crate::ids::DevId,
    pipe: &crate::ids::PipeName,
    epoch: &str,
    from: u64,
    to: u64,
) -> bool {
    let want = (to - from + 1) as usize;
    let mut found: std::collections::BTreeMap<u64, Wire> = Default::default();
    for attempt in 0..HOLD_TRIES {
        if attempt > 0 {
            tokio::time::sleep(HOLD_STEP).await;
        }
        // What the channel brought meanwhile (a late publish of a durable pipe).
        {
            let mut o = lock(order);
            o.queue.retain(|work| match work {
                Work::Message(w) if w.epoch == epoch && (from..=to).contains(&w.offset) => {
                    found.insert(w.offset, w.clone());
                    false
                }
                _ => true,
            });
        }
        if found.len() < want {
            let mut conn = s.conn.clone();
            let mut cmd = redis::cmd("ZRANGEBYSCORE");
            cmd.arg(s.keys.window(*dev_id, pipe)).arg(from).arg(to);
            let read = cmd.query_async::<Vec<Vec<u8>>>(&mut conn);
            if let Ok(Ok(entries)) = tokio::time::timeout(COMMAND_TIMEOUT, read).await {
                for entry in entries {
                    match wire::decode(&entry) {
                        Ok(w) if w.epoch == epoch && (from..=to).contains(&w.offset) => {
                            found.insert(w.offset, w);
                        }
                        Ok(_) => {}
                        Err(_) => Metrics::add(&s.metrics.garbled, 1),
                    }
                }
            }
        }
        if found.len() == want {
            break;
        }
        // What is missing is older than what the window holds: trimmed, waiting will not bring it.
        let first = found.keys().next().copied().unwrap_or(u64::MAX);
        if (from..first).count() == want - found.len() && first != u64::MAX {
            break;
        }
    }
    let whole = found.len() == want;
    if whole {
        Metrics::add(&s.metrics.repairs, 1);
    } else {
        Metrics::add(&s.metrics.gaps, 1);
    }
    Metrics::add(&s.metrics.repaired_messages, found.len() as u64);
    let mut o = lock(order);
    for w in found.values() {
        deliver(s, w, &mut o);
    }
    whole
}

/// The registry's delivery of one message of the pipe, and its place as the last delivered.
fn deliver(s: &Shared, w: &Wire, o: &mut PipeOrder) {
    let except = except_of(s, w);
    let epoch: Arc<str> = match &o.last {
        Some((e, _)) if **e == *w.epoch => e.clone(),
        _ => w.epoch.as_str().into(),
    };
    s.registry.deliver(&Publication {
        dev_id: w.header.dev_id,
        pipe: w.header.pipe.clone(),
        frame: frame_of(w),
        except,
        position: Some((epoch.clone(), w.offset)),
        presence: false,
        socket: None,
    });
    o.last = Some((epoch, w.offset));
}

/// The connection of this node a message leaves out: the origin's `web_pipe2` sender or API caller's
/// socket, or, on any node, its connection whose Pusher socket id the message names (`toOthers()`).
pub(super) fn except_of(s: &Shared, w: &Wire) -> Option<crate::ids::ConnId> {
    if w.header.origin == s.node && w.header.except.is_some() {
        return w.header.except;
    }
    let socket = w.body.socket.as_deref()?;
    s.pusher.socket(w.header.dev_id, socket)
}

pub(super) fn frame_of(w: &Wire) -> Frame {
    let b = &w.body;
    outgoing::pipe_message(&w.header.pipe, &b.event, &b.text, b.sent_at, b.sender)
}

/// After a reconnect: what Redis holds past our last position is read from the window and delivered; a
/// pipe whose numbering Redis lost (restarted without its data) tells its positioned subscribers `gap`.
async fn check(s: &Shared, key: &Key, order: &Mutex<PipeOrder>) {
    let Some((epoch, last)) = lock(order).last.clone() else {
        return check_fresh(s, key, order).await;
    };
    let Some((their_epoch, top)) = read_meta(s, key).await else {
        // Unreachable again: the next reconnect checks again.
        return;
    };
    match (their_epoch, top) {
        (Some(e), Some(top)) if *e == *epoch => {
            if top > last && !fill(s, order, &key.0, &key.1, &epoch, last + 1, top).await {
                s.registry.renumbered(key.0, &key.1);
                lock(order).last = Some((epoch, top));
            }
        }
        _ => {
            Metrics::add(&s.metrics.gaps, 1);
            s.registry.renumbered(key.0, &key.1);
            lock(order).last = None;
        }
    }
}

/// Between two reads of a pipe's numbering that Redis did not answer.
const CHECK_RETRY: Duration = Duration::from_millis(100);

/// The pipe's epoch and top in Redis, asked again until Redis answers while the pub/sub connection is
/// up. After Redis restarted, the pub/sub connection is new but the command connection may not have
/// noticed yet: its first command fails. A check that gave up on it kept the numbering Redis had lost,
/// and the node went on joining `subscription2` clients at it (`recovered:true` at an epoch that no
/// longer exists) until the pipe's next message. `None` once the pub/sub connection is down again (its
/// next reconnect checks again; the liveness probe takes it down when commands keep failing).
async fn read_meta(s: &Shared, key: &Key) -> Option<(Option<String>, Option<u64>)> {
    loop {
        let mut conn = s.conn.clone();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(s.keys.meta(key.0, &key.1)).arg("e").arg("t");
        let read = cmd.query_async::<(Option<String>, Option<u64>)>(&mut conn);
        match tokio::time::timeout(COMMAND_TIMEOUT, read).await {
            Ok(Ok(answer)) => return Some(answer),
            _ if !s.link_up.load(std::sync::atomic::Ordering::Relaxed) => return None,
            _ => tokio::time::sleep(CHECK_RETRY).await,
        }
    }
}

/// The epoch a sync marker carries for a pipe with no numbering yet.
const NO_NUMBERING: &str = "-";

/// After a reconnect, a pipe that had no numbering when this node subscribed and of which it delivered
/// nothing: everything the window holds now was published after, and is delivered in order.
async fn check_fresh(s: &Shared, key: &Key, order: &Mutex<PipeOrder>) {
    if !lock(order).fresh {
        return;
    }
    let Some((Some(epoch), Some(top))) = read_meta(s, key).await else {
        // Still no numbering (or Redis away again: the next reconnect checks again).
        return;
    };
    let mut conn = s.conn.clone();
    let mut cmd = redis::cmd("ZRANGEBYSCORE");
    cmd.arg(s.keys.window(key.0, &key.1)).arg("-inf").arg(top);
    let read = cmd.query_async::<Vec<Vec<u8>>>(&mut conn);
    let Ok(Ok(entries)) = tokio::time::timeout(COMMAND_TIMEOUT, read).await else {
        return;
    };
    let first = entries
        .iter()
        .filter_map(|e| wire::decode(e).ok())
        .filter(|w| w.epoch == epoch)
        .map(|w| w.offset)
        .min();
    {
        let mut o = lock(order);
        if o.last.is_some() {
            return;
        }
        o.fresh = false;
        if first.is_none() {
            if top > 0 {
                Metrics::add(&s.metrics.gaps, 1);
            }
            o.last = Some((epoch.as_str().into(), top));
            return;
        }
    }
    if let Some(first) = first {
        fill(s, order, &key.0, &key.1, &epoch, first, top).await;
    }
}
