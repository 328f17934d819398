//! Durable positions: a pipe that keeps history (`pipes_settings` length > 0) numbers its messages in the
//! database, so that its epoch and offsets outlive the node and a page that reconnects after a restart is
//! sent what it missed from the history (docs/websocket.md, "subscription2").
//!
//! Order: the offset a history write takes and the order the hub delivers in must be one, or a subscriber
//! would see offset 7 before 6. A publish to such a pipe hands its write to the storage writer under the
//! pipe's publish lock; the writer numbers, commits and delivers in the order writes were handed over, so
//! the lock is held only for the hand-over and publishes of one pipe commit together. A positioned
//! subscribe holds the lock, waits for the writer to finish what was handed over before (`barrier`), reads
//! the pipe's position and joins: a publish is then either in what the subscribe read (replayed) or
//! delivered after the join (live). Other pipes share a stripe only by hash.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};

use super::{Client, CommandError, Ctx};
use crate::browser::names::is_trust;
use crate::hub::{outgoing, Durable, Join, Outbox, StoredReplay};
use crate::ids::{DevId, EventName, PipeName, UserId};

/// Stripes of the publish lock: pipes that share one wait for each other's history writes only.
const STRIPES: usize = 1024;

/// The per-pipe publish lock of pipes that keep history, striped by hash.
pub struct PipeLocks {
    stripes: Box<[Mutex<()>]>,
}

impl Default for PipeLocks {
    fn default() -> Self {
        PipeLocks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }
}

impl PipeLocks {
    pub(crate) async fn lock(&self, dev_id: DevId, pipe: &PipeName) -> MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        dev_id.hash(&mut h);
        pipe.hash(&mut h);
        self.stripes[(h.finish() as usize) % STRIPES].lock().await
    }
}

/// Whether a pipe keeping `keep` entries numbers them durably: `trust_` pipes keep history without
/// settings, so they have no place for a position.
pub(crate) fn durable(pipe: &PipeName, keep: i64) -> bool {
    keep > 0 && !is_trust(pipe.as_str())
}

/// Joins `pipe` with positions (`subscription2`). A pipe that keeps history gets its epoch and top from
/// the database and, when the window cannot serve the client's position, its missed messages from the
/// history: all of them or none. Any other pipe is joined from memory alone.
pub(crate) async fn join(
    ctx: &Ctx,
    client: Client,
    outbox: &Outbox,
    pipe: &PipeName,
    position: Option<(&str, u64)>,
) -> Result<bool, CommandError> {
    let registry = ctx.hub.registry();
    // Joined from memory alone: the pipe keeps no durable position.
    let from_memory =
        || registry.subscribe_positioned(client.dev_id, pipe, outbox.clone(), position, None);
    let keep = ctx.history.get(ctx, client.dev_id, pipe).await?;
    if ctx.hub.clustered() {
        return join_cluster(ctx, client, outbox, pipe, position, durable(pipe, keep)).await;
    }
    if !durable(pipe, keep) {
        return Ok(from_memory());
    }
    let _order = ctx.pipe_locks.lock(client.dev_id, pipe).await;
    // Publishes handed to the storage writer before the lock was taken are committed and delivered
    // before the position is read: each is then in what is read (replayed) or reached the hub before
    // the join; none can be handed over until the join is done.
    ctx.storage.barrier().await?;
    // The settings change under this lock too: whether the pipe keeps history is read again below (a
    // length set to 0 meanwhile reads as no position).
    let fresh = crate::hub::new_epoch();
    let Some(stored) = ctx
        .storage
        .durable_position(client.dev_id, pipe.as_str(), &fresh)
        .await?
    else {
        // The settings went (or history was switched off) meanwhile.
        return Ok(from_memory());
    };
    let epoch: Arc<str> = stored.epoch.into();
    let top = stored.top.max(0) as u64;
    let mut replay = None;
    if let Some((their_epoch, offset)) = position {
        let missed = top.saturating_sub(offset);
        if *their_epoch == *epoch
            && offset < top
            && missed <= registry.replay_max()
            && !registry.window_covers(client.dev_id, pipe, &epoch, offset)
        {
            replay = stored_frames(ctx, client.dev_id, pipe, offset, missed).await?;
        }
    }
    Ok(registry.subscribe_positioned(
        client.dev_id,
        pipe,
        outbox.clone(),
        position,
        Some(Durable { epoch, top, replay }),
    ))
}

