//! `/metrics`: the node's figures in Prometheus text format. Every counter is read off the one
//! [`Stats`] handle; the subscription gauge and the cache sizes are read off the structures that hold them
//! (they are sizes, not tallies). Rendering happens only on scrape.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::commands::history::CacheSizes;
use crate::stats::{AcceptRefusal, HistogramReading, Stats, TenantCounters};

/// A per-tenant metric family: name, type, help, and how to read it off a tenant's counters.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&TenantCounters) -> u64,
);

/// The whole `/metrics` page but the cache sizes (`render_caches`).
pub(super) fn render(stats: &Stats, subscriptions: usize) -> String {
    let mut out = String::with_capacity(4096);
    let scalars: [(&str, &str, &str, u64); 8] = [
        (
            "halley_open_sockets",
            "gauge",
            "Open TCP connections on all listeners.",
            stats.open_sockets.load(Ordering::Relaxed) as u64,
        ),
        (
            "halley_subscriptions",
            "gauge",
            "Pipe subscriptions of live WebSocket connections.",
            subscriptions as u64,
        ),
        (
            "halley_slow_consumers_dropped_total",
            "counter",
            "Connections closed (1008) because their outbox overflowed.",
            stats.slow_consumers_dropped.load(Ordering::Relaxed),
        ),
        (
            "halley_rate_limit_refusals_total",
            "counter",
            "Requests refused by a rate or connection limit.",
            stats.limit_refusals.load(Ordering::Relaxed),
        ),
        (
            "halley_cometql_logins_failed_total",
            "counter",
            "Failed CometQL logins.",
            stats.cometql_logins_failed.load(Ordering::Relaxed),
        ),
        (
            "halley_tls_handshakes_total",
            "counter",
            "TLS handshakes completed (CometQL and HTTPS).",
            stats.tls_handshakes.load(Ordering::Relaxed),
        ),
        (
            "halley_tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed or did not finish in time.",
            stats.tls_handshake_failures.load(Ordering::Relaxed),
        ),
        (
            "halley_tls_reloads_total",
            "counter",
            "Times the TLS certificate was loaded again (file change or SIGHUP).",
            stats.tls_reloads.load(Ordering::Relaxed),
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
    render_histogram(&mut out, name, &stats.cometql_query_seconds.read());
    let name = "halley_connections_refused_total";
    let _ = writeln!(
        out,
        "# HELP {name} Connections closed when accepted, by the limit that refused them.\n# TYPE {name} counter"
    );
    for why in AcceptRefusal::ALL {
        let n = stats.connections_refused.get(why);
        let _ = writeln!(out, "{name}{{reason=\"{}\"}} {n}", why.label());
    }

    let tenants = stats.tenants();
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

fn render_histogram(out: &mut String, name: &str, h: &HistogramReading) {
    for (bound, n) in &h.buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", h.sum_secs);
    let _ = writeln!(out, "{name}_count {}", h.count);
}

/// The sizes of the bounded caches in front of storage, appended to the page.
pub(super) fn render_caches(out: &mut String, c: CacheSizes) {
    let rows: [(&str, &str, &str, u64); 11] = [
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
        (
            "halley_recovery_window_bytes",
            "gauge",
            "Bytes the pipes' recovery windows hold ([recovery] window_bytes).",
            c.window_bytes as u64,
        ),
        (
            "halley_private_window_bytes",
            "gauge",
            "Bytes the users' private-message windows hold ([recovery] window_bytes, a budget of its own).",
            c.private_window_bytes as u64,
        ),
        (
            "halley_storage_batches_total",
            "counter",
            "Transactions the storage writer committed (history, queued messages, users_time).",
            c.writer_batches,
        ),
        (
            "halley_storage_batched_writes_total",
            "counter",
            "Writes in those transactions (writes per transaction: this over halley_storage_batches_total).",
            c.writer_writes,
        ),
        (
            "halley_storage_failed_batches_total",
            "counter",
            "Transactions of the storage writer that failed (each of their writes got the error).",
            c.writer_failed,
        ),
        (
            "halley_users_time_dropped_total",
            "counter",
            "users_time changes not recorded because [storage] users_time_pending were waiting.",
            c.users_time_dropped,
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
    use std::time::Duration;

    #[test]
    fn every_figure_is_rendered_under_its_name() {
        let stats = Stats::default();
        stats.connections_refused.add(AcceptRefusal::IpConnections);
        stats.connections_refused.add(AcceptRefusal::IpConnections);
        stats
            .connections_refused
            .add(AcceptRefusal::ServerConnections);
        stats.open_sockets.fetch_add(4, Ordering::Relaxed);
        stats.limit_refusals.fetch_add(6, Ordering::Relaxed);
        stats
            .cometql_query_seconds
            .observe(Duration::from_micros(50));
        stats.count_deliveries(crate::ids::DevId(9), 5);
        let out = render(&stats, 3);
        for line in [
            "halley_connections_refused_total{reason=\"ip_connections\"} 2\n",
            "halley_connections_refused_total{reason=\"server_connections\"} 1\n",
            "halley_connections_refused_total{reason=\"ip_new_connections\"} 0\n",
            "halley_open_sockets 4\n",
            "halley_subscriptions 3\n",
            "halley_rate_limit_refusals_total 6\n",
            "halley_cometql_query_seconds_bucket{le=\"0.0001\"} 1\n",
            "halley_cometql_query_seconds_bucket{le=\"+Inf\"} 1\n",
            "halley_cometql_query_seconds_count 1\n",
            "halley_deliveries_total{dev_id=\"9\"} 5\n",
        ] {
            assert!(out.contains(line), "{line} in {out}");
        }
    }
}
