//! The configuration's sections (`[cometql]`, `[websocket]`, `[limits]`, ...), each with its defaults: the
//! values `halley.example.toml` documents.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The certificate both ports use for TLS. Without it, nothing is offered over TLS and CometQL does not
/// advertise CLIENT_SSL.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM: the certificate, then its intermediates.
    pub cert_file: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Seconds between checks of the two files; a change (or SIGHUP) loads them again, open sessions
    /// keep theirs.
    pub reload_check_secs: u64,
    /// TLS handshakes computed at once; more wait for a slot within their handshake deadline.
    pub max_concurrent_handshakes: usize,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            reload_check_secs: 5,
            max_concurrent_handshakes: 64,
        }
    }
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }
}

/// In-memory caches in front of storage, each bounded so that its memory does not grow with the number of
/// pipes ever used.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Pipes whose history length (pipes_settings) the publish path remembers; past it the least recently
    /// used are forgotten and read again from the database when next published to.
    pub history_lengths_entries: usize,
    /// Pipes whose newest history entries (what `pipe_log` and `SELECT ... FROM pipes_messages` return)
    /// are kept in memory.
    pub history_pipes: usize,
    /// Total bytes of history kept in memory across every tenant.
    pub history_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            history_lengths_entries: 50_000,
            history_pipes: 10_000,
            history_bytes: 32 * 1024 * 1024,
        }
    }
}

/// How durable state is written (docs/production.md, "Durability"): history, queued private messages and
/// users_time go through one writer that commits whatever is waiting in one transaction (group commit).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// `normal`: a write acknowledged to a client survives a crash of Halley (`kill -9`), not necessarily
    /// a crash of the operating system or a power cut (SQLite: `synchronous = NORMAL` in WAL mode;
    /// PostgreSQL: the writer's `synchronous_commit = off`, the last ~0.6 s at most). `full`: it survives
    /// those too, at the price of a flush per batch (SQLite `FULL`, PostgreSQL's own setting).
    pub synchronous: Synchronous,
    /// Connections in the pool for reads and the writes that do not batch; 0: 4 for SQLite (readers
    /// beside the one writer, which has its own connection), 10 for PostgreSQL.
    pub pool_size: u32,
    /// Most writes committed in one transaction.
    pub batch_max: usize,
    /// Writes waiting for the writer; a publisher waits when it is full (back-pressure, never a drop).
    pub queue: usize,
    /// users_time changes waiting to be written (one per user, the newest wins); past it a connect or
    /// disconnect is not recorded (counted in `/metrics` as `halley_users_time_dropped_total`).
    pub users_time_pending: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Normal,
    Full,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            synchronous: Synchronous::Normal,
            pool_size: 0,
            batch_max: 256,
            queue: 4096,
            users_time_pending: 100_000,
        }
    }
}

/// Recovery windows (docs/websocket.md, "Positions and recovery"): what a pipe that some connection asked
/// positions for keeps so that a client reconnecting with its last position gets what it missed; and each
/// user's private-message window (same count and age, a byte budget of its own), for `msg_after`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecoveryConfig {
    /// Messages kept per pipe (the newest).
    pub window_messages: usize,
    /// Seconds a message is kept; whichever of the two limits is smaller applies.
    pub window_secs: u64,
    /// Bytes every window of the node holds together; past it a pipe gives up its oldest messages.
    pub window_bytes: usize,
    /// Most messages one resubscribe replays; a client further behind gets `recovered:false`.
    pub replay_max: u64,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            window_messages: 100,
            window_secs: 120,
            window_bytes: 64 * 1024 * 1024,
            replay_max: 300,
        }
    }
}

