//! Several nodes that behave as one, on Redis (docs/production.md, "Running several nodes"): publishes and
//! subscriptions of pipes, their positions and recovery, readiness; presence (`presence.rs`: members and
//! users in Redis, announced once cluster-wide; a dead node swept by a survivor, `sweep.rs`); private
//! messages (`private.rs`: a channel per user, and which nodes hold the user decided in Redis atomically
//! with the sender's look); revocations on every node (`control.rs`: a numbered control channel with a
//! window); publishes per tenant and WebSocket connections per tenant across nodes (`limits.rs`,
//! `tenant::leases`); the Pusher protocol's presence, client events, cached events, subscriber counts and
//! `terminate_connections` (`pusher.rs`).
//!
//! How a publish travels. The publishing node runs ONE script (`broker.rs`, EVALSHA) on the pipe's keys:
//! it gives the message the pipe's next offset (the epoch is made on the pipe's first use and kept in
//! Redis), appends the message to the pipe's window (a sorted set by offset, bounded by the node's
//! `[recovery] window_messages` and expiring `window_secs` after the last publish) and PUBLISHes it on the
//! pipe's channel, one channel per (tenant, pipe). The CometQL OK goes back after the script returned.
//! Every node that has subscribers of the pipe, the origin included, delivers from the channel, so every
//! node sees one order; the origin leaves out the `web_pipe2` sender by (origin node, connection id).
//!
//! Pipes that keep history: the database numbers them (`commands/positions.rs`) and that position is kept:
//! the script stores the message under the database's offset and epoch, and the receivers put messages in
//! order. Two nodes' storage writers can PUBLISH offsets 7 and 8 in the wrong order, so a receiver that
//! sees 8 after 6 holds it: it reads 7 from the window (the sorted set takes it whenever it comes), and
//! retries briefly (`receiver::HOLD`) before it gives up and the pipe's positioned subscribers get `gap`.
//!
//! Receiving (`receiver.rs`): per pipe, the last delivered position; a message that follows is delivered
//! at once, one after a hole is delivered after the hole was read from the window (or the positioned
//! subscribers told `gap` when the window no longer has it): never a silent hole. A positioned subscribe
//! (`subscription2`) takes its turn in that same per-pipe order, so a message is either in its replay or
//! delivered live to it; on a node that has delivered nothing of the pipe yet, its place is where its
//! marker, published by the join script, comes through the channel (`join.rs`). Likewise a node that
//! subscribes a pipe's channel learns its place from a sync marker (`receiver::sync`), so that a drop of
//! its pub/sub connection before the pipe's first message reaches it is repaired like any hole. After a reconnect of the pub/sub connection every channel is subscribed again
//! in batches (`subscriber.rs`), then each pipe's last position is compared with Redis's and repaired.
//!
//! Subscriptions: the registry tells `channels.rs` of each pipe's first and last local subscriber; the
//! subscriber task SUBSCRIBEs and UNSUBSCRIBEs in batches; a subscribe answers the client once the channel
//! is confirmed (`Hub::listen`), so nothing published after the answer can be missed.
//!
//! Failing closed: a publish Redis did not take is an error for the publisher (CometQL `ERROR 503`); the
//! node is not ready (`/info`) while its pub/sub connection or its lease is down, or its liveness probe
//! (a message to itself every `PROBE_EVERY`) does not come back; it reconnects by itself with backoff.

mod broker;
mod channels;
mod control;
mod join;
pub mod keys;
mod lease;
mod limits;
mod member;
mod metrics;
mod order;
mod presence;
mod presence_scripts;
mod private;
mod pusher;
mod receiver;
mod scripts;
mod stale;
mod subscriber;
mod sweep;
pub mod wire;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::hub::{Hub, Registry, WindowLimits};
use crate::stats::Stats;

pub use keys::Keys;
pub use presence::StatusChange;

/// How long a command to Redis may take before the node counts Redis as unavailable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a subscribe waits for its channel before it answers anyway (and counts as unavailable).
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);

/// What a cluster node needs to know.
#[derive(Debug, Clone)]
pub struct Settings {
    pub redis_url: String,
    pub key_prefix: String,
    pub node: String,
    pub windows: WindowLimits,
    /// `[pusher] cache_channels_per_tenant`: cached `cache-` channels a tenant keeps cluster-wide.
    pub cache_per_tenant: usize,
}

impl Settings {
    pub fn from_config(config: &crate::config::Config, windows: WindowLimits) -> Settings {
        Settings {
            redis_url: config.cluster.redis_url.clone(),
            key_prefix: config.cluster.key_prefix.clone(),
            node: config.cluster_node_name(),
            windows,
            cache_per_tenant: config.pusher.cache_channels_per_tenant,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster: bad redis_url: {0}")]
    Url(redis::RedisError),
    #[error("cluster: cannot reach Redis: {0}")]
    Connect(redis::RedisError),
    #[error(
        "cluster: the node name {0:?} is held by a live node (its lease key {1} is still set); \
         give each node its own HALLEY_NODE_NAME, or wait for the lease to expire"
    )]
    NameTaken(String, String),
    #[error("cluster: cannot clear this node's presence from a previous run: {0}")]
    Presence(String),
}

