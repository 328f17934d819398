//! A batch on SQLite, run in place: on the writer's own task, through SQLite's C API (`sqlite_raw.rs`), on a
//! connection sqlx opened and lent for good (`SqliteConnection::lock_handle`).
//!
//! Why not through sqlx: each sqlx call on SQLite is a hand-over to the connection's worker thread and back,
//! and each row of a script's result is one more wake-up. A perf profile of a history pipe published to on
//! one connection (release build, before this) spent ~45% of the server's samples in the kernel's
//! scheduling (`finish_task_switch`, futex and epoll wake-ups) between the tokio workers and
//! `sqlx-sqlite-worker`, against ~15% in SQLite itself: SQLite is a library, and a batch takes tens of
//! microseconds of it, less than the hops around it.
//!
//! So a batch blocks the thread it runs on for as long as SQLite takes. A large one (more than
//! `BLOCKING_WRITES` writes) on a multi-thread runtime runs in `tokio::task::block_in_place`, so the worker's
//! other tasks move to another thread meanwhile. The connection has no busy timeout (`BUSY_TIMEOUT`): while
//! another connection holds the write lock, SQLite answers SQLITE_BUSY at once and the writer waits between
//! tries on tokio's timer (`Backoff`, in `writer/task.rs` and `Opener::open`), never in SQLite's busy
//! handler, which would sleep on a tokio worker thread. (The pool's connections keep sqlx's 5 s timeout:
//! each runs on a thread of its own, `sqlx-sqlite-worker`, so their waits block no tokio worker.)

use std::str::FromStr;
use std::time::Duration;

use tokio::time::Instant;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Executor};
use tokio::runtime::{Handle, RuntimeFlavor};

use super::plan::{plan, Bind};
use super::{results, Batch, Results, Returned};
use crate::config::Synchronous;
use crate::storage::sqlite_raw::{Db, Row, Value};
use crate::storage::{session_sql, Backend, Columns, StorageError};

/// How long SQLite itself waits for a lock another connection holds, blocking the writer's thread: not at
/// all (see `Backoff`).
pub(in crate::storage) const BUSY_TIMEOUT: Duration = Duration::ZERO;

/// The waits between tries while another connection holds the lock: from 1 ms, doubling up to 50 ms (a
/// pool write or a checkpoint holds it for about a millisecond; another process may hold it for seconds),
/// on tokio's timer; given up after `patience`.
pub(in crate::storage) struct Backoff {
    began: Instant,
    patience: Duration,
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(1);
    const MOST: Duration = Duration::from_millis(50);

    pub(in crate::storage) fn new(patience: Duration) -> Backoff {
        Backoff {
            began: Instant::now(),
            patience,
            next: Self::FIRST,
        }
    }

    /// The next wait, or `None` once the patience is spent.
    pub(in crate::storage) fn next(&mut self) -> Option<Duration> {
        if self.began.elapsed() >= self.patience {
            return None;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MOST);
        Some(wait)
    }
}

/// How long the writer's connection is tried again while opening it meets a lock (SQLITE_BUSY: another
/// process holds the database, or recovers its WAL).
const OPEN_PATIENCE: Duration = Duration::from_secs(60);

/// SQLITE_BUSY and its extended codes, as sqlx reports them.
pub(in crate::storage) fn sqlx_busy(e: &StorageError) -> bool {
    match e {
        StorageError::Db(sqlx::Error::Database(d)) => d
            .code()
            .and_then(|c| c.parse::<u32>().ok())
            .is_some_and(|n| n & 0xff == 5),
        _ => false,
    }
}

/// Statements kept prepared on the writer's connection (the batches' shapes recur: one publish, one
/// enqueue, a few multi-row INSERTs).
pub(in crate::storage) const PREPARED: usize = 128;

/// Writes above which a batch runs in `block_in_place`.
const BLOCKING_WRITES: usize = 32;

/// Opens the writer's connection as the pool opens its own (the same URL, so the same sqlx options, and the
/// same `session_sql`), with no busy timeout.
pub(in crate::storage) struct Opener {
    options: SqliteConnectOptions,
    sync: Synchronous,
}

