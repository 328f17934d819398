//! Delivering a pipe's messages on this node in offset order, whatever the channel did: per pipe, the last
//! delivered position; what follows is delivered at once (under the pipe's lock, by the subscriber task),
//! anything else (a hole, a positioned join, a check after a reconnect) is queued and worked off in order by
//! one task per pipe, so later messages of that pipe wait behind the repair and other pipes do not.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use super::broker::unavailable;
use super::channels::Key;
use super::metrics::Metrics;
use super::order::{step, Step};
use super::scripts::JOIN;
use super::wire::{self, Wire};
use super::{Shared, COMMAND_TIMEOUT, LISTEN_TIMEOUT};
use crate::hub::{outgoing, BrokerError, Durable, Frame, Join, Publication};

/// How long a hole may wait for its messages (a durable pipe's writers on two nodes can publish offsets
/// out of order): tries of the window, this far apart.
const HOLD_TRIES: u32 = 6;
const HOLD_STEP: Duration = Duration::from_millis(50);

/// Every pipe this node receives, with its order.
pub(super) type Pipes = Mutex<HashMap<Key, Arc<Mutex<PipeOrder>>>>;

#[derive(Default)]
pub(super) struct PipeOrder {
    last: Option<(Arc<str>, u64)>,
    /// A task is working the queue off.
    busy: bool,
    queue: VecDeque<Work>,
}

enum Work {
    Message(Wire),
    Join(Join, oneshot::Sender<Result<bool, BrokerError>>),
    /// After a reconnect: compare the last position with Redis's and repair.
    Check,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn order_of(s: &Shared, key: &Key) -> Arc<Mutex<PipeOrder>> {
    lock(&s.pipes).entry(key.clone()).or_default().clone()
}

fn start(s: &Arc<Shared>, key: &Key, order: &Arc<Mutex<PipeOrder>>, o: &mut PipeOrder) {
    if !o.busy {
        o.busy = true;
        tokio::spawn(work(s.clone(), key.clone(), order.clone()));
    }
}

/// A message off the pipe's channel (decoded, and checked to be of that channel).
pub(super) fn receive(s: &Arc<Shared>, w: Wire) {
    let key = (w.header.dev_id, w.header.pipe.clone());
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
        if o.last.is_some() {
            o.queue.push_back(Work::Check);
            start(s, &key, &order, &mut o);
        }
    }
}

/// The node unsubscribed these pipes: their order is forgotten (a later subscribe starts afresh).
pub(super) fn forget(s: &Shared, keys: &[Key]) {
    let mut pipes = lock(&s.pipes);
    for key in keys {
        let idle = pipes.get(key).is_some_and(|o| {
            let o = lock(o);
            !o.busy && o.queue.is_empty()
        });
        if idle {
            pipes.remove(key);
        }
    }
}

/// A positioned subscribe: in the pipe's order, once its channel is subscribed.
pub(super) async fn join(s: Arc<Shared>, join: Join) -> Result<bool, BrokerError> {
    let key = (join.dev_id, join.pipe.clone());
    s.channels.pin(&key);
    let joined = async {
        if let Some(waiting) = s.channels.wait(&key) {
            match tokio::time::timeout(LISTEN_TIMEOUT, waiting).await {
                Ok(Ok(())) => {}
                _ => return Err(unavailable("the pipe's channel is not subscribed")),
            }
        }
        let order = order_of(&s, &key);
        let (tx, rx) = oneshot::channel();
        {
            let mut o = lock(&order);
            o.queue.push_back(Work::Join(join, tx));
            start(&s, &key, &order, &mut o);
        }
        rx.await.map_err(|_| unavailable("the join was dropped"))?
    }
    .await;
    s.channels.unpin(&key);
    joined
}