/// Defaults of docs/compatibility.md §5; a tenant's overrides live in the database (tenant_limits).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Publishes per tenant (CometQL, web_pipe2 and HTTP together): sustained rate and burst.
    pub publishes_per_sec: u32,
    pub publish_burst: u32,
    /// Open WebSocket connections per tenant.
    pub websocket_connections_per_tenant: i64,
    /// New connections per client IP address: sustained rate and burst.
    pub new_connections_per_ip_per_sec: u32,
    pub new_connections_per_ip_burst: u32,
    /// Failed CometQL logins per IP address per minute; past it, logins are refused unchecked.
    pub failed_logins_per_ip_per_min: u32,
    /// Open connections (WebSocket + CometQL + HTTP) the server accepts at once; keep it under the
    /// process's open-file limit.
    pub max_connections: usize,
    /// Open connections (both ports together) from one client address (an IPv6 client: its /64), so
    /// that one address cannot fill `max_connections`; past it a new connection is closed at accept.
    pub connections_per_ip: usize,
    /// Largest HTTP request head (request line and headers) the server buffers; a longer one gets 431.
    pub max_request_head_bytes: usize,
    /// Active secret keys a tenant may hold (every CometQL login checks each of them).
    pub keys_per_tenant: usize,
    /// Storage quotas per tenant (overridable per tenant): bytes of message text kept in pipe history,
    /// history entries, queued private messages per user and per tenant, users_data rows, revoked_tokens
    /// rows.
    pub history_bytes_per_tenant: i64,
    pub history_rows_per_tenant: i64,
    pub queued_messages_per_user: i64,
    pub queued_messages_per_tenant: i64,
    pub users_data_per_tenant: i64,
    pub revoked_tokens_per_tenant: i64,
    /// Open WebSocket connections of one tenant from one client address (an IPv6 client by its /64).
    pub websocket_connections_per_ip_per_tenant: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            publishes_per_sec: 1000,
            publish_burst: 2000,
            websocket_connections_per_tenant: 10_000,
            new_connections_per_ip_per_sec: 50,
            new_connections_per_ip_burst: 200,
            failed_logins_per_ip_per_min: 10,
            max_connections: 19_000,
            connections_per_ip: 500,
            max_request_head_bytes: 16 * 1024,
            keys_per_tenant: 20,
            history_bytes_per_tenant: 100 * 1024 * 1024,
            history_rows_per_tenant: 100_000,
            queued_messages_per_user: 10_000,
            queued_messages_per_tenant: 100_000,
            users_data_per_tenant: 100_000,
            revoked_tokens_per_tenant: 100_000,
            websocket_connections_per_ip_per_tenant: 250,
        }
    }
}

/// The native HTTP publish API (`POST /api/v1/publish`, `/api/v1/users_messages`; docs/http-api.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpApiConfig {
    /// Largest request body; larger gets 413. Room for a batch of messages of
    /// `websocket.max_message_bytes` each, JSON-escaped.
    pub max_body_bytes: usize,
    /// Most messages in one batch (`{"messages": [...]}`); more gets 400. One batch is paid from the
    /// publish budget as a whole, like a multi-row INSERT.
    pub max_batch_messages: usize,
}

impl Default for HttpApiConfig {
    fn default() -> Self {
        HttpApiConfig {
            max_body_bytes: 1024 * 1024,
            max_batch_messages: 100,
        }
    }
}

/// The Pusher protocol door (`/app/{key}`, `/apps/{id}/...`; docs/pusher.md). The protocol's own limits
/// (10 KB of event data, 100 channels per event, 10 events per batch) are Pusher's and not settable.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PusherConfig {
    /// Seconds of silence after which a client should ping (told in `connection_established`), and after
    /// which the server pings a silent client.
    pub activity_timeout_secs: u32,
    /// Seconds a pinged client has to answer before the server closes with 4201.
    pub pong_timeout_secs: u64,
    /// Users one presence channel may hold (Pusher: 100); the next gets a `pusher:error`.
    pub presence_max_members: usize,
    /// Channels one connection may be subscribed to at once.
    pub channels_per_connection: usize,
    /// Client events (`client-*`) one connection may send per second (Pusher: 10); past it they are
    /// refused with a `pusher:error` 4301.
    pub client_events_per_sec: u32,
    /// `cache-` channels whose last event one tenant keeps (30 minutes each); past it the oldest goes.
    pub cache_channels_per_tenant: usize,
}

