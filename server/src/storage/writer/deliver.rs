//! Delivery of committed history appends, beside the writer: the writer hands each append's outcome here in
//! commit order and goes on to its next batch, and one task runs the appends' `HistoryCommit::finish` (the
//! hub's fan-out of a publish) in that same order. So a publish to a pipe with many subscribers no longer
//! holds up the commit of the next batch, and a pipe's messages still go out in the order of their
//! offsets (one task, first in, first out). Barriers come through here too, after the finishes before them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::HistoryCommit;
use crate::storage::{DurablePosition, HistoryRow, StorageError};

/// What the writer hands over once a batch is done with.
pub(super) enum Delivery {
    Finish {
        commit: Box<dyn HistoryCommit>,
        row: HistoryRow,
        result: Result<Option<DurablePosition>, StorageError>,
    },
    /// Answered once every finish handed over before it has run.
    Barrier(oneshot::Sender<()>),
}

/// Starts the delivery task; `capacity` bounds what waits for it (the writer then waits: delivery that falls
/// behind slows the commits rather than growing a queue without bound).
pub(super) fn start(
    appending: Arc<AtomicUsize>,
    capacity: usize,
) -> (mpsc::Sender<Delivery>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Delivery>(capacity);
    let task = tokio::spawn(async move {
        while let Some(d) = rx.recv().await {
            match d {
                Delivery::Finish {
                    commit,
                    row,
                    result,
                } => {
                    commit.finish(row, result);
                    appending.fetch_sub(1, Ordering::SeqCst);
                }
                Delivery::Barrier(reply) => {
                    let _ = reply.send(());
                }
            }
        }
    });
    (tx, task)
}
