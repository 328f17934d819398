//! Pipe history: which pipes keep it (cached, so the publish path need not query the database for every
//! message to learn that a pipe keeps none), and the newest entries of recently read pipes (cached, so
//! that `pipe_log` and `SELECT ... FROM pipes_messages` do not pull the same rows from the database again
//! and again). Both caches are bounded least-recently-used maps: a miss reads the database. This node
//! keeps them right on its own writes (publishes, pipes_settings, deletes, the trust_ expiry).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::lru::Lru;
use super::{CommandError, Ctx};
use crate::browser::frames::{self, Frame};
use crate::browser::names::is_trust;
use crate::config::CacheConfig;
use crate::ids::{DevId, PipeName, UserId};
use crate::storage::{DurablePosition, HistoryRow, StorageError};
use crate::tenant::unix_now;

/// Most history entries a read returns per pipe (reference: 99).
pub(crate) const READ_LIMIT: i64 = 99;

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

/// What a history write returns: the offset it gave its row, if any (the cache keeps it with the row).
pub trait Placed {
    fn pos(&self) -> Option<i64>;
}

impl Placed for () {
    fn pos(&self) -> Option<i64> {
        None
    }
}

impl<R> Placed for (R, Option<DurablePosition>) {
    fn pos(&self) -> Option<i64> {
        self.1.as_ref().map(|p| p.top)
    }
}

/// A read of a pipe's history from the database, shared by every reader that misses while it runs.
/// `OnceCell` makes it cancel-safe: if the reader running it goes away, a waiting one takes it over.
type Load = Arc<tokio::sync::OnceCell<Arc<[HistoryRow]>>>;

/// A cached pipe: its newest entries, or a read of the database in progress.
enum Slot {
    /// A read started with this token; a write to the pipe meanwhile removes the slot, so that the read's
    /// (possibly older) rows are not cached. Readers that miss meanwhile wait for this read.
    Loading(u64, Load),
    Ready(Entry),
}

struct Entry {
    rows: Arc<[HistoryRow]>,
    /// Which entry this is: a write updates the entry it saw at its start, not one loaded since.
    token: u64,
    /// Writes of this node to the pipe under way: the entry takes a write's row only when that write was
    /// the only one, so the rows keep the database's order.
    writers: u32,
}

