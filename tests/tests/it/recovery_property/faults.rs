//! The recovery property on a cluster (issue 15: "Redis faults: `CLIENT KILL TYPE pubsub`, a Redis
//! restart: every client either gets every message or an explicit gap/recovered:false, never a silent
//! hole"). The same generated cases, with Redis faults instead of server restarts (`Faults::Redis`), on
//! [`NODES`] nodes over a Redis of the test's own (so breaking it disturbs no other test): the clients
//! spread over the nodes, one CometQL session on the first node and the racing one on the last, so
//! every message crosses Redis. `check` is the same property.
//!
//! What changes for the driver on a cluster: a publish returns once Redis took it, not once delivered,
//! so reading "everything sent so far" is reading until the client stands at the pipe's top in Redis
//! (or has been told `gap`); after a fault the frames owed to the clients are not counted any more
//! (some messages may be lost, with their `gap`), and the driver waits until every node has noticed
//! the fault and is ready again before it goes on.

use std::time::Duration;

use halley::ids::{DevId, PipeName};
use halley_tests::cluster::RedisProcess;
use halley_tests::wait::{eventually, WAIT};
use halley_tests::{Backend, TestServer};

use super::cases::{Case, Faults};
use super::{seeds, Tally, World};

/// Nodes of the cluster the cases run on.
pub(super) const NODES: usize = 2;
/// Cluster cases unless `HALLEY_PROPERTY_CASES` says otherwise (each starts a cluster of its own).
const CASES: u64 = 16;

/// A Redis restart takes the nodes longer to get over than a server restart: a lease renewal that failed
/// while Redis was away keeps a node not ready until the next one (every 3 s).
const RECOVERY: Duration = Duration::from_secs(20);

