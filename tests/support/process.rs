//! The real `halley` binary in its own process, for attack tests that measure the server's memory: an
//! in-process [`crate::TestServer`] shares its address space with the attacking client, so its RSS says
//! nothing about the server. `/proc/<pid>/status` of a child process does.
//!
//! The binary is `$HALLEY_BIN`, else `<target>/debug/halley` (tests/run.sh builds it before the tests).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};

use anyhow::{anyhow, bail, Context};
use halley::config::Config;

use crate::pg::TempPgDb;
use crate::server::{Backend, Tenant};
use crate::wait::WAIT;

/// Where the server binary is: `$HALLEY_BIN`, else the workspace's debug build.
pub fn halley_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("HALLEY_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug/halley")
}

/// Memory figures of a process, from `/proc/<pid>/status`, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Resident set now.
    pub rss_kib: u64,
    /// Highest resident set so far.
    pub hwm_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` of `pid`.
pub fn memory_of(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("no {name} in /proc/{pid}/status"))
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// A `halley serve` child process on port 0 with its own data directory (and PostgreSQL database),
/// killed when dropped.
pub struct ServerProcess {
    child: Child,
    http_addr: SocketAddr,
    cometql_addr: SocketAddr,
    config: Config,
    _dir: tempfile::TempDir,
    pg: Option<TempPgDb>,
    log: Log,
}

impl ServerProcess {
    /// Starts the binary with `toml` appended to a configuration that sets the data directory, the
    /// database and port 0 on loopback (so `toml` may hold top-level keys and `[sections]`).
    pub async fn start(backend: Backend, toml: &str) -> anyhow::Result<ServerProcess> {
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(TempPgDb::require().await?),
        };
        let database_url = pg.as_ref().map(|p| p.url().to_string()).unwrap_or_default();
        let mut server = Self::start_on(&database_url, toml).await?;
        server.pg = pg;
        Ok(server)
    }

    /// [`ServerProcess::start`] on a database the caller owns (several nodes share one; empty: SQLite in
    /// the process's own data directory).
    pub async fn start_on(database_url: &str, toml: &str) -> anyhow::Result<ServerProcess> {
        let dir = tempfile::tempdir().context("temporary data directory")?;
        let file = dir.path().join("halley.toml");
        let text = format!(
            "data_dir = {data_dir:?}\ndatabase_url = {database_url:?}\nhttp_addr = \"127.0.0.1:0\"\n\
             cometql_addr = \"127.0.0.1:0\"\nlog = \"warn\"\n{toml}\n",
            data_dir = dir.path().display().to_string(),
        );
        std::fs::write(&file, text).context("writing halley.toml")?;
        let config = Config::from_file(&file).context("the test configuration")?;
        config.validate().context("the test configuration")?;

        let (child, http_addr, cometql_addr, log) = launch(&file)?;
        Ok(ServerProcess {
            child,
            http_addr,
            cometql_addr,
            config,
            _dir: dir,
            pg: None,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn cometql_addr(&self) -> SocketAddr {
        self.cometql_addr
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What the server has logged so far (its standard error; the first 64 KiB).
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// The server's memory now.
    pub fn memory(&self) -> Memory {
        memory_of(self.pid()).expect("the server process is alive")
    }

    /// True while the process runs (an attack must not have crashed it).
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Creates a tenant in the server's database, as `halley tenant create` does.
    pub async fn tenant(&self, email: &str) -> anyhow::Result<Tenant> {
        let tenants = halley::app::open_tenants(&self.config).await?;
        let created = tenants.create(email, None).await?;
        tenants.storage().close().await;
        Ok(created.into())
    }

    /// Kills the server with SIGKILL (no clean shutdown: nothing is flushed) and starts it again on the same
    /// data directory and database; the ports change.
    pub async fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, http_addr, cometql_addr, log) = launch(&self._dir.path().join("halley.toml"))?;
        self.child = child;
        self.http_addr = http_addr;
        self.cometql_addr = cometql_addr;
        self.log = log;
        Ok(())
    }

    /// Kills the server with SIGKILL (a crash: nothing flushed, no goodbye to anyone) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the server and drops its PostgreSQL database.
    pub async fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pg) = self.pg.take() {
            pg.drop_db().await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `halley --config file serve` and waits for its listening line.
fn launch(file: &Path) -> anyhow::Result<(Child, SocketAddr, SocketAddr, Log)> {
    let bin = halley_bin();
    if !bin.exists() {
        bail!(
            "{} does not exist: run the tests through tests/run.sh, or `cargo build -p halley-server` first",
            bin.display()
        );
    }
    let mut cmd = Command::new(&bin);
    for var in halley::config::ENV_VARS {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .arg("--config")
        .arg(file)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let log = drain(child.stderr.take().expect("stderr"));
    let listening = first_line(child.stdout.take().expect("stdout"));
    let line = match listening.recv_timeout(WAIT) {
        Ok(Some(line)) => line,
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            let _ = log.closed.recv_timeout(WAIT);
            bail!(
                "halley did not print its listening line; stderr:\n{}",
                log.text()
            );
        }
    };
    let (http_addr, cometql_addr) = parse_listening(&line)?;
    Ok((child, http_addr, cometql_addr, log))
}

/// `halley listening: http+ws A cometql B`.
fn parse_listening(line: &str) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["halley", "listening:", "http+ws", http, "cometql", cometql] => {
            Ok((http.parse()?, cometql.parse()?))
        }
        _ => bail!("unexpected first line from halley: {line:?}"),
    }
}

/// The first line of `out` (then the rest is read and dropped so the child never blocks on a full pipe).
fn first_line(out: impl std::io::Read + Send + 'static) -> mpsc::Receiver<Option<String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(out).lines();
        let _ = tx.send(lines.next().and_then(Result::ok));
        for _ in lines {}
    });
    rx
}

/// The server's log as read so far, and a signal when its standard error closes.
struct Log {
    text: Arc<Mutex<String>>,
    closed: mpsc::Receiver<()>,
}

impl Log {
    fn text(&self) -> String {
        self.text.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Everything `err` says until it closes (the log), kept so that tests can read it and a failed start can
/// show it.
fn drain(err: impl std::io::Read + Send + 'static) -> Log {
    let (tx, closed) = mpsc::channel();
    let text = Arc::new(Mutex::new(String::new()));
    let shared = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let mut text = shared.lock().unwrap_or_else(|e| e.into_inner());
            // Bounded: a flood of log lines under attack must not grow the test's own memory.
            if text.len() < 64 * 1024 {
                text.push_str(&line);
                text.push('\n');
            }
        }
        let _ = tx.send(());
    });
    Log { text, closed }
}

#[cfg(test)]
mod tests {
    use super::parse_listening;

    #[test]
    fn reads_the_listening_line() {
        let (h, c) =
            parse_listening("halley listening: http+ws 127.0.0.1:4100 cometql 127.0.0.1:4200")
                .unwrap();
        assert_eq!(h.port(), 4100);
        assert_eq!(c.port(), 4200);
        assert!(parse_listening("something else").is_err());
    }
}
