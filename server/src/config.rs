//! The one typed configuration: defaults, then a TOML file (`--config FILE`), then `HALLEY_*` environment
//! variables. Validated once at start; nothing else reads the environment. Every key is documented with its
//! default in `halley.example.toml` at the repository root.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cidr::Cidr;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded SQLite database and the generated master key live.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; empty means `<data_dir>/halley.db`.
    pub database_url: String,
    /// Browsers: WebSocket, `/info`, the dashboard and the HTTP API.
    pub http_addr: SocketAddr,
    /// Tenants' backends: CometQL over the MySQL protocol.
    pub cometql_addr: SocketAddr,
    /// HTTPS and WSS (the same routes as `http_addr`, over TLS); needs `[tls]`. Unset: no HTTPS listener
    /// (with `[tls]` set, CometQL still offers TLS).
    pub https_addr: Option<SocketAddr>,
    /// 32-byte key (64 hex digits) that encrypts tenants' secret keys at rest; empty means
    /// `<data_dir>/master.key`, generated with mode 0600 on first start.
    pub master_key_file: PathBuf,
    /// Reported by `/info`.
    pub node_name: String,
    /// `/metrics` answers loopback clients, and others that send `Authorization: Bearer <metrics_token>`
    /// when this is set (per-tenant figures are not for the public).
    pub metrics_token: String,
    /// Balancers and proxies (CIDR networks, IPv4 or IPv6) whose word on the client's address is taken: from
    /// these peers both ports read a PROXY protocol header (v1 or v2; required on the CometQL port), and
    /// the HTTP port reads `X-Forwarded-For` and `Forwarded: for=`. From anyone else those are ignored or
    /// refused. Empty: every peer is the client.
    pub trusted_proxies: Vec<Cidr>,
    pub cometql: CometqlConfig,
    pub websocket: WebsocketConfig,
    pub messages: MessagesConfig,
    pub limits: LimitsConfig,
    pub dashboard: DashboardConfig,
    pub cache: CacheConfig,
    pub tls: TlsConfig,
    pub log: String,
}

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

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("data"),
            database_url: String::new(),
            http_addr: SocketAddr::from(([0, 0, 0, 0], 8087)),
            cometql_addr: SocketAddr::from(([0, 0, 0, 0], 3300)),
            https_addr: None,
            master_key_file: PathBuf::new(),
            node_name: "halley".into(),
            metrics_token: String::new(),
            trusted_proxies: Vec::new(),
            cometql: CometqlConfig::default(),
            websocket: WebsocketConfig::default(),
            messages: MessagesConfig::default(),
            limits: LimitsConfig::default(),
            dashboard: DashboardConfig::default(),
            cache: CacheConfig::default(),
            tls: TlsConfig::default(),
            log: "info".into(),
        }
    }
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

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("environment variable {name}={value:?}: {reason}")]
    Env {
        name: &'static str,
        value: String,
        reason: String,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The environment variables we read, in one list so that `--help` and the docs can't drift from the code.
pub const ENV_VARS: &[&str] = &[
    "HALLEY_DATA_DIR",
    "HALLEY_DATABASE_URL",
    "HALLEY_HTTP_ADDR",
    "HALLEY_COMETQL_ADDR",
    "HALLEY_MASTER_KEY_FILE",
    "HALLEY_NODE_NAME",
    "HALLEY_LOG",
    "HALLEY_DASHBOARD_SECURE_COOKIES",
    "HALLEY_DASHBOARD_SIGNUP",
    "HALLEY_TLS_CERT_FILE",
    "HALLEY_TLS_KEY_FILE",
    "HALLEY_HTTPS_ADDR",
    "HALLEY_TRUSTED_PROXIES",
];

impl Config {
    /// Defaults, then `file` when given, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => Self::from_file(path)?,
            None => Config::default(),
        };
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// `lookup` is the environment; a parameter so that tests need not touch the real one.
    pub fn apply_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let addr = |name: &'static str, value: String| {
            value.parse::<SocketAddr>().map_err(|e| ConfigError::Env {
                name,
                value,
                reason: e.to_string(),
            })
        };
        if let Some(v) = lookup("HALLEY_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = lookup("HALLEY_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = lookup("HALLEY_HTTP_ADDR") {
            self.http_addr = addr("HALLEY_HTTP_ADDR", v)?;
        }
        if let Some(v) = lookup("HALLEY_COMETQL_ADDR") {
            self.cometql_addr = addr("HALLEY_COMETQL_ADDR", v)?;
        }
        if let Some(v) = lookup("HALLEY_HTTPS_ADDR") {
            self.https_addr = Some(addr("HALLEY_HTTPS_ADDR", v)?);
        }
        if let Some(v) = lookup("HALLEY_TLS_CERT_FILE") {
            self.tls.cert_file = v.into();
        }
        if let Some(v) = lookup("HALLEY_TLS_KEY_FILE") {
            self.tls.key_file = v.into();
        }
        if let Some(v) = lookup("HALLEY_TRUSTED_PROXIES") {
            self.trusted_proxies = v
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::parse)
                .collect::<Result<_, String>>()
                .map_err(|reason| ConfigError::Env {
                    name: "HALLEY_TRUSTED_PROXIES",
                    value: v.clone(),
                    reason,
                })?;
        }
        if let Some(v) = lookup("HALLEY_MASTER_KEY_FILE") {
            self.master_key_file = v.into();
        }
        if let Some(v) = lookup("HALLEY_NODE_NAME") {
            self.node_name = v;
        }
        if let Some(v) = lookup("HALLEY_LOG") {
            self.log = v;
        }
        if let Some(v) = lookup("HALLEY_DASHBOARD_SECURE_COOKIES") {
            self.dashboard.secure_cookies = match v.as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => {
                    return Err(ConfigError::Env {
                        name: "HALLEY_DASHBOARD_SECURE_COOKIES",
                        value: v,
                        reason: "expected true or false".into(),
                    })
                }
            };
        }
        if let Some(v) = lookup("HALLEY_DASHBOARD_SIGNUP") {
            self.dashboard.signup = v.parse().map_err(|reason| ConfigError::Env {
                name: "HALLEY_DASHBOARD_SIGNUP",
                value: v,
                reason,
            })?;
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database_url();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid(format!(
                "database_url must start with sqlite: or postgres://, got {url:?}"
            )));
        }
        let ws = &self.websocket;
        if ws.max_message_bytes < 1024 || ws.outbox_frames == 0 || ws.ping_interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "websocket: max_message_bytes >= 1024, outbox_frames >= 1 and ping_interval_secs >= 1 are required".into(),
            ));
        }
        if self.dashboard.session_hours == 0 {
            return Err(ConfigError::Invalid(
                "dashboard: session_hours >= 1 is required".into(),
            ));
        }
        let l = &self.limits;
        if l.connections_per_ip == 0 || l.max_request_head_bytes < 8192 {
            return Err(ConfigError::Invalid(
                "limits: connections_per_ip >= 1 and max_request_head_bytes >= 8192 are required"
                    .into(),
            ));
        }
        let d = &self.dashboard;
        if d.argon2_concurrency == 0 || d.usage_flush_secs == 0 {
            return Err(ConfigError::Invalid(
                "dashboard: argon2_concurrency >= 1 and usage_flush_secs >= 1 are required".into(),
            ));
        }
        if self.limits.keys_per_tenant == 0 {
            return Err(ConfigError::Invalid(
                "limits: keys_per_tenant >= 1 is required".into(),
            ));
        }
        if self.limits.websocket_connections_per_ip_per_tenant == 0 {
            return Err(ConfigError::Invalid(
                "limits: websocket_connections_per_ip_per_tenant >= 1 is required".into(),
            ));
        }
        if [
            l.history_bytes_per_tenant,
            l.history_rows_per_tenant,
            l.queued_messages_per_user,
            l.queued_messages_per_tenant,
            l.users_data_per_tenant,
            l.revoked_tokens_per_tenant,
        ]
        .iter()
        .any(|&n| n < 0)
        {
            return Err(ConfigError::Invalid(
                "limits: storage quotas must not be negative".into(),
            ));
        }
        let t = &self.tls;
        if t.cert_file.as_os_str().is_empty() != t.key_file.as_os_str().is_empty() {
            return Err(ConfigError::Invalid(
                "tls: cert_file and key_file go together (set both, or neither)".into(),
            ));
        }
        if self.https_addr.is_some() && !t.enabled() {
            return Err(ConfigError::Invalid(
                "https_addr needs a certificate: set tls.cert_file and tls.key_file".into(),
            ));
        }
        if t.reload_check_secs == 0 || t.max_concurrent_handshakes == 0 {
            return Err(ConfigError::Invalid(
                "tls: reload_check_secs >= 1 and max_concurrent_handshakes >= 1 are required"
                    .into(),
            ));
        }
        let q = &self.cometql;
        if q.max_result_rows == 0 || q.max_result_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "cometql: max_result_rows >= 1 and max_result_bytes >= 1024 are required".into(),
            ));
        }
        if q.max_query_bytes < 64 || q.max_packet_bytes < q.max_query_bytes {
            return Err(ConfigError::Invalid(
                "cometql: max_query_bytes >= 64 and max_packet_bytes >= max_query_bytes are required".into(),
            ));
        }
        Ok(())
    }

    /// The effective database URL: the configured one, or the embedded SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("halley.db").display()
            )
        } else {
            self.database_url.clone()
        }
    }

    pub fn master_key_path(&self) -> PathBuf {
        if self.master_key_file.as_os_str().is_empty() {
            self.data_dir.join("master.key")
        } else {
            self.master_key_file.clone()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ports_and_embedded_sqlite() {
        let c = Config::default();
        assert_eq!(c.http_addr.port(), 8087);
        assert_eq!(c.cometql_addr.port(), 3300);
        assert_eq!(c.database_url(), "sqlite://data/halley.db?mode=rwc");
        assert_eq!(c.master_key_path(), PathBuf::from("data/master.key"));
        c.validate().unwrap();
    }

    #[test]
    fn example_file_documents_exactly_the_defaults() {
        let example: Config = toml::from_str(include_str!("../../halley.example.toml")).unwrap();
        assert_eq!(format!("{example:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn env_overrides_file_values() {
        let mut c: Config =
            toml::from_str("data_dir = \"/srv/h\"\n[websocket]\noutbox_frames = 7\n").unwrap();
        c.apply_env(|k| match k {
            "HALLEY_HTTP_ADDR" => Some("127.0.0.1:9000".into()),
            "HALLEY_DATABASE_URL" => Some("postgres://x@h/db".into()),
            "HALLEY_DASHBOARD_SECURE_COOKIES" => Some("true".into()),
            "HALLEY_DASHBOARD_SIGNUP" => Some("closed".into()),
            _ => None,
        })
        .unwrap();
        assert!(c.dashboard.secure_cookies);
        assert_eq!(c.dashboard.signup, Signup::Closed);
        assert_eq!(c.dashboard.session_hours, 12);
        assert_eq!(c.data_dir, PathBuf::from("/srv/h"));
        assert_eq!(c.websocket.outbox_frames, 7);
        assert_eq!(c.http_addr.port(), 9000);
        assert_eq!(c.database_url(), "postgres://x@h/db");
    }

    #[test]
    fn bad_values_are_named() {
        let mut c = Config::default();
        let err = c
            .apply_env(|k| (k == "HALLEY_COMETQL_ADDR").then(|| "nope".to_string()))
            .unwrap_err();
        assert!(err.to_string().contains("HALLEY_COMETQL_ADDR"), "{err}");
        let err = c
            .apply_env(|k| (k == "HALLEY_DASHBOARD_SIGNUP").then(|| "Closed".to_string()))
            .unwrap_err();
        assert!(err.to_string().contains("open or closed"), "{err}");
        assert!(toml::from_str::<Config>("[dashboard]\nsignup = \"invite\"").is_err());
        let closed: Config = toml::from_str("[dashboard]\nsignup = \"closed\"").unwrap();
        assert_eq!(closed.dashboard.signup, Signup::Closed);
        assert!(toml::from_str::<Config>("unknown_key = 1").is_err());
        c.database_url = "mysql://x".into();
        assert!(c.validate().is_err());
    }

    #[test]
    fn trusted_proxies_from_the_file_or_the_environment() {
        let c: Config =
            toml::from_str("trusted_proxies = [\"10.0.0.0/8\", \"2001:db8::/32\", \"127.0.0.1\"]")
                .unwrap();
        let shown: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(shown, ["10.0.0.0/8", "2001:db8::/32", "127.0.0.1/32"]);
        assert!(toml::from_str::<Config>("trusted_proxies = [\"10.0.0.0/40\"]").is_err());
        let mut c = Config::default();
        c.apply_env(|k| (k == "HALLEY_TRUSTED_PROXIES").then(|| " 10.0.0.0/8, ::1 ,".into()))
            .unwrap();
        let shown: Vec<String> = c.trusted_proxies.iter().map(|n| n.to_string()).collect();
        assert_eq!(shown, ["10.0.0.0/8", "::1/128"]);
        c.apply_env(|k| (k == "HALLEY_TRUSTED_PROXIES").then(String::new))
            .unwrap();
        assert!(c.trusted_proxies.is_empty());
        let err = c
            .apply_env(|k| (k == "HALLEY_TRUSTED_PROXIES").then(|| "10.0.0.0/8,nope".into()))
            .unwrap_err();
        assert!(err.to_string().contains("HALLEY_TRUSTED_PROXIES"), "{err}");
    }

    #[test]
    fn argon2_usage_and_key_bounds_must_be_positive() {
        for text in [
            "[dashboard]\nargon2_concurrency = 0",
            "[dashboard]\nusage_flush_secs = 0",
            "[limits]\nkeys_per_tenant = 0",
            "[limits]\nwebsocket_connections_per_ip_per_tenant = 0",
        ] {
            let c: Config = toml::from_str(text).unwrap();
            assert!(c.validate().is_err(), "{text}");
        }
        let queue_zero: Config = toml::from_str("[dashboard]\nargon2_queue = 0").unwrap();
        queue_zero.validate().unwrap();
    }
}