async fn work(s: Arc<Shared>, key: Key, order: Arc<Mutex<PipeOrder>>) {
    loop {
        let next = {
            let mut o = lock(&order);
            match o.queue.pop_front() {
                Some(w) => w,
                None => {
                    o.busy = false;
                    return;
                }
            }
        };
        match next {
            Work::Message(w) => message(&s, &order, w).await,
            Work::Join(join, reply) => {
                let _ = reply.send(joined(&s, &order, join).await);
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
    let except = if w.header.origin == s.node {
        w.header.except
    } else {
        None
    };
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
    });
    o.last = Some((epoch, w.offset));
}

fn frame_of(w: &Wire) -> Frame {
    let b = &w.body;
    outgoing::pipe_message(&w.header.pipe, &b.event, &b.text, b.sent_at, b.sender)
}

/// After a reconnect: what Redis holds past our last position is read from the window and delivered; a
/// pipe whose numbering Redis lost (restarted without its data) tells its positioned subscribers `gap`.
async fn check(s: &Shared, key: &Key, order: &Mutex<PipeOrder>) {
    let Some((epoch, last)) = lock(order).last.clone() else {
        return;
    };
    let mut conn = s.conn.clone();
    let mut cmd = redis::cmd("HMGET");
    cmd.arg(s.keys.meta(key.0, &key.1)).arg("e").arg("t");
    let read = cmd.query_async::<(Option<String>, Option<u64>)>(&mut conn);
    let (their_epoch, top) = match tokio::time::timeout(COMMAND_TIMEOUT, read).await {
        Ok(Ok(answer)) => answer,
        // Unreachable again: the next reconnect checks again.
        _ => return,
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

/// A positioned join in the pipe's order: it joins where this node's deliveries stand (or, for the first
/// on this node, where Redis stands), with what it missed from the window, or the history.
async fn joined(s: &Shared, order: &Mutex<PipeOrder>, join: Join) -> Result<bool, BrokerError> {
    let (dev_id, pipe) = (join.dev_id, join.pipe.clone());
    let registry = &s.registry;
    let replay_max = registry.replay_max();
    let (start_epoch, start_top, durable) = match &join.durable {
        Some((e, t)) => (e.to_string(), *t, "1"),
        None => (crate::hub::new_epoch(), 0, "0"),
    };
    let after = join
        .position
        .as_ref()
        .map(|(_, o)| o.to_string())
        .unwrap_or_default();
    let mut conn = s.conn.clone();
    let mut call = JOIN.key(s.keys.meta(dev_id, &pipe));
    call.key(s.keys.window(dev_id, &pipe))
        .arg(start_epoch)
        .arg(start_top)
        .arg(durable)
        .arg(after)
        .arg(replay_max + 1)
        .arg(24 * 3600 * 1000u64);
    let read = call.invoke_async::<(String, u64, Vec<Vec<u8>>)>(&mut conn);
    let (epoch, top, entries) = match tokio::time::timeout(COMMAND_TIMEOUT, read).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => return Err(unavailable(e)),
        Err(_) => return Err(unavailable("no answer in time")),
    };
    let at = {
        let mut o = lock(order);
        match &o.last {
            Some(at) => at.clone(),
            None => {
                let at: (Arc<str>, u64) = (epoch.as_str().into(), top);
                o.last = Some(at.clone());
                at
            }
        }
    };
    let mut replay = None;
    if let Some((their_epoch, offset)) = &join.position {
        let offset = *offset;
        if **their_epoch == *at.0 && offset < at.1 && at.1 - offset <= replay_max {
            if *epoch == *at.0 {
                replay = frames_between(&entries, &at.0, offset + 1, at.1);
            }
            if replay.is_none() && !registry.window_covers(dev_id, &pipe, &at.0, offset) {
                if let Some(stored) = join.stored {
                    replay = stored(at.0.clone(), offset, at.1).await;
                }
            }
        }
    }
    let position = join.position.as_ref().map(|(e, o)| (e.as_str(), *o));
    let _order = lock(order);
    Ok(registry.subscribe_positioned(
        dev_id,
        &pipe,
        join.outbox,
        position,
        Some(Durable {
            epoch: at.0,
            top: at.1,
            replay,
        }),
    ))
}

/// The window's messages `from..=to` as frames with their offsets: all of them, in order, or none.
fn frames_between(entries: &[Vec<u8>], epoch: &str, from: u64, to: u64) -> Option<Vec<Frame>> {
    let mut frames = Vec::new();
    let mut want = from;
    for entry in entries {
        let w = wire::decode(entry).ok()?;
        if w.epoch != epoch || w.offset < want {
            continue;
        }
        if w.offset != want || want > to {
            break;
        }
        let frame = frame_of(&w);
        frames.push(frame.with_offset(w.offset).unwrap_or(frame));
        want += 1;
    }
    (want == to + 1).then_some(frames)
}
