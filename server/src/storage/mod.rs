//! All SQL lives here. One `Storage` handle over an sqlx `AnyPool`, so PostgreSQL (production) and SQLite
//! (the embedded default) run the same statements: `$n` placeholders, `ON CONFLICT` upserts and `RETURNING`
//! are understood by both. One file per concern. The writer's SQLite connection is the exception: it runs its
//! batches in place, through SQLite's C API (`batch/sqlite.rs`, `sqlite_raw.rs`).

mod accounts;
mod batch;
mod origins;
mod pipes;
mod queue;
// The crate's only unsafe code, behind a safe API (`tests/it/floors.rs` checks that no other file has any).
#[allow(unsafe_code)]
mod sqlite_raw;
mod tenants;
mod times;
mod totals;
mod usage;
mod users;
mod writer;

pub use accounts::AccountRow;
pub use pipes::{DurablePosition, HistoryRow};
pub use queue::QueuedMessage;
pub use sqlite_raw::SqliteError;
pub use tenants::{KeyRow, LimitRow, NewTenantRow, QuotaRow, TenantFlag, TenantRow};
pub use totals::{InUse, Reservation, StoredUsage, Totals};
pub use users::UserTable;
pub use writer::{HistoryCommit, HistoryWrite, WriterStats};

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::AnyPool;

use crate::config::{StorageConfig, Synchronous};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// From SQLite called in place (the writer's batches).
    #[error("database error: {0}")]
    Sqlite(#[from] SqliteError),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("{0}")]
    Conflict(&'static str),
    /// A batch of writes failed as a whole (the writer's error, for each write in it).
    #[error("database error: {0}")]
    Batch(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Cheap to clone: a pool handle, the writer that batches the writes made per message (`writer/`),
/// and the running totals their writes keep (see `totals.rs`).
#[derive(Clone)]
pub struct Storage {
    pool: AnyPool,
    backend: Backend,
    totals: Arc<Totals>,
    writer: Arc<writer::Writer>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("pool", &self.pool)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Storage {
    pub async fn open(url: &str) -> Result<Storage, StorageError> {
        Storage::open_with(url, &StorageConfig::default()).await
    }

    pub async fn open_with(url: &str, config: &StorageConfig) -> Result<Storage, StorageError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        if backend == Backend::Sqlite {
            if let Some(dir) = sqlite_file(url).and_then(|f| f.parent()) {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| StorageError::DataDir(dir.display().to_string(), e))?;
                }
            }
        }
        // SQLite: WAL (set in `session_sql`: readers never wait for the writer), sqlx's 5 s busy timeout (the
        // rare writes outside the writer queue behind it instead of failing), foreign keys on. The pool
        // serves reads; its size is what concurrent readers need, not writers (there is one).
        let size = match (config.pool_size, backend) {
            (0, Backend::Sqlite) => 4,
            (0, Backend::Postgres) => 10,
            (n, _) => n,
        };
        let pool = options(backend, config.synchronous, false)
            .max_connections(size)
            .connect(url)
            .await?;
        // The writer's own connection. SQLite: opened here (so that a database it cannot open fails now),
        // then lent to the writer for good (`batch/sqlite.rs`). PostgreSQL: kept between batches (no health
        // check per batch: a broken connection fails its batch and is replaced).
        let source = match backend {
            Backend::Sqlite => {
                let opener = Box::new(batch::sqlite::Opener::new(url, config.synchronous)?);
                writer::Source::Sqlite {
                    first: Some(opener.open().await?),
                    opener,
                }
            }
            Backend::Postgres => writer::Source::Pool(
                options(backend, config.synchronous, true)
                    .max_connections(1)
                    .test_before_acquire(false)
                    .connect(url)
                    .await?,
            ),
        };
        let totals: Arc<Totals> = Arc::default();
        let writer = writer::Writer::start(source, backend, totals.clone(), config);
        Ok(Storage {
            pool,
            backend,
            totals,
            writer: Arc::new(writer),
        })
    }

    pub async fn migrate(&self) -> Result<(), StorageError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// What each tenant keeps stored, kept up to date by this handle's writes (after `load_totals`).
    pub fn totals(&self) -> &Arc<Totals> {
        &self.totals
    }

    /// Writes what the writer holds, waits for in-flight statements and closes every connection (SQLite
    /// checkpoints its WAL on close).
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    /// Waits until every write handed to the writer so far is committed and finished.
    pub async fn barrier(&self) -> Result<(), StorageError> {
        self.writer.barrier().await
    }

    /// Hands a history append to the writer (see [`HistoryWrite`]).
    pub async fn append(&self, write: HistoryWrite) -> Result<(), StorageError> {
        self.writer.append(write).await
    }

    /// users_time changes not recorded because too many were waiting for the database.
    pub fn users_time_dropped(&self) -> u64 {
        self.writer.times_dropped()
    }

    /// What the writer has committed.
    pub fn writer_stats(&self) -> &WriterStats {
        self.writer.stats()
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// Pool options: every connection runs `session_sql` once opened.
fn options(backend: Backend, sync: Synchronous, writer: bool) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(move |conn, _| {
            Box::pin(async move {
                use sqlx::Executor;
                for sql in session_sql(backend, sync, writer) {
                    conn.execute(*sql).await?;
                }
                Ok(())
            })
        })
}

/// What a connection runs once opened (the pool's, and the writer's). SQLite: WAL, since sqlx 0.8 leaves the
/// journal mode alone (without it SQLite keeps a rollback journal, whose commits fsync several times and
/// whose writer blocks readers); with `synchronous = normal` it syncs at checkpoints only. PostgreSQL: with
/// `synchronous = normal` the writer's session does not wait for the WAL flush at commit (see
/// `StorageConfig`).
fn session_sql(backend: Backend, sync: Synchronous, writer: bool) -> &'static [&'static str] {
    match (backend, sync, writer) {
        (Backend::Sqlite, Synchronous::Normal, _) => {
            &["PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL"]
        }
        (Backend::Sqlite, Synchronous::Full, _) => {
            &["PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL"]
        }
        (Backend::Postgres, Synchronous::Normal, true) => &["SET synchronous_commit = off"],
        (Backend::Postgres, _, _) => &[],
    }
}

fn sqlite_file(url: &str) -> Option<&Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
}

