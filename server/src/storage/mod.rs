//! All SQL lives here. One `Storage` handle over an sqlx `AnyPool`, so PostgreSQL (production) and SQLite
//! (the embedded default) run the same statements: `$n` placeholders, `ON CONFLICT` upserts and `RETURNING`
//! are understood by both. One file per concern.

mod accounts;
mod origins;
mod pipes;
mod queue;
mod tenants;
mod totals;
mod usage;
mod users;

pub use accounts::AccountRow;
pub use pipes::{DurablePosition, HistoryRow};
pub use queue::QueuedMessage;
pub use tenants::{KeyRow, LimitRow, NewTenantRow, QuotaRow, TenantRow};
pub use totals::{InUse, Reservation, StoredUsage, Totals};
pub use users::UserTable;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::AnyPool;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("{0}")]
    Conflict(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Cheap to clone: a pool handle, and the running totals its writes keep (see `totals.rs`).
#[derive(Clone)]
pub struct Storage {
    pool: AnyPool,
    backend: Backend,
    totals: Arc<Totals>,
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
        // sqlx's SQLite defaults are what we want: WAL (readers beside the one writer), a 5 s busy timeout
        // (writers queue instead of failing) and foreign keys on.
        let options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 10 })
            .acquire_timeout(Duration::from_secs(10));
        let pool = options.connect(url).await?;
        Ok(Storage {
            pool,
            backend,
            totals: Arc::default(),
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

    /// Waits for in-flight statements and closes every connection (SQLite checkpoints its WAL on close).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_file_from_url() {
        assert_eq!(
            sqlite_file("sqlite://data/halley.db?mode=rwc"),
            Some(Path::new("data/halley.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
    }
}
