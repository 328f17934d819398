//! Boots the real server in-process on port 0, on SQLite (a temporary data directory) or PostgreSQL (a
//! fresh database created on `HALLEY_TEST_POSTGRES_URL` and dropped at the end).

use std::net::SocketAddr;

use halley::app::Running;
use halley::config::Config;
use sqlx::{Connection, PgConnection};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestServer {
    running: Option<Running>,
    pub config: Config,
    _dir: tempfile::TempDir,
    pg: Option<(String, String)>,
}

const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/test";

async fn create_pg_db() -> (String, String) {
    let base = std::env::var("HALLEY_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG.into());
    let name = format!(
        "halley_dash_{}",
        halley::tenant::generate_key()[..12].to_lowercase()
    );
    let mut conn = PgConnection::connect(&base)
        .await
        .expect("PostgreSQL reachable at HALLEY_TEST_POSTGRES_URL");
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("CREATE DATABASE");
    conn.close().await.ok();
    let cut = base.rfind('/').expect("database URL has a path");
    (format!("{}/{name}", &base[..cut]), name)
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary data directory");
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(create_pg_db().await),
        };
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            cometql_addr: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        if let Some((url, _)) = &pg {
            config.database_url = url.clone();
        }
        let running = halley::app::start(config.clone())
            .await
            .expect("server starts");
        TestServer {
            running: Some(running),
            config,
            _dir: dir,
            pg,
        }
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("server is running")
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.running().http_addr
    }

    pub fn cometql_addr(&self) -> SocketAddr {
        self.running().cometql_addr
    }

    /// Local connections subscribed to the pipe.
    pub fn subscribers(&self, dev_id: u64, pipe: &halley::ids::PipeName) -> usize {
        self.running()
            .ctx
            .hub
            .registry()
            .subscribers(halley::ids::DevId(dev_id), pipe)
    }

    /// Stops the server cleanly and starts it again on the same data (ports change).
    pub async fn restart(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        self.running = Some(
            halley::app::start(self.config.clone())
                .await
                .expect("restarts"),
        );
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        if let Some((_, name)) = self.pg.take() {
            let base =
                std::env::var("HALLEY_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_PG.into());
            if let Ok(mut conn) = PgConnection::connect(&base).await {
                let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await;
            }
        }
    }
}

/// Declares `mod $name { sqlite, postgres }`: the same test body against both storage backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::dashboard::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::dashboard::Backend::Postgres).await
                }
            }
        )*
    };
}
