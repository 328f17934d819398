//! The one writer of durable state that changes with every message: history appends, queued private
//! messages (enqueue and claim) and users_time. Writers hand their write over and wait; the writer takes
//! whatever is waiting (up to `[storage] batch_max`) and commits it in one transaction (group commit), so
//! a burst of publishes costs one commit, not one each, and SQLite's single write lock is never fought
//! over by a pool of connections. The answer (and a publish's delivery, see `HistoryCommit`) comes only
//! after the commit: an acknowledged write is stored.
//!
//! users_time is not waited for: a connect or disconnect notes the user's newest value, which the next
//! batch writes (one row per user however often they came and went), so a stalled database never holds up
//! the WebSocket accept path.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool};
use tokio::sync::{mpsc, oneshot};

use super::batch::{self, Append, Batch, Claim, Enqueue, Results};
use super::queue::QueuedMessage;
use super::times::Times;
use super::totals::Totals;
use super::{Backend, DurablePosition, HistoryRow, StorageError, StoredUsage};
use crate::ids::{DevId, UserId};

/// How long a batch is tried again while the database is locked by someone else.
const BUSY_PATIENCE: Duration = Duration::from_secs(60);

/// An error after which the batch can simply run again (its transaction was rolled back): SQLite's
/// "database is locked" (SQLITE_BUSY and its extended codes), PostgreSQL's deadlock and serialization
/// failures.
fn transient(e: &StorageError, backend: Backend) -> bool {
    let StorageError::Db(sqlx::Error::Database(d)) = e else {
        return false;
    };
    let Some(code) = d.code() else { return false };
    match backend {
        Backend::Sqlite => code.parse::<u32>().is_ok_and(|n| n & 0xff == 5),
        Backend::Postgres => code == "40P01" || code == "40001",
    }
}

/// users_time rows one batch writes at most (a statement's parameters stay well under SQLite's limit).
const TIMES_PER_BATCH: usize = 1024;

/// users_time changes alone are written at most this often (they ride along with any other batch).
const TIMES_EVERY: Duration = Duration::from_millis(50);

/// What a history append asks of its writer: room for what the write changes, before the commit, and
/// what to do once it is committed (or not). `finish` runs on the writer, in commit order, so the
/// caller's delivery of a numbered message follows the numbering: it must not block.
pub trait HistoryCommit: Send + Sync + 'static {
    /// Takes room for what the write changes (its row less what its trim removed); `false` refuses
    /// it: the write is left out of the batch. Called again when the batch runs again without a refused
    /// write: the room taken before is given back first.
    fn admit(&mut self, change: StoredUsage) -> bool;
    /// The write committed (with its position, when its pipe numbers its history), was refused by
    /// `admit`, or failed.
    fn finish(
        self: Box<Self>,
        row: HistoryRow,
        result: Result<Option<DurablePosition>, StorageError>,
    );
}

/// A history append for the writer.
pub struct HistoryWrite {
    pub dev_id: DevId,
    pub row: HistoryRow,
    /// Entries the pipe keeps.
    pub keep: i64,
    /// `Some`: the row takes the pipe's next offset (this epoch if the pipe has none yet).
    pub epoch: Option<String>,
    pub commit: Box<dyn HistoryCommit>,
}

type Reply<T> = oneshot::Sender<Result<T, StorageError>>;

enum Op {
    History(HistoryWrite),
    Enqueue {
        dev_id: DevId,
        user: UserId,
        msg: QueuedMessage,
        expires_at: i64,
        done: Reply<()>,
    },
    Claim {
        dev_id: DevId,
        user: UserId,
        now: i64,
        limit: i64,
        done: Reply<Vec<QueuedMessage>>,
    },
    ClaimUuid {
        dev_id: DevId,
        uuid: String,
        done: Reply<bool>,
    },
    /// Answered once everything handed over before it is committed and finished.
    Barrier(oneshot::Sender<()>),
}

/// What the writer has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Writes in them (history appends, enqueues, claims, users_time rows).
    pub writes: AtomicU64,
    /// Batches that failed (every write in them got the error).
    pub failed: AtomicU64,
}

