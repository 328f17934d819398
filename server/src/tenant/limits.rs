//! The limits that keep one tenant (or one address) from breaking the service for the others (docs/compatibility.md
//! §5). Rate limits are `governor` GCRA limiters: keyed by IP address for the per-address limits, and one limiter
//! per tenant for publishes so that a tenant's own override can apply. Every refusal is counted.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::LimitsConfig;
use crate::ids::{ClientIp, DevId};
use crate::stats::Stats;
use crate::storage::TenantFlag;

/// Which limit refused something: named in the error the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    Publishes,
    /// One statement publishing more messages than the tenant's burst: it can never pass as a whole.
    PublishBurst,
    TenantConnections,
    IpConnections,
    /// Connections open at once from one address (counted at accept, `front::listen`).
    IpOpenConnections,
    FailedLogins,
    TotalConnections,
    IpTenantConnections,
}

/// A refusal: which limit, and when trying again makes sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Rate limit exceeded: {}", .limit.describe())]
pub struct Refused {
    pub limit: Limit,
    pub retry_after: Duration,
}

impl Limit {
    pub fn describe(self) -> &'static str {
        match self {
            Limit::Publishes => "publishes per tenant",
            Limit::PublishBurst => {
                "publishes per tenant (one statement publishes more rows than the burst allows)"
            }
            Limit::TenantConnections => "WebSocket connections per tenant",
            Limit::IpConnections => "new connections per IP address",
            Limit::IpOpenConnections => "open connections per IP address",
            Limit::FailedLogins => "failed logins per IP address",
            Limit::TotalConnections => "connections per server",
            Limit::IpTenantConnections => "WebSocket connections per IP address and tenant",
        }
    }
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

fn per_minute(n: u32) -> Quota {
    let n = NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(n).allow_burst(n)
}

/// A tenant's own limits, overriding the global ones where set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantOverride {
    pub publishes_per_sec: Option<u32>,
    pub publish_burst: Option<u32>,
    pub websocket_connections: Option<i64>,
    /// Seconds a private message waits for its offline user.
    pub queue_ttl_secs: Option<u64>,
    /// The recovery window: messages kept per pipe, and seconds each is kept.
    pub window_messages: Option<usize>,
    pub window_secs: Option<u64>,
}

pub struct Limits {
    config: LimitsConfig,
    clock: DefaultClock,
    publishes: Mutex<HashMap<DevId, Arc<DefaultDirectRateLimiter>>>,
    overrides: Mutex<HashMap<DevId, TenantOverride>>,
    /// Tenants whose CometQL logins must come over TLS (`tenant_limits.require_tls`).
    require_tls: FlagSet,
    /// Tenants whose Pusher connections may send client events (`tenant_limits.client_events`).
    client_events: FlagSet,
    new_connections: DefaultKeyedRateLimiter<ClientIp>,
    failed_logins: DefaultKeyedRateLimiter<ClientIp>,
    /// Addresses refused without a key check until the instant given.
    blocked: Mutex<HashMap<ClientIp, Instant>>,
    /// Open WebSocket connections per tenant and address; an entry lives while its count is not 0.
    websockets_per_ip: Arc<Mutex<HashMap<(DevId, ClientIp), u32>>>,
    /// Where every refusal is counted (`halley_rate_limit_refusals_total`).
    stats: Stats,
    /// Publish tokens this node leased from a cluster's shared budget (`leases.rs`).
    pub(crate) leases: super::leases::PublishLeases,
}

/// One open WebSocket connection counted against its tenant and address: uncounted when dropped, so that
/// every way a connection ends (refused after the upgrade, broken, closed) gives its place back.
pub struct WebsocketSlot {
    counts: Arc<Mutex<HashMap<(DevId, ClientIp), u32>>>,
    key: (DevId, ClientIp),
    /// Also uncounts the connection elsewhere (a cluster's count of the tenant's connections).
    and_then: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl std::fmt::Debug for WebsocketSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebsocketSlot")
            .field("key", &self.key)
            .finish()
    }
}

impl WebsocketSlot {
    /// Runs `uncount` too when the connection ends.
    pub fn also_uncount(mut self, uncount: impl FnOnce() + Send + Sync + 'static) -> WebsocketSlot {
        self.and_then = Some(Box::new(uncount));
        self
    }
}

