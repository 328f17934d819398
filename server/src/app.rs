//! Composition root: the only place that wires things together. Loads nothing itself (the caller hands it a
//! validated `Config`), opens storage, migrates, starts the listeners and shuts them down cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::commands::Ctx;
use crate::config::Config;
use crate::front::cometql::handler::CometQl;
use crate::front::cometql::ConnConfig;
use crate::front::http::serve::HttpServer;
use crate::front::listen::{Admission, OpenSockets};
use crate::front::websocket::WsService;
use crate::hub::Hub;
use crate::stats::Stats;
use crate::storage::Storage;
use crate::tenant::{KeyBox, Tenants};
use crate::usage::UsageBook;

/// How often refused connections are summarized in the log (one line per reason, not one per refusal).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Storage and tenants, without listeners: what the `tenant` and `migrate` subcommands need.
pub async fn open_tenants(config: &Config) -> anyhow::Result<Tenants> {
    let storage = Storage::open_with(&config.database_url(), &config.storage)
        .await
        .with_context(|| format!("opening the database {}", redact(&config.database_url())))?;
    storage.migrate().await.context("applying migrations")?;
    let keys = KeyBox::load_or_create(&config.master_key_path())?;
    Ok(Tenants::new(storage, keys).with_limits(config))
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// A running server. Dropping it does not stop it; call `shutdown`.
pub struct Running {
    pub http_addr: SocketAddr,
    /// The HTTPS/WSS address actually bound, when `https_addr` is configured.
    pub https_addr: Option<SocketAddr>,
    pub cometql_addr: SocketAddr,
    pub ctx: Ctx,
    shutdown: watch::Sender<bool>,
    tasks: TaskTracker,
    cometql: Arc<CometQl>,
    ws: Arc<WsService>,
    usage: Arc<UsageBook>,
    cluster: Option<crate::cluster::Cluster>,
}

pub async fn start(config: Config) -> anyhow::Result<Running> {
    let config = Arc::new(config);
    let tenants = open_tenants(&config).await?;
    // The node's one set of figures: the hub, the limits, the commands and the listeners count into it.
    let stats = Stats::default();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let tasks = TaskTracker::new();
    let windows = window_limits(&config.recovery);
    // Several nodes: publishes go through Redis (config validation made sure PostgreSQL is the storage).
    let (cluster, hub) = if config.cluster.enabled() {
        let settings = crate::cluster::Settings::from_config(&config, windows);
        let (cluster, hub) =
            crate::cluster::Cluster::start(settings, stats.clone(), &tasks, shutdown_rx.clone())
                .await?;
        (Some(cluster), hub)
    } else {
        (None, Hub::with_windows(stats.clone(), windows))
    };
    let ctx = Ctx::new(config.clone(), tenants, hub);
    let mut cluster = cluster;
    if let Some(changes) = cluster.as_mut().and_then(|c| c.take_status_changes()) {
        tasks.spawn(crate::commands::presence::cluster_status(
            ctx.clone(),
            changes,
        ));
    }
    // What each tenant keeps stored, for its quotas: counted once here, then kept by every write.
    ctx.storage
        .load_totals()
        .await
        .context("counting stored rows per tenant")?;
    // Sockets do not survive a restart: whoever was online when the server stopped is offline now.
    ctx.storage
        .mark_all_offline(crate::tenant::unix_now())
        .await?;
    let http_listener = TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding the HTTP/WebSocket address {}", config.http_addr))?;
    let cometql_listener = TcpListener::bind(config.cometql_addr)
        .await
        .with_context(|| format!("binding the CometQL address {}", config.cometql_addr))?;
    let https_listener = match config.https_addr {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the HTTPS/WSS address {addr}"))?,
        ),
        None => None,
    };
    let http_addr = http_listener.local_addr()?;
    let https_addr = https_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let cometql_addr = cometql_listener.local_addr()?;

    let tls = crate::front::tls::Tls::from_config(&config.tls, stats.clone())
        .context("loading the TLS certificate")?;
    if let Some(tls) = &tls {
        let every = Duration::from_secs(config.tls.reload_check_secs);
        tasks.spawn(tls.clone().watch(every, shutdown_rx.clone()));
    }
    let sockets = Arc::new(OpenSockets::new(stats.clone()));
    let admission = Arc::new(
        Admission::new(sockets.clone(), ctx.limits.clone())
            .with_trusted_proxies(config.trusted_proxies.clone()),
    );
    tasks.spawn(
        admission
            .clone()
            .log_refusals(REFUSAL_LOG_INTERVAL, shutdown_rx.clone()),
    );
    let cometql = Arc::new(CometQl::new(ctx.clone()));
    if ctx.hub.clustered() {
        // A cluster node whose pub/sub connection came back delivers its users' queues again.
        let (to, mut redrains) = tokio::sync::mpsc::unbounded_channel();
        ctx.hub.registry().set_redrain(to);
        let (ctx, mut stop) = (ctx.clone(), shutdown_rx.clone());
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    next = redrains.recv() => match next {
                        Some((dev_id, user)) => {
                            crate::commands::users_messages::redrain(&ctx, dev_id, user).await;
                        }
                        None => return,
                    },
                    _ = stop.changed() => return,
                }
            }
        });
    }
    {
        // Revoking a key closes its sessions here, whichever node it was revoked on.
        let sessions = Arc::downgrade(&cometql);
        ctx.hub.registry().set_key_closer(Arc::new(move |key_id| {
            if let Some(cometql) = sessions.upgrade() {
                cometql.close_key(key_id);
            }
        }));
    }
    let conn_config = ConnConfig {
        server_version: crate::commands::server_version(),
        max_packet: config.cometql.max_packet_bytes,
        handshake_timeout: config.cometql.handshake_timeout(),
        idle_timeout: config.cometql.idle_timeout(),
    };
    tasks.spawn(crate::front::cometql::serve(
        cometql_listener,
        cometql.clone(),
        Arc::new(conn_config),
        admission.clone(),
        tls.clone(),
        tasks.clone(),
        shutdown_rx.clone(),
    ));

    let ws = Arc::new(WsService::new(
        ctx.clone(),
        tasks.clone(),
        shutdown_rx.clone(),
    ));
    let usage = Arc::new(
        UsageBook::new(ctx.storage.clone(), stats.clone())
            .with_flush_every(Duration::from_secs(config.dashboard.usage_flush_secs)),
    );
    tasks.spawn(usage.clone().run(shutdown_rx.clone()));
    let dashboard =
        crate::front::http::dashboard::Api::new(ctx.clone(), usage.clone(), cometql_addr);
    let router = crate::front::http::router(ctx.clone(), ws.clone(), dashboard);
    let http = HttpServer {
        router,
        admission,
        header_timeout: config.websocket.handshake_timeout(),
        max_head_bytes: config.limits.max_request_head_bytes,
        tls: None,
    };
    // Config validation makes sure a certificate comes with `https_addr`.
    if let (Some(listener), Some(tls)) = (https_listener, &tls) {
        let https = HttpServer {
            tls: Some(tls.clone()),
            ..http.clone()
        };
        tasks.spawn(https.run(listener, tasks.clone(), shutdown_rx.clone()));
    }
    tasks.spawn(http.run(http_listener, tasks.clone(), shutdown_rx.clone()));
    tasks.spawn(crate::commands::maintenance::run(
        ctx.clone(),
        shutdown_rx.clone(),
    ));
    let https_url = https_addr.map(|a| format!("https://{a}/"));
    tracing::info!(
        %http_addr,
        https = https_url.as_deref().unwrap_or("off"),
        %cometql_addr,
        database = %redact(&config.database_url()),
        "Halley is serving"
    );
    Ok(Running {
        http_addr,
        https_addr,
        cometql_addr,
        ctx,
        shutdown,
        tasks,
        cometql,
        ws,
        usage,
        cluster,
    })
}