/// A cluster's positioned join: the numbering is Redis's (a durable pipe's offsets are still the database's,
/// carried through Redis), and the join takes its place in the pipe's delivery order on this node
/// (`crate::cluster`). When the shared window cannot serve the client's position, a durable pipe's missed
/// messages are read from the history.
async fn join_cluster(
    ctx: &Ctx,
    client: Client,
    outbox: &Outbox,
    pipe: &PipeName,
    position: Option<(&str, u64)>,
    durable: bool,
) -> Result<bool, CommandError> {
    let (start, stored) = match durable {
        true => {
            let fresh = crate::hub::new_epoch();
            let start = ctx
                .storage
                .durable_position(client.dev_id, pipe.as_str(), &fresh)
                .await?
                .map(|p| (Arc::<str>::from(p.epoch), p.top.max(0) as u64));
            let (ctx, dev_id, pipe) = (ctx.clone(), client.dev_id, pipe.clone());
            let stored: StoredReplay = Box::new(move |_epoch, offset, top| {
                Box::pin(async move {
                    let missed = top.saturating_sub(offset);
                    stored_frames(&ctx, dev_id, &pipe, offset, missed)
                        .await
                        .ok()
                        .flatten()
                })
            });
            (start, Some(stored))
        }
        false => (None, None),
    };
    let join = Join {
        dev_id: client.dev_id,
        pipe: pipe.clone(),
        outbox: outbox.clone(),
        position: position.map(|(e, o)| (e.to_string(), o)),
        durable: start,
        stored,
    };
    match ctx.hub.join(join) {
        Some(joining) => Ok(joining.await?),
        None => Err(CommandError::new(
            super::ErrorCode::Internal,
            "internal server error: no cluster join",
        )),
    }
}

/// The `missed` stored messages after `offset`, as they were sent live; `None` unless every one of them
/// is still stored (never a partial replay).
async fn stored_frames(
    ctx: &Ctx,
    dev_id: DevId,
    pipe: &PipeName,
    offset: u64,
    missed: u64,
) -> Result<Option<Vec<crate::hub::Frame>>, CommandError> {
    // The newest entries are usually in the history cache (kept by every publish): no query then.
    let newest = super::history::read(ctx, dev_id, pipe).await?;
    let from_cache: Vec<_> = newest
        .iter()
        .filter(|r| r.pos.is_some_and(|p| p > offset as i64))
        .cloned()
        .collect();
    let rows = if from_cache.len() as u64 == missed {
        from_cache
    } else {
        ctx.storage
            .history_after(dev_id, pipe.as_str(), offset as i64, missed as i64)
            .await?
    };
    let whole = rows.len() as u64 == missed
        && rows
            .iter()
            .zip(offset + 1..)
            .all(|(r, want)| r.pos == Some(want as i64));
    if !whole {
        return Ok(None);
    }
    let mut frames = Vec::with_capacity(rows.len());
    for r in rows {
        let Ok(event) = EventName::parse(&r.event) else {
            return Ok(None);
        };
        let sender = r.sender.map(|u| UserId(u as u64));
        let frame = outgoing::pipe_message(pipe, &event, &r.message, r.sent_at, sender);
        let pos = r.pos.unwrap_or_default() as u64;
        frames.push(frame.with_offset(pos).unwrap_or(frame));
    }
    Ok(Some(frames))
}