/// The newest entries (at most [`READ_LIMIT`]) of recently read pipes, per tenant, bounded in pipes and
/// bytes (`[cache] history_pipes`, `history_bytes`).
pub struct HistoryCache {
    map: Mutex<Lru<Key, Slot>>,
    next_token: AtomicU64,
    /// Reads served without reading the database (cached, or joined to a read under way).
    pub hits: AtomicU64,
    /// Reads of the database.
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

/// A write in progress: if it is dropped before [`HistoryCache::write`] finishes (the caller went away),
/// whether the row reached the database is not known, so the pipe's entry goes.
struct WriteGuard<'a> {
    cache: &'a HistoryCache,
    key: Option<Key>,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.cache.map).remove(&key);
        }
    }
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

    fn token(&self) -> u64 {
        self.next_token.fetch_add(1, Ordering::Relaxed)
    }

    /// Pipes cached (or being read) now.
    pub fn pipes(&self) -> usize {
        lock(&self.map).len()
    }

    /// Bytes the cached history takes, by `weight`; never more than `[cache] history_bytes`.
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

    /// Runs `append`, the database write of `row` to the pipe trimmed to `keep` entries, and brings the
    /// cached entry up to date: the row is appended and the oldest dropped past `keep` when the entry was
    /// there before the write and no other write ran beside it (the database then holds exactly that);
    /// otherwise, or when the write failed (it may still have reached the database), the entry goes.
    pub async fn write<T: Placed, E>(
        &self,
        dev_id: DevId,
        pipe: &PipeName,
        row: &HistoryRow,
        keep: i64,
        append: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let key = (dev_id, pipe.clone());
        let seen = {
            let mut map = lock(&self.map);
            match map.peek_mut(&key) {
                Some(Slot::Ready(e)) => {
                    e.writers += 1;
                    Some(e.token)
                }
                // A read under way may miss the row: it must not be cached.
                Some(Slot::Loading(..)) => {
                    map.remove(&key);
                    None
                }
                None => None,
            }
        };
        let mut guard = WriteGuard {
            cache: self,
            key: Some(key),
        };
        let written = append.await;
        let key = guard.key.take().expect("set above");
        let mut map = lock(&self.map);
        let rows = match (map.peek_mut(&key), seen, &written) {
            (Some(Slot::Ready(e)), Some(token), Ok(done)) if e.token == token && e.writers == 1 => {
                let keep = usize::try_from(keep.min(READ_LIMIT)).unwrap_or(0);
                let mut rows = Vec::with_capacity(keep);
                let skip = (e.rows.len() + 1).saturating_sub(keep);
                let row = HistoryRow {
                    pos: done.pos(),
                    ..row.clone()
                };
                rows.extend(e.rows.iter().cloned().chain([row]).skip(skip));
                Some(rows)
            }
            (None, _, _) => None,
            _ => {
                map.remove(&key);
                None
            }
        };
        if let Some(rows) = rows {
            let rows: Arc<[HistoryRow]> = rows.into();
            let w = weight(pipe, &rows);
            let token = self.token();
            let entry = Entry {
                rows,
                token,
                writers: 0,
            };
            map.insert(key, Slot::Ready(entry), w);
        }
        written
    }

    /// The pipe's newest entries, oldest first, as `Storage::history(.., READ_LIMIT)` returns them. Readers
    /// that miss while the database is being read for the pipe wait for that one read.
    pub async fn read(
        &self,
        ctx: &Ctx,
        dev_id: DevId,
        pipe: &PipeName,
    ) -> Result<Arc<[HistoryRow]>, StorageError> {
        let key = (dev_id, pipe.clone());
        let (token, load) = {
            let mut map = lock(&self.map);
            match map.get(&key) {
                Some(Slot::Ready(e)) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(e.rows.clone());
                }
                Some(Slot::Loading(token, load)) => (*token, load.clone()),
                None => {
                    let token = self.token();
                    let load = Load::default();
                    map.insert(
                        key.clone(),
                        Slot::Loading(token, load.clone()),
                        weight(pipe, &[]),
                    );
                    (token, load)
                }
            }
        };
        let mut read = false;
        let rows = load
            .get_or_try_init(|| {
                read = true;
                self.misses.fetch_add(1, Ordering::Relaxed);
                async {
                    let rows = ctx
                        .storage
                        .history(dev_id, pipe.as_str(), READ_LIMIT)
                        .await?;
                    Ok::<_, StorageError>(Arc::<[HistoryRow]>::from(rows))
                }
            })
            .await?
            .clone();
        if !read {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        // Whoever sees the read done caches it (its own reader may have gone away since).
        let mut map = lock(&self.map);
        if matches!(map.peek(&key), Some(Slot::Loading(t, _)) if *t == token) {
            let w = weight(pipe, &rows);
            let entry = Entry {
                rows: rows.clone(),
                token,
                writers: 0,
            };
            map.insert(key, Slot::Ready(entry), w);
        }
        Ok(rows)
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
}

/// What `/metrics` shows of both caches.
pub(crate) fn cache_sizes(ctx: &Ctx) -> CacheSizes {
    let c = &ctx.history_cache;
    CacheSizes {
        history_lengths: ctx.history.len(),
        history_pipes: c.pipes(),
        history_bytes: c.bytes(),
        history_hits: c.hits.load(Ordering::Relaxed),
        history_misses: c.misses.load(Ordering::Relaxed),
        window_bytes: ctx.hub.registry().window_bytes(),
        private_window_bytes: ctx.hub.registry().private_window_bytes(),
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
        Some(match h.pos {
            Some(pos) if self.offsets => frame.with_offset(pos as u64),
            _ => frame,
        })
    }
}

/// What storing a published message gave it: the time it carries, and its durable position when the
/// pipe numbers its history.
pub(crate) struct Recorded {
    pub sent_at: i64,
    pub position: Option<(Arc<str>, u64)>,
}

/// Stores a published message when its pipe keeps history (`keep`, from [`kept`]; a `trust_` pipe keeps
/// it too). A pipe with settings numbers it (see `positions`): the caller holds the pipe's publish lock.
pub(crate) async fn record(
    ctx: &Ctx,
    dev_id: DevId,
    pipe: &PipeName,
    keep: i64,
    event: &str,
    message: &str,
    sender: Option<UserId>,
) -> Result<Recorded, CommandError> {
    let sent_at = unix_now();
    if keep <= 0 {
        return Ok(Recorded {
            sent_at,
            position: None,
        });
    }
    let row = HistoryRow {
        pipe: pipe.as_str().to_string(),
        uuid: uuid::Uuid::now_v7().to_string(),
        event: event.to_string(),
        message: message.to_string(),
        user_id: sender.map_or(0, |u| u.0 as i64),
        sent_at,
        pos: None,
        sender: sender.map(|u| u.0 as i64),
    };
    let fresh = super::positions::durable(pipe, keep).then(crate::hub::new_epoch);
    // The quota is checked on what the write changes after its trim, inside its transaction; the cache
    // follows the write.
    let append = ctx
        .storage
        .append_history(dev_id, &row, keep, fresh.as_deref(), |change| {
            super::quota::history_change(ctx, dev_id, change)
        });
    let (_, position) = ctx
        .history_cache
        .write(dev_id, pipe, &row, keep, append)
        .await?;
    Ok(Recorded {
        sent_at,
        position: position.map(|p| (p.epoch.into(), p.top as u64)),
    })
}

