//! The cluster's figures on `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub(super) struct Metrics {
    pub(super) published: AtomicU64,
    pub(super) publish_failures: AtomicU64,
    pub(super) received: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) repairs: AtomicU64,
    pub(super) repaired_messages: AtomicU64,
    pub(super) gaps: AtomicU64,
    pub(super) reconnects: AtomicU64,
    pub(super) garbled: AtomicU64,
    pub(super) subscribe_commands: AtomicU64,
    /// Private messages published on a user channel (some node held the user, ready).
    pub(super) private_sent: AtomicU64,
    /// Revocations this node missed and could no longer read from the window.
    pub(super) revocations_missed: AtomicU64,
    /// Positioned joins whose marker did not come back in time.
    pub(super) join_timeouts: AtomicU64,
    /// The last probe's round trip through Redis pub/sub, microseconds.
    pub(super) lag_us: AtomicU64,
}

impl Metrics {
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn render(&self, out: &mut String, ready: bool, channels: usize) {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let rows: [(&str, &str, &str, String); 17] = [
            (
                "halley_cluster_ready",
                "gauge",
                "1 when the node can take publishes (Redis reachable, pub/sub live).",
                u64::from(ready).to_string(),
            ),
            (
                "halley_cluster_channels",
                "gauge",
                "Pipe channels this node is subscribed to.",
                channels.to_string(),
            ),
            (
                "halley_cluster_published_total",
                "counter",
                "Publishes Redis took from this node.",
                read(&self.published).to_string(),
            ),
            (
                "halley_cluster_publish_failures_total",
                "counter",
                "Publishes refused because Redis was unavailable.",
                read(&self.publish_failures).to_string(),
            ),
            (
                "halley_cluster_received_total",
                "counter",
                "Messages received from pipe channels.",
                read(&self.received).to_string(),
            ),
            (
                "halley_cluster_duplicates_total",
                "counter",
                "Messages received again (already delivered or replayed), dropped.",
                read(&self.duplicates).to_string(),
            ),
            (
                "halley_cluster_repairs_total",
                "counter",
                "Holes in a pipe's offsets filled from its window.",
                read(&self.repairs).to_string(),
            ),
            (
                "halley_cluster_repaired_messages_total",
                "counter",
                "Messages delivered from a window to fill a hole.",
                read(&self.repaired_messages).to_string(),
            ),
            (
                "halley_cluster_gaps_total",
                "counter",
                "Holes the window could not fill (positioned subscribers were sent gap).",
                read(&self.gaps).to_string(),
            ),
            (
                "halley_cluster_reconnects_total",
                "counter",
                "Reconnects of the pub/sub connection.",
                read(&self.reconnects).to_string(),
            ),
            (
                "halley_cluster_garbled_total",
                "counter",
                "Messages on a channel that did not decode or did not match it, dropped.",
                read(&self.garbled).to_string(),
            ),
            (
                "halley_cluster_subscribe_commands_total",
                "counter",
                "SUBSCRIBE and UNSUBSCRIBE commands sent (each for many channels).",
                read(&self.subscribe_commands).to_string(),
            ),
            (
                "halley_cluster_private_sent_total",
                "counter",
                "Private messages this node published on a user's channel (the rest were queued).",
                read(&self.private_sent).to_string(),
            ),
            (
                "halley_cluster_revocations_missed_total",
                "counter",
                "Revocations this node missed that Redis no longer held (their sessions may be open here).",
                read(&self.revocations_missed).to_string(),
            ),
            (
                "halley_cluster_join_timeouts_total",
                "counter",
                "Positioned subscribes refused because their marker did not come back through the channel.",
                read(&self.join_timeouts).to_string(),
            ),
            (
                "halley_cluster_pubsub_lag_seconds",
                "gauge",
                "Round trip of the last liveness probe through Redis pub/sub.",
                format!("{:.6}", read(&self.lag_us) as f64 / 1e6),
            ),
            ("halley_cluster_info", "gauge", "Always 1.", "1".to_string()),
        ];
        for (name, kind, help, value) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
}
