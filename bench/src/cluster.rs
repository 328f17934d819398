//! The halley-cluster target (issue 15): two Halley nodes on one fresh PostgreSQL database and a Redis the
//! load tool starts itself on a free loopback port, with nothing saved (`--save '' --appendonly no`), so
//! that its CPU time and its counters are this run's only. Node A (the `Server`'s own child) takes the
//! publishers; subscribers alternate between A and B (`Target::ws_addr`). The server's CPU is both nodes'
//! and Redis's.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::child::{free_addr, MemoryRule, ServerChild, TempDir};
use crate::compare::Plan;
use crate::record::Record;
use crate::redis_stats::{Delta, RedisConn};
use crate::servers::{self, Node, PgDatabase, ServeSpec, Server};
use crate::target::Target;

/// What a cluster has besides its first node.
pub struct Cluster {
    /// Node B.
    pub other: Node,
    pub redis: ServerChild,
    pub redis_addr: SocketAddr,
    /// The shared master key file (every node must read the same one). Dropped last.
    _dir: TempDir,
}

impl Cluster {
    /// CPU seconds of node B and Redis so far (node A's is the `Server`'s).
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        Ok(self.other.child.cpu_seconds()? + self.redis.cpu_seconds()?)
    }
}

/// `redis-server` on a free loopback port, in the foreground, logging to stdout, saving nothing.
fn start_redis(bin: &Path) -> anyhow::Result<(ServerChild, SocketAddr)> {
    let dir = TempDir::new("redis")?;
    let addr = free_addr()?;
    let mut cmd = Command::new(bin);
    cmd.arg("--port")
        .arg(addr.port().to_string())
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args([
            "--daemonize",
            "no",
            "--logfile",
            "",
            "--loglevel",
            "warning",
        ])
        .arg("--dir")
        .arg(dir.path());
    // With --loglevel warning Redis prints nothing once ready: wait for the port instead.
    let child =
        ServerChild::start("redis", cmd, dir, "", addr, MemoryRule::VmRss).with_context(|| {
            format!(
                "starting {} (apt-get install -y redis-server)",
                bin.display()
            )
        })?;
    Ok((child, addr))
}

/// `GET /info` answers `"ready":true`: the node's pub/sub connection is up and its probe came back.
fn ready(http: SocketAddr) -> bool {
    let ask = || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&http, Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"GET /info HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body)
    };
    ask().is_ok_and(|b| b.contains("\"ready\":true"))
}

fn wait_ready(name: &str, http: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready(http) {
        if Instant::now() > deadline {
            bail!("cluster node {name} ({http}) not ready within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A fresh database on `postgres`, a fresh Redis, the tenant (created once: both nodes read it from the
/// database, sealed with the shared master key), then node A and node B, each waited for until ready.
pub fn start(plan: &Plan) -> anyhow::Result<Server> {
    let (bin, wrap) = (plan.server_bin.as_path(), plan.server_wrap.as_slice());
    let db = PgDatabase::create(&plan.postgres)?;
    let db_url = db.url();
    let (redis, redis_addr) = start_redis(&plan.redis_bin)?;
    let shared = TempDir::new("cluster")?;
    let master_key = shared.path().join("master.key").display().to_string();
    // Fresh, though the Redis is too: a run against a shared Redis (by hand) cannot meet an old run's keys.
    let prefix = format!("bench{}x{}", std::process::id(), crate::payload::now_us());
    let env_of = |node: &str| {
        vec![
            ("HALLEY_MASTER_KEY_FILE", master_key.clone()),
            ("HALLEY_REDIS_URL", format!("redis://{redis_addr}")),
            ("HALLEY_REDIS_PREFIX", prefix.clone()),
            ("HALLEY_NODE_NAME", node.to_owned()),
        ]
    };
    let dir_a = TempDir::new("halley-a")?;
    let tenant = servers::create_tenant(bin, dir_a.path(), &db_url, &env_of("a")[..1])?;
    let (env_a, env_b) = (env_of("a"), env_of("b"));
    let spec = |env| ServeSpec {
        bin,
        wrap,
        db_url: &db_url,
        with_tls: false,
        env,
        extra_config: &plan.halley_extra,
    };
    let a = servers::serve(&spec(&env_a), dir_a)?;
    let b = servers::serve(&spec(&env_b), TempDir::new("halley-b")?)?;
    wait_ready("a", a.http)?;
    wait_ready("b", b.http)?;
    Ok(Server {
        child: a.child,
        http: a.http,
        publish: a.publish,
        dev_id: tenant.dev_id,
        key: tenant.key,
        pusher: tenant.pusher,
        https: None,
        tls: None,
        cluster: Some(Cluster {
            other: b,
            redis,
            redis_addr,
            _dir: shared,
        }),
        _db: Some(db),
    })
}

/// After a storm on a cluster, the other reconnect: Redis drops every pub/sub connection (`CLIENT KILL
/// TYPE pubsub`), and the nodes connect again and SUBSCRIBE every channel they want, in batches. Records
/// resubscribe_channels (what Redis had before), resubscribe_s (until it has them all again) and
/// resubscribe_calls (the SUBSCRIBE commands meanwhile, both nodes').
pub async fn resubscribe(t: &Target, r: &mut Record) -> anyhow::Result<()> {
    let Some(addr) = t.redis() else {
        return Ok(());
    };
    let mut conn = RedisConn::connect(addr)?;
    let channels = conn.channels()?;
    let before = conn.snapshot()?;
    let t0 = Instant::now();
    conn.command(&["CLIENT", "KILL", "TYPE", "pubsub"])?;
    let deadline = t0 + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if conn.channels()? >= channels {
            break;
        }
        if Instant::now() > deadline {
            bail!("Redis has not all its {channels} channels back 30 s after CLIENT KILL");
        }
    }
    let took = t0.elapsed();
    let d = Delta::between(&before, &conn.snapshot()?);
    r.set("resubscribe_channels", channels as f64);
    r.set("resubscribe_s", took.as_secs_f64());
    r.set("resubscribe_calls", d.calls_of("subscribe") as f64);
    Ok(())
}