/// The handle every `Storage` clone shares.
pub(super) struct Writer {
    ops: Mutex<Option<mpsc::Sender<Op>>>,
    /// History appends handed over and not yet finished (delivered): a barrier with none has nothing
    /// to wait for.
    appending: Arc<AtomicUsize>,
    times: Arc<Times>,
    stats: Arc<WriterStats>,
    stopped: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn closed() -> StorageError {
    StorageError::Conflict("storage is closed")
}

impl Writer {
    /// Starts the writer on `pool` (its own connection), keeping `totals` up to date with what it commits.
    pub(super) fn start(
        pool: AnyPool,
        backend: Backend,
        totals: Arc<Totals>,
        config: &crate::config::StorageConfig,
    ) -> Writer {
        let (tx, rx) = mpsc::channel(config.queue);
        let times = Arc::new(Times::new(config.users_time_pending));
        let stats = Arc::new(WriterStats::default());
        let appending = Arc::new(AtomicUsize::new(0));
        let task = Task {
            appending: appending.clone(),
            pool,
            conn: None,
            backend,
            totals,
            times: times.clone(),
            stats: stats.clone(),
            batch_max: config.batch_max,
        };
        let handle = tokio::spawn(task.run(rx));
        Writer {
            ops: Mutex::new(Some(tx)),
            appending,
            times,
            stats,
            stopped: Mutex::new(Some(handle)),
        }
    }

    fn sender(&self) -> Option<mpsc::Sender<Op>> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn submit(&self, op: Op) -> Result<(), StorageError> {
        let tx = self.sender().ok_or_else(closed)?;
        tx.send(op).await.map_err(|_| closed())
    }

    async fn ask<T>(&self, op: impl FnOnce(Reply<T>) -> Op) -> Result<T, StorageError> {
        let (done, answer) = oneshot::channel();
        self.submit(op(done)).await?;
        answer.await.map_err(|_| closed())?
    }

    /// Hands an append over: its outcome goes to its `commit`. Waits only while the writer's queue is
    /// full (back-pressure); an error here means it was not taken (and `commit` was not called).
    pub(super) async fn append(&self, write: HistoryWrite) -> Result<(), StorageError> {
        self.appending.fetch_add(1, Ordering::SeqCst);
        let sent = self.submit(Op::History(write)).await;
        if sent.is_err() {
            self.appending.fetch_sub(1, Ordering::SeqCst);
        }
        sent
    }

    pub(super) async fn enqueue(
        &self,
        dev_id: DevId,
        user: UserId,
        msg: QueuedMessage,
        expires_at: i64,
    ) -> Result<(), StorageError> {
        self.ask(|done| Op::Enqueue {
            dev_id,
            user,
            msg,
            expires_at,
            done,
        })
        .await
    }

    pub(super) async fn claim(
        &self,
        dev_id: DevId,
        user: UserId,
        now: i64,
        limit: i64,
    ) -> Result<Vec<QueuedMessage>, StorageError> {
        self.ask(|done| Op::Claim {
            dev_id,
            user,
            now,
            limit,
            done,
        })
        .await
    }

    pub(super) async fn claim_uuid(&self, dev_id: DevId, uuid: &str) -> Result<bool, StorageError> {
        let uuid = uuid.to_string();
        self.ask(|done| Op::ClaimUuid { dev_id, uuid, done }).await
    }

    /// Waits until every history append handed over so far is committed and finished (delivered).
    pub(super) async fn barrier(&self) -> Result<(), StorageError> {
        if self.appending.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        let (done, answer) = oneshot::channel();
        self.submit(Op::Barrier(done)).await?;
        answer.await.map_err(|_| closed())
    }

    /// Notes a user's users_time value, written by the next batch; never waits.
    pub(super) fn note_time(&self, dev_id: DevId, user: UserId, time: i64) {
        if !self.times.note((dev_id, user), time) {
            tracing::warn!("users_time not recorded: too many changes waiting for the database");
        }
    }

    /// A users_time value noted and not yet written.
    pub(super) fn pending_time(&self, dev_id: DevId, user: UserId) -> Option<i64> {
        self.times.get((dev_id, user))
    }

    /// users_time changes not recorded because too many were waiting.
    pub(super) fn times_dropped(&self) -> u64 {
        self.times.dropped()
    }

    pub(super) fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Writes everything handed over and noted, then stops the writer: later writes get an error.
    pub(super) async fn close(&self) {
        let tx = self.ops.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(tx);
        let handle = self
            .stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = handle {
            self.times.wake.notify_one();
            let _ = h.await;
        }
    }
}

struct Task {
    appending: Arc<AtomicUsize>,
    pool: AnyPool,
    /// The writer's connection, kept between batches (given back after an error, for a fresh one).
    conn: Option<PoolConnection<Any>>,
    backend: Backend,
    totals: Arc<Totals>,
    times: Arc<Times>,
    stats: Arc<WriterStats>,
    batch_max: usize,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        let mut open = true;
        while open {
            let mut ops = Vec::new();
            tokio::select! {
                op = rx.recv() => match op {
                    Some(op) => ops.push(op),
                    None => open = false,
                },
                // users_time alone: let a few more connects and disconnects join it.
                _ = async {
                    self.times.wake.notified().await;
                    tokio::time::sleep(TIMES_EVERY).await;
                } => {}
            }
            while ops.len() < self.batch_max {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            self.commit(ops).await;
        }
    }

