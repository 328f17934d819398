//! Where a test runs: one server on SQLite, one on PostgreSQL, or a three-node cluster on PostgreSQL and
//! Redis (issue 15: "the compatibility suite run against a three-node cluster with clients spread over
//! the nodes gives the single-node answers"). A test written against a [`Deployment`] asks it for the node
//! its CometQL backend talks to ([`Deployment::cql`]) and the node its i-th browser connects to
//! ([`Deployment::ws`]); on one server both are that server, on the cluster the backend is on node 0 and
//! the browsers rotate over the other nodes, so every publish, presence change and private message
//! crosses Redis, and two browsers of one test are on different nodes (and, with three or more, some on
//! the same node). [`on_every_target!`](crate::on_every_target) runs a test body on the three targets.

use halley::config::Config;

use crate::browser::{ws_connections, Browser};
use crate::cluster::TestCluster;
use crate::cometql::insert_sql;
use crate::mysql_raw::RawMysql;
use crate::wait::{eventually, WAIT};
use crate::{Backend, Tenant, TestServer};

/// Nodes of the cluster target: the CometQL backend's node and two for the browsers.
pub const CLUSTER_NODES: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Sqlite,
    Postgres,
    /// [`CLUSTER_NODES`] nodes on one PostgreSQL database and the shared test Redis.
    Cluster,
}

enum Nodes {
    Single(Box<TestServer>),
    Cluster(TestCluster),
}

pub struct Deployment {
    nodes: Nodes,
}

impl Deployment {
    pub async fn start(target: Target) -> Deployment {
        Self::start_with(target, |_| {}).await
    }

    /// `tweak` adjusts the configuration of the server, or of every node alike.
    pub async fn start_with(target: Target, tweak: impl Fn(&mut Config)) -> Deployment {
        match target {
            Target::Sqlite => Self::single_with(Backend::Sqlite, tweak).await,
            Target::Postgres => Self::single_with(Backend::Postgres, tweak).await,
            Target::Cluster => {
                Self::cluster_on(CLUSTER_NODES, &crate::cluster::redis_url(), tweak).await
            }
        }
    }

    /// One server on `backend`.
    pub async fn single_with(backend: Backend, tweak: impl Fn(&mut Config)) -> Deployment {
        Deployment {
            nodes: Nodes::Single(Box::new(TestServer::start_with(backend, tweak).await)),
        }
    }

    /// A cluster of `n` nodes on the Redis at `redis_url` (one a test may break: a
    /// [`crate::cluster::RedisProcess`]); `tweak` adjusts every node's configuration.
    pub async fn cluster_on(n: usize, redis_url: &str, tweak: impl Fn(&mut Config)) -> Deployment {
        Deployment {
            nodes: Nodes::Cluster(TestCluster::start_on(n, redis_url, tweak).await),
        }
    }

    /// Restarts the single server on its data (see [`TestServer::restart`]). A cluster's nodes are
    /// restarted one by one, as an operator does, by the cluster suites; here it panics.
    pub async fn restart(&mut self) {
        match &mut self.nodes {
            Nodes::Single(s) => s.restart().await,
            Nodes::Cluster(_) => panic!("a cluster is not restarted as a whole"),
        }
    }

    /// The cluster's key prefix (`None` for one server).
    pub fn prefix(&self) -> Option<&str> {
        match &self.nodes {
            Nodes::Single(_) => None,
            Nodes::Cluster(c) => Some(&c.prefix),
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.nodes, Nodes::Cluster(_))
    }

    /// Every node (one for a single server).
    pub fn nodes(&self) -> &[TestServer] {
        match &self.nodes {
            Nodes::Single(s) => std::slice::from_ref(&**s),
            Nodes::Cluster(c) => &c.nodes,
        }
    }

    /// The node the tenant's CometQL backend talks to.
    pub fn cql(&self) -> &TestServer {
        &self.nodes()[0]
    }

    /// The node browser `i` of a test connects to: on the cluster, the nodes other than the backend's,
    /// in turn.
    pub fn ws(&self, i: usize) -> &TestServer {
        let nodes = self.nodes();
        match nodes.len() {
            1 => &nodes[0],
            n => &nodes[1 + i % (n - 1)],
        }
    }

    pub async fn tenant(&self, email: &str) -> Tenant {
        self.cql().tenant(email).await
    }

    /// The tenant's WebSocket connections, all nodes together.
    pub fn ws_connections(&self, dev_id: u64) -> i64 {
        self.nodes().iter().map(|n| ws_connections(n, dev_id)).sum()
    }

    /// Waits until the tenant has exactly `n` WebSocket connections, all nodes together, and what the
    /// closed ones changed is done everywhere: on one server the count drops once a closed connection is
    /// cleaned up (see [`crate::browser::wait_ws_connections`]); a cluster node writes a close's presence
    /// to Redis after that (a close does not wait for Redis), so each node's presence writer is waited
    /// for too ([`halley::hub::Hub::presence_written`]).
    pub async fn wait_ws_connections(&self, dev_id: u64, n: i64) {
        eventually(WAIT, || async {
            match self.ws_connections(dev_id) {
                got if got == n => Ok(()),
                got => Err(anyhow::anyhow!(
                    "{got} WebSocket connections of dev {dev_id}, want {n}"
                )),
            }
        })
        .await
        .unwrap();
        for node in self.nodes() {
            node.ctx()
                .hub
                .presence_written()
                .await
                .expect("the node's presence written to Redis");
        }
    }

    /// Reads what `b` was sent on `pipe` up to now, and returns it (with any other frame that came
    /// meanwhile). On one server a probe's answer comes after everything pushed before it
    /// ([`Browser::sync`]); on a cluster a pipe's messages and announcements come through Redis, so a
    /// marker is published on the pipe (through the backend's node, behind everything published on the
    /// pipe's channel before) and read up to.
    pub async fn read_pipe_up_to_now(
        &self,
        b: &mut Browser,
        tenant: &Tenant,
        pipe: &str,
    ) -> Vec<String> {
        if !self.is_cluster() {
            return b.sync().await;
        }
        let marker = format!("marker-{:016x}", rand::random::<u64>());
        let mut q = RawMysql::login(self.cql(), tenant).await;
        q.query(&insert_sql(pipe, "marker", &marker))
            .await
            .assert_ok();
        let mut frames = Vec::new();
        loop {
            let frame = b.recv().await;
            if frame.contains(&marker) {
                return frames;
            }
            frames.push(frame);
        }
    }

    pub async fn stop(self) {
        match self.nodes {
            Nodes::Single(s) => (*s).stop().await,
            Nodes::Cluster(c) => c.stop().await,
        }
    }
}

/// Declares `mod $name { sqlite, postgres, cluster }`: the same test body, taking a [`Target`], on one
/// server of each backend and on a three-node cluster.
#[macro_export]
macro_rules! on_every_target {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::deploy::Target::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::deploy::Target::Postgres).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn cluster() {
                    super::$name($crate::deploy::Target::Cluster).await
                }
            }
        )*
    };
}
