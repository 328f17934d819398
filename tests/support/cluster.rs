//! Several nodes that behave as one: N in-process servers on one PostgreSQL database and one Redis, each
//! test with a key prefix of its own (so tests share a Redis without seeing each other), node names
//! distinct. Redis is the one named by HALLEY_TEST_REDIS_URL (tests/run.sh sets it), or one a test starts
//! itself on a free port ([`RedisProcess`]) to kill and restart.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use halley::config::Config;

use crate::pg::TempPgDb;
use crate::wait::{eventually, WAIT};
use crate::{Tenant, TestServer};

pub const REDIS_URL_VAR: &str = "HALLEY_TEST_REDIS_URL";

/// The shared test Redis: HALLEY_TEST_REDIS_URL, else the local default.
pub fn redis_url() -> String {
    std::env::var(REDIS_URL_VAR)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into())
}

/// A key prefix no other test uses.
pub fn fresh_prefix() -> String {
    format!("test-{:016x}", rand::random::<u64>())
}

pub struct TestCluster {
    pub nodes: Vec<TestServer>,
    pub prefix: String,
    pub redis_url: String,
    pg: Option<TempPgDb>,
}

impl TestCluster {
    /// `n` nodes on the shared Redis, publish and connection limits lifted.
    pub async fn start(n: usize) -> TestCluster {
        Self::start_on(n, &redis_url(), |_| {}).await
    }

    /// `n` nodes on the Redis at `redis_url`; `tweak` adjusts each node's configuration.
    pub async fn start_on(n: usize, redis_url: &str, tweak: impl Fn(&mut Config)) -> TestCluster {
        let pg = TempPgDb::require().await.expect("PostgreSQL for a cluster");
        let prefix = fresh_prefix();
        let mut nodes: Vec<TestServer> = Vec::new();
        for i in 0..n {
            // One master key for the cluster (it opens the tenants' keys every node reads), as in
            // production: node 0 makes it, the others use its file.
            let master = nodes.first().map(|n| n.config().master_key_path());
            let node = TestServer::start_on(pg.url(), |c| {
                if let Some(master) = master {
                    c.master_key_file = master;
                }
                c.limits.publishes_per_sec = 1_000_000;
                c.limits.publish_burst = 1_000_000;
                c.limits.new_connections_per_ip_per_sec = 10_000;
                c.limits.new_connections_per_ip_burst = 10_000;
                c.cluster.redis_url = redis_url.to_string();
                c.cluster.key_prefix = prefix.clone();
                c.cluster.node_name = format!("node-{i}");
                tweak(c);
            })
            .await;
            nodes.push(node);
        }
        let cluster = TestCluster {
            nodes,
            prefix,
            redis_url: redis_url.to_string(),
            pg: Some(pg),
        };
        for node in &cluster.nodes {
            wait_ready(node, true).await;
        }
        cluster
    }

    pub fn node(&self, i: usize) -> &TestServer {
        &self.nodes[i]
    }

    /// A tenant (made through node 0: every node reads it from the shared database).
    pub async fn tenant(&self, email: &str) -> Tenant {
        self.nodes[0].tenant(email).await
    }

    /// A connection to the cluster's Redis, for a test to look or to break things.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.redis_url.as_str())
            .expect("Redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to Redis")
    }

    pub async fn stop(mut self) {
        for node in self.nodes.drain(..) {
            node.stop().await;
        }
        if let Some(pg) = self.pg.take() {
            pg.drop_db().await;
        }
    }
}

/// Waits until the node's `ready` is `want` (what `/info` reports).
pub async fn wait_ready(node: &TestServer, want: bool) {
    eventually(WAIT, || async {
        match node.ctx().hub.ready() == want {
            true => Ok(()),
            false => Err(anyhow::anyhow!("ready is not {want}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// A throw-away `redis-server` on a free port, for tests that kill and restart Redis.
pub struct RedisProcess {
    pub port: u16,
    child: Option<Child>,
}

impl RedisProcess {
    pub async fn start() -> RedisProcess {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = RedisProcess { port, child: None };
        redis.spawn().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let url = self.url();
        let up = tokio::time::timeout(WAIT, async {
            loop {
                if let Ok(client) = redis::Client::open(url.as_str()) {
                    if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                        if redis::cmd("PING")
                            .query_async::<String>(&mut c)
                            .await
                            .is_ok()
                        {
                            return;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        up.expect("redis-server answers PING");
    }

    /// Kills it (SIGKILL: nothing saved, like a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