pub(crate) fn get<'r, T>(row: &'r AnyRow, col: &str) -> Result<T, StorageError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    use sqlx::Row;
    Ok(row.try_get(col)?)
}

/// A row read by column name: sqlx's rows, and those SQLite gives in place (`batch/sqlite.rs`).
pub(crate) trait Columns {
    fn int(&self, col: &str) -> Result<i64, StorageError>;
    fn text(&self, col: &str) -> Result<String, StorageError>;
}

impl Columns for AnyRow {
    fn int(&self, col: &str) -> Result<i64, StorageError> {
        get(self, col)
    }

    fn text(&self, col: &str) -> Result<String, StorageError> {
        get(self, col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_runs_in_wal_mode_with_the_chosen_sync() {
        use sqlx::Row;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("w.db").display());
        for (sync, want) in [(Synchronous::Normal, 1), (Synchronous::Full, 2)] {
            let config = StorageConfig {
                synchronous: sync,
                ..StorageConfig::default()
            };
            let s = Storage::open_with(&url, &config).await.unwrap();
            let mode = sqlx::query("PRAGMA journal_mode")
                .fetch_one(s.pool())
                .await
                .unwrap();
            assert_eq!(mode.get::<String, _>(0), "wal");
            let level = sqlx::query("PRAGMA synchronous")
                .fetch_one(s.pool())
                .await
                .unwrap();
            assert_eq!(level.get::<i64, _>(0), want, "{sync:?}");
            s.close().await;
        }
    }

    #[test]
    fn sqlite_file_from_url() {
        assert_eq!(
            sqlite_file("sqlite://data/halley.db?mode=rwc"),
            Some(Path::new("data/halley.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
    }
}
