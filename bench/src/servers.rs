//! Starting the servers measured: Halley (the binary under test), the raw baseline (this same binary,
//! `raw-server`), and Nchan (nginx with libnginx-mod-nchan). The Pusher servers are in pusher_servers.rs.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _};

use crate::child::{free_addr, MemoryRule, ServerChild, TempDir};
use crate::compare::Plan;
use crate::nchan_conf::{NchanConf, MODULE};
use crate::pusher;
use crate::tls::{self, ClientTls};

/// A running server and where to reach it.
pub struct Server {
    pub child: ServerChild,
    /// WebSocket subscribers connect here.
    pub http: SocketAddr,
    /// CometQL (Halley) or the raw server's control port; Nchan publishes on `http`.
    pub publish: SocketAddr,
    pub dev_id: u64,
    pub key: String,
    /// The Pusher app (Halley's: app_id = dev_id, its app_key, secret = the tenant's key); empty for the
    /// raw baseline and Nchan.
    pub pusher: pusher::App,
    /// HTTPS/WSS, when the server was started with TLS.
    pub https: Option<SocketAddr>,
    /// A client configuration trusting the server's certificate, when it has one.
    pub tls: Option<ClientTls>,
    /// Declared after `child`, so dropped after it: the database is dropped once the server has stopped.
    pub _db: Option<PgDatabase>,
}

/// Which database Halley is started on.
#[derive(Clone, Copy, Debug)]
pub enum Database<'a> {
    /// Its default: a file in the fresh data directory.
    Sqlite,
    /// A fresh database created on this server (`postgres://user@host:port`, no database name) for this start
    /// only, and dropped after it.
    Postgres(&'a str),
}

/// A database created with `createdb` and dropped with `dropdb --force` when dropped.
pub struct PgDatabase {
    server: String,
    name: String,
}

impl PgDatabase {
    pub fn create(server: &str) -> anyhow::Result<PgDatabase> {
        let name = format!(
            "halley_load_{}_{}",
            std::process::id(),
            crate::payload::now_us()
        );
        let out = Command::new("createdb")
            .args(["--maintenance-db", &format!("{server}/postgres"), &name])
            .output()
            .context("running createdb (apt-get install -y postgresql-client)")?;
        if !out.status.success() {
            bail!(
                "createdb {name} on {server} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(PgDatabase {
            server: server.to_owned(),
            name,
        })
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let out = Command::new("dropdb")
            .args([
                "--force",
                "--maintenance-db",
                &format!("{}/postgres", self.server),
                &self.name,
            ])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "dropdb {} failed: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("dropdb {}: {e}", self.name),
        }
    }
}

/// The defaults guard a hosted node against one tenant or one address taking it over, which is exactly what a
/// benchmark does (one tenant, 18k connections and 100k publishes from loopback): lift those limits so that
/// the figures measure delivery, not refusals. Everything else stays at its default.
const HALLEY_LIMITS: &str = "\
[limits]
publishes_per_sec = 1000000
publish_burst = 1000000
websocket_connections_per_tenant = 100000
new_connections_per_ip_per_sec = 1000000
new_connections_per_ip_burst = 1000000
connections_per_ip = 1000000
websocket_connections_per_ip_per_tenant = 1000000
# A tenant's recovery windows count in its history quota (100 MiB by default): room for windows-10k's.
history_bytes_per_tenant = 4294967296

# windows-10k fills 10,000 windows of 100 messages (about 500 MB as the node counts them): room for all of
# them, so that the figure is a full window's cost, not the node's 64 MiB budget at work.
[recovery]
window_bytes = 4294967296
";

