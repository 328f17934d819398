//! Starting the other Pusher servers Halley's `/app/{key}` is compared with: Sockudo (Rust) and Soketi
//! (Node). Both are installed by hand outside the repository and found by path (`--sockudo-bin`,
//! `--soketi-bin`); the load tool never downloads anything. Each gets one app, no Redis (its local
//! adapter), metrics off, and its per-app limits lifted like Halley's (the benchmark is one app on loopback).

use std::path::Path;
use std::process::Command;

use anyhow::bail;

use crate::child::{free_addr, MemoryRule, ServerChild, TempDir};
use crate::pusher::App;
use crate::servers::Server;

/// The same credentials for every server that takes them from the command line.
fn bench_app() -> App {
    App {
        id: "1".into(),
        key: "bench-app-key-0000000".into(),
        secret: "bench-app-secret-000000".into(),
    }
}

fn started(child: ServerChild, http: std::net::SocketAddr, app: App) -> Server {
    Server {
        child,
        http,
        publish: http,
        dev_id: 0,
        key: String::new(),
        pusher: app,
        https: None,
        tls: None,
        cluster: None,
        _db: None,
    }
}

/// Sockudo (`cargo install sockudo`, 5.x) configured by its environment variables alone, run in a fresh
/// directory so that no config/config.toml is picked up.
pub fn start_sockudo(bin: &Path) -> anyhow::Result<Server> {
    if !bin.exists() {
        bail!(
            "{} does not exist: cargo install sockudo --root <dir>, then --sockudo-bin <dir>/bin/sockudo",
            bin.display()
        );
    }
    let dir = TempDir::new("sockudo")?;
    let http = free_addr()?;
    let app = bench_app();
    let lifted = "1000000";
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir.path())
        .env("HOST", http.ip().to_string())
        .env("PORT", http.port().to_string())
        .env("SOCKUDO_DEFAULT_APP_ID", &app.id)
        .env("SOCKUDO_DEFAULT_APP_KEY", &app.key)
        .env("SOCKUDO_DEFAULT_APP_SECRET", &app.secret)
        .env("SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS", lifted)
        .env("SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND", lifted)
        .env("SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND", lifted)
        .env("ADAPTER_DRIVER", "local")
        .env("CACHE_DRIVER", "memory")
        .env("QUEUE_DRIVER", "memory")
        .env("APP_MANAGER_DRIVER", "memory")
        .env("RATE_LIMITER_ENABLED", "false")
        .env("METRICS_ENABLED", "false")
        .env("DEBUG", "false")
        // Its default 10 s of grace on SIGTERM would cost every scenario 10 s (and a SIGKILL).
        .env("SHUTDOWN_GRACE_PERIOD", "1")
        .env("RUST_LOG", "warn");
    // Sockudo prints no fixed "listening" line: ready once the port accepts.
    let child = ServerChild::start("sockudo", cmd, dir, "", http, MemoryRule::VmRss)?;
    Ok(started(child, http, app))
}

/// Soketi (`npm install @soketi/soketi`, 1.x): `bin` is its CLI (node_modules/.bin/soketi), run as
/// `soketi start` with its SOKETI_* variables.
pub fn start_soketi(bin: &Path) -> anyhow::Result<Server> {
    if !bin.exists() {
        bail!(
            "{} does not exist: npm install @soketi/soketi in a scratch directory, then \
             --soketi-bin <dir>/node_modules/.bin/soketi",
            bin.display()
        );
    }
    let dir = TempDir::new("soketi")?;
    let http = free_addr()?;
    let app = bench_app();
    let mut cmd = Command::new(bin);
    cmd.arg("start")
        .current_dir(dir.path())
        .env("SOKETI_HOST", http.ip().to_string())
        .env("SOKETI_PORT", http.port().to_string())
        .env("SOKETI_DEFAULT_APP_ID", &app.id)
        .env("SOKETI_DEFAULT_APP_KEY", &app.key)
        .env("SOKETI_DEFAULT_APP_SECRET", &app.secret)
        .env("SOKETI_DEFAULT_APP_MAX_CONNECTIONS", "-1")
        .env("SOKETI_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC", "-1")
        .env("SOKETI_DEFAULT_APP_MAX_READ_REQ_PER_SEC", "-1")
        .env("SOKETI_ADAPTER_DRIVER", "local")
        .env("SOKETI_METRICS_ENABLED", "false")
        .env("SOKETI_DEBUG", "0");
    // One Node process; ready once the port accepts.
    let child = ServerChild::start("soketi", cmd, dir, "", http, MemoryRule::VmRss)?;
    Ok(started(child, http, app))
}
