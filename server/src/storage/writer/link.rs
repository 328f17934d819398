//! The writer's connection. On PostgreSQL, one connection of a pool of its own (kept between batches, given
//! back after an error for a fresh one). On SQLite, a connection of its own whose handle sqlx lends for
//! good: batches run on it in place (`batch/sqlite.rs`); the task (`task.rs`) owns the connection and
//! opens another when this one breaks.

use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Any, AnyPool};

use crate::storage::batch::sqlite::{self, Opener};
use crate::storage::batch::{postgres, Batch, Results};
use crate::storage::sqlite_raw::Db;
use crate::storage::StorageError;

/// Where the writer's connections come from.
pub(in crate::storage) enum Source {
    /// PostgreSQL: a pool of one connection.
    Pool(AnyPool),
    /// SQLite: the connection opened with the storage (so that opening fails early), then as `opener` opens.
    Sqlite {
        first: Option<SqliteConnection>,
        opener: Box<Opener>,
    },
}

pub(super) enum Link<'c> {
    Pool {
        pool: AnyPool,
        conn: Option<PoolConnection<Any>>,
    },
    InPlace {
        db: Db<'c>,
        /// A transaction could not be ended: this connection is done.
        broken: bool,
    },
    /// SQLite's connection could not be opened (or lent): a batch fails with this, then another is opened.
    Down(String),
}

impl Link<'_> {
    /// Runs a batch (`batch::*::run`).
    pub(super) async fn run(
        &mut self,
        batch: &Batch<'_>,
        commit: bool,
    ) -> Result<Results, StorageError> {
        match self {
            Link::Pool { pool, conn } => {
                let c = match conn {
                    Some(c) => c,
                    None => conn.insert(pool.acquire().await?),
                };
                postgres::run(c, batch, commit).await
            }
            Link::InPlace { db, .. } => sqlite::run(db, batch, commit),
            Link::Down(e) => Err(StorageError::Batch(format!(
                "the writer has no connection: {e}"
            ))),
        }
    }

    /// Ends the transaction `run` began without committing.
    pub(super) async fn finish(&mut self, commit: bool) -> Result<(), StorageError> {
        match self {
            Link::Pool { conn, .. } => {
                let Some(c) = conn.as_mut() else {
                    return Ok(());
                };
                let done = postgres::finish(c, commit).await;
                if done.is_err() {
                    *conn = None;
                }
                done
            }
            Link::InPlace { db, broken } => {
                let done = sqlite::finish(db, commit);
                if done.is_err() {
                    *broken |= !sqlite::abort(db);
                }
                done
            }
            Link::Down(_) => Ok(()),
        }
    }

    /// Undoes whatever a failed `run` ran (an error before its transaction began makes this a no-op).
    pub(super) async fn abort(&mut self) {
        match self {
            // The connection goes back to the pool, which drops it if it is broken.
            Link::Pool { conn, .. } => {
                if let Some(mut c) = conn.take() {
                    let _ = postgres::finish(&mut c, false).await;
                }
            }
            Link::InPlace { db, broken } => *broken |= !sqlite::abort(db),
            Link::Down(_) => {}
        }
    }

    /// The connection is not to be used again.
    pub(super) fn broken(&self) -> bool {
        match self {
            Link::Pool { .. } => false,
            Link::InPlace { broken, .. } => *broken,
            Link::Down(_) => true,
        }
    }
}
