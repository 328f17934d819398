//! Running totals of what each tenant keeps stored (history, queued private messages, users_data,
//! revoked_tokens), so that quotas are checked without a COUNT or SUM per write.
//!
//! Why running totals and not a cached query: a publish must cost no extra round trip, and a cache refreshed
//! now and then is wrong exactly when a tenant fills up fast. The totals are computed once at start from the
//! tables (one grouped scan per table, so they are right after any restart or crash), then every write of
//! `Storage` that adds or removes such rows adjusts them from what the statement really did (rows affected,
//! or `RETURNING` for deletes that span users or tenants). Only this process's writes are seen: a second
//! node writing the same database would make them drift until its restart (one node is all there is today).
//!
//! A writer first takes a `Reservation` for what it is about to add: it counts as used until the write is
//! done, so concurrent writers of one tenant cannot together pass a quota each of them checked alone. The
//! lock is a short std mutex, never held across an await.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::ids::{DevId, UserId};

/// What one tenant keeps stored, or a change of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredUsage {
    /// Bytes of the message texts kept in pipe history.
    pub history_bytes: i64,
    pub history_rows: i64,
    /// Private messages waiting in users_messages (all users of the tenant).
    pub queued_messages: i64,
    pub users_data: i64,
    pub revoked_tokens: i64,
}

impl StoredUsage {
    fn add(&mut self, d: &StoredUsage) {
        self.history_bytes += d.history_bytes;
        self.history_rows += d.history_rows;
        self.queued_messages += d.queued_messages;
        self.users_data += d.users_data;
        self.revoked_tokens += d.revoked_tokens;
    }

    fn sub(&mut self, d: &StoredUsage) {
        self.history_bytes -= d.history_bytes;
        self.history_rows -= d.history_rows;
        self.queued_messages -= d.queued_messages;
        self.users_data -= d.users_data;
        self.revoked_tokens -= d.revoked_tokens;
    }

    fn is_zero(&self) -> bool {
        *self == StoredUsage::default()
    }
}

#[derive(Default)]
struct Inner {
    stored: HashMap<DevId, StoredUsage>,
    queued_per_user: HashMap<(DevId, UserId), i64>,
    /// Reserved by writes in flight.
    pending: HashMap<DevId, StoredUsage>,
    pending_per_user: HashMap<(DevId, UserId), i64>,
}

/// Entries at zero are removed, so the maps hold only tenants and users that store something.
fn adjust<K: std::hash::Hash + Eq + Copy>(map: &mut HashMap<K, i64>, key: K, by: i64) {
    let v = map.entry(key).or_insert(0);
    *v += by;
    if *v <= 0 {
        map.remove(&key);
    }
}

fn adjust_usage(map: &mut HashMap<DevId, StoredUsage>, dev_id: DevId, d: &StoredUsage, add: bool) {
    let v = map.entry(dev_id).or_default();
    if add {
        v.add(d);
    } else {
        v.sub(d);
    }
    if v.is_zero() {
        map.remove(&dev_id);
    }
}

#[derive(Default)]
pub struct Totals {
    inner: Mutex<Inner>,
}

/// What a tenant has stored and reserved, as a quota check sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InUse {
    pub tenant: StoredUsage,
    /// The queue of the user named in the reservation (0 when none is named).
    pub user_queue: i64,
}

impl Totals {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the tenant keeps stored now (without writes in flight).
    pub fn stored(&self, dev_id: DevId) -> StoredUsage {
        self.lock().stored.get(&dev_id).copied().unwrap_or_default()
    }

    /// Queued private messages of one user.
    pub fn queued_for(&self, dev_id: DevId, user: UserId) -> i64 {
        self.lock()
            .queued_per_user
            .get(&(dev_id, user))
            .copied()
            .unwrap_or(0)
    }

    /// Replaces everything with figures read from the tables (at start).
    pub(super) fn reset(
        &self,
        stored: HashMap<DevId, StoredUsage>,
        queued_per_user: HashMap<(DevId, UserId), i64>,
    ) {
        let mut inner = self.lock();
        inner.stored = stored;
        inner.queued_per_user = queued_per_user;
    }

    /// A write that happened: `d` added (positive) or removed (negative) for the tenant. Queued messages go
    /// through `apply_queued`, which also knows the user.
    pub(super) fn apply(&self, dev_id: DevId, d: StoredUsage) {
        if d.is_zero() {
            return;
        }
        adjust_usage(&mut self.lock().stored, dev_id, &d, true);
    }

