//! Every live figure of the node in one handle: per-tenant counters (WebSocket connections, CometQL
//! sessions, messages, deliveries, limit refusals), slow consumers dropped, limit refusals, failed CometQL
//! logins, the CometQL query latency histogram, connections refused at accept, and open sockets. The paths
//! that own a figure bump it here; `/metrics` (rendered in `front/http/metrics.rs`), SHOW STATUS
//! (`commands/meta.rs`), the dashboard's usage view and the usage book's flush read it here. Nothing else
//! keeps a counter, so the four readers cannot disagree.
//!
//! `Stats` is a cloned `Arc`: the hub, the limits, the commands' `Ctx` and the listeners all hold the same
//! one (`app.rs` makes it).
//!
//! Lock discipline and cost: every figure is an atomic with `Relaxed` ordering (they are tallies, not
//! synchronisation; a reader may see one figure a moment ahead of another). The one lock is the std mutex
//! over the map dev_id → `Arc<TenantCounters>`, held only for a lookup or an insert and never across an
//! await. The publish path takes it once per publish, not per delivery (as the registry's own map did before
//! this module, so the path is no dearer): `count_deliveries` looks up and bumps under the lock, and a
//! connection or session keeps its tenant's `Arc` for its whole life and bumps without the lock. A scrape
//! copies the map out under the lock (one `Arc` clone per tenant) and reads the atomics after releasing it.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ids::DevId;

/// The one handle on the node's figures: cheap to clone.
#[derive(Clone, Default, Debug)]
pub struct Stats(Arc<Figures>);

impl Deref for Stats {
    type Target = Figures;
    fn deref(&self) -> &Figures {
        &self.0
    }
}

/// The node-wide figures (per-tenant ones through [`Figures::tenant`]).
#[derive(Default, Debug)]
pub struct Figures {
    tenants: Mutex<HashMap<DevId, Arc<TenantCounters>>>,
    /// Open TCP connections on both listeners; `front::listen` counts them (and checks its cap against it).
    pub open_sockets: AtomicUsize,
    /// Connections closed (1008) because their outbox overflowed.
    pub slow_consumers_dropped: AtomicU64,
    /// Requests refused by a rate or connection limit (every refusal of `tenant::limits`).
    pub limit_refusals: AtomicU64,
    pub cometql_logins_failed: AtomicU64,
    pub cometql_query_seconds: Histogram,
    /// Connections closed at accept, by the limit that refused them (the log only summarizes them).
    pub connections_refused: RefusedConnections,
    /// TLS handshakes completed and failed (garbage, a stalled client, a protocol mismatch), both ports.
    pub tls_handshakes: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    /// Certificates loaded again after start (a renewal or SIGHUP).
    pub tls_reloads: AtomicU64,
}

/// Live per-tenant figures, read by SHOW STATUS, the dashboard, `/metrics` and the usage book.
#[derive(Default, Debug)]
pub struct TenantCounters {
    pub websocket_connections: AtomicI64,
    pub cometql_sessions: AtomicI64,
    pub messages: AtomicU64,
    pub deliveries: AtomicU64,
    /// Publishes and connections refused by a rate limit (shown in the dashboard).
    pub rate_limited: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned map is still a valid map: keep counting.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Figures {
    /// The tenant's counters if it has any yet; never creates them (callers that are not yet
    /// authenticated must not grow this map).
    pub fn existing_tenant(&self, dev_id: DevId) -> Option<Arc<TenantCounters>> {
        lock(&self.tenants).get(&dev_id).cloned()
    }

    /// The tenant's live counters, created on first use.
    pub fn tenant(&self, dev_id: DevId) -> Arc<TenantCounters> {
        lock(&self.tenants).entry(dev_id).or_default().clone()
    }

    /// Every tenant that has counters, by dev_id.
    pub fn tenants(&self) -> Vec<(DevId, Arc<TenantCounters>)> {
        let mut v: Vec<_> = lock(&self.tenants)
            .iter()
            .map(|(d, t)| (*d, t.clone()))
            .collect();
        v.sort_by_key(|(d, _)| *d);
        v
    }

    /// Frames a publish queued to the tenant's subscribers: one lookup under the lock, no `Arc` traffic.
    pub fn count_deliveries(&self, dev_id: DevId, n: u64) {
        lock(&self.tenants)
            .entry(dev_id)
            .or_default()
            .deliveries
            .fetch_add(n, Ordering::Relaxed);
    }

    pub fn total_websocket_connections(&self) -> i64 {
        lock(&self.tenants)
            .values()
            .map(|t| t.websocket_connections.load(Ordering::Relaxed))
            .sum()
    }
}

/// Upper bounds (seconds) of the CometQL query latency buckets.
pub const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// A latency histogram with fixed buckets.
#[derive(Default, Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    over: AtomicU64,
    sum_micros: AtomicU64,
}