impl Opener {
    pub(in crate::storage) fn new(url: &str, sync: Synchronous) -> Result<Opener, StorageError> {
        let options = SqliteConnectOptions::from_str(url)?.busy_timeout(BUSY_TIMEOUT);
        Ok(Opener { options, sync })
    }

    /// Opens the connection, trying again on tokio's timer while the database is locked.
    pub(in crate::storage) async fn open(&self) -> Result<SqliteConnection, StorageError> {
        let mut backoff = Backoff::new(OPEN_PATIENCE);
        loop {
            match self.try_open().await {
                Err(e) if sqlx_busy(&e) => match backoff.next() {
                    Some(wait) => {
                        tracing::warn!(error = %e, "the database is locked; opening the writer's connection again");
                        tokio::time::sleep(wait).await;
                    }
                    None => return Err(e),
                },
                opened => return opened,
            }
        }
    }

    async fn try_open(&self) -> Result<SqliteConnection, StorageError> {
        let mut conn = self.options.connect().await?;
        for sql in session_sql(Backend::Sqlite, self.sync, true) {
            conn.execute(*sql).await?;
        }
        Ok(conn)
    }
}

impl Columns for Row<'_> {
    fn int(&self, col: &str) -> Result<i64, StorageError> {
        Ok(Row::int(self, col)?)
    }

    fn text(&self, col: &str) -> Result<String, StorageError> {
        Ok(Row::text(self, col)?)
    }
}

impl<'a> From<Bind<'a>> for Value<'a> {
    fn from(b: Bind<'a>) -> Value<'a> {
        match b {
            Bind::Int(v) => v.into(),
            Bind::OptInt(v) => v.into(),
            Bind::Str(v) => v.into(),
            Bind::OptStr(v) => v.into(),
        }
    }
}

/// Begins the batch's transaction (`BEGIN IMMEDIATE`: the write lock at once, or SQLITE_BUSY) and runs its
/// statements; with `commit` (every write was admitted before) it commits too. Otherwise the caller commits
/// (`finish`) or rolls back once it has seen what the statements did. After an error, the caller ends the
/// transaction (`abort`).
pub(in crate::storage) fn run(
    db: &mut Db<'_>,
    batch: &Batch<'_>,
    commit: bool,
) -> Result<Results, StorageError> {
    let writes = batch.appends.len()
        + batch.enqueues.len()
        + batch.put_backs.len()
        + batch.claims.len()
        + batch.claim_uuids.len()
        + batch.auths.len()
        + batch.times.len();
    let multi_thread =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if writes > BLOCKING_WRITES && multi_thread {
        tokio::task::block_in_place(|| run_now(db, batch, commit))
    } else {
        run_now(db, batch, commit)
    }
}

fn run_now(db: &mut Db<'_>, batch: &Batch<'_>, commit: bool) -> Result<Results, StorageError> {
    let plan = plan(batch, false);
    let mut rows: Vec<Vec<Returned>> = (0..plan.stmts.len()).map(|_| Vec::new()).collect();
    db.execute("BEGIN IMMEDIATE")?;
    for (s, out) in plan.stmts.iter().zip(rows.iter_mut()) {
        let mut q = db.prepare(&s.sql)?;
        for (n, b) in s.binds.iter().enumerate() {
            q.bind(n + 1, *b)?;
        }
        while let Some(row) = q.step()? {
            out.extend(Returned::read(s.yields, &row)?);
        }
    }
    if commit {
        db.execute("COMMIT")?;
    }
    Ok(results(batch, &plan, rows))
}

/// Ends the transaction `run` began.
pub(in crate::storage) fn finish(db: &mut Db<'_>, commit: bool) -> Result<(), StorageError> {
    db.execute(if commit { "COMMIT" } else { "ROLLBACK" })?;
    Ok(())
}