    pub(super) fn apply_queued(&self, dev_id: DevId, user: UserId, n: i64) {
        if n == 0 {
            return;
        }
        let mut inner = self.lock();
        adjust(&mut inner.queued_per_user, (dev_id, user), n);
        adjust_usage(
            &mut inner.stored,
            dev_id,
            &StoredUsage {
                queued_messages: n,
                ..StoredUsage::default()
            },
            true,
        );
    }

    /// Reserves `want` for the tenant (and `user`'s queue, `want.queued_messages` of it) when `check`
    /// accepts what would then be in use; the reservation lasts until the returned value is dropped.
    pub fn reserve<E>(
        self: &Arc<Self>,
        dev_id: DevId,
        user: Option<UserId>,
        want: StoredUsage,
        check: impl FnOnce(&InUse) -> Result<(), E>,
    ) -> Result<Reservation, E> {
        let mut inner = self.lock();
        let mut tenant = inner.stored.get(&dev_id).copied().unwrap_or_default();
        if let Some(p) = inner.pending.get(&dev_id) {
            tenant.add(p);
        }
        tenant.add(&want);
        let user_queue = user.map_or(0, |u| {
            let key = (dev_id, u);
            inner.queued_per_user.get(&key).copied().unwrap_or(0)
                + inner.pending_per_user.get(&key).copied().unwrap_or(0)
                + want.queued_messages
        });
        check(&InUse { tenant, user_queue })?;
        adjust_usage(&mut inner.pending, dev_id, &want, true);
        if let Some(u) = user {
            adjust(
                &mut inner.pending_per_user,
                (dev_id, u),
                want.queued_messages,
            );
        }
        Ok(Reservation {
            totals: self.clone(),
            dev_id,
            user,
            want,
        })
    }
}

/// Room held for a write in flight; given back when dropped (the write, if done, is in the totals by then).
pub struct Reservation {
    totals: Arc<Totals>,
    dev_id: DevId,
    user: Option<UserId>,
    want: StoredUsage,
}

