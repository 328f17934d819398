//! The one typed configuration: defaults, then a TOML file (`--config FILE`), then `HALLEY_*` environment
//! variables. Validated once at start; nothing else reads the environment. Every key is documented with its
//! default in `halley.example.toml` at the repository root.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cidr::Cidr;

mod sections;

pub(crate) use sections::is_cluster_name;

pub use sections::{
    CacheConfig, ClusterConfig, CometqlConfig, DashboardConfig, HttpApiConfig, LimitsConfig,
    MessagesConfig, PusherConfig, RecoveryConfig, Signup, StorageConfig, Synchronous, TlsConfig,
    WebsocketConfig,
};

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
    pub http_api: HttpApiConfig,
    pub pusher: PusherConfig,
    pub limits: LimitsConfig,
    pub dashboard: DashboardConfig,
    pub cache: CacheConfig,
    pub recovery: RecoveryConfig,
    pub storage: StorageConfig,
    pub tls: TlsConfig,
    pub cluster: ClusterConfig,
    pub log: String,
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
            http_api: HttpApiConfig::default(),
            pusher: PusherConfig::default(),
            limits: LimitsConfig::default(),
            dashboard: DashboardConfig::default(),
            cache: CacheConfig::default(),
            recovery: RecoveryConfig::default(),
            storage: StorageConfig::default(),
            tls: TlsConfig::default(),
            cluster: ClusterConfig::default(),
            log: "info".into(),
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
    "HALLEY_REDIS_URL",
    "HALLEY_REDIS_PREFIX",
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
        if let Some(v) = lookup("HALLEY_REDIS_URL") {
            self.cluster.redis_url = v;
        }
        if let Some(v) = lookup("HALLEY_REDIS_PREFIX") {
            self.cluster.key_prefix = v;
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
        let h = &self.http_api;
        if h.max_body_bytes < 1024 || h.max_batch_messages == 0 {
            return Err(ConfigError::Invalid(
                "http_api: max_body_bytes >= 1024 and max_batch_messages >= 1 are required".into(),
            ));
        }
        let p = &self.pusher;
        if p.activity_timeout_secs == 0
            || p.pong_timeout_secs == 0
            || p.presence_max_members == 0
            || p.channels_per_connection == 0
        {
            return Err(ConfigError::Invalid(
                "pusher: activity_timeout_secs, pong_timeout_secs, presence_max_members and channels_per_connection >= 1 are required".into(),
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
        // (Destructured: the architecture test keeps `.storage` handles to commands/ and tenant/.)
        let Config { storage: st, .. } = self;
        if st.batch_max == 0 || st.queue == 0 || st.users_time_pending == 0 {
            return Err(ConfigError::Invalid(
                "storage: batch_max, queue and users_time_pending >= 1 are required".into(),
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
        self.validate_cluster()?;
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

    /// `[cluster]`: a cluster needs its prefix, a usable node name and PostgreSQL (the nodes share the
    /// durable state; an embedded SQLite file cannot be shared).
    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        if !c.enabled() {
            return Ok(());
        }
        if !(c.redis_url.starts_with("redis://") || c.redis_url.starts_with("rediss://")) {
            return Err(ConfigError::Invalid(
                "cluster: redis_url must start with redis:// or rediss:// (HALLEY_REDIS_URL)"
                    .into(),
            ));
        }
        if c.key_prefix.is_empty() {
            return Err(ConfigError::Invalid(
                "cluster: key_prefix (HALLEY_REDIS_PREFIX) is required with redis_url: it keeps this \
                 cluster's keys apart from anything else in that Redis"
                    .into(),
            ));
        }
        if !sections::is_cluster_name(&c.key_prefix) {
            return Err(ConfigError::Invalid(format!(
                "cluster: key_prefix {:?} must be 1 to 64 of A-Za-z0-9_.:-",
                c.key_prefix
            )));
        }
        let name = self.cluster_node_name();
        if !sections::is_cluster_name(&name) {
            return Err(ConfigError::Invalid(format!(
                "cluster: node name {name:?} must be 1 to 64 of A-Za-z0-9_.:- (HALLEY_NODE_NAME)"
            )));
        }
        if !self.database_url().starts_with("postgres") {
            return Err(ConfigError::Invalid(
                "cluster: redis_url needs PostgreSQL storage (database_url = \"postgres://...\"): \
                 the nodes share their durable state, and an SQLite file cannot be shared"
                    .into(),
            ));
        }
        Ok(())
    }

    /// This node's name in the cluster: `[cluster] node_name`, else the top-level `node_name` (also set
    /// by HALLEY_NODE_NAME) when it is not the default, else `<hostname>-<pid>`.
    pub fn cluster_node_name(&self) -> String {
        if !self.cluster.node_name.is_empty() {
            return self.cluster.node_name.clone();
        }
        if self.node_name != Config::default().node_name {
            return self.node_name.clone();
        }
        // Linux's hostname; elsewhere the pid alone tells nodes of one host apart.
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_else(|_| "halley".into());
        let host: String = host
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            .take(48)
            .collect();
        format!("{host}-{}", std::process::id())
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
        let example: Config = toml::from_str(include_str!("../../../halley.example.toml")).unwrap();
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

    #[test]
    fn a_cluster_needs_a_prefix_a_good_node_name_and_postgres() {
        let pg = |extra: &str| {
            let text = format!(
                "database_url = \"postgres://u@h/db\"\n[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\n{extra}"
            );
            toml::from_str::<Config>(&text).unwrap()
        };
        let err = pg("").validate().unwrap_err().to_string();
        assert!(
            err.contains("key_prefix (HALLEY_REDIS_PREFIX) is required"),
            "{err}"
        );
        let err = pg("key_prefix = \"a b\"")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 to 64 of A-Za-z0-9_.:-"), "{err}");
        let long = "x".repeat(65);
        assert!(pg(&format!("key_prefix = \"{long}\"")).validate().is_err());
        let err = pg("key_prefix = \"p\"\nnode_name = \"n/1\"")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("node name \"n/1\""), "{err}");
        pg("key_prefix = \"halley-prod:eu\"").validate().unwrap();
        let mut c = pg("key_prefix = \"p\"");
        c.cluster.redis_url = "http://x".into();
        assert!(c.validate().unwrap_err().to_string().contains("redis://"));
        let mut sqlite = pg("key_prefix = \"p\"");
        sqlite.database_url = String::new();
        let err = sqlite.validate().unwrap_err().to_string();
        assert!(err.contains("needs PostgreSQL"), "{err}");
    }

    #[test]
    fn the_cluster_from_the_environment_and_the_node_name() {
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "HALLEY_REDIS_URL" => Some("rediss://r:6380".into()),
            "HALLEY_REDIS_PREFIX" => Some("pre".into()),
            _ => None,
        })
        .unwrap();
        assert!(c.cluster.enabled());
        assert_eq!(c.cluster.key_prefix, "pre");
        let generated = c.cluster_node_name();
        assert!(
            generated.ends_with(&format!("-{}", std::process::id())),
            "{generated}"
        );
        assert!(sections::is_cluster_name(&generated), "{generated}");
        c.apply_env(|k| (k == "HALLEY_NODE_NAME").then(|| "node-a".into()))
            .unwrap();
        assert_eq!(c.cluster_node_name(), "node-a");
        c.cluster.node_name = "b".into();
        assert_eq!(c.cluster_node_name(), "b");
    }
}