impl Drop for WebsocketSlot {
    fn drop(&mut self) {
        if let Some(uncount) = self.and_then.take() {
            uncount();
        }
        let mut counts = lock(&self.counts);
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The tenants that have an on/off setting on. Replaced whole by a reload, so that turning one off is seen
/// too; but not over a change this node made while the reload's query ran (it would be undone until the
/// next reload): `changes` counts those.
#[derive(Default)]
struct FlagSet {
    set: Mutex<HashSet<DevId>>,
    changes: AtomicU64,
}

impl FlagSet {
    fn contains(&self, dev_id: DevId) -> bool {
        lock(&self.set).contains(&dev_id)
    }

    fn set(&self, dev_id: DevId, on: bool) {
        let mut set = lock(&self.set);
        self.changes.fetch_add(1, Ordering::AcqRel);
        match on {
            true => set.insert(dev_id),
            false => set.remove(&dev_id),
        };
    }

    fn replace(&self, before: u64, stored: Vec<DevId>) {
        let mut current = lock(&self.set);
        if self.changes.load(Ordering::Acquire) == before {
            *current = stored.into_iter().collect();
        }
    }
}

impl Limits {
    pub fn new(config: LimitsConfig, stats: Stats) -> Limits {
        Limits {
            new_connections: RateLimiter::keyed(quota(
                config.new_connections_per_ip_per_sec,
                config.new_connections_per_ip_burst,
            )),
            failed_logins: RateLimiter::keyed(per_minute(config.failed_logins_per_ip_per_min)),
            config,
            clock: DefaultClock::default(),
            publishes: Mutex::new(HashMap::new()),
            overrides: Mutex::new(HashMap::new()),
            require_tls: FlagSet::default(),
            client_events: FlagSet::default(),
            blocked: Mutex::new(HashMap::new()),
            websockets_per_ip: Arc::default(),
            stats,
            leases: Default::default(),
        }
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// Installs a tenant's overrides (read from storage); its publish limiter starts afresh when they change.
    pub fn set_override(&self, dev_id: DevId, o: TenantOverride) {
        if lock(&self.overrides).insert(dev_id, o) != Some(o) {
            lock(&self.publishes).remove(&dev_id);
        }
    }

    /// Loads every tenant's overrides from storage (at start and then periodically, so a change made with
    /// `halley tenant limits` reaches a running server).
    pub async fn load_overrides(
        &self,
        storage: &crate::storage::Storage,
    ) -> Result<(), crate::storage::StorageError> {
        let clamp = |v: Option<i64>| v.map(|n| n.clamp(1, i64::from(u32::MAX)) as u32);
        for row in storage.tenant_limits().await? {
            self.set_override(
                row.dev_id,
                TenantOverride {
                    publishes_per_sec: clamp(row.publishes_per_sec),
                    publish_burst: clamp(row.publish_burst),
                    websocket_connections: row.websocket_connections,
                    queue_ttl_secs: row.queue_ttl_secs.map(|n| n.max(1) as u64),
                    window_messages: row.window_messages.map(|n| n.max(0) as usize),
                    window_secs: row.window_secs.map(|n| n.max(0) as u64),
                },
            );
        }
        for (set, flag) in [
            (&self.require_tls, TenantFlag::RequireTls),
            (&self.client_events, TenantFlag::ClientEvents),
        ] {
            let before = set.changes.load(Ordering::Acquire);
            let stored = storage.tenants_with(flag).await?;
            set.replace(before, stored);
        }
        Ok(())
    }

    /// Whether the tenant refuses CometQL logins that do not come over TLS.
    pub fn requires_tls(&self, dev_id: DevId) -> bool {
        self.require_tls.contains(dev_id)
    }

    /// Records the tenant's require-TLS setting (just stored: takes effect at once on this node, on the others
    /// with their next reload of the overrides).
    pub fn set_require_tls(&self, dev_id: DevId, require: bool) {
        self.require_tls.set(dev_id, require);
    }

    /// Whether the tenant's Pusher connections may send client events (`client-*`).
    pub fn client_events(&self, dev_id: DevId) -> bool {
        self.client_events.contains(dev_id)
    }

    /// Records the tenant's client-events setting, as [`Limits::set_require_tls`] does.
    pub fn set_client_events(&self, dev_id: DevId, on: bool) {
        self.client_events.set(dev_id, on);
    }

    /// The tenant's publish budget: (per second, burst), its overrides else the defaults.
    pub fn publish_quota(&self, dev_id: DevId) -> (u32, u32) {
        let o = lock(&self.overrides)
            .get(&dev_id)
            .copied()
            .unwrap_or_default();
        (
            o.publishes_per_sec
                .unwrap_or(self.config.publishes_per_sec)
                .max(1),
            o.publish_burst.unwrap_or(self.config.publish_burst).max(1),
        )
    }

    /// The tenant's cap on open WebSocket connections.
    pub fn websocket_cap(&self, dev_id: DevId) -> i64 {
        lock(&self.overrides)
            .get(&dev_id)
            .and_then(|o| o.websocket_connections)
            .unwrap_or(self.config.websocket_connections_per_tenant)
    }

    pub(crate) fn refuse(&self, limit: Limit, retry_after: Duration) -> Refused {
        self.stats.limit_refusals.fetch_add(1, Ordering::Relaxed);
        Refused { limit, retry_after }
    }

    /// One publish of the tenant: CometQL INSERTs, web_pipe2 and any HTTP publish share this budget.
    pub fn publish(&self, dev_id: DevId) -> Result<(), Refused> {
        self.publish_n(dev_id, 1)
    }

    /// `n` publishes at once (a multi-row INSERT): all of them fit in the budget, or none is spent. More
    /// than the burst can never fit: refused with the time a burst-sized statement would have to wait.
    pub fn publish_n(&self, dev_id: DevId, n: u32) -> Result<(), Refused> {
        let Some(n) = NonZeroU32::new(n) else {
            return Ok(());
        };
        let limiter = {
            let mut map = lock(&self.publishes);
            map.entry(dev_id)
                .or_insert_with(|| {
                    let o = lock(&self.overrides)
                        .get(&dev_id)
                        .copied()
                        .unwrap_or_default();
                    Arc::new(RateLimiter::direct(quota(
                        o.publishes_per_sec.unwrap_or(self.config.publishes_per_sec),
                        o.publish_burst.unwrap_or(self.config.publish_burst),
                    )))
                })
                .clone()
        };
        match limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(nu)) => Err(self.refuse(Limit::Publishes, nu.wait_time_from(self.clock.now()))),
            Err(_) => Err(self.refuse(Limit::PublishBurst, Duration::ZERO)),
        }
    }

    /// How long the tenant's queued private messages wait: its override, else `default`.
    pub fn queue_ttl_secs(&self, dev_id: DevId, default: u64) -> u64 {
        lock(&self.overrides)
            .get(&dev_id)
            .and_then(|o| o.queue_ttl_secs)
            .unwrap_or(default)
    }

    /// The tenant's recovery window (messages per pipe, seconds): its overrides, else the defaults given.
    pub fn window(&self, dev_id: DevId, messages: usize, secs: u64) -> (usize, u64) {
        let o = lock(&self.overrides)
            .get(&dev_id)
            .copied()
            .unwrap_or_default();
        (
            o.window_messages.unwrap_or(messages),
            o.window_secs.unwrap_or(secs),
        )
    }

    /// A new WebSocket connection of the tenant from `ip`, with `open` connections already open. The slot
    /// counts it against the tenant and the address until it is dropped (when the connection ends). The
    /// address's rate of new connections is not counted here: its connection was counted when accepted.
    pub fn websocket_connect(
        &self,
        dev_id: DevId,
        ip: IpAddr,
        open: i64,
    ) -> Result<WebsocketSlot, Refused> {
        let max = lock(&self.overrides)
            .get(&dev_id)
            .and_then(|o| o.websocket_connections)
            .unwrap_or(self.config.websocket_connections_per_tenant);
        if open >= max {
            return Err(self.refuse(Limit::TenantConnections, Duration::from_secs(1)));
        }
        let key = (dev_id, ClientIp::from(ip));
        {
            let mut counts = lock(&self.websockets_per_ip);
            // Looked up before inserting: a refusal must leave no entry behind (only open connections hold
            // one, and their slot removes it).
            let open = counts.get(&key).copied().unwrap_or(0);
            if open >= self.config.websocket_connections_per_ip_per_tenant {
                return Err(self.refuse(Limit::IpTenantConnections, Duration::from_secs(1)));
            }
            counts.insert(key, open + 1);
        }
        let slot = WebsocketSlot {
            counts: self.websockets_per_ip.clone(),
            key,
            and_then: None,
        };
        Ok(slot)
    }

    /// A new connection from `ip` (either port), counted once, when it is accepted.
    pub fn new_connection(&self, ip: IpAddr) -> Result<(), Refused> {
        self.new_connections
            .check_key(&ClientIp::from(ip))
            .map_err(|nu| self.refuse(Limit::IpConnections, nu.wait_time_from(self.clock.now())))
    }

    /// Whether `ip` is refused logins without a key check (too many failures lately).
    pub fn login_blocked(&self, ip: IpAddr) -> bool {
        let ip = ClientIp::from(ip);
        let mut blocked = lock(&self.blocked);
        match blocked.get(&ip) {
            Some(until) if Instant::now() < *until => {
                self.stats.limit_refusals.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(_) => {
                blocked.remove(&ip);
                false
            }
            None => false,
        }
    }

    /// Records a failed login; past the limit the address is blocked until the window passes.
    pub fn login_failed(&self, ip: IpAddr) {
        let ip = ClientIp::from(ip);
        if let Err(nu) = self.failed_logins.check_key(&ip) {
            let wait = nu
                .wait_time_from(self.clock.now())
                .max(Duration::from_secs(1));
            lock(&self.blocked).insert(ip, Instant::now() + wait);
        }
    }

    /// Forgets idle keys so per-address state does not grow without bound.
    pub fn sweep(&self) {
        self.new_connections.retain_recent();
        self.failed_logins.retain_recent();
        let now = Instant::now();
        lock(&self.blocked).retain(|_, until| *until > now);
        self.new_connections.shrink_to_fit();
        self.failed_logins.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests;