    /// Commits one batch and hands every write its outcome, in the order they came.
    async fn commit(&mut self, ops: Vec<Op>) {
        let times = self.times.take(TIMES_PER_BATCH);
        // Barriers alone need no transaction.
        if times.is_empty() && ops.iter().all(|op| matches!(op, Op::Barrier(_))) {
            let mut done = Results::default();
            for (i, op) in ops.into_iter().enumerate() {
                self.hand_out(op, false, &mut done, i);
            }
            return;
        }
        let failed = self.commit_batch(ops, &times).await;
        self.times.settle(failed.is_none());
        let Some(Failed {
            ops,
            refused,
            message,
        }) = failed
        else {
            return;
        };
        if ops.len() > 1 {
            // One write whose data the database refuses must not fail the others with it (they may
            // be other tenants'): each goes again on its own.
            tracing::warn!(writes = ops.len(), error = %message, "a batch failed; writing its writes one by one");
            for (op, refused) in ops.into_iter().zip(refused) {
                if refused {
                    self.fail(op, true, &message);
                } else if let Some(f) = self.commit_batch(vec![op], &[]).await {
                    for (op, r) in f.ops.into_iter().zip(f.refused) {
                        self.fail(op, r, &f.message);
                    }
                }
            }
            return;
        }
        for (op, r) in ops.into_iter().zip(refused) {
            self.fail(op, r, &message);
        }
    }

    /// Runs one batch until it commits, leaving out appends their quota check refuses and running again
    /// while SQLite is locked by someone else. Committed: every write has its outcome. Failed: the writes
    /// back, which were refused, and the error.
    async fn commit_batch(
        &mut self,
        mut ops: Vec<Op>,
        times: &[((DevId, UserId), i64)],
    ) -> Option<Failed> {
        let mut refused = vec![false; ops.len()];
        let began = tokio::time::Instant::now();
        let outcome = loop {
            match self.attempt(&mut ops, &refused, times).await {
                Ok(Attempt::Done(done)) => break Ok(done),
                Ok(Attempt::Refused(these)) => {
                    for i in these {
                        refused[i] = true;
                    }
                }
                // Another process holds SQLite's write lock past the busy timeout (or PostgreSQL broke a
                // deadlock): nothing of the batch was written, so it runs again (its writers keep
                // waiting) rather than failing them.
                Err(e) if transient(&e, self.backend) && began.elapsed() < BUSY_PATIENCE => {
                    tracing::warn!(error = %e, "the database is locked; writing again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => break Err(e),
            }
        };
        match outcome {
            Ok(mut done) => {
                let writes = (ops.len() + times.len()) as u64;
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats.writes.fetch_add(writes, Ordering::Relaxed);
                for (i, op) in ops.into_iter().enumerate() {
                    self.hand_out(op, refused[i], &mut done, i);
                }
                None
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, writes = ops.len(), "a batch of writes failed");
                Some(Failed {
                    ops,
                    refused,
                    message: e.to_string(),
                })
            }
        }
    }

    async fn attempt(
        &mut self,
        ops: &mut [Op],
        refused: &[bool],
        times: &[((DevId, UserId), i64)],
    ) -> Result<Attempt, StorageError> {
        // Room for the most each append can change (its row, nothing trimmed) is usually there: then
        // the batch commits in the same round trip. Otherwise each append's real change is checked
        // before the commit.
        let admitted = ops.iter_mut().enumerate().all(|(i, op)| match op {
            Op::History(w) if !refused[i] => w.commit.admit(StoredUsage {
                history_rows: 1,
                history_bytes: w.row.message.len() as i64,
                ..StoredUsage::default()
            }),
            _ => true,
        });
        let mut batch = Batch {
            times,
            ..Batch::default()
        };
        for (i, op) in ops.iter().enumerate() {
            match op {
                Op::History(w) if !refused[i] => batch.appends.push((
                    i,
                    Append {
                        dev_id: w.dev_id,
                        row: &w.row,
                        keep: w.keep,
                        epoch: w.epoch.as_deref(),
                    },
                )),
                Op::Enqueue {
                    dev_id,
                    user,
                    msg,
                    expires_at,
                    ..
                } => batch.enqueues.push(Enqueue {
                    dev_id: *dev_id,
                    user: *user,
                    msg,
                    expires_at: *expires_at,
                }),
                Op::Claim {
                    dev_id,
                    user,
                    now,
                    limit,
                    ..
                } => batch.claims.push((
                    i,
                    Claim {
                        dev_id: *dev_id,
                        user: *user,
                        now: *now,
                        limit: *limit,
                    },
                )),
                Op::ClaimUuid { dev_id, uuid, .. } => batch.claim_uuids.push((i, *dev_id, uuid)),
                _ => {}
            }
        }
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.pool.acquire().await?,
        };
        let done = match batch::run(&mut conn, self.backend, &batch, admitted).await {
            Ok(done) if admitted => {
                self.conn = Some(conn);
                return Ok(Attempt::Done(done));
            }
            Ok(done) => done,
            Err(e) => {
                // Whatever ran is undone (an error before the transaction began makes this a no-op);
                // the connection goes back to the pool, which drops it if it is broken.
                let _ = batch::finish(&mut conn, false).await;
                return Err(e);
            }
        };
        drop(batch);
        // Room for each append's change: those that do not fit are taken out (rolled back with the rest,
        // which run again, once).
        let mut refusals = Vec::new();
        for (i, op) in ops.iter_mut().enumerate() {
            if let (Op::History(w), Some(p)) = (op, done.placed.get(&i)) {
                if !w.commit.admit(p.change) {
                    refusals.push(i);
                }
            }
        }
        if !refusals.is_empty() {
            batch::finish(&mut conn, false).await?;
            self.conn = Some(conn);
            return Ok(Attempt::Refused(refusals));
        }
        batch::finish(&mut conn, true).await?;
        self.conn = Some(conn);
        Ok(Attempt::Done(done))
    }

