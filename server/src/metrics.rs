//! Process-wide figures that are not per tenant, and the Prometheus text rendering of everything `/metrics`
//! shows. Counters are plain atomics bumped on the paths that own them; rendering happens only on scrape.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::hub::{Registry, TenantCounters};
use crate::tenant::limits::Limit;

/// Upper bounds (seconds) of the CometQL query latency buckets.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
];

/// A latency histogram with fixed buckets (cumulative on rendering).
#[derive(Default, Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    over: AtomicU64,
    sum_micros: AtomicU64,
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

    fn render(&self, out: &mut String, name: &str) {
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.over.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

#[derive(Default, Debug)]
pub struct Metrics {
    pub cometql_query_seconds: Histogram,
    pub cometql_logins_failed: AtomicU64,
    pub connections_refused: RefusedConnections,
}

/// Connections closed at accept, by the limit that refused them (the log only summarizes them).
#[derive(Default, Debug)]
pub struct RefusedConnections([AtomicU64; 3]);

impl RefusedConnections {
    /// The limits that refuse a connection at accept, with their `reason` label.
    pub const REASONS: [(Limit, &'static str); 3] = [
        (Limit::TotalConnections, "server_connections"),
        (Limit::IpOpenConnections, "ip_connections"),
        (Limit::IpConnections, "ip_new_connections"),
    ];

    fn slot(&self, limit: Limit) -> Option<&AtomicU64> {
        let i = Self::REASONS.iter().position(|(l, _)| *l == limit)?;
        Some(&self.0[i])
    }

    pub fn add(&self, limit: Limit) {
        if let Some(n) = self.slot(limit) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get(&self, limit: Limit) -> u64 {
        self.slot(limit).map_or(0, |n| n.load(Ordering::Relaxed))
    }
}

/// A per-tenant metric family: name, type, help, and how to read it off a tenant's counters.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&TenantCounters) -> u64,
);

/// The whole `/metrics` page.
pub fn render(
    metrics: &Metrics,
    registry: &Registry,
    refusals: u64,
    open_sockets: usize,
) -> String {
    let mut out = String::with_capacity(4096);
    let scalars: [(&str, &str, &str, u64); 5] = [
        (
            "halley_open_sockets",
            "gauge",
            "Open TCP connections on both listeners.",
            open_sockets as u64,
        ),
        (
            "halley_subscriptions",
            "gauge",
            "Pipe subscriptions of live WebSocket connections.",
            registry.total_subscriptions() as u64,
        ),
        (
            "halley_slow_consumers_dropped_total",
            "counter",
            "Connections closed (1008) because their outbox overflowed.",
            registry.slow_consumers_dropped.load(Ordering::Relaxed),
        ),
        (
            "halley_rate_limit_refusals_total",
            "counter",
            "Requests refused by a rate or connection limit.",
            refusals,
        ),
        (
            "halley_cometql_logins_failed_total",
            "counter",
            "Failed CometQL logins.",
            metrics.cometql_logins_failed.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, value) in scalars {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    let name = "halley_cometql_query_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time to execute one CometQL query.\n# TYPE {name} histogram"
    );
    metrics.cometql_query_seconds.render(&mut out, name);
    let name = "halley_connections_refused_total";
    let _ = writeln!(
        out,
        "# HELP {name} Connections closed when accepted, by the limit that refused them.\n# TYPE {name} counter"
    );
    for (limit, reason) in RefusedConnections::REASONS {
        let n = metrics.connections_refused.get(limit);
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {n}");
    }

    let tenants = registry.tenants();
    let per_tenant: [Family; 5] = [
        (
            "halley_websocket_connections",
            "gauge",
            "Open WebSocket connections.",
            |t| t.websocket_connections.load(Ordering::Relaxed).max(0) as u64,
        ),
        (
            "halley_cometql_sessions",
            "gauge",
            "Logged-in CometQL sessions.",
            |t| t.cometql_sessions.load(Ordering::Relaxed).max(0) as u64,
        ),
        (
            "halley_publishes_total",
            "counter",
            "Messages published to pipes.",
            |t| t.messages.load(Ordering::Relaxed),
        ),
        (
            "halley_deliveries_total",
            "counter",
            "Frames queued to subscribers.",
            |t| t.deliveries.load(Ordering::Relaxed),
        ),
        (
            "halley_tenant_rate_limited_total",
            "counter",
            "Refusals by a tenant's limits.",
            |t| t.rate_limited.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, get) in per_tenant.iter() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (dev, t) in &tenants {
            let _ = writeln!(out, "{name}{{dev_id=\"{dev}\"}} {}", get(t));
        }
    }
    out
}

/// The sizes of the bounded caches in front of storage (appended to `/metrics`).
#[derive(Debug, Clone, Copy)]
pub struct CacheSizes {
    pub history_lengths: usize,
    pub history_pipes: usize,
    pub history_bytes: usize,
    pub history_hits: u64,
    pub history_misses: u64,
}

pub fn render_caches(out: &mut String, c: CacheSizes) {
    let rows: [(&str, &str, &str, u64); 5] = [
        (
            "halley_history_lengths_cached",
            "gauge",
            "Pipes whose history length the publish path remembers ([cache] history_lengths_entries).",
            c.history_lengths as u64,
        ),
        (
            "halley_history_cache_pipes",
            "gauge",
            "Pipes whose newest history is cached ([cache] history_pipes).",
            c.history_pipes as u64,
        ),
        (
            "halley_history_cache_bytes",
            "gauge",
            "Bytes of cached history ([cache] history_bytes).",
            c.history_bytes as u64,
        ),
        (
            "halley_history_cache_hits_total",
            "counter",
            "History reads served from memory.",
            c.history_hits,
        ),
        (
            "halley_history_cache_misses_total",
            "counter",
            "History reads that went to the database.",
            c.history_misses,
        ),
    ];
    for (name, kind, help, value) in rows {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
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
        let mut out = String::new();
        h.render(&mut out, "q");
        assert!(out.contains("q_bucket{le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("q_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("q_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("q_count 3\n"), "{out}");
    }

    #[test]
    fn refused_connections_are_counted_by_reason() {
        let m = Metrics::default();
        m.connections_refused.add(Limit::IpOpenConnections);
        m.connections_refused.add(Limit::IpOpenConnections);
        m.connections_refused.add(Limit::TotalConnections);
        m.connections_refused.add(Limit::Publishes);
        let out = render(&m, &Registry::default(), 0, 0);
        for line in [
            "halley_connections_refused_total{reason=\"ip_connections\"} 2\n",
            "halley_connections_refused_total{reason=\"server_connections\"} 1\n",
            "halley_connections_refused_total{reason=\"ip_new_connections\"} 0\n",
        ] {
            assert!(out.contains(line), "{line} in {out}");
        }
    }
}
