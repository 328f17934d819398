//! Pipe history: which pipes keep it (cached, so the publish path need not query the database for every
//! message to learn that a pipe keeps none), storing a published message (handed to the storage writer,
//! delivered once committed) and reading the newest entries (from `history_cache`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::future::OptionFuture;
use tokio::sync::oneshot;

use super::history_cache::Ticket;
use super::lru::Lru;
use super::pipes_messages::{Position, Published};
use super::{CommandError, Ctx};
use crate::browser::frames::{self, Frame};
use crate::browser::names::is_trust;
use crate::config::CacheConfig;
use crate::hub::{Publication, Sent, Stale};
use crate::ids::{DevId, PipeName};
use crate::storage::{
    DurablePosition, HistoryCommit, HistoryRow, HistoryWrite, Reservation, StorageError,
    StoredUsage,
};

/// Most history entries a read returns per pipe (reference: 99).
pub(crate) const READ_LIMIT: i64 = 99;

/// `trust_` pipes keep everything for a while, bounded by this count.
const TRUST_KEEP: i64 = 1000;

type Key = (DevId, PipeName);

pub(crate) use super::history_cache::HistoryCache;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The history length of recently published-to pipes.
pub struct HistoryLengths {
    map: Mutex<Lru<Key, i64>>,
}

impl Default for HistoryLengths {
    fn default() -> Self {
        HistoryLengths::new(&CacheConfig::default())
    }
}

impl HistoryLengths {
    pub fn new(config: &CacheConfig) -> Self {
        HistoryLengths {
            map: Mutex::new(Lru::new(config.history_lengths_entries, usize::MAX)),
        }
    }

    /// How many pipes' lengths are remembered (bounded by `[cache] history_lengths_entries`).
    pub fn len(&self) -> usize {
        lock(&self.map).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn set(&self, dev_id: DevId, pipe: &PipeName, length: i64) {
        lock(&self.map).insert((dev_id, pipe.clone()), length, 0);
    }

    /// Another node changed the pipe's settings: read them again.
    pub fn forget(&self, dev_id: DevId, pipe: &PipeName) {
        lock(&self.map).remove(&(dev_id, pipe.clone()));
    }

    pub fn clear(&self) {
        lock(&self.map).retain(|_| false);
    }

    /// How many entries the pipe keeps: its setting, or 0.
    pub async fn get(
        &self,
        ctx: &Ctx,
        dev_id: DevId,
        pipe: &PipeName,
    ) -> Result<i64, CommandError> {
        if let Some(n) = lock(&self.map).get(&(dev_id, pipe.clone())) {
            return Ok(*n);
        }
        let n = ctx
            .storage
            .pipe_length(dev_id, pipe.as_str())
            .await?
            .unwrap_or(0);
        self.set(dev_id, pipe, n);
        Ok(n)
    }
}

/// The sizes of the bounded caches in front of storage (appended to `/metrics`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CacheSizes {
    pub history_lengths: usize,
    pub history_pipes: usize,
    pub history_bytes: usize,
    pub history_hits: u64,
    pub history_misses: u64,
    /// Bytes held by the pipes' recovery windows (`[recovery] window_bytes`).
    pub window_bytes: usize,
    /// Bytes held by the users' private-message windows.
    pub private_window_bytes: usize,
    /// The storage writer: transactions, writes in them, failed transactions, users_time not recorded.
    pub writer_batches: u64,
    pub writer_writes: u64,
    pub writer_failed: u64,
    pub users_time_dropped: u64,
}

/// What `/metrics` shows of both caches.
pub(crate) fn cache_sizes(ctx: &Ctx) -> CacheSizes {
    let c = &ctx.history_cache;
    let w = ctx.storage.writer_stats();
    CacheSizes {
        history_lengths: ctx.history.len(),
        history_pipes: c.pipes(),
        history_bytes: c.bytes(),
        history_hits: c.hits.load(Ordering::Relaxed),
        history_misses: c.misses.load(Ordering::Relaxed),
        window_bytes: ctx.hub.registry().window_bytes(),
        private_window_bytes: ctx.hub.registry().private_window_bytes(),
        writer_batches: w.batches.load(Ordering::Relaxed),
        writer_writes: w.writes.load(Ordering::Relaxed),
        writer_failed: w.failed.load(Ordering::Relaxed),
        users_time_dropped: ctx.storage.users_time_dropped(),
    }
}

/// A pipe's newest history entries (at most [`READ_LIMIT`], oldest first), served from the cache. Every
/// front door that reads history goes through here.
pub(crate) async fn read(
    ctx: &Ctx,
    dev_id: DevId,
    pipe: &PipeName,
) -> Result<Arc<[HistoryRow]>, StorageError> {
    ctx.history_cache.read(ctx, dev_id, pipe).await
}

/// A `pipe_log` answer: the pipe's cached entries, each made a frame only when the connection takes it, so
/// that a client that does not read a long history costs its connection no copy of it.
pub(crate) struct Log {
    rows: Arc<[HistoryRow]>,
    next: usize,
    /// The connection asked positions for the pipe (`subscription2`): entries that have one carry it.
    offsets: bool,
}

impl Log {
    pub(crate) fn new(rows: Arc<[HistoryRow]>, offsets: bool) -> Log {
        Log {
            rows,
            next: 0,
            offsets,
        }
    }
}

impl Iterator for Log {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        let h = self.rows.get(self.next)?;
        self.next += 1;
        let frame =
            frames::history_entry(&h.pipe, &h.event, &h.message, h.sent_at, h.user_id as u64);
        // Rows stored before positions existed were numbered 0 and below: no offset for them.
        Some(match h.pos {
            Some(pos) if self.offsets && pos > 0 => frame.with_offset(pos as u64),
            _ => frame,
        })
    }
}