/// A histogram as read at one moment, cumulative as Prometheus wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramReading {
    /// (upper bound, observations at or below it), in the order of [`BUCKETS`].
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_secs: f64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        match BUCKETS.iter().position(|b| secs <= *b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_micros.fetch_add(
            d.as_micros().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    pub fn read(&self) -> HistogramReading {
        let mut cumulative = 0;
        let buckets = BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, n)| {
                cumulative += n.load(Ordering::Relaxed);
                (*bound, cumulative)
            })
            .collect();
        HistogramReading {
            buckets,
            count: cumulative + self.over.load(Ordering::Relaxed),
            sum_secs: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// Why a connection was closed as soon as it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AcceptRefusal {
    /// The server's total of open connections.
    ServerConnections,
    /// Open connections from one address.
    IpConnections,
    /// New connections per second from one address.
    IpNewConnections,
}

impl AcceptRefusal {
    pub const ALL: [AcceptRefusal; 3] = [
        AcceptRefusal::ServerConnections,
        AcceptRefusal::IpConnections,
        AcceptRefusal::IpNewConnections,
    ];

    /// The `reason` label of `halley_connections_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            AcceptRefusal::ServerConnections => "server_connections",
            AcceptRefusal::IpConnections => "ip_connections",
            AcceptRefusal::IpNewConnections => "ip_new_connections",
        }
    }
}

/// Connections closed at accept, per [`AcceptRefusal`].
#[derive(Default, Debug)]
pub struct RefusedConnections([AtomicU64; 3]);

impl RefusedConnections {
    pub fn add(&self, why: AcceptRefusal) {
        self.0[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, why: AcceptRefusal) -> u64 {
        self.0[why as usize].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(2));
        let r = h.read();
        assert_eq!(r.buckets[0], (0.0001, 1));
        assert_eq!(r.buckets[5], (0.005, 2));
        assert_eq!(r.buckets[11], (1.0, 2));
        assert_eq!(r.count, 3);
        assert!((r.sum_secs - 2.00305).abs() < 1e-9, "{}", r.sum_secs);
    }

    #[test]
    fn clones_share_every_figure() {
        let a = Stats::default();
        let b = a.clone();
        a.count_deliveries(DevId(2), 3);
        a.tenant(DevId(1))
            .websocket_connections
            .fetch_add(2, Ordering::Relaxed);
        a.connections_refused.add(AcceptRefusal::IpConnections);
        assert_eq!(b.total_websocket_connections(), 2);
        let tenants = b.tenants();
        assert_eq!(tenants.iter().map(|(d, _)| d.0).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(tenants[1].1.deliveries.load(Ordering::Relaxed), 3);
        assert_eq!(b.connections_refused.get(AcceptRefusal::IpConnections), 1);
        assert_eq!(
            b.connections_refused.get(AcceptRefusal::IpNewConnections),
            0
        );
        assert!(b.existing_tenant(DevId(3)).is_none());
    }
}
