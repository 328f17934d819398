//! A fresh PostgreSQL database per test, on the server named by HALLEY_TEST_POSTGRES_URL
//! (tests/run.sh always sets it), dropped afterwards.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rand::Rng;
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor};

pub const URL_VAR: &str = "HALLEY_TEST_POSTGRES_URL";

const PG_TIMEOUT: Duration = Duration::from_secs(10);

/// The server URL from HALLEY_TEST_POSTGRES_URL, `None` when unset or empty.
pub fn server_url() -> Option<String> {
    std::env::var(URL_VAR).ok().filter(|u| !u.trim().is_empty())
}

#[derive(Debug)]
pub struct TempPgDb {
    url: String,
    admin_url: String,
    name: String,
    dropped: bool,
}

impl TempPgDb {
    /// `Ok(None)` when HALLEY_TEST_POSTGRES_URL is unset (a developer without PostgreSQL); an error when
    /// it is set but the server cannot be used, so that a broken setup fails instead of skipping.
    pub async fn create() -> anyhow::Result<Option<TempPgDb>> {
        let Some(admin_url) = server_url() else {
            return Ok(None);
        };
        let name = format!(
            "halley_test_{}_{:016x}",
            std::process::id(),
            rand::thread_rng().gen::<u64>()
        );
        let mut conn = connect(&admin_url).await?;
        run(&mut conn, &format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| format!("creating database {name} on {}", redact(&admin_url)))?;
        let _ = tokio::time::timeout(PG_TIMEOUT, conn.close()).await;
        let url = with_database(&admin_url, &name)?;
        Ok(Some(TempPgDb {
            url,
            admin_url,
            name,
            dropped: false,
        }))
    }

    /// Like [`TempPgDb::create`], but an unset HALLEY_TEST_POSTGRES_URL is an error too.
    pub async fn require() -> anyhow::Result<TempPgDb> {
        Self::create()
            .await?
            .ok_or_else(|| anyhow!("{URL_VAR} is not set: run the tests through tests/run.sh"))
    }

    /// Connection URL of the new database (same server, user and options as the admin URL).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database, closing whatever connections still use it. Best effort: a failure is
    /// printed, not returned, since it says nothing about the code under test.
    pub async fn drop_db(self) {
        let name = self.name.clone();
        if let Err(e) = self.try_drop_db().await {
            eprintln!("warning: could not drop test database {name}: {e:#}");
        }
    }

    /// [`TempPgDb::drop_db`], reporting a failure.
    pub async fn try_drop_db(mut self) -> anyhow::Result<()> {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name).await
    }
}

impl Drop for TempPgDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Best effort: a new runtime on a plain thread, because Drop may run inside a tokio runtime
        // (where blocking on another one panics) or outside any.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropper = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                if let Err(e) = rt.block_on(drop_database(&admin_url, &name)) {
                    eprintln!("warning: could not drop test database {name}: {e:#}");
                }
            }
        });
        let _ = dropper.join();
    }
}

async fn connect(url: &str) -> anyhow::Result<PgConnection> {
    tokio::time::timeout(PG_TIMEOUT, PgConnection::connect(url))
        .await
        .map_err(|_| {
            anyhow!(
                "PostgreSQL at {} did not answer within {PG_TIMEOUT:?}",
                redact(url)
            )
        })?
        .with_context(|| {
            format!(
                "cannot connect to PostgreSQL at {} ({URL_VAR})",
                redact(url)
            )
        })
}

async fn run(conn: &mut PgConnection, sql: &str) -> anyhow::Result<()> {
    tokio::time::timeout(PG_TIMEOUT, conn.execute(sql))
        .await
        .map_err(|_| anyhow!("`{sql}` did not finish within {PG_TIMEOUT:?}"))??;
    Ok(())
}

async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let mut conn = connect(admin_url).await?;
    run(
        &mut conn,
        &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
    )
    .await?;
    let _ = tokio::time::timeout(PG_TIMEOUT, conn.close()).await;
    Ok(())
}

/// `url` with its database path replaced by `database`, keeping user, host, port and query options.
pub fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| anyhow!("not a URL: {}", redact(url)))?;
    if scheme != "postgres" && scheme != "postgresql" {
        bail!("not a PostgreSQL URL: {}", redact(url));
    }
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or(before_query);
    if authority.is_empty() {
        bail!("no host in {}", redact(url));
    }
    let mut out = format!("{scheme}://{authority}/{database}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_keeping_the_rest() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "x").unwrap(),
            "postgresql://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:1", "x").unwrap(),
            "postgres://h:1/x"
        );
        assert_eq!(
            with_database("postgres://h?a=b", "x").unwrap(),
            "postgres://h/x?a=b"
        );
        assert!(with_database("mysql://h/db", "x").is_err());
        assert!(with_database("postgres:///db", "x").is_err());
        assert!(with_database("nonsense", "x").is_err());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    /// Runs wherever HALLEY_TEST_POSTGRES_URL is set (always under tests/run.sh).
    #[tokio::test]
    async fn creates_uses_and_drops_a_database() {
        let Some(db) = TempPgDb::create().await.unwrap() else {
            eprintln!("{URL_VAR} not set: nothing to check");
            return;
        };
        let name = db.name().to_owned();
        let mut conn = connect(db.url()).await.unwrap();
        let (current,): (String,) = sqlx::query_as("SELECT current_database()")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(current, name);
        // Still connected: WITH (FORCE) must not wait for us.
        db.try_drop_db().await.unwrap();
        assert!(!database_exists(&name).await);

        let db = TempPgDb::create().await.unwrap().unwrap();
        let name = db.name().to_owned();
        drop(db);
        assert!(!database_exists(&name).await, "Drop must remove {name}");
    }

    async fn database_exists(name: &str) -> bool {
        let mut conn = connect(&server_url().unwrap()).await.unwrap();
        let row: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
        row.is_some()
    }

    #[tokio::test]
    async fn a_set_but_unreachable_server_is_an_error() {
        let url = "postgres://postgres@127.0.0.1:1/test";
        let err = connect(url).await.unwrap_err();
        assert!(format!("{err:#}").contains("cannot connect"), "{err:#}");
    }
}
