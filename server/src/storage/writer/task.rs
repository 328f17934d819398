//! The writer's task: takes what is waiting, commits it as one batch (`commit`), hands each write its outcome,
//! and runs again what can run again (a locked database, a write refused alone).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use tokio::sync::mpsc;

use super::deliver::Delivery;
use super::link::{Link, Source};
use super::{Op, WriterStats};
use crate::ids::{DevId, UserId};
use crate::storage::batch::sqlite::{self, Backoff};
use crate::storage::batch::{Append, AuthWrite, Batch, Claim, Enqueue, PutBack, Results};
use crate::storage::sqlite_raw::Db;
use crate::storage::times::Times;
use crate::storage::totals::Totals;
use crate::storage::{Backend, StorageError, StoredUsage};

/// How long a batch is tried again while the database is locked by someone else.
const BUSY_PATIENCE: Duration = Duration::from_secs(60);

/// An error after which the batch can simply run again (its transaction was rolled back): SQLite's
/// "database is locked" (SQLITE_BUSY and its extended codes), PostgreSQL's deadlock and serialization
/// failures.
fn transient(e: &StorageError, backend: Backend) -> bool {
    match e {
        StorageError::Sqlite(e) => e.is_busy(),
        StorageError::Db(sqlx::Error::Database(d)) => match backend {
            Backend::Sqlite => sqlite::sqlx_busy(e),
            Backend::Postgres => d.code().is_some_and(|c| c == "40P01" || c == "40001"),
        },
        _ => false,
    }
}

/// users_time rows one batch writes at most (a statement's parameters stay well under SQLite's limit).
const TIMES_PER_BATCH: usize = 1024;

/// users_time changes alone are written at most this often (they ride along with any other batch).
const TIMES_EVERY: Duration = Duration::from_millis(50);

pub(super) struct Task {
    /// Where committed appends (and barriers) go, in commit order.
    pub deliver: mpsc::Sender<Delivery>,
    pub backend: Backend,
    pub totals: Arc<Totals>,
    pub times: Arc<Times>,
    pub stats: Arc<WriterStats>,
    pub batch_max: usize,
}

impl Task {
    pub(super) async fn run(mut self, source: Source, mut rx: mpsc::Receiver<Op>) {
        match source {
            Source::Pool(pool) => {
                let mut link = Link::Pool { pool, conn: None };
                self.serve(&mut rx, &mut link, None).await;
            }
            // The connection and the handle it lends live in this frame, for as long as they work; then
            // another is opened, once there is something to write.
            Source::Sqlite { mut first, opener } => {
                let mut waiting = None;
                loop {
                    let opened = match first.take() {
                        Some(conn) => Ok(conn),
                        None => opener.open().await,
                    };
                    let open = match opened {
                        Ok(mut conn) => {
                            let open = match conn.lock_handle().await {
                                Ok(handle) => {
                                    let db = Db::new(handle, sqlite::PREPARED);
                                    let mut link = Link::InPlace { db, broken: false };
                                    self.serve(&mut rx, &mut link, waiting.take()).await
                                }
                                Err(e) => {
                                    let mut link = Link::Down(e.to_string());
                                    self.serve(&mut rx, &mut link, waiting.take()).await
                                }
                            };
                            if let Err(e) = conn.close().await {
                                tracing::warn!(error = %e, "closing the writer's SQLite connection");
                            }
                            open
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot open the writer's SQLite connection");
                            let mut link = Link::Down(e.to_string());
                            self.serve(&mut rx, &mut link, waiting.take()).await
                        }
                    };
                    if !open {
                        return;
                    }
                    waiting = Some(self.receive(&mut rx).await);
                }
            }
        }
    }

