//! Positioned joins (`subscription2`) in a pipe's delivery order on this node (`receiver.rs`).
//!
//! A join takes its place in that order. When this node has delivered some of the pipe's
//! messages, the join stands where they stand. When it has none yet, it cannot take Redis's top as its
//! place: messages published before the join read the top may still be on their way on the channel, and
//! this node's plain subscribers (subscribed earlier) are owed them. So the join script also PUBLISHes a
//! marker (`wire::Kind::Marker`, the join's id and the top it read) on the pipe's channel, and the join
//! completes when its marker arrives, in the channel's order: a publish's PUBLISH is atomic with its
//! offset, so everything up to that top which this node will receive has arrived before the marker (and
//! was delivered to whoever was there). Markers of other nodes' joins are ignored. A marker lost with the
//! pub/sub connection is not waited for: after the reconnect the join runs again (`check_all`), and a join
//! whose marker does not come within `LISTEN_TIMEOUT` fails as unavailable.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::broker::unavailable;
use super::metrics::Metrics;
use super::receiver::{frame_of, lock, order_of, start, PipeOrder, Reply, Work};
use super::scripts::JOIN;
use super::wire::{self, Header, Kind};
use super::{Shared, COMMAND_TIMEOUT, LISTEN_TIMEOUT};
use crate::hub::{BrokerError, Durable, Frame, Join};

/// A join whose marker is on its way, with what its script read.
pub(super) struct Marked {
    pub(super) id: u64,
    pub(super) join: Join,
    pub(super) reply: Reply,
    read: Read,
}

/// What the join script answered: the pipe's epoch and top, and the window after the client's offset.
struct Read {
    epoch: String,
    top: u64,
    entries: Vec<Vec<u8>>,
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

/// A positioned join in the pipe's order: it joins where this node's deliveries stand, with what it
/// missed from the window, or the history; when this node has delivered none of the pipe's messages yet,
/// where its marker arrives (see the module's doc).
pub(super) async fn joined(
    s: &Arc<Shared>,
    order: &Arc<Mutex<PipeOrder>>,
    join: Join,
    reply: Reply,
) {
    let (dev_id, pipe) = (join.dev_id, join.pipe.clone());
    let replay_max = s.registry.replay_max();
    let (start_epoch, start_top, durable) = match &join.durable {
        Some((e, t)) => (e.to_string(), *t, "1"),
        None => (crate::hub::new_epoch(), 0, "0"),
    };
    let after = join
        .position
        .as_ref()
        .map(|(_, o)| o.to_string())
        .unwrap_or_default();
    // Only this task changes `last` while it works (the channel's messages queue up behind it).
    // Never 0: that is a sync's marker (`receiver::sync`).
    let marker = lock(order)
        .last
        .is_none()
        .then(|| rand::random::<u64>() | 1);
    let (head, body) = match marker {
        Some(id) => (
            wire::head(&Header {
                kind: Kind::Marker,
                origin: s.node.clone(),
                except: None,
                dev_id,
                pipe: pipe.clone(),
            }),
            wire::marker_body(id),
        ),
        None => (String::new(), Vec::new()),
    };
    let mut conn = s.conn.clone();
    let mut call = JOIN.key(s.keys.meta(dev_id, &pipe));
    call.key(s.keys.window(dev_id, &pipe))
        .key(s.keys.channel(dev_id, &pipe))
        .arg(start_epoch)
        .arg(start_top)
        .arg(durable)
        .arg(after)
        .arg(replay_max + 1)
        .arg(24 * 3600 * 1000u64)
        .arg(head)
        .arg(body);
    let answer = call.invoke_async::<(String, u64, Vec<Vec<u8>>)>(&mut conn);
    let (epoch, top, entries) = match tokio::time::timeout(COMMAND_TIMEOUT, answer).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) => {
            let _ = reply.send(Err(unavailable(e)));
            return;
        }
        Err(_) => {
            let _ = reply.send(Err(unavailable("no answer in time")));
            return;
        }
    };
    let read = Read {
        epoch,
        top,
        entries,
    };
    match marker {
        None => {
            let at = lock(order).last.clone();
            complete(s, order, join, reply, read, at).await;
        }
        Some(id) => {
            lock(order).marked.push(Marked {
                id,
                join,
                reply,
                read,
            });
            // A marker that never comes (the channel wedged without a reconnect): the join fails.
            let (s, order) = (s.clone(), order.clone());
            tokio::spawn(async move {
                tokio::time::sleep(LISTEN_TIMEOUT).await;
                let late = {
                    let mut o = lock(&order);
                    let i = o.marked.iter().position(|m| m.id == id);
                    i.map(|i| o.marked.swap_remove(i))
                };
                if let Some(m) = late {
                    Metrics::add(&s.metrics.join_timeouts, 1);
                    let _ = m
                        .reply
                        .send(Err(unavailable("the join's marker did not come back")));
                }
            });
        }
    }
}

/// This node's marker arrived: everything its join's top covers that this node receives has been
/// delivered, so the join completes here (at that top when this node has delivered nothing yet).
pub(super) async fn marked(s: &Shared, order: &Mutex<PipeOrder>, id: u64) {
    let (m, at) = {
        let mut o = lock(order);
        let Some(i) = o.marked.iter().position(|m| m.id == id) else {
            // Timed out already, or run again after a reconnect: a stale marker.
            return;
        };
        let m = o.marked.swap_remove(i);
        if o.last.is_none() {
            o.last = Some((m.read.epoch.as_str().into(), m.read.top));
        }
        (m, o.last.clone())
    };
    complete(s, order, m.join, m.reply, m.read, at).await;
}

/// Subscribes the join at `at` (this node's place in the pipe's order), with its replay.
async fn complete(
    s: &Shared,
    order: &Mutex<PipeOrder>,
    join: Join,
    reply: Reply,
    read: Read,
    at: Option<(Arc<str>, u64)>,
) {
    let at = at.unwrap_or_else(|| (read.epoch.as_str().into(), read.top));
    let registry = &s.registry;
    let (dev_id, pipe) = (join.dev_id, join.pipe.clone());
    let replay_max = registry.replay_max();
    let mut replay = None;
    if let Some((their_epoch, offset)) = &join.position {
        let offset = *offset;
        if **their_epoch == *at.0 && offset < at.1 && at.1 - offset <= replay_max {
            if *read.epoch == *at.0 {
                replay = frames_between(&read.entries, &at.0, offset + 1, at.1);
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
    if reply.is_closed() {
        // The client went away meanwhile (or its join gave up): nothing to subscribe.
        return;
    }
    let recovered = registry.subscribe_positioned(
        dev_id,
        &pipe,
        join.outbox,
        position,
        Some(Durable {
            epoch: at.0,
            top: at.1,
            replay,
        }),
    );
    let _ = reply.send(Ok(recovered));
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