/// How many entries the pipe keeps (0: a message published to it is not stored), as `record` decides.
pub(crate) async fn kept(ctx: &Ctx, dev_id: DevId, pipe: &PipeName) -> Result<i64, CommandError> {
    if is_trust(pipe.as_str()) {
        return Ok(TRUST_KEEP);
    }
    ctx.history.get(ctx, dev_id, pipe).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: usize) -> HistoryRow {
        HistoryRow {
            pipe: "web_t".into(),
            uuid: format!("u{i}"),
            event: "e".into(),
            message: format!("m{i}"),
            user_id: 0,
            sent_at: 0,
            pos: None,
            sender: None,
        }
    }

    /// A cache holding `n` entries of `web_t`, as a read of the database would have left it.
    fn cached(n: usize) -> (HistoryCache, Key) {
        let cache = HistoryCache::default();
        let key = (DevId(1), PipeName::parse("web_t").unwrap());
        let rows: Arc<[HistoryRow]> = (0..n).map(row).collect();
        let entry = Entry {
            token: cache.token(),
            rows,
            writers: 0,
        };
        lock(&cache.map).insert(key.clone(), Slot::Ready(entry), 1);
        (cache, key)
    }

    fn messages(cache: &HistoryCache, key: &Key) -> Option<Vec<String>> {
        match lock(&cache.map).peek(key) {
            Some(Slot::Ready(e)) => Some(e.rows.iter().map(|r| r.message.clone()).collect()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_lone_write_appends_and_trims_to_the_length() {
        let (cache, key) = cached(3);
        cache
            .write(key.0, &key.1, &row(3), 3, async {
                Ok::<(), StorageError>(())
            })
            .await
            .unwrap();
        assert_eq!(
            messages(&cache, &key),
            Some(vec!["m1".into(), "m2".into(), "m3".into()])
        );
        // Never more than a read returns.
        let (cache, key) = cached(READ_LIMIT as usize);
        cache
            .write(key.0, &key.1, &row(500), 1000, async {
                Ok::<(), StorageError>(())
            })
            .await
            .unwrap();
        let got = messages(&cache, &key).unwrap();
        assert_eq!(got.len(), READ_LIMIT as usize);
        assert_eq!((got[0].as_str(), got[98].as_str()), ("m1", "m500"));
    }

    #[tokio::test]
    async fn a_failed_write_evicts() {
        let (cache, key) = cached(2);
        let failed = cache
            .write(key.0, &key.1, &row(2), 3, async {
                Err::<(), _>(StorageError::Conflict("x"))
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(messages(&cache, &key), None);
    }

    #[tokio::test]
    async fn concurrent_writes_evict() {
        let (cache, key) = cached(2);
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let two = row(2);
        let slow = cache.write(key.0, &key.1, &two, 5, async {
            wait.await.ok();
            Ok::<(), StorageError>(())
        });
        let fast = async {
            // The slow write has begun (it is parked on `wait`) when this one runs, and this one ends first:
            // which of the two rows the database holds last is not known, so neither may be appended.
            tokio::task::yield_now().await;
            let three = row(3);
            cache
                .write(key.0, &key.1, &three, 5, async {
                    Ok::<(), StorageError>(())
                })
                .await
                .unwrap();
            let after = messages(&cache, &key);
            go.send(()).unwrap();
            after
        };
        let (slow, after_fast) = tokio::join!(slow, fast);
        slow.unwrap();
        assert_eq!(after_fast, None);
        assert_eq!(messages(&cache, &key), None);
    }

    #[tokio::test]
    async fn a_write_given_up_half_way_evicts() {
        let (cache, key) = cached(2);
        let two = row(2);
        let pending = cache.write(
            key.0,
            &key.1,
            &two,
            5,
            std::future::pending::<Result<(), StorageError>>(),
        );
        // Polled once (the write has begun), then dropped.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(1), pending).await;
        assert_eq!(messages(&cache, &key), None);
    }
}
