//! Boots the real server in-process on port 0, on SQLite (a temporary data directory) or PostgreSQL (a
//! fresh database), so each test has its own world.

use std::net::SocketAddr;

use halley::app::Running;
use halley::config::Config;
use halley::tenant::NewTenant;

use crate::mysql_raw::RawMysql;
use crate::pg::TempPgDb;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestServer {
    running: Option<Running>,
    config: Config,
    _dir: tempfile::TempDir,
    pg: Option<TempPgDb>,
}

/// A tenant as a test uses it.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub dev_id: u64,
    pub key: String,
    /// The public Pusher app key (empty where a test made the tenant by hand).
    pub app_key: String,
}

impl From<NewTenant> for Tenant {
    fn from(t: NewTenant) -> Self {
        Tenant {
            dev_id: t.dev_id.0,
            key: t.key,
            app_key: t.app_key,
        }
    }
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, |_| {}).await
    }

    /// A connection to the server's own database, beside it: what the tables really hold, read without
    /// going through the server.
    pub async fn database(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&self.config().database_url())
            .await
            .expect("open the database")
    }

    /// A server for tests that publish in bulk from many connections: publish and new-connection rate
    /// limits lifted (the limits themselves have their own tests).
    pub async fn start_unthrottled(backend: Backend) -> TestServer {
        Self::start_with(backend, |c| {
            c.limits.publishes_per_sec = 1_000_000;
            c.limits.publish_burst = 1_000_000;
            c.limits.new_connections_per_ip_per_sec = 10_000;
            c.limits.new_connections_per_ip_burst = 10_000;
        })
        .await
    }

    /// A server on a database someone else made and drops (a cluster's nodes share one).
    pub async fn start_on(database_url: &str, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary data directory");
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            cometql_addr: "127.0.0.1:0".parse().unwrap(),
            database_url: database_url.to_string(),
            ..Config::default()
        };
        tweak(&mut config);
        config.validate().expect("valid test configuration");
        let running = halley::app::start(config.clone())
            .await
            .expect("server starts");
        TestServer {
            running: Some(running),
            config,
            _dir: dir,
            pg: None,
        }
    }

    /// `tweak` adjusts the configuration (limits, timeouts) before the server starts.
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary data directory");
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(
                TempPgDb::create()
                    .await
                    .expect("PostgreSQL test database")
                    .expect("HALLEY_TEST_POSTGRES_URL must be set for PostgreSQL tests (tests/run.sh sets it)"),
            ),
        };
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            cometql_addr: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        if let Some(pg) = &pg {
            config.database_url = pg.url().to_string();
        }
        tweak(&mut config);
        config.validate().expect("valid test configuration");
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

    pub fn cometql_addr(&self) -> SocketAddr {
        self.running().cometql_addr
    }

    pub fn cometql_port(&self) -> u16 {
        self.cometql_addr().port()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.running().http_addr
    }

    /// The HTTPS/WSS address; panics unless the test configured `https_addr` (and a certificate).
    pub fn https_addr(&self) -> SocketAddr {
        self.running()
            .https_addr
            .expect("the test server has an https_addr")
    }

    /// The comet-server connect URL a browser page would open.
    pub fn ws_url(&self, dev_id: u64, user_id: u64, user_key: &str) -> String {
        crate::browser::url(
            self,
            dev_id,
            user_id,
            user_key,
            "4.08",
            "0123456789abcdef0123456789abcdef",
        )
    }

    pub async fn tenant(&self, email: &str) -> Tenant {
        self.running()
            .ctx
            .tenants
            .create(email, None)
            .await
            .expect("tenant created")
            .into()
    }

    /// The configuration the server runs with (data directory, master key path...).
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn ctx(&self) -> &halley::commands::Ctx {
        &self.running().ctx
    }

    /// Stops the server cleanly and starts it again on the same data (ports change).
    pub async fn restart(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        let mut config = self.config.clone();
        config.http_addr = "127.0.0.1:0".parse().unwrap();
        config.cometql_addr = "127.0.0.1:0".parse().unwrap();
        self.running = Some(halley::app::start(config).await.expect("server restarts"));
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        if let Some(pg) = self.pg.take() {
            pg.drop_db().await;
        }
    }
}

/// Two tenants, A and B, on one server: the same pipe names and user ids on both sides.
pub async fn two_tenants(backend: Backend) -> (TestServer, Tenant, Tenant) {
    let server = TestServer::start(backend).await;
    let a = server.tenant("a@example.com").await;
    let b = server.tenant("b@example.com").await;
    (server, a, b)
}

/// Two tenants, A and B, each with a raw CometQL session logged in: `(server, a, b, qa, qb)`.
pub async fn world(backend: Backend) -> (TestServer, Tenant, Tenant, RawMysql, RawMysql) {
    let (server, a, b) = two_tenants(backend).await;
    let qa = RawMysql::login(&server, &a).await;
    let qb = RawMysql::login(&server, &b).await;
    (server, a, b, qa, qb)
}

/// Declares `mod $name { sqlite, postgres }`: the same test body against both storage backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::Backend::Postgres).await
                }
            }
        )*
    };
}
