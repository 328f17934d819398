//! Starting the servers measured: Halley (the binary under test), the raw baseline (this same binary,
//! `raw-server`), and Nchan (nginx with libnginx-mod-nchan). The Pusher servers are in pusher_servers.rs.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _};

use crate::child::{free_addr, MemoryRule, ServerChild, TempDir};
use crate::cluster::Cluster;
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
    /// A cluster's other node and its Redis (halley-cluster); `child` is its first node.
    pub cluster: Option<Cluster>,
    /// Declared after `child` and `cluster`, so dropped after them: the database is dropped once the
    /// servers have stopped.
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

/// What `halley tenant create` printed: the tenant every scenario uses.
pub struct Tenant {
    pub dev_id: u64,
    pub key: String,
    pub pusher: pusher::App,
}

/// `halley tenant create` with the data directory `dir`, the database `db_url` (empty: SQLite in `dir`) and
/// `env` (a cluster's shared master key file).
pub fn create_tenant(
    bin: &Path,
    dir: &Path,
    db_url: &str,
    env: &[(&str, String)],
) -> anyhow::Result<Tenant> {
    let out = Command::new(bin)
        .args(["tenant", "create", "--email", "b@example.com"])
        .env("HALLEY_DATA_DIR", dir)
        .env("HALLEY_DATABASE_URL", db_url)
        .env("HALLEY_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
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
    let key = field("key")?;
    Ok(Tenant {
        dev_id: field("dev_id")?.parse()?,
        pusher: pusher::App {
            id: field("dev_id")?,
            key: field("app_key")?,
            secret: key.clone(),
        },
        key,
    })
}

/// One `halley serve` and where it listens.
pub struct Node {
    pub child: ServerChild,
    pub http: SocketAddr,
    pub publish: SocketAddr,
    pub https: Option<SocketAddr>,
    pub tls: Option<ClientTls>,
}

/// How one `halley serve` is started: the binary, a wrapper command (a profiler; empty for none), the
/// database URL (empty: SQLite in the data directory), TLS or not, and more environment (a cluster's).
pub struct ServeSpec<'a> {
    pub bin: &'a Path,
    pub wrap: &'a [String],
    pub db_url: &'a str,
    pub with_tls: bool,
    pub env: &'a [(&'a str, String)],
    /// TOML appended to the benchmark's configuration (`--halley-config`), empty for none.
    pub extra_config: &'a str,
}

/// `halley serve` with the data directory `dir` (kept until it stops) on two free loopback ports (three
/// with TLS: HTTPS/WSS, and CometQL offers TLS, with a fresh certificate), with the benchmark's limits and
/// then `extra_config` (a `[storage]` table, say).
pub fn serve(spec: &ServeSpec<'_>, dir: TempDir) -> anyhow::Result<Node> {
    let http = free_addr()?;
    let publish = free_addr()?;
    let config = dir.path().join("halley.toml");
    std::fs::write(&config, format!("{HALLEY_LIMITS}\n{}\n", spec.extra_config))
        .context("writing the benchmark's halley.toml")?;
    let (https, tls) = match spec.with_tls {
        true => (Some(free_addr()?), Some(tls::make_certs(dir.path())?)),
        false => (None, None),
    };
    let mut cmd = match spec.wrap.split_first() {
        Some((tool, tool_args)) => {
            let mut c = Command::new(tool);
            c.args(tool_args).arg(spec.bin);
            c
        }
        None => Command::new(spec.bin),
    };
    cmd.arg("--config")
        .arg(&config)
        .arg("serve")
        .env("HALLEY_DATA_DIR", dir.path())
        .env("HALLEY_DATABASE_URL", spec.db_url)
        .env("HALLEY_HTTP_ADDR", http.to_string())
        .env("HALLEY_COMETQL_ADDR", publish.to_string())
        .env("HALLEY_LOG", "warn")
        .envs(spec.env.iter().map(|(k, v)| (k, v)));
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
    Ok(Node {
        child,
        http,
        publish,
        https,
        tls,
    })
}

/// `halley tenant create`, then `halley serve` (see `serve`), with a fresh data directory (and on
/// PostgreSQL a fresh database).
pub fn start_halley(plan: &Plan, with_tls: bool, database: Database) -> anyhow::Result<Server> {
    let (bin, wrap) = (plan.server_bin.as_path(), plan.server_wrap.as_slice());
    let dir = TempDir::new("halley")?;
    let db = match database {
        Database::Sqlite => None,
        Database::Postgres(server) => Some(PgDatabase::create(server)?),
    };
    // Empty: Halley's default, SQLite in the data directory.
    let db_url = db.as_ref().map(PgDatabase::url).unwrap_or_default();
    let tenant = create_tenant(bin, dir.path(), &db_url, &[])?;
    let spec = ServeSpec {
        bin,
        wrap,
        db_url: &db_url,
        with_tls,
        env: &[],
        extra_config: &plan.halley_extra,
    };
    let node = serve(&spec, dir)?;
    Ok(Server {
        child: node.child,
        http: node.http,
        publish: node.publish,
        dev_id: tenant.dev_id,
        key: tenant.key,
        pusher: tenant.pusher,
        https: node.https,
        tls: node.tls,
        cluster: None,
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
        cluster: None,
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
        cluster: None,
        _db: None,
    })
}
