//! The server processes the load tool starts: spawned with a private temporary directory, waited for until
//! they say they listen, measured through /proc, and always stopped (SIGTERM, then SIGKILL) when dropped.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rustix::process::{kill_process, Pid, Signal};

use crate::procstat;

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> anyhow::Result<TempDir> {
        let nanos = crate::payload::now_us();
        let path = std::env::temp_dir().join(format!(
            "halley-load-{label}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port (bound, read, released: the server binds it a moment later).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// How a server's memory is read: one process's VmRSS, or the sum of Pss over a master and its workers
/// (VmRSS would count their shared memory once per worker).
#[derive(Clone, Copy, Debug)]
pub enum MemoryRule {
    VmRss,
    PssOfTree,
}

pub struct ServerChild {
    name: String,
    child: Child,
    memory: MemoryRule,
    // Kept until the server is stopped.
    _dir: TempDir,
}

impl ServerChild {
    /// Spawns `cmd` and waits until a line of its stdout contains `ready` (or, when `ready` is empty,
    /// until `probe` accepts a TCP connection). Everything the server prints afterwards is discarded.
    pub fn start(
        name: &str,
        mut cmd: Command,
        dir: TempDir,
        ready: &str,
        probe: SocketAddr,
        memory: MemoryRule,
    ) -> anyhow::Result<ServerChild> {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut server = ServerChild {
            name: name.to_owned(),
            child,
            memory,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!("{name} exited before it was ready: {status}");
            }
            if Instant::now() > deadline {
                bail!("{name} was not ready within 30 s");
            }
            if ready.is_empty() {
                if std::net::TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok()
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            } else {
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(line) if line.contains(ready) => break,
                    _ => {}
                }
            }
        }
        Ok(server)
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// CPU seconds used so far by the server (and its workers).
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let mut ticks = 0;
        for pid in procstat::with_children(self.pid()) {
            ticks += procstat::cpu_ticks(pid)?;
        }
        Ok(ticks as f64 / procstat::ticks_per_second() as f64)
    }

    pub fn memory_kb(&self) -> anyhow::Result<u64> {
        Ok(match self.memory {
            MemoryRule::VmRss => procstat::vm_rss_kb(self.pid())?,
            MemoryRule::PssOfTree => procstat::with_children(self.pid())
                .into_iter()
                .map(procstat::pss_kb)
                .sum::<std::io::Result<u64>>()?,
        })
    }

    /// SIGTERM, up to 10 s for a clean exit, then SIGKILL.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Some(pid) = Pid::from_raw(self.pid()) {
            let _ = kill_process(pid, Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "{} did not stop within 10 s of SIGTERM: killing it",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        self.stop();
    }
}