/// What every part of the cluster shares.
struct Shared {
    keys: Keys,
    node: String,
    client: redis::Client,
    conn: ConnectionManager,
    registry: Arc<Registry>,
    /// The node's Pusher connections (socket ids, signed-in users), for what other nodes send them.
    pusher: Arc<crate::hub::pusher::PusherState>,
    windows: WindowLimits,
    cache_per_tenant: usize,
    channels: Arc<channels::Channels>,
    /// User channels (private messages, `private.rs`).
    users: Arc<channels::Channels<channels::UserKey>>,
    pipes: receiver::Pipes,
    metrics: metrics::Metrics,
    /// The pub/sub connection is up, subscribed and its probe comes back.
    link_up: AtomicBool,
    /// The node's lease was renewed lately.
    lease_ok: AtomicBool,
    /// Presence changes, to the writer (`presence.rs`).
    presence: presence::Queue,
    /// This node's WebSocket connections counted in Redis, per tenant (`limits.rs`).
    counted: limits::Counted,
    /// What this node wrote of the Pusher protocol, to write again (`pusher.rs`).
    pusher_local: std::sync::Mutex<pusher::Local>,
    /// The highest revocation number this node has applied (`control.rs`).
    control_seen: std::sync::Mutex<Option<u64>>,
}

impl Shared {
    fn ready(&self) -> bool {
        self.link_up.load(Ordering::Relaxed) && self.lease_ok.load(Ordering::Relaxed)
    }
}

/// A running cluster node's Redis side: its hub, and what `shutdown` releases.
pub struct Cluster {
    shared: Arc<Shared>,
    lease: lease::Lease,
    /// The users this node's presence scripts brought online or offline, for users_time.
    status: Option<tokio::sync::mpsc::UnboundedReceiver<StatusChange>>,
}

impl Cluster {
    /// Connects to Redis, takes the node's name (fails when a live node holds it), and starts the
    /// subscriber and the heartbeat on `tasks`. Returns the hub whose publishes go through Redis.
    pub async fn start(
        settings: Settings,
        stats: Stats,
        tasks: &TaskTracker,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Cluster, Hub), ClusterError> {
        let client = redis::Client::open(settings.redis_url.as_str()).map_err(ClusterError::Url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(ClusterError::Connect)?;
        let keys = Keys::new(&settings.key_prefix);
        let lease = lease::Lease::take(conn.clone(), &keys, &settings.node).await?;
        let mut shared = None;
        let wake = Arc::new(tokio::sync::Notify::new());
        let channels = Arc::new(channels::Channels::new(wake.clone()));
        let users = Arc::new(channels::Channels::new(wake));
        let (queue, queued) = presence::Queue::new();
        let (status_tx, status) = tokio::sync::mpsc::unbounded_channel();
        let hub = Hub::with_broker(stats, settings.windows, |registry, pusher| {
            registry.set_interest(Arc::new(channels::Interests {
                pipes: channels.clone(),
                users: users.clone(),
            }));
            let s = Arc::new(Shared {
                keys,
                node: settings.node.clone(),
                client,
                conn,
                registry: registry.clone(),
                pusher,
                windows: settings.windows,
                cache_per_tenant: settings.cache_per_tenant,
                channels,
                users,
                pipes: Default::default(),
                metrics: Default::default(),
                link_up: AtomicBool::new(false),
                lease_ok: AtomicBool::new(true),
                presence: queue,
                control_seen: Default::default(),
                pusher_local: Default::default(),
                counted: Default::default(),
            });
            shared = Some(s.clone());
            Arc::new(broker::RedisBroker::new(s))
        });
        let shared = shared.expect("the hub made its broker");
        // A previous life of this node's name left nothing behind before anyone is served.
        let leftovers = sweep::own_leftovers(&shared, &status_tx)
            .await
            .map_err(|e| ClusterError::Presence(e.to_string()))?;
        if leftovers > 0 {
            tracing::info!(
                removed = leftovers,
                "removed this node's presence from a previous run"
            );
        }
        tasks.spawn(presence::write(
            shared.clone(),
            queued,
            status_tx.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(sweep::run(shared.clone(), status_tx, shutdown.clone()));
        tasks.spawn(subscriber::run(shared.clone(), shutdown.clone()));
        tasks.spawn(limits::refresh(shared.clone(), shutdown.clone()));
        tasks.spawn(pusher::retry_leaves(shared.clone(), shutdown.clone()));
        tasks.spawn(lease.clone().heartbeat(shared.clone(), shutdown));
        tracing::info!(node = %settings.node, prefix = %settings.key_prefix, "joined the cluster");
        let cluster = Cluster {
            shared,
            lease,
            status: Some(status),
        };
        Ok((cluster, hub))
    }

    /// The users this node brought online or offline cluster-wide (once, at start): whoever records
    /// users_time takes them.
    pub fn take_status_changes(
        &mut self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<StatusChange>> {
        self.status.take()
    }

    /// Gives back what this node holds of the tenants' shared limits (a clean stop): its connection
    /// counts, and the publish tokens it leased and did not spend (`(tenant, tokens, burst)`).
    pub async fn release_limits(&self, held: Vec<(crate::ids::DevId, u32, u32)>) {
        limits::release(&self.shared, held).await;
    }

    /// Gives the node's name back (a clean stop), so that a node of that name may start at once.
    pub async fn shutdown(self) {
        self.lease.release().await;
        self.shared.link_up.store(false, Ordering::Relaxed);
    }
}

/// Runs one of the cluster's scripts on the shared connection within `COMMAND_TIMEOUT`; Redis failing or
/// not answering in time is the broker being unavailable.
async fn run<T: redis::FromRedisValue>(
    s: &Shared,
    call: redis::ScriptInvocation<'_>,
) -> Result<T, crate::hub::BrokerError> {
    let mut conn = s.conn.clone();
    match tokio::time::timeout(COMMAND_TIMEOUT, call.invoke_async::<T>(&mut conn)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(broker::unavailable(e)),
        Err(_) => Err(broker::unavailable("no answer in time")),
    }
}