    /// Every write of a failed batch gets the error (none of it was stored).
    fn fail(&self, op: Op, refused: bool, message: &str) {
        if matches!(op, Op::History(_)) {
            self.appending.fetch_sub(1, Ordering::SeqCst);
        }
        let err = || StorageError::Batch(message.to_string());
        match op {
            Op::History(w) if refused => w
                .commit
                .finish(w.row, Err(StorageError::Conflict("refused"))),
            Op::History(w) => w.commit.finish(w.row, Err(err())),
            Op::Enqueue { done, .. } => drop(done.send(Err(err()))),
            Op::Claim { done, .. } => drop(done.send(Err(err()))),
            Op::ClaimUuid { done, .. } => drop(done.send(Err(err()))),
            Op::Barrier(done) => drop(done.send(())),
        }
    }

    fn hand_out(&self, op: Op, refused: bool, done: &mut Results, i: usize) {
        match op {
            Op::History(w) => {
                if refused {
                    w.commit
                        .finish(w.row, Err(StorageError::Conflict("refused")));
                    self.appending.fetch_sub(1, Ordering::SeqCst);
                    return;
                }
                let p = done.placed.remove(&i).unwrap_or_default();
                self.totals.apply(w.dev_id, p.change);
                w.commit.finish(w.row, Ok(p.position));
                self.appending.fetch_sub(1, Ordering::SeqCst);
            }
            Op::Enqueue {
                dev_id,
                user,
                done: reply,
                ..
            } => {
                self.totals.apply_queued(dev_id, user, 1);
                let _ = reply.send(Ok(()));
            }
            Op::Claim {
                dev_id,
                user,
                done: reply,
                ..
            } => {
                let got = done.claimed.remove(&i).unwrap_or_default();
                self.totals.apply_queued(dev_id, user, -(got.len() as i64));
                let _ = reply.send(Ok(got));
            }
            Op::ClaimUuid {
                dev_id,
                done: reply,
                ..
            } => {
                let got = done.claimed_uuid.remove(&i).flatten();
                if let Some(user) = got {
                    self.totals.apply_queued(dev_id, user, -1);
                }
                let _ = reply.send(Ok(got.is_some()));
            }
            Op::Barrier(reply) => {
                let _ = reply.send(());
            }
        }
    }
}

/// A batch that did not commit: its writes, which of them were refused, and the error.
struct Failed {
    ops: Vec<Op>,
    refused: Vec<bool>,
    message: String,
}

enum Attempt {
    Done(Results),
    /// These appends' quota checks refused them.
    Refused(Vec<usize>),
}
