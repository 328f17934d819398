//! Pipe history: which pipes keep it (cached, so the publish path need not query the database for every
//! message to learn that a pipe keeps none), and the newest entries of recently read pipes (cached, so
//! that `pipe_log` and `SELECT ... FROM pipes_messages` do not pull the same rows from the database again
//! and again). Both caches are bounded least-recently-used maps: a miss reads the database. This node
//! keeps them right on its own writes (publishes, pipes_settings, deletes, the trust_ expiry).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::lru::Lru;
use super::{CommandError, Ctx};
use crate::config::CacheConfig;
use crate::ids::{DevId, PipeName, UserId};
use crate::push::protocol::names::is_trust;
use crate::storage::{HistoryRow, StorageError};
use crate::tenant::unix_now;

/// Most history entries a read returns per pipe (reference: 99).
pub const READ_LIMIT: i64 = 99;

/// `trust_` pipes keep everything for a while, bounded by this count.
const TRUST_KEEP: i64 = 1000;

type Key = (DevId, PipeName);

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

/// A cached pipe: its newest entries, or a read of the database in progress.
enum Slot {
    /// A read started with this token; a write to the pipe meanwhile removes the slot, so that the read's
    /// (possibly older) rows are not cached.
    Loading(u64),
    Ready(Arc<[HistoryRow]>),
}

/// The newest entries (at most [`READ_LIMIT`]) of recently read pipes, per tenant, bounded in pipes and
/// bytes (`[cache] history_pipes`, `history_bytes`).
pub struct HistoryCache {
    map: Mutex<Lru<Key, Slot>>,
    next_token: AtomicU64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl Default for HistoryCache {
    fn default() -> Self {
        HistoryCache::new(&CacheConfig::default())
    }
}

/// What one cached pipe costs: its rows' text and the fixed parts of each row and of the entry.
fn weight(pipe: &PipeName, rows: &[HistoryRow]) -> usize {
    const ENTRY: usize = 128;
    const ROW: usize = std::mem::size_of::<HistoryRow>();
    ENTRY
        + pipe.as_str().len()
        + rows
            .iter()
            .map(|r| ROW + r.pipe.len() + r.uuid.len() + r.event.len() + r.message.len())
            .sum::<usize>()
}

impl HistoryCache {
    pub fn new(config: &CacheConfig) -> Self {
        HistoryCache {
            map: Mutex::new(Lru::new(config.history_pipes, config.history_bytes)),
            next_token: AtomicU64::new(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Pipes cached (or being read) now.
    pub fn pipes(&self) -> usize {
        lock(&self.map).len()
    }

    /// Bytes the cached history takes, by [`weight`]; never more than `[cache] history_bytes`.
    pub fn bytes(&self) -> usize {
        lock(&self.map).weight()
    }

    /// The pipe changed: its cached entries (or a read in progress) no longer count.
    pub fn invalidate(&self, dev_id: DevId, pipe: &PipeName) {
        lock(&self.map).remove(&(dev_id, pipe.clone()));
    }

    /// Some entry of the tenant changed and which pipe it was is not known.
    pub fn invalidate_tenant(&self, dev_id: DevId) {
        lock(&self.map).retain(|(d, _)| *d != dev_id);
    }

    /// `trust_` history expired.
    pub fn invalidate_trust(&self) {
        lock(&self.map).retain(|(_, p)| !is_trust(p.as_str()));
    }

    /// The pipe's newest entries, oldest first, as `Storage::history(.., READ_LIMIT)` returns them.
    pub async fn read(
        &self,
        ctx: &Ctx,
        dev_id: DevId,
        pipe: &PipeName,
    ) -> Result<Arc<[HistoryRow]>, StorageError> {
        let key = (dev_id, pipe.clone());
        let token = {
            let mut map = lock(&self.map);
            match map.get(&key) {
                Some(Slot::Ready(rows)) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(rows.clone());
                }
                // Another read is under way (or was cancelled): this one takes over the slot, so that a
                // read that never finishes cannot keep the pipe out of the cache.
                Some(Slot::Loading(_)) | None => {
                    let token = self.next_token.fetch_add(1, Ordering::Relaxed);
                    map.insert(key.clone(), Slot::Loading(token), weight(pipe, &[]));
                    token
                }
            }
        };
        self.misses.fetch_add(1, Ordering::Relaxed);
        let rows: Arc<[HistoryRow]> = ctx
            .storage
            .history(dev_id, pipe.as_str(), READ_LIMIT)
            .await?
            .into();
        let mut map = lock(&self.map);
        if matches!(map.peek(&key), Some(Slot::Loading(t)) if *t == token) {
            map.insert(key, Slot::Ready(rows.clone()), weight(pipe, &rows));
        }
        Ok(rows)
    }
}

/// What `/metrics` shows of both caches.
pub fn cache_sizes(ctx: &Ctx) -> crate::metrics::CacheSizes {
    let c = &ctx.history_cache;
    crate::metrics::CacheSizes {
        history_lengths: ctx.history.len(),
        history_pipes: c.pipes(),
        history_bytes: c.bytes(),
        history_hits: c.hits.load(Ordering::Relaxed),
        history_misses: c.misses.load(Ordering::Relaxed),
    }
}

/// A pipe's newest history entries (at most [`READ_LIMIT`], oldest first), served from the cache. Every
/// front door that reads history goes through here.
pub async fn read(
    ctx: &Ctx,
    dev_id: DevId,
    pipe: &PipeName,
) -> Result<Arc<[HistoryRow]>, StorageError> {
    ctx.history_cache.read(ctx, dev_id, pipe).await
}

/// Stores a published message when its pipe keeps history (or is a `trust_` pipe).
pub async fn record(
    ctx: &Ctx,
    dev_id: DevId,
    pipe: &PipeName,
    event: &str,
    message: &str,
    sender: Option<UserId>,
) -> Result<(), CommandError> {
    let keep = kept(ctx, dev_id, pipe).await?;
    if keep <= 0 {
        return Ok(());
    }
    let row = HistoryRow {
        pipe: pipe.as_str().to_string(),
        uuid: uuid::Uuid::now_v7().to_string(),
        event: event.to_string(),
        message: message.to_string(),
        user_id: sender.map_or(0, |u| u.0 as i64),
        sent_at: unix_now(),
    };
    // The quota is checked on what the write changes after its trim, inside its transaction.
    let written = ctx
        .storage
        .append_history(dev_id, &row, keep, |change| {
            super::quota::history_change(ctx, dev_id, change)
        })
        .await;
    // Even a failed write may have reached the database.
    ctx.history_cache.invalidate(dev_id, pipe);
    written?;
    Ok(())
}

/// How many entries the pipe keeps (0: a message published to it is not stored), as `record` decides.
pub async fn kept(ctx: &Ctx, dev_id: DevId, pipe: &PipeName) -> Result<i64, CommandError> {
    if is_trust(pipe.as_str()) {
        return Ok(TRUST_KEEP);
    }
    ctx.history.get(ctx, dev_id, pipe).await
}