/// What a publish to a pipe that keeps history waits for: the number of local receivers (and the position
/// it took) once its entry is committed and it is delivered, or why it was not stored (and not delivered).
pub(crate) type Delivered = oneshot::Receiver<Result<Published, CommandError>>;

/// Stores `row`, a message published to a pipe that keeps `keep` entries (from [`kept`]; a `trust_` pipe
/// keeps history too), and delivers `publication` once it is committed: hands it to the storage writer,
/// which commits it with whatever else is waiting. A pipe with settings numbers it (see `positions`): the
/// caller holds the pipe's publish lock while this hands it over, so that the writer's order, which is
/// the order of offsets and of delivery, is the order of the lock.
pub(crate) async fn record(
    ctx: &Ctx,
    dev_id: DevId,
    keep: i64,
    row: HistoryRow,
    publication: Publication,
) -> Result<Delivered, CommandError> {
    let pipe = publication.pipe.clone();
    let epoch = super::positions::durable(&pipe, keep).then(crate::hub::new_epoch);
    let (reply, delivered) = oneshot::channel();
    let commit = Commit {
        ctx: ctx.clone(),
        ticket: ctx.history_cache.will_write(dev_id, &pipe),
        keep,
        held: None,
        refusal: None,
        publication,
        reply,
    };
    ctx.storage
        .append(HistoryWrite {
            dev_id,
            row,
            keep,
            epoch,
            commit: Box::new(commit),
        })
        .await?;
    Ok(delivered)
}

/// A publish's part in the writer's batch: its quota check (on what the write changes after its trim,
/// inside the batch's transaction), then, committed, the cache and the delivery, in commit order.
struct Commit {
    ctx: Ctx,
    ticket: Ticket,
    keep: i64,
    /// The room its change takes (and that change), held until the totals count it (they do before
    /// `finish`).
    held: Option<(Reservation, StoredUsage)>,
    refusal: Option<CommandError>,
    publication: Publication,
    reply: oneshot::Sender<Result<Published, CommandError>>,
}

impl HistoryCommit for Commit {
    fn admit(&mut self, change: StoredUsage) -> bool {
        // Run again (another write of the batch was refused): the room already taken is kept when it
        // covers the change, rather than given back where another writer could take it first.
        if let Some((_, had)) = &self.held {
            if had.history_rows >= change.history_rows && had.history_bytes >= change.history_bytes
            {
                return true;
            }
        }
        self.held = None;
        let dev_id = self.publication.dev_id;
        match super::quota::history_change(&self.ctx, dev_id, change) {
            Ok(room) => {
                self.held = Some((room, change));
                self.refusal = None;
                true
            }
            Err(e) => {
                self.refusal = Some(e);
                false
            }
        }
    }

    fn finish(
        self: Box<Self>,
        row: HistoryRow,
        result: Result<Option<DurablePosition>, StorageError>,
    ) {
        let Commit {
            ctx,
            ticket,
            keep,
            held,
            refusal,
            mut publication,
            reply,
        } = *self;
        let (dev_id, pipe) = (publication.dev_id, publication.pipe.clone());
        let answer = match (result, refusal) {
            (Ok(position), _) => {
                let row = HistoryRow {
                    pos: position.as_ref().map(|p| p.top),
                    ..row
                };
                ctx.history_cache
                    .committed(dev_id, &pipe, ticket, row, keep);
                // A cluster: the other nodes' caches forget the pipe's history before the answer.
                let told = ctx.hub.stale(Stale::History(dev_id, pipe.clone()));
                publication.position = position.map(|p| (p.epoch.into(), p.top as u64));
                let position = publication
                    .position
                    .clone()
                    .map(|(epoch, offset)| Position { epoch, offset });
                match (ctx.hub.publish_sent(publication), told) {
                    (Sent::Delivered(delivered), None) => Ok(Published {
                        delivered,
                        position,
                    }),
                    (sent, told) => {
                        // A cluster: the answer once Redis took it (and the other nodes were told).
                        // Stored either way; a publish Redis refused is in the history, and its
                        // subscribers learn of it from the gap.
                        drop(held);
                        tokio::spawn(async move {
                            let told = async {
                                if let Some(Err(e)) = OptionFuture::from(told).await {
                                    tracing::warn!(error = %e, "cannot tell the other nodes what their caches must forget");
                                }
                            };
                            let taken = async {
                                match sent {
                                    Sent::Delivered(delivered) => Ok(delivered),
                                    Sent::Pending(taken) => taken.await,
                                }
                            };
                            let ((), taken) = tokio::join!(told, taken);
                            let answer = taken
                                .map(|delivered| Published {
                                    delivered,
                                    position,
                                })
                                .map_err(CommandError::from);
                            let _ = reply.send(answer);
                        });
                        return;
                    }
                }
            }
            (Err(_), Some(refused)) => Err(refused),
            (Err(e), None) => {
                // A failed commit may still have reached the database.
                ctx.history_cache.invalidate(dev_id, &pipe);
                let hub = ctx.hub.clone();
                let stale = Stale::History(dev_id, pipe.clone());
                tokio::spawn(async move { hub.tell_stale(stale).await });
                Err(e.into())
            }
        };
        drop(held);
        let _ = reply.send(answer);
    }
}

/// How many entries the pipe keeps (0: a message published to it is not stored), as `record` decides.
pub(crate) async fn kept(ctx: &Ctx, dev_id: DevId, pipe: &PipeName) -> Result<i64, CommandError> {
    if is_trust(pipe.as_str()) {
        return Ok(TRUST_KEEP);
    }
    ctx.history.get(ctx, dev_id, pipe).await
}