    /// Commits batch after batch on `link` (`first` the one already taken, if any), until the queue is
    /// closed (`false`) or the link is broken (`true`: open another).
    async fn serve(
        &mut self,
        rx: &mut mpsc::Receiver<Op>,
        link: &mut Link<'_>,
        mut first: Option<(Vec<Op>, bool)>,
    ) -> bool {
        loop {
            let (ops, open) = match first.take() {
                Some(batch) => batch,
                None => self.receive(rx).await,
            };
            self.commit(link, ops).await;
            if !open {
                return false;
            }
            if link.broken() {
                return true;
            }
        }
    }

    /// The next batch: what is waiting (up to `batch_max`), once there is something; `false` once the queue
    /// is closed (users_time values may still be waiting).
    async fn receive(&self, rx: &mut mpsc::Receiver<Op>) -> (Vec<Op>, bool) {
        let mut open = true;
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
        (ops, open)
    }

    /// Commits one batch and hands every write its outcome, in the order they came.
    async fn commit(&mut self, link: &mut Link<'_>, ops: Vec<Op>) {
        let times = self.times.take(TIMES_PER_BATCH);
        // Barriers alone need no transaction.
        if times.is_empty() && ops.iter().all(|op| matches!(op, Op::Barrier(_))) {
            let mut done = Results::default();
            let mut out = Vec::new();
            for (i, op) in ops.into_iter().enumerate() {
                self.hand_out(op, false, &mut done, i, &mut out);
            }
            self.deliver(out).await;
            return;
        }
        let failed = self.commit_batch(link, ops, &times).await;
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
                let mut out = Vec::new();
                if refused {
                    self.fail(op, true, &message, &mut out);
                } else if let Some(f) = self.commit_batch(link, vec![op], &[]).await {
                    for (op, r) in f.ops.into_iter().zip(f.refused) {
                        self.fail(op, r, &f.message, &mut out);
                    }
                }
                self.deliver(out).await;
            }
            return;
        }
        let mut out = Vec::new();
        for (op, r) in ops.into_iter().zip(refused) {
            self.fail(op, r, &message, &mut out);
        }
        self.deliver(out).await;
    }

    /// Hands outcomes to the delivery task, in order; waits while it is `[storage] queue` behind.
    async fn deliver(&self, out: Vec<Delivery>) {
        for d in out {
            if self.deliver.send(d).await.is_err() {
                tracing::error!("the delivery task is gone: a committed write is not delivered");
            }
        }
    }

    /// Runs one batch until it commits, leaving out appends their quota check refuses and running again
    /// while SQLite is locked by someone else. Committed: every write has its outcome. Failed: the writes
    /// back, which were refused, and the error.
    async fn commit_batch(
        &mut self,
        link: &mut Link<'_>,
        mut ops: Vec<Op>,
        times: &[((DevId, UserId), i64)],
    ) -> Option<Failed> {
        let mut refused = vec![false; ops.len()];
        let mut backoff = Backoff::new(BUSY_PATIENCE);
        let mut warned = false;
        let outcome = loop {
            match self.attempt(link, &mut ops, &refused, times).await {
                Ok(Attempt::Done(done)) => break Ok(done),
                Ok(Attempt::Refused(these)) => {
                    for i in these {
                        refused[i] = true;
                    }
                }
                // Another connection holds SQLite's write lock (or PostgreSQL broke a deadlock): nothing
                // of the batch was written, so it runs again after a wait on tokio's timer (its writers
                // keep waiting) rather than failing them.
                Err(e) if transient(&e, self.backend) => match backoff.next() {
                    Some(wait) => {
                        if !std::mem::replace(&mut warned, true) {
                            tracing::warn!(error = %e, "the database is locked; writing again until it is not");
                        }
                        tokio::time::sleep(wait).await;
                    }
                    None => break Err(e),
                },
                Err(e) => break Err(e),
            }
        };
        match outcome {
            Ok(mut done) => {
                let writes = (ops.len() + times.len()) as u64;
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats.writes.fetch_add(writes, Ordering::Relaxed);
                let mut out = Vec::new();
                for (i, op) in ops.into_iter().enumerate() {
                    self.hand_out(op, refused[i], &mut done, i, &mut out);
                }
                self.deliver(out).await;
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
        link: &mut Link<'_>,
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
                Op::PutBack {
                    dev_id,
                    user,
                    msgs,
                    expires_at,
                    ..
                } => batch.put_backs.push(PutBack {
                    dev_id: *dev_id,
                    user: *user,
                    msgs,
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
                Op::Auth {
                    dev_id,
                    user,
                    hash,
                    expires_at,
                    ..
                } => batch.auths.push(AuthWrite {
                    dev_id: *dev_id,
                    user: *user,
                    hash: hash.as_deref(),
                    expires_at: *expires_at,
                }),
                _ => {}
            }
        }
        let done = match link.run(&batch, admitted).await {
            Ok(done) if admitted => return Ok(Attempt::Done(done)),
            Ok(done) => done,
            Err(e) => {
                // Whatever ran is undone (an error before the transaction began makes this a no-op).
                link.abort().await;
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
            link.finish(false).await?;
            return Ok(Attempt::Refused(refusals));
        }
        link.finish(true).await?;
        Ok(Attempt::Done(done))
    }

    /// Every write of a failed batch gets the error (none of it was stored); appends' and barriers'
    /// answers go to `out`, for the delivery task.
    fn fail(&self, op: Op, refused: bool, message: &str, out: &mut Vec<Delivery>) {
        let err = || StorageError::Batch(message.to_string());
        match op {
            Op::History(w) => out.push(Delivery::Finish {
                commit: w.commit,
                row: w.row,
                result: Err(if refused {
                    StorageError::Conflict("refused")
                } else {
                    err()
                }),
            }),
            Op::Enqueue { done, .. } => drop(done.send(Err(err()))),
            Op::PutBack { done, .. } => drop(done.send(Err(err()))),
            Op::Claim { done, .. } => drop(done.send(Err(err()))),
            Op::ClaimUuid { done, .. } => drop(done.send(Err(err()))),
            Op::Auth { done, .. } => drop(done.send(Err(err()))),
            Op::Barrier(done) => out.push(Delivery::Barrier(done)),
        }
    }

    /// Hands a committed batch's write its outcome; appends' and barriers' go to `out`, for the delivery
    /// task (the totals count an append before it is delivered).
    fn hand_out(
        &self,
        op: Op,
        refused: bool,
        done: &mut Results,
        i: usize,
        out: &mut Vec<Delivery>,
    ) {
        match op {
            Op::History(w) => {
                let result = if refused {
                    Err(StorageError::Conflict("refused"))
                } else {
                    let p = done.placed.remove(&i).unwrap_or_default();
                    self.totals.apply(w.dev_id, p.change);
                    Ok(p.position)
                };
                out.push(Delivery::Finish {
                    commit: w.commit,
                    row: w.row,
                    result,
                });
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
            Op::PutBack {
                dev_id,
                user,
                msgs,
                done: reply,
                ..
            } => {
                self.totals.apply_queued(dev_id, user, msgs.len() as i64);
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
            Op::Auth { done: reply, .. } => {
                let _ = reply.send(Ok(()));
            }
            Op::Barrier(reply) => out.push(Delivery::Barrier(reply)),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SqliteError;

    #[test]
    fn sqlite_busy_in_place_is_transient_and_other_errors_are_not() {
        let err = |code| {
            StorageError::Sqlite(SqliteError {
                code,
                message: "m".into(),
            })
        };
        // SQLITE_BUSY, SQLITE_BUSY_RECOVERY, SQLITE_BUSY_SNAPSHOT.
        for code in [5, 261, 517] {
            assert!(transient(&err(code), Backend::Sqlite), "{code}");
        }
        // SQLITE_ERROR, SQLITE_LOCKED, SQLITE_CONSTRAINT_UNIQUE.
        for code in [1, 6, 2067] {
            assert!(!transient(&err(code), Backend::Sqlite), "{code}");
        }
        assert!(!transient(
            &StorageError::Batch("database is locked".into()),
            Backend::Sqlite
        ));
    }
}
