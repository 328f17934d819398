//! Several real `halley` processes as one cluster (issue 15's end-to-end tests): each node its own child
//! process ([`ServerProcess`]) with its own data directory and name, all on one PostgreSQL database and
//! one Redis under a key prefix of their own, one master key file (the tenants' keys are sealed with it: a
//! node with another one could not check its users' JWTs), ports 0 read back from each node's listening
//! line. Unlike
//! the in-process [`crate::cluster::TestCluster`], a node here can be killed with SIGKILL.

use std::net::SocketAddr;

use anyhow::Context;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::cluster::{fresh_prefix, redis_url};
use crate::pg::TempPgDb;
use crate::process::ServerProcess;
use crate::wait::{eventually, within, WAIT};
use crate::Tenant;

pub struct ProcessCluster {
    pub nodes: Vec<ServerProcess>,
    pub prefix: String,
    pg: Option<TempPgDb>,
    _shared: tempfile::TempDir,
}

impl ProcessCluster {
    /// `n` nodes named `node-0`... on the shared test Redis and a fresh PostgreSQL database, publish and
    /// connection-rate limits lifted; returns once every node says `"ready": true` on `/info`.
    pub async fn start(n: usize) -> ProcessCluster {
        let pg = TempPgDb::require().await.expect("PostgreSQL for a cluster");
        let prefix = fresh_prefix();
        let shared = tempfile::tempdir().expect("a directory for the master key");
        let master_key = shared.path().join("master.key");
        let mut nodes = Vec::new();
        for i in 0..n {
            let toml = format!(
                "master_key_file = {master_key:?}\n[limits]\npublishes_per_sec = 1000000\npublish_burst = 1000000\n\
                 new_connections_per_ip_per_sec = 10000\nnew_connections_per_ip_burst = 10000\n\
                 [cluster]\nredis_url = {redis:?}\nkey_prefix = {prefix:?}\nnode_name = \"node-{i}\"\n",
                redis = redis_url(),
                master_key = master_key.display().to_string(),
            );
            let node = ServerProcess::start_on(pg.url(), &toml)
                .await
                .unwrap_or_else(|e| panic!("node-{i}: {e:#}"));
            nodes.push(node);
        }
        for node in &nodes {
            wait_ready(node.http_addr()).await;
        }
        ProcessCluster {
            nodes,
            prefix,
            pg: Some(pg),
            _shared: shared,
        }
    }

    pub fn node(&self, i: usize) -> &ServerProcess {
        &self.nodes[i]
    }

    /// A tenant, made in the shared database (every node reads it from there).
    pub async fn tenant(&self, email: &str) -> Tenant {
        self.nodes[0].tenant(email).await.expect("create a tenant")
    }

    /// Kills every node and drops the database.
    pub async fn stop(mut self) {
        for mut node in self.nodes.drain(..) {
            node.kill();
        }
        if let Some(pg) = self.pg.take() {
            pg.drop_db().await;
        }
    }
}

/// `GET <path>` on an HTTP address: the body of the answer (bounded by [`WAIT`]).
pub async fn http_get(http: SocketAddr, path: &str) -> anyhow::Result<String> {
    within(WAIT, async {
        let mut s = tokio::net::TcpStream::connect(http).await?;
        let head = format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
        s.write_all(head.as_bytes()).await?;
        let mut text = String::new();
        s.read_to_string(&mut text).await?;
        let body = text
            .find("\r\n\r\n")
            .map(|at| text[at + 4..].to_string())
            .context("an HTTP answer")?;
        anyhow::Ok(body)
    })
    .await?
}

/// What a node's `/info` says.
pub async fn info(http: SocketAddr) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&http_get(http, "/info").await?)?)
}

/// Waits (bounded) until the node's `/info` says `"ready": true`.
pub async fn wait_ready(http: SocketAddr) {
    eventually(WAIT, || async {
        let v = info(http).await?;
        match v["ready"] == Value::Bool(true) {
            true => Ok(()),
            false => Err(anyhow::anyhow!("/info of {http}: {v}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}
