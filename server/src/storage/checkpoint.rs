//! SQLite's WAL checkpoints, run beside the writer instead of inside its commits.
//!
//! With `wal_autocheckpoint` on (SQLite's default), the commit that takes the WAL past 1,000 pages copies
//! them into the database file and syncs it, in place, on the writer: that one publish waits milliseconds
//! while the others wait behind it. Measured on this machine kind (history-1conn, SQLite): p50 0.05 ms and
//! p99 4-6 ms, the tail being those commits. So the writer's connection has auto-checkpoints off
//! (`session_sql`) and this task checkpoints on a pool connection (sqlx runs it on that connection's own
//! thread) every `EVERY` while writes come: PASSIVE, so it never blocks the writer or a reader, and copies
//! what no reader still needs. A reader that holds an old snapshot for long makes the WAL grow until it
//! lets go, as with auto-checkpoints.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyPool;

use super::WriterStats;

/// How often the WAL is checkpointed while the writer commits.
const EVERY: Duration = Duration::from_millis(100);

/// Checkpoints `pool`'s database while `stats` shows commits; ends once the pool is closed.
pub(super) fn spawn(pool: AnyPool, stats: Arc<WriterStats>) {
    tokio::spawn(async move {
        let mut seen = stats.batches.load(Ordering::Relaxed);
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                return;
            }
            let now = stats.batches.load(Ordering::Relaxed);
            if now == seen {
                continue;
            }
            seen = now;
            match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                Ok(_) => {}
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => tracing::warn!(error = %e, "checkpointing the SQLite WAL failed"),
            }
        }
    });
}
