//! The newest entries of recently read pipes, so that `pipe_log` and `SELECT ... FROM pipes_messages` do not
//! pull the same rows from the database again and again. A bounded least-recently-used map: a miss reads
//! the database. This node keeps it right on its own writes: appends follow the writer's commits, in
//! commit order (`history::record`); settings changes, deletes and the trust_ expiry invalidate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::history::READ_LIMIT;
use super::lru::Lru;
use super::Ctx;
use crate::browser::names::is_trust;
use crate::config::CacheConfig;
use crate::ids::{DevId, PipeName};
use crate::storage::{HistoryRow, StorageError};

type Key = (DevId, PipeName);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
    /// Which entry this is: a write updates the entry it saw when it was handed to the writer, not one
    /// loaded since (which may hold its row already).
    token: u64,
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

/// What the cache saw of a pipe when a write of it was handed to the writer: the entry its row may be
/// appended to once committed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(Option<u64>);

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

    /// Everything may have changed.
    pub fn clear(&self) {
        lock(&self.map).retain(|_| false);
    }

    /// `trust_` history expired.
    pub fn invalidate_trust(&self) {
        lock(&self.map).retain(|(_, p)| !is_trust(p.as_str()));
    }

    /// A write of the pipe is being handed to the writer: a read under way may miss its row, so it is not
    /// cached; an entry there now takes the row when the write commits (`committed`).
    pub(crate) fn will_write(&self, dev_id: DevId, pipe: &PipeName) -> Ticket {
        let key = (dev_id, pipe.clone());
        let mut map = lock(&self.map);
        match map.peek(&key) {
            Some(Slot::Ready(e)) => Ticket(Some(e.token)),
            Some(Slot::Loading(..)) => {
                map.remove(&key);
                Ticket(None)
            }
            None => Ticket(None),
        }
    }

    /// A write committed (`row` with its position): appended to the entry it was handed over with, the
    /// oldest dropped past `keep`. Writes of a pipe commit and come here in the order they were handed
    /// over, so the entry keeps the database's order; an entry loaded since the hand-over may hold the
    /// row already and goes.
    pub(crate) fn committed(
        &self,
        dev_id: DevId,
        pipe: &PipeName,
        ticket: Ticket,
        row: HistoryRow,
        keep: i64,
    ) {
        let key = (dev_id, pipe.clone());
        let mut map = lock(&self.map);
        let rows = match (map.peek(&key), ticket.0) {
            (Some(Slot::Ready(e)), Some(token)) if e.token == token => {
                // The database trims a numbered pipe by position (what is above `top - keep` stays,
                // fewer than `keep` after a deleted entry), any other by count: so does this.
                let floor = row.pos.map(|p| p - keep);
                let newer = |r: &HistoryRow| match (floor, r.pos) {
                    (Some(floor), Some(pos)) => pos > floor,
                    _ => true,
                };
                let kept: Vec<HistoryRow> = e
                    .rows
                    .iter()
                    .filter(|r| newer(r))
                    .cloned()
                    .chain([row])
                    .collect();
                let keep = usize::try_from(keep.min(READ_LIMIT)).unwrap_or(0);
                let skip = kept.len().saturating_sub(keep);
                let rows: Arc<[HistoryRow]> = kept.into_iter().skip(skip).collect();
                Some((rows, token))
            }
            (None, _) => None,
            _ => {
                map.remove(&key);
                None
            }
        };
        if let Some((rows, token)) = rows {
            let w = weight(pipe, &rows);
            map.insert(key, Slot::Ready(Entry { rows, token }), w);
        }
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
            };
            map.insert(key, Slot::Ready(entry), w);
        }
        Ok(rows)
    }
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

    #[test]
    fn a_committed_write_appends_and_trims_to_the_length() {
        let (cache, key) = cached(3);
        let t = cache.will_write(key.0, &key.1);
        cache.committed(key.0, &key.1, t, row(3), 3);
        assert_eq!(
            messages(&cache, &key),
            Some(vec!["m1".into(), "m2".into(), "m3".into()])
        );
        // Never more than a read returns.
        let (cache, key) = cached(READ_LIMIT as usize);
        let t = cache.will_write(key.0, &key.1);
        cache.committed(key.0, &key.1, t, row(500), 1000);
        let got = messages(&cache, &key).unwrap();
        assert_eq!(got.len(), READ_LIMIT as usize);
        assert_eq!((got[0].as_str(), got[98].as_str()), ("m1", "m500"));
    }

    #[test]
    fn a_numbered_pipe_is_trimmed_by_position_as_in_the_database() {
        let cache = HistoryCache::default();
        let key = (DevId(1), PipeName::parse("web_t").unwrap());
        // Positions 1 and 3 (2 was deleted), length 3: position 4 trims 1, leaving 3 and 4.
        let at = |p: i64| HistoryRow {
            pos: Some(p),
            ..row(p as usize)
        };
        let entry = Entry {
            token: cache.token(),
            rows: [at(1), at(3)].into_iter().collect(),
        };
        lock(&cache.map).insert(key.clone(), Slot::Ready(entry), 1);
        let t = cache.will_write(key.0, &key.1);
        cache.committed(key.0, &key.1, t, at(4), 3);
        assert_eq!(messages(&cache, &key), Some(vec!["m3".into(), "m4".into()]));
    }

    #[test]
    fn writes_in_flight_together_append_in_commit_order() {
        let (cache, key) = cached(2);
        let a = cache.will_write(key.0, &key.1);
        let b = cache.will_write(key.0, &key.1);
        cache.committed(key.0, &key.1, a, row(2), 5);
        cache.committed(key.0, &key.1, b, row(3), 5);
        assert_eq!(
            messages(&cache, &key),
            Some(vec!["m0".into(), "m1".into(), "m2".into(), "m3".into()])
        );
    }

    #[test]
    fn an_entry_loaded_after_the_hand_over_is_evicted() {
        let (cache, key) = cached(2);
        let stale = cache.will_write(key.0, &key.1);
        // Read again meanwhile (it may already hold the row): a different entry.
        cache.invalidate(key.0, &key.1);
        let entry = Entry {
            token: cache.token(),
            rows: (0..3).map(row).collect(),
        };
        lock(&cache.map).insert(key.clone(), Slot::Ready(entry), 1);
        cache.committed(key.0, &key.1, stale, row(2), 5);
        assert_eq!(messages(&cache, &key), None);
    }

    #[test]
    fn a_write_drops_a_read_under_way() {
        let cache = HistoryCache::default();
        let key = (DevId(1), PipeName::parse("web_t").unwrap());
        lock(&cache.map).insert(
            key.clone(),
            Slot::Loading(cache.token(), Load::default()),
            1,
        );
        let t = cache.will_write(key.0, &key.1);
        assert_eq!(cache.pipes(), 0);
        cache.committed(key.0, &key.1, t, row(1), 5);
        assert_eq!(cache.pipes(), 0, "nothing cached that a read did not load");
    }
}
