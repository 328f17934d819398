//! Durable per-tenant usage. `Stats` counts published messages in memory (`TenantCounters::messages`); this
//! book adds what was counted since the last flush into `usage_daily` every `[dashboard] usage_flush_secs`
//! (5 s by default) and at shutdown, and answers "today" and "this month" as stored + not yet flushed, so the
//! figures are exact and survive a restart. A process killed without a clean stop (SIGKILL, OOM, power loss)
//! loses at most the counts of one interval; writing through would cost a database write per publish. Each
//! node flushes its own counts; the rows add up across nodes.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};

use crate::ids::DevId;
use crate::stats::Stats;
use crate::storage::{Storage, StorageError};
use crate::tenant::{unix_now, TenantError};

/// The default interval between flushes (`[dashboard] usage_flush_secs`).
pub const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// Messages published by a tenant, per UTC calendar period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Messages {
    pub today: u64,
    pub this_month: u64,
}

pub struct UsageBook {
    storage: Storage,
    stats: Stats,
    /// The in-memory counter's value at the last successful flush, per tenant. Held across the flush's
    /// writes so that a reader never sees a delta both stored and pending.
    flushed: Mutex<HashMap<DevId, u64>>,
    /// The most counting a killed process loses.
    flush_every: Duration,
}

impl UsageBook {
    pub fn new(storage: Storage, stats: Stats) -> UsageBook {
        UsageBook {
            storage,
            stats,
            flushed: Mutex::new(HashMap::new()),
            flush_every: FLUSH_EVERY,
        }
    }

    pub fn with_flush_every(mut self, every: Duration) -> UsageBook {
        self.flush_every = every;
        self
    }

    /// Writes every tenant's unflushed count into today's row. A failed write is retried next time.
    pub async fn flush(&self) -> Result<(), StorageError> {
        let mut flushed = self.flushed.lock().await;
        let today = day_number(unix_now());
        for (dev_id, counters) in self.stats.tenants() {
            let now = counters.messages.load(Ordering::Relaxed);
            let last = flushed.get(&dev_id).copied().unwrap_or(0);
            if now > last {
                self.storage.add_usage(dev_id, today, now - last).await?;
                flushed.insert(dev_id, now);
            }
        }
        Ok(())
    }

    pub async fn messages(&self, dev_id: DevId) -> Result<Messages, TenantError> {
        let flushed = self.flushed.lock().await;
        let today = day_number(unix_now());
        let stored_today = self.storage.usage_between(dev_id, today, today).await?;
        let stored_month = self
            .storage
            .usage_between(dev_id, first_day_of_month(today), today)
            .await?;
        let counted = self.stats.tenant(dev_id).messages.load(Ordering::Relaxed);
        let pending = counted.saturating_sub(flushed.get(&dev_id).copied().unwrap_or(0));
        Ok(Messages {
            today: stored_today + pending,
            this_month: stored_month + pending,
        })
    }

    /// Flushes every `flush_every` until shutdown; the final flush is the caller's, after the last publish.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.flush_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stop = tokio::select! {
                _ = tick.tick() => false,
                _ = shutdown.wait_for(|stop| *stop) => true,
            };
            if stop {
                return;
            }
            if let Err(e) = self.flush().await {
                tracing::warn!(error = %e, "could not store usage counters; will retry");
            }
        }
    }
}

/// Days since 1970-01-01 (UTC).
pub fn day_number(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(86_400)
}

/// The day number of the first day of the UTC month that contains `day` (civil calendar, H. Hinnant's
/// days-to-civil algorithm).
pub fn first_day_of_month(day: i64) -> i64 {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day_of_month = doy - (153 * mp + 2) / 5 + 1;
    day - (day_of_month - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_are_stored_once_and_read_as_stored_plus_pending() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("u.db").display());
        let storage = Storage::open(&url).await.unwrap();
        storage.migrate().await.unwrap();
        let stats = Stats::default();
        let book = UsageBook::new(storage.clone(), stats.clone());
        let dev = DevId(3);
        let counters = stats.tenant(dev);
        counters.messages.fetch_add(5, Ordering::Relaxed);
        let expect = |n| Messages {
            today: n,
            this_month: n,
        };
        assert_eq!(book.messages(dev).await.unwrap(), expect(5), "pending only");
        book.flush().await.unwrap();
        assert_eq!(
            book.messages(dev).await.unwrap(),
            expect(5),
            "stored, not twice"
        );
        book.flush().await.unwrap();
        counters.messages.fetch_add(2, Ordering::Relaxed);
        book.flush().await.unwrap();
        let today = day_number(unix_now());
        assert_eq!(storage.usage_between(dev, today, today).await.unwrap(), 7);
        // A new book (a restart) starts from what is stored.
        let fresh = UsageBook::new(storage.clone(), Stats::default());
        assert_eq!(fresh.messages(dev).await.unwrap(), expect(7));
        // Earlier days of the month count for the month only.
        storage
            .add_usage(dev, first_day_of_month(today) - 1, 100)
            .await
            .unwrap();
        if today != first_day_of_month(today) {
            storage.add_usage(dev, today - 1, 10).await.unwrap();
            assert_eq!(
                fresh.messages(dev).await.unwrap(),
                Messages {
                    today: 7,
                    this_month: 17
                }
            );
        }
        storage.close().await;
    }

    #[test]
    fn calendar() {
        // 2024-03-15 12:00 UTC is day 19797; March 1st 2024 is day 19783 (leap year).
        assert_eq!(day_number(1_710_504_000), 19_797);
        assert_eq!(first_day_of_month(19_797), 19_783);
        assert_eq!(first_day_of_month(19_783), 19_783);
        assert_eq!(first_day_of_month(0), 0);
        // 2024-02-29 is day 19782; its month began on day 19754.
        assert_eq!(first_day_of_month(19_782), 19_754);
        // 2023-12-31 (day 19722) belongs to December.
        assert_eq!(first_day_of_month(19_722), 19_692);
    }
}
