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
//!
//! `task.rs` is the writer's loop, `link.rs` its connection: on SQLite one it runs its batches on in place,
//! on PostgreSQL one of its own pool. `deliver.rs` runs what follows a committed append (its delivery)
//! beside the writer, in commit order.

mod deliver;
mod link;
mod task;

pub(super) use link::Source;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::queue::QueuedMessage;
use super::times::Times;
use super::totals::Totals;
use super::{Backend, DurablePosition, HistoryRow, StorageError, StoredUsage};
use crate::ids::{DevId, UserId};

/// What a history append asks of its writer: room for what the write changes, before the commit, and
/// what to do once it is committed (or not). `finish` runs on the delivery task (`deliver.rs`), in commit
/// order, so the caller's delivery of a numbered message follows the numbering: it must not block.
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
    PutBack {
        dev_id: DevId,
        user: UserId,
        msgs: Vec<QueuedMessage>,
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
    /// A hash minted by a JWT login (`hash`), or a longer expiry for the one there (`None`).
    Auth {
        dev_id: DevId,
        user: UserId,
        hash: Option<String>,
        expires_at: i64,
        done: Reply<()>,
    },
    /// Answered once everything handed over before it is committed and finished.
    Barrier(oneshot::Sender<()>),
}

/// What the writer has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Writes in them (history appends, enqueues, put-backs, claims, users_time rows).
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
    /// The delivery task, which ends once the writer has (it holds the only sender).
    delivered: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn closed() -> StorageError {
    StorageError::Conflict("storage is closed")
}

impl Writer {
    /// Starts the writer on its connection, keeping `totals` up to date with what it commits.
    pub(super) fn start(
        source: Source,
        backend: Backend,
        totals: Arc<Totals>,
        config: &crate::config::StorageConfig,
    ) -> Writer {
        let (tx, rx) = mpsc::channel(config.queue);
        let times = Arc::new(Times::new(config.users_time_pending));
        let stats = Arc::new(WriterStats::default());
        let appending = Arc::new(AtomicUsize::new(0));
        let (deliver, delivered) = deliver::start(appending.clone(), config.queue);
        let task = task::Task {
            deliver,
            backend,
            totals,
            times: times.clone(),
            stats: stats.clone(),
            batch_max: config.batch_max,
        };
        let handle = tokio::spawn(task.run(source, rx));
        Writer {
            ops: Mutex::new(Some(tx)),
            appending,
            times,
            stats,
            stopped: Mutex::new(Some(handle)),
            delivered: Mutex::new(Some(delivered)),
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

    /// Puts claimed messages back into the queue (see `Storage::put_back_messages`).
    pub(super) async fn put_back(
        &self,
        dev_id: DevId,
        user: UserId,
        msgs: Vec<QueuedMessage>,
        expires_at: i64,
    ) -> Result<(), StorageError> {
        self.ask(|done| Op::PutBack {
            dev_id,
            user,
            msgs,
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

    /// Writes a JWT login's users_auth change (see `Storage::put_minted_hash`).
    pub(super) async fn auth(
        &self,
        dev_id: DevId,
        user: UserId,
        hash: Option<String>,
        expires_at: i64,
    ) -> Result<(), StorageError> {
        self.ask(|done| Op::Auth {
            dev_id,
            user,
            hash,
            expires_at,
            done,
        })
        .await
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

    /// The same figures, for a task that outlives a borrow (the SQLite checkpointer).
    pub(super) fn stats_handle(&self) -> Arc<WriterStats> {
        self.stats.clone()
    }

    /// Writes (and delivers) everything handed over and noted, then stops the writer: later writes get an
    /// error.
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
        let delivered = self
            .delivered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(d) = delivered {
            let _ = d.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{StorageConfig, Synchronous};
    use crate::storage::batch::sqlite::Opener;
    use crate::storage::Storage;

    /// The SQLite connection is lent for good; when there is none (it cannot be opened, or broke), a batch
    /// fails with the reason and the next one opens another.
    #[tokio::test]
    async fn a_writer_without_its_database_fails_its_writes_then_opens_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("later").join("w.db").display()
        );
        let opener = Box::new(Opener::new(&url, Synchronous::Normal).unwrap());
        let source = Source::Sqlite {
            first: None,
            opener,
        };
        let writer = Writer::start(
            source,
            Backend::Sqlite,
            Arc::default(),
            &StorageConfig::default(),
        );
        let msg = |uuid: &str| QueuedMessage {
            id: 0,
            uuid: uuid.into(),
            event: "e".into(),
            message: "m".into(),
            sent_at: 1,
        };
        let (dev, user) = (DevId(1), UserId(2));
        for uuid in ["a", "b"] {
            let err = writer
                .enqueue(dev, user, msg(uuid), i64::MAX)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("no connection"), "{err}");
        }
        // The directory and the tables now exist.
        let s = Storage::open(&url).await.unwrap();
        s.migrate().await.unwrap();
        writer.enqueue(dev, user, msg("c"), i64::MAX).await.unwrap();
        assert!(writer.claim_uuid(dev, "c").await.unwrap());
        writer.close().await;
        s.close().await;
    }
}