/// `halley tenant create`, then `halley serve` on two free loopback ports, with a fresh data directory (and
/// on PostgreSQL a fresh database); `serve` runs under `wrap` (a profiler) when it is not empty. With
/// `with_tls`, a fresh certificate too: CometQL offers TLS and a third port serves HTTPS/WSS. The plan's
/// `halley_extra` is appended to the configuration (a `[storage]` table, say).
pub fn start_halley(plan: &Plan, with_tls: bool, database: Database) -> anyhow::Result<Server> {
    let (bin, wrap) = (plan.server_bin.as_path(), plan.server_wrap.as_slice());
    let dir = TempDir::new("halley")?;
    let db = match database {
        Database::Sqlite => None,
        Database::Postgres(server) => Some(PgDatabase::create(server)?),
    };
    // Empty: Halley's default, SQLite in the data directory.
    let db_url = db.as_ref().map(PgDatabase::url).unwrap_or_default();
    let out = Command::new(bin)
        .args(["tenant", "create", "--email", "b@example.com"])
        .env("HALLEY_DATA_DIR", dir.path())
        .env("HALLEY_DATABASE_URL", &db_url)
        .env("HALLEY_LOG", "warn")
        .output()
        .with_context(|| format!("running {} tenant create", bin.display()))?;
    if !out.status.success() {
        bail!(
            "halley tenant create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_owned)
            .with_context(|| format!("no {name}= line in: {text}"))
    };
    let dev_id: u64 = field("dev_id")?.parse()?;
    let key = field("key")?;
    let pusher = pusher::App {
        id: dev_id.to_string(),
        key: field("app_key")?,
        secret: key.clone(),
    };
    let http = free_addr()?;
    let publish = free_addr()?;
    let config = dir.path().join("halley.toml");
    std::fs::write(&config, format!("{HALLEY_LIMITS}\n{}\n", plan.halley_extra))
        .context("writing the benchmark's halley.toml")?;
    let (https, client_tls) = match with_tls {
        true => (Some(free_addr()?), Some(tls::make_certs(dir.path())?)),
        false => (None, None),
    };
    let mut cmd = match wrap.split_first() {
        Some((tool, tool_args)) => {
            let mut c = Command::new(tool);
            c.args(tool_args).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.arg("--config")
        .arg(&config)
        .arg("serve")
        .env("HALLEY_DATA_DIR", dir.path())
        .env("HALLEY_DATABASE_URL", &db_url)
        .env("HALLEY_HTTP_ADDR", http.to_string())
        .env("HALLEY_COMETQL_ADDR", publish.to_string())
        .env("HALLEY_LOG", "warn");
    if let Some(https) = https {
        cmd.env("HALLEY_HTTPS_ADDR", https.to_string())
            .env("HALLEY_TLS_CERT_FILE", dir.path().join("cert.pem"))
            .env("HALLEY_TLS_KEY_FILE", dir.path().join("key.pem"));
    }
    let child = ServerChild::start(
        "halley",
        cmd,
        dir,
        "halley listening",
        http,
        MemoryRule::VmRss,
    )?;
    Ok(Server {
        child,
        http,
        publish,
        dev_id,
        key,
        pusher,
        https,
        tls: client_tls,
        _db: db,
    })
}

/// The baseline server inside this binary, in its own process so that it is measured like the others.
pub fn start_raw() -> anyhow::Result<Server> {
    let dir = TempDir::new("raw")?;
    let http = free_addr()?;
    let publish = free_addr()?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args([
        "raw-server",
        "--http",
        &http.to_string(),
        "--control",
        &publish.to_string(),
    ]);
    let child = ServerChild::start("raw", cmd, dir, "raw listening", http, MemoryRule::VmRss)?;
    Ok(Server {
        child,
        http,
        publish,
        dev_id: 0,
        key: String::new(),
        pusher: pusher::App::default(),
        https: None,
        tls: None,
        _db: None,
    })
}

/// nginx in the foreground with a generated configuration; `workers` worker processes.
pub fn start_nchan(nginx: &Path, workers: usize) -> anyhow::Result<Server> {
    if !Path::new(MODULE).exists() {
        bail!("{MODULE} is missing: apt-get install -y nginx libnginx-mod-nchan");
    }
    let dir = TempDir::new("nchan")?;
    let http = free_addr()?;
    let conf = NchanConf {
        dir: dir.path(),
        listen: http,
        workers,
        run_as_root: rustix::process::geteuid().is_root(),
    }
    .render();
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let mut cmd = Command::new(nginx);
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(dir.path().join("error.log"));
    let child = ServerChild::start("nchan", cmd, dir, "", http, MemoryRule::PssOfTree)?;
    Ok(Server {
        child,
        http,
        publish: http,
        dev_id: 0,
        key: String::new(),
        pusher: pusher::App::default(),
        https: None,
        tls: None,
        _db: None,
    })
}