/// Undoes whatever a failed batch ran. `false`: the transaction could not be ended, the connection is not
/// to be used again.
pub(in crate::storage) fn abort(db: &mut Db<'_>) -> bool {
    if db.autocommit() {
        return true;
    }
    match db.execute("ROLLBACK") {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, "the writer's SQLite connection cannot roll back");
            db.autocommit()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{DevId, UserId};
    use crate::storage::{get, Storage};

    async fn storage() -> (tempfile::TempDir, String, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
        let s = Storage::open(&url).await.unwrap();
        s.migrate().await.unwrap();
        (dir, url, s)
    }

    #[tokio::test]
    async fn the_writer_connection_is_opened_as_the_pool_without_a_busy_timeout() {
        let (_dir, url, s) = storage().await;
        let mut conn = Opener::new(&url, Synchronous::Full)
            .unwrap()
            .open()
            .await
            .unwrap();
        for (pragma, want) in [
            ("PRAGMA synchronous", 2),
            ("PRAGMA foreign_keys", 1),
            ("PRAGMA busy_timeout", BUSY_TIMEOUT.as_millis() as i64),
        ] {
            let row = conn.fetch_one(pragma).await.unwrap();
            assert_eq!(sqlx::Row::get::<i64, _>(&row, 0), want, "{pragma}");
        }
        let row = conn.fetch_one("PRAGMA journal_mode").await.unwrap();
        assert_eq!(sqlx::Row::get::<String, _>(&row, 0), "wal");
        s.close().await;
    }

    #[test]
    fn lock_waits_double_up_to_a_cap_until_the_patience_is_spent() {
        let mut b = Backoff::new(Duration::from_secs(60));
        let waits: Vec<u64> = (0..8)
            .map(|_| b.next().unwrap().as_millis() as u64)
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 50, 50]);
        assert_eq!(Backoff::new(Duration::ZERO).next(), None);
    }

    /// A lock held elsewhere while the writer's connection opens (here: a rollback-journal database held
    /// EXCLUSIVE, which its switch to WAL needs) is waited out on tokio's timer, not failed.
    #[tokio::test]
    async fn opening_the_writer_connection_waits_out_a_lock() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("busy.db").display());
        let mut holder = SqliteConnectOptions::from_str(&url)
            .unwrap()
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Delete)
            .connect()
            .await
            .unwrap();
        for sql in [
            "CREATE TABLE t (x INTEGER)",
            "BEGIN EXCLUSIVE",
            "INSERT INTO t VALUES (1)",
        ] {
            holder.execute(sql).await.unwrap();
        }
        let opener = Opener::new(&url, Synchronous::Normal).unwrap();
        let opening = tokio::spawn(async move { opener.open().await });
        // Not an assertion on time: without the retry the open fails at once, with SQLITE_BUSY.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !opening.is_finished(),
            "the open gave up while the lock was held"
        );
        holder.execute("ROLLBACK").await.unwrap();
        let mut conn = opening.await.unwrap().expect("opened once the lock went");
        let row = conn.fetch_one("PRAGMA journal_mode").await.unwrap();
        assert_eq!(sqlx::Row::get::<String, _>(&row, 0), "wal");
    }

    /// A batch larger than `BLOCKING_WRITES` runs in `block_in_place` on a multi-thread runtime, and as it is
    /// on a current-thread one (where `block_in_place` would panic).
    async fn a_large_batch_commits() {
        let (_dir, url, s) = storage().await;
        let mut conn = Opener::new(&url, Synchronous::Normal)
            .unwrap()
            .open()
            .await
            .unwrap();
        let mut db = Db::new(conn.lock_handle().await.unwrap(), PREPARED);
        let times: Vec<_> = (0..BLOCKING_WRITES as u64 + 8)
            .map(|u| ((DevId(1), UserId(u)), 7))
            .collect();
        let batch = Batch {
            times: &times,
            ..Batch::default()
        };
        run(&mut db, &batch, true).unwrap();
        assert!(db.autocommit(), "committed");
        drop(db);
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users_time WHERE last_online = 7")
            .fetch_one(s.pool())
            .await
            .unwrap();
        assert_eq!(get::<i64>(&row, "n").unwrap(), times.len() as i64);
        s.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_batch_commits_on_a_multi_thread_runtime() {
        a_large_batch_commits().await;
    }

    #[tokio::test]
    async fn a_large_batch_commits_on_a_current_thread_runtime() {
        a_large_batch_commits().await;
    }
}