impl Reservation {
    /// Moves `part` of this room into a reservation of its own (for one row of a statement that reserved
    /// for all its rows), or None when less than `part` is held for `user`. What is reserved in all does
    /// not change, so no other writer can take the room in between.
    pub fn split(&mut self, user: Option<UserId>, part: &StoredUsage) -> Option<Reservation> {
        let w = &self.want;
        let covers = self.user == user
            && w.history_bytes >= part.history_bytes
            && w.history_rows >= part.history_rows
            && w.queued_messages >= part.queued_messages
            && w.users_data >= part.users_data
            && w.revoked_tokens >= part.revoked_tokens;
        if !covers {
            return None;
        }
        self.want.sub(part);
        Some(Reservation {
            totals: self.totals.clone(),
            dev_id: self.dev_id,
            user,
            want: *part,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut inner = self.totals.lock();
        adjust_usage(&mut inner.pending, self.dev_id, &self.want, false);
        if let Some(u) = self.user {
            adjust(
                &mut inner.pending_per_user,
                (self.dev_id, u),
                -self.want.queued_messages,
            );
        }
    }
}

/// Stores one table's row count in a tenant's usage.
type SetCount = fn(&mut StoredUsage, i64);

/// The size a history entry counts for (the same expression wherever history rows are counted).
pub(super) const ENTRY_BYTES: &str = "CAST(octet_length(message) AS BIGINT)";

impl super::Storage {
    /// Computes the totals from the tables: one grouped scan of each, at start.
    pub async fn load_totals(&self) -> Result<(), super::StorageError> {
        use super::get;
        let dev = |r: &sqlx::any::AnyRow| -> Result<DevId, super::StorageError> {
            Ok(DevId(get::<i64>(r, "dev_id")? as u64))
        };
        let mut stored: HashMap<DevId, StoredUsage> = HashMap::new();
        let history = sqlx::query(&format!(
            "SELECT dev_id, COUNT(*) AS n, CAST(SUM({ENTRY_BYTES}) AS BIGINT) AS bytes \
             FROM pipe_history GROUP BY dev_id"
        ))
        .fetch_all(self.pool())
        .await?;
        for r in &history {
            let e = stored.entry(dev(r)?).or_default();
            e.history_rows = get(r, "n")?;
            e.history_bytes = get::<Option<i64>>(r, "bytes")?.unwrap_or(0);
        }
        let mut queued_per_user = HashMap::new();
        let queued = sqlx::query(
            "SELECT dev_id, user_id, COUNT(*) AS n FROM user_messages GROUP BY dev_id, user_id",
        )
        .fetch_all(self.pool())
        .await?;
        for r in &queued {
            let (d, n) = (dev(r)?, get::<i64>(r, "n")?);
            stored.entry(d).or_default().queued_messages += n;
            queued_per_user.insert((d, UserId(get::<i64>(r, "user_id")? as u64)), n);
        }
        let counts: [(&str, SetCount); 2] = [
            ("users_data", |e, n| e.users_data = n),
            ("revoked_tokens", |e, n| e.revoked_tokens = n),
        ];
        for (table, set) in counts {
            let rows = sqlx::query(&format!(
                "SELECT dev_id, COUNT(*) AS n FROM {table} GROUP BY dev_id"
            ))
            .fetch_all(self.pool())
            .await?;
            for r in &rows {
                set(stored.entry(dev(r)?).or_default(), get(r, "n")?);
            }
        }
        self.totals.reset(stored, queued_per_user);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: i64) -> StoredUsage {
        StoredUsage {
            history_rows: n,
            history_bytes: 10 * n,
            ..StoredUsage::default()
        }
    }

    fn at_most(max_rows: i64) -> impl FnOnce(&InUse) -> Result<(), i64> {
        move |u: &InUse| {
            if u.tenant.history_rows > max_rows {
                Err(u.tenant.history_rows)
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn a_reservation_counts_until_dropped_and_writes_count_after() {
        let t = Arc::new(Totals::default());
        let d = DevId(1);
        let r = t.reserve(d, None, rows(3), at_most(4)).unwrap();
        assert_eq!(
            t.reserve(d, None, rows(2), at_most(4)).err(),
            Some(5),
            "the first write is still in flight"
        );
        t.apply(d, rows(3));
        drop(r);
        assert_eq!(t.stored(d), rows(3));
        t.reserve(d, None, rows(1), at_most(4)).unwrap();
        assert!(t.reserve(d, None, rows(2), at_most(4)).is_err());
        t.reserve(DevId(2), None, rows(4), at_most(4))
            .expect("another tenant has its own totals");
        t.apply(d, rows(-3));
        assert!(t.lock().stored.is_empty(), "nothing left, nothing kept");
        assert!(t.lock().pending.is_empty());
    }

    #[test]
    fn a_split_keeps_the_room_reserved_until_each_part_is_dropped() {
        let t = Arc::new(Totals::default());
        let d = DevId(1);
        let mut whole = t.reserve(d, None, rows(3), at_most(3)).unwrap();
        let one = whole.split(None, &rows(1)).expect("covered");
        assert!(
            whole.split(Some(UserId(1)), &rows(1)).is_none(),
            "not this user's room"
        );
        assert!(whole.split(None, &rows(3)).is_none(), "only two left");
        assert!(
            t.reserve(d, None, rows(1), at_most(3)).is_err(),
            "all three still held"
        );
        t.apply(d, rows(1));
        drop(one);
        drop(whole);
        assert_eq!(t.lock().pending.get(&d), None);
        assert!(t.reserve(d, None, rows(2), at_most(3)).is_ok());
    }

    #[test]
    fn queues_are_counted_per_user_and_per_tenant() {
        let t = Arc::new(Totals::default());
        let (d, a, b) = (DevId(1), UserId(1), UserId(2));
        t.apply_queued(d, a, 2);
        t.apply_queued(d, b, 1);
        assert_eq!(t.queued_for(d, a), 2);
        assert_eq!(t.stored(d).queued_messages, 3);
        let one = StoredUsage {
            queued_messages: 1,
            ..StoredUsage::default()
        };
        let seen = std::cell::Cell::new(InUse::default());
        let _r = t
            .reserve(d, Some(a), one, |u| {
                seen.set(*u);
                Ok::<(), ()>(())
            })
            .unwrap();
        assert_eq!(seen.get().user_queue, 3);
        assert_eq!(seen.get().tenant.queued_messages, 4);
        t.apply_queued(d, a, -2);
        t.apply_queued(d, b, -1);
        assert_eq!(t.queued_for(d, a), 0);
        assert!(t.lock().queued_per_user.is_empty());
    }
}