impl Running {
    /// Stops accepting, closes every WebSocket (1001) and CometQL session, waits for them (at most 10 s),
    /// stores the usage counters, then closes storage so SQLite's WAL is checkpointed.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        let _ = self.shutdown.send(true);
        self.cometql.close_all();
        self.ws.close_all();
        self.tasks.close();
        if tokio::time::timeout(Duration::from_secs(10), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within 10 s");
        }
        // After the last publish, before the database closes: the counts since the last periodic flush.
        if let Err(e) = self.usage.flush().await {
            tracing::warn!(error = %e, "could not store the last usage counters");
        }
        self.ctx.storage.close().await;
        if let Some(cluster) = self.cluster {
            let limits = &self.ctx.limits;
            let held = limits
                .leases
                .drain()
                .into_iter()
                .map(|(dev_id, n)| (dev_id, n, limits.publish_quota(dev_id).1))
                .collect();
            cluster.release_limits(held).await;
            cluster.shutdown().await;
        }
        tracing::info!("stopped");
    }
}

/// The hub's recovery windows, from `[recovery]`.
fn window_limits(c: &crate::config::RecoveryConfig) -> crate::hub::WindowLimits {
    crate::hub::WindowLimits {
        messages: c.window_messages,
        max_age: std::time::Duration::from_secs(c.window_secs),
        max_bytes: c.window_bytes,
        replay_max: c.replay_max,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("sqlite://data/h.db"), "sqlite://data/h.db");
    }
}