impl Default for PusherConfig {
    fn default() -> Self {
        PusherConfig {
            activity_timeout_secs: 120,
            pong_timeout_secs: 30,
            presence_max_members: 100,
            channels_per_connection: 100,
            client_events_per_sec: 10,
            cache_channels_per_tenant: 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MessagesConfig {
    /// How long a private message (users_messages) waits for its offline user.
    pub queue_ttl_secs: u64,
    /// How long `trust_` pipes keep every message.
    pub trust_history_secs: u64,
    /// Most history entries a pipe can be configured to keep (pipes_settings.length is clamped to it).
    pub max_history_length: i64,
}

impl Default for MessagesConfig {
    fn default() -> Self {
        MessagesConfig {
            queue_ttl_secs: 120,
            trust_history_secs: 120,
            max_history_length: 1000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardConfig {
    /// Mark the session cookie `Secure` (sent over HTTPS only) on plain HTTP too: for browsers that reach
    /// the server through a TLS-terminating proxy. Cookies set over `https_addr` are always `Secure`.
    pub secure_cookies: bool,
    /// How long a dashboard login lasts.
    pub session_hours: u64,
    /// argon2 computations (sign-up, login, password change) running at once; each holds about 19 MiB.
    pub argon2_concurrency: usize,
    /// Requests that may wait for an argon2 slot; past it they get HTTP 503 with Retry-After.
    pub argon2_queue: usize,
    /// Seconds between writes of the usage counters to the database: the most counting a killed
    /// process can lose.
    pub usage_flush_secs: u64,
    /// Who may create tenants: `open`, anyone through the dashboard's sign-up; `closed`, only an operator
    /// with `halley tenant create` (the sign-up endpoint answers 403 `signup_closed`).
    pub signup: Signup,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signup {
    Open,
    Closed,
}

impl std::str::FromStr for Signup {
    type Err = String;

    fn from_str(s: &str) -> Result<Signup, String> {
        match s {
            "open" => Ok(Signup::Open),
            "closed" => Ok(Signup::Closed),
            _ => Err("expected open or closed".into()),
        }
    }
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            secure_cookies: false,
            session_hours: 12,
            argon2_concurrency: 2,
            argon2_queue: 32,
            usage_flush_secs: 5,
            signup: Signup::Open,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CometqlConfig {
    /// Longest accepted query text; longer gets `ERROR 11 Data is too long` (the original: 9000).
    pub max_query_bytes: usize,
    /// Longest MySQL packet read at all; the connection is closed past it.
    pub max_packet_bytes: usize,
    /// A client that has not finished logging in by then is disconnected (half-open handshakes).
    pub handshake_timeout_secs: u64,
    /// A logged-in session with no command for this long is closed.
    pub idle_timeout_secs: u64,
    /// Most rows one result set may have; a SELECT that would return more gets `ERROR 11` instead.
    pub max_result_rows: usize,
    /// Most bytes (values plus their framing) one result set may have; past it `ERROR 11`. (A result
    /// over 512 KiB is sent in parts as the client reads, so a session never holds more than about that.)
    pub max_result_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebsocketConfig {
    /// Largest message a browser may send and largest frame the server sends (64 KiB).
    pub max_message_bytes: usize,
    /// Frames queued for one connection before it counts as a slow consumer and is closed with 1008.
    pub outbox_frames: usize,
    /// The server pings a connection idle for this long; one that stays silent for two intervals is dropped.
    pub ping_interval_secs: u64,
    /// Time allowed for the HTTP upgrade request to arrive (on `https_addr`, also for the TLS handshake
    /// before it).
    pub handshake_timeout_secs: u64,
    /// A stalled socket write is abandoned (and the connection closed) after this long.
    pub write_timeout_secs: u64,
    /// Commands one connection may send: sustained rate and burst. Past it a command is not run (one
    /// error frame per run of refusals); a burst's worth of refusals in a row closes with 1008.
    pub commands_per_sec: u32,
    pub command_burst: u32,
    /// Of those, commands that read storage (`pipe_log`, `user_data`, `user_status`): rate and burst.
    pub storage_reads_per_sec: u32,
    pub storage_read_burst: u32,
}

impl Default for CometqlConfig {
    fn default() -> Self {
        CometqlConfig {
            max_query_bytes: 64 * 1024,
            max_packet_bytes: 1024 * 1024,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 3600,
            max_result_rows: 10_000,
            max_result_bytes: 8 * 1024 * 1024,
        }
    }
}

impl Default for WebsocketConfig {
    fn default() -> Self {
        WebsocketConfig {
            max_message_bytes: 64 * 1024,
            outbox_frames: 1024,
            ping_interval_secs: 25,
            handshake_timeout_secs: 10,
            write_timeout_secs: 10,
            commands_per_sec: 20,
            command_burst: 100,
            storage_reads_per_sec: 5,
            storage_read_burst: 50,
        }
    }
}

impl CometqlConfig {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}

impl WebsocketConfig {
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs)
    }
}

/// Several nodes that behave as one (docs/production.md, "Running several nodes"): Redis carries publishes
/// between nodes and keeps each pipe's numbering and recovery window; PostgreSQL keeps everything durable.
/// Without `redis_url` the node is alone, as before.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://...` (TLS). Empty: a single node.
    pub redis_url: String,
    /// Put before every Redis key and channel, so that several clusters (or a test per prefix) share one
    /// Redis; required with `redis_url`. 1 to 64 of `A-Za-z0-9_.:-`.
    pub key_prefix: String,
    /// This node's name in the cluster, unique among live nodes (a second node with a live name refuses to
    /// start). Empty: the top-level `node_name` when it was changed from "halley", else `<hostname>-<pid>`.
    pub node_name: String,
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        !self.redis_url.is_empty()
    }
}

/// What a key prefix or a node name may be made of: they go into Redis keys, channels and wire messages.
pub(crate) fn is_cluster_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}