impl World<'_> {
    /// `CLIENT KILL TYPE pubsub`: every node's pub/sub connection is closed by Redis.
    pub(super) async fn kill_pubsub(&mut self) {
        let before = self.reconnects();
        let mut redis = self.redis_conn().await;
        let killed: i64 = redis::cmd("CLIENT")
            .arg(&["KILL", "TYPE", "pubsub"])
            .query_async(&mut redis)
            .await
            .expect("CLIENT KILL");
        assert!(
            killed >= NODES as i64,
            "{killed} pub/sub connections killed"
        );
        self.recovered(before, false).await;
        self.tally.kills += 1;
    }

    /// Redis restarts empty: every pipe's numbering is gone, the next publish starts a new epoch.
    pub(super) async fn restart_redis(&mut self) {
        let before = self.reconnects();
        self.redis
            .as_mut()
            .expect("the cluster's Redis")
            .restart()
            .await;
        self.recovered(before, true).await;
        self.streams.restarted();
        self.tally.redis_restarts += 1;
    }

    /// Waits until every node noticed the fault (a reconnect more than `before`) and is ready again;
    /// after a restart, until each node's lease is back in the new Redis too (its heartbeat succeeded
    /// since: a renewal that failed while Redis was away cannot make it not ready later). What was on
    /// its way to the clients is not counted any more.
    async fn recovered(&mut self, before: Vec<u64>, restarted: bool) {
        let prefix = self.d().prefix().expect("a cluster").to_string();
        let redis = self.redis_conn().await;
        for (i, node) in self.d().nodes().iter().enumerate() {
            let lease = format!("{prefix}:node:node-{i}");
            let before = before[i];
            eventually(RECOVERY, || {
                let (lease, mut redis) = (lease.clone(), redis.clone());
                async move {
                    let back = reconnects(node) > before && node.ctx().hub.ready();
                    let leased = !restarted
                        || redis::cmd("EXISTS")
                            .arg(&lease)
                            .query_async::<bool>(&mut redis)
                            .await?;
                    match back && leased {
                        true => Ok(()),
                        false => Err(anyhow::anyhow!("node {i} is not back (leased: {leased})")),
                    }
                }
            })
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        }
        self.pending.iter_mut().for_each(|p| *p = 0);
    }

    fn d(&self) -> &halley_tests::deploy::Deployment {
        self.d.as_ref().expect("the cluster")
    }

    fn reconnects(&self) -> Vec<u64> {
        self.d().nodes().iter().map(reconnects).collect()
    }

    async fn redis_conn(&self) -> redis::aio::MultiplexedConnection {
        let url = self.redis.as_ref().expect("the cluster's Redis").url();
        redis::Client::open(url)
            .expect("Redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to Redis")
    }

    /// On a cluster: the model's streams as Redis numbers them (each pipe's epoch and top, or none).
    pub(super) async fn sync_streams(&mut self) -> Result<(), String> {
        if self.redis.is_none() {
            return Ok(());
        }
        for p in 0..self.case.pipes {
            match self.numbering(p).await? {
                Some((epoch, top)) => self.streams.learn_at(p, &epoch, top),
                None => self.streams.forget(p),
            }
        }
        Ok(())
    }

    /// Pipe `p`'s epoch and top in the cluster's Redis.
    async fn numbering(&self, p: usize) -> Result<Option<(String, u64)>, String> {
        let prefix = self.d().prefix().expect("a cluster");
        let pipe = PipeName::parse_command(&self.names[p]).expect("a pipe name");
        let meta = halley::cluster::Keys::new(prefix).meta(DevId(self.tenant.dev_id), &pipe);
        let (epoch, top): (Option<String>, Option<u64>) = redis::cmd("HMGET")
            .arg(&meta)
            .arg("e")
            .arg("t")
            .query_async(&mut self.redis_conn().await)
            .await
            .map_err(|e| e.to_string())?;
        Ok(epoch.zip(top))
    }

    /// On a cluster: reads until client `c` stands at each of its pipes' top in Redis, or was told
    /// `gap` (then it resubscribes, and stands there after). On one server: nothing to do.
    pub(super) async fn read_up_to_last_published(&mut self, c: usize) -> Result<(), String> {
        if self.redis.is_none() {
            return Ok(());
        }
        let mut tops = Vec::new();
        for &p in &self.clients[c].pipes {
            if let Some((epoch, top)) = self.numbering(p).await? {
                tops.push((p, epoch, top));
            }
        }
        loop {
            let client = &self.clients[c];
            let there = tops
                .iter()
                .all(|(p, e, t)| client.positions.get(p) == Some(&(e.clone(), *t)));
            if there || client.wants_resubscribe {
                return Ok(());
            }
            let conn = self.conns[c].as_mut().expect("an open connection");
            let text = conn.ws.recv_text(WAIT).await.map_err(|e| {
                format!("client {c}: no frame while it is not at its pipes' tops {tops:?}: {e:#}")
            })?;
            self.process(c, &text)?;
        }
    }
}

/// The node's `halley_cluster_reconnects_total`.
fn reconnects(node: &TestServer) -> u64 {
    let mut text = String::new();
    node.ctx().hub.render_broker_metrics(&mut text);
    let name = "halley_cluster_reconnects_total ";
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .expect("halley_cluster_reconnects_total in the node's metrics")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleavings_on_a_cluster_never_hide_a_hole() {
    let mut redis = RedisProcess::start().await;
    let mut total = Tally::default();
    let seeds = seeds(CASES);
    for &seed in &seeds {
        let case = Case::generate_for(seed, Faults::Redis);
        let mut world = match World::start(Backend::Postgres, Some(&mut redis), &case).await {
            Ok(world) => world,
            Err(e) => panic!("seed {seed} (cluster), at the start: {e}"),
        };
        if let Err(e) = world.run().await {
            panic!(
                "seed {seed} (cluster): {e}\n{}\nagain: HALLEY_PROPERTY_SEED={seed} cargo test -p halley-tests --test it recovery_property::faults",
                world.report()
            );
        }
        eprintln!("cluster seed {seed}: {:?}", world.tally);
        total.add(world.tally);
        world.finish().await;
    }
    eprintln!("cluster, {} cases: {total:?}", seeds.len());
    if seeds.len() >= CASES as usize {
        // The cases still make the situations the property is about: faults of both kinds, messages
        // lost and told (`gap`, `recovered:false`), and recoveries.
        assert!(total.kills > 0 && total.redis_restarts > 0, "{total:?}");
        assert!(
            total.gaps > 0 && total.lost > 0 && total.recovered > 0,
            "{total:?}"
        );
    }
}
