//! What a phase of a scenario cost: the server's CPU time (a cluster's: both nodes and Redis), the load
//! tool's, the wall time; and for a cluster what Redis did meanwhile (`INFO commandstats` and the bytes in
//! and out, before and after), per publish of the measured phase and per subscriber of the set-up phase.

use std::time::{Duration, Instant};

use crate::procstat;
use crate::record::Record;
use crate::redis_stats::{Delta, RedisConn, Snapshot};
use crate::target::Target;

/// Redis's counters at the start of a phase.
struct RedisWatch {
    conn: RedisConn,
    before: Snapshot,
    channels: u64,
    cpu: f64,
}

impl RedisWatch {
    fn start(t: &Target) -> anyhow::Result<Option<RedisWatch>> {
        let Some(addr) = t.redis() else {
            return Ok(None);
        };
        let mut conn = RedisConn::connect(addr)?;
        let channels = conn.channels()?;
        let before = conn.snapshot()?;
        Ok(Some(RedisWatch {
            conn,
            before,
            channels,
            cpu: t.redis_cpu_seconds()?.unwrap_or(0.0),
        }))
    }
}

/// Server and load-tool CPU time and wall time around the measured part (and Redis's counters).
pub(crate) struct Meter {
    t0: Instant,
    server0: f64,
    client0: f64,
    redis: Option<RedisWatch>,
}

impl Meter {
    pub(crate) fn start(t: &Target) -> anyhow::Result<Meter> {
        let redis = RedisWatch::start(t)?;
        Ok(Meter {
            t0: Instant::now(),
            server0: t.cpu_seconds()?,
            client0: procstat::self_cpu_seconds(),
            redis,
        })
    }

    /// Records elapsed_s, server_cpu_s, client_cpu_s (and a cluster's Redis counters: see
    /// `redis_figures`); returns (elapsed, server CPU) seconds.
    pub(crate) fn finish(self, t: &Target, r: &mut Record) -> anyhow::Result<(f64, f64)> {
        let elapsed = self.t0.elapsed().as_secs_f64();
        let server = t.cpu_seconds()? - self.server0;
        r.set("elapsed_s", elapsed);
        r.set("server_cpu_s", server);
        r.set("client_cpu_s", procstat::self_cpu_seconds() - self.client0);
        if let Some(mut w) = self.redis {
            let d = Delta::between(&w.before, &w.conn.snapshot()?);
            let channels = w.conn.channels()?;
            let cpu = t.redis_cpu_seconds()?.unwrap_or(0.0) - w.cpu;
            r.set("redis_cpu_s", cpu);
            r.set("redis_calls", d.calls() as f64);
            r.set("redis_scripts", d.scripts() as f64);
            r.set("redis_net_bytes", (d.net_in + d.net_out) as f64);
            r.set("redis_subscribe_calls", d.calls_of("subscribe") as f64);
            r.set("redis_unsubscribe_calls", d.calls_of("unsubscribe") as f64);
            r.set("redis_channels_added", channels as f64 - w.channels as f64);
            r.redis.push(d);
        }
        Ok((elapsed, server))
    }
}

/// Redis's counters around the set-up of `n` subscribers (connect and subscribe): commands per subscriber.
pub(crate) struct SetupMeter(Option<RedisWatch>);

/// The set-up is over when Redis hears fewer than this many commands in `QUIET` (the nodes' own
/// heartbeats, probes and leases are a few a second).
const QUIET_CALLS: u64 = 10;
const QUIET: Duration = Duration::from_millis(300);

impl SetupMeter {
    pub(crate) fn start(t: &Target) -> anyhow::Result<SetupMeter> {
        Ok(SetupMeter(RedisWatch::start(t)?))
    }

    /// Waits until Redis is quiet (the subscriptions were all applied: the protocol does not answer
    /// them), then records redis_cmds_per_subscriber, redis_scripts_per_subscriber,
    /// redis_subscribe_calls_setup and redis_mem_bytes_per_subscriber (Redis's used_memory, presence).
    pub(crate) async fn finish(self, n: usize, r: &mut Record) -> anyhow::Result<()> {
        let Some(mut w) = self.0 else {
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = w.conn.snapshot()?;
        loop {
            tokio::time::sleep(QUIET).await;
            let now = w.conn.snapshot()?;
            let new = Delta::between(&last, &now).calls();
            last = now;
            if new < QUIET_CALLS || Instant::now() > deadline {
                break;
            }
        }
        let d = Delta::between(&w.before, &last);
        let n = n.max(1) as f64;
        r.set("redis_cmds_per_subscriber", d.calls() as f64 / n);
        r.set("redis_scripts_per_subscriber", d.scripts() as f64 / n);
        r.set(
            "redis_subscribe_calls_setup",
            d.calls_of("subscribe") as f64,
        );
        r.set(
            "redis_mem_bytes_per_subscriber",
            (last.used_memory as f64 - w.before.used_memory as f64) / n,
        );
        r.notes.push(d.per(n, "subscriber"));
        Ok(())
    }
}

/// After a scenario: the measured phase's Redis figures per publish (when it counted its publishes), and
/// its breakdown by command as a note.
pub(crate) fn redis_figures(r: &mut Record) {
    if let (Some(ch), Some(calls)) = (
        r.get("redis_channels_added"),
        r.get("redis_subscribe_calls"),
    ) {
        if calls > 0.0 {
            r.set("channels_per_subscribe_call", ch / calls);
        }
    }
    let Some(d) = r.redis.pop() else {
        return;
    };
    match r.get("publishes").filter(|&p| p > 0.0) {
        Some(p) => {
            r.set("redis_cmds_per_publish", d.calls() as f64 / p);
            r.set("redis_scripts_per_publish", d.scripts() as f64 / p);
            if let Some(cpu) = r.get("redis_cpu_s") {
                r.set("redis_cpu_us_per_publish", cpu * 1e6 / p);
            }
            r.set("redis_bytes_per_publish", (d.net_in + d.net_out) as f64 / p);
            r.notes.push(d.per(p, "publish"));
        }
        None => r.notes.push(d.per(1.0, "measured phase (totals)")),
    }
}
