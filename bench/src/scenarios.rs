//! The scenarios, each bounded in count and time, each returning one `Record` of figures. Every figure is
//! measured the same way against every server; the server's CPU time is read from /proc around the
//! measured part only (not connection set-up or teardown).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::connections;
use crate::crowd::{self, CrowdResult, CrowdSpec};
use crate::durable::{self, Write};
use crate::meter::{self, Meter, SetupMeter};
use crate::payload;
use crate::record::Record;
use crate::recovery;
use crate::stats::quantile;
use crate::target::{Kind, Target};

pub struct Options {
    pub sources: Vec<IpAddr>,
    /// Connection attempts in flight at once.
    pub concurrency: usize,
    /// Fan-out: publishes not yet fully delivered at once (per publish: every subscriber got it).
    pub window: u64,
    /// Many pipes: CometQL / HTTP publishing connections.
    pub publishers: usize,
    pub payload_bytes: usize,
    /// reconnect-storm-10k: clients (10,000 unless told).
    pub storm_clients: usize,
    /// windows-10k: pipes with a full window (10,000 unless told).
    pub windows_pipes: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Connect,
    Idle10k,
    Idle18k,
    Fanout1k,
    Fanout10k,
    Fanout10kPipelined,
    Fanout10kPublishers,
    Pipes10k,
    Latency1k,
    PublishOneConn,
    ConnectWss,
    Idle10kWss,
    CometqlConnect,
    CometqlConnectTls,
    ReconnectStorm,
    ReconnectStormPipes,
    Windows,
    HistoryOneConn,
    HistoryFourConn,
    PlainOneConn,
    PlainFourConn,
    QueueOneConn,
    QueueFourConn,
    History32Conn,
    Plain32Conn,
    AuthChurn,
    PusherIdle10k,
    PusherFanout10k,
    PusherLatency1k,
}

impl Scenario {
    pub const ALL: [Scenario; 29] = [
        Scenario::Connect,
        Scenario::Idle10k,
        Scenario::Idle18k,
        Scenario::Fanout1k,
        Scenario::Fanout10k,
        Scenario::Fanout10kPipelined,
        Scenario::Fanout10kPublishers,
        Scenario::Pipes10k,
        Scenario::Latency1k,
        Scenario::PublishOneConn,
        Scenario::ConnectWss,
        Scenario::Idle10kWss,
        Scenario::CometqlConnect,
        Scenario::CometqlConnectTls,
        Scenario::ReconnectStorm,
        Scenario::ReconnectStormPipes,
        Scenario::Windows,
        Scenario::PlainOneConn,
        Scenario::HistoryOneConn,
        Scenario::PlainFourConn,
        Scenario::HistoryFourConn,
        Scenario::QueueOneConn,
        Scenario::QueueFourConn,
        Scenario::Plain32Conn,
        Scenario::History32Conn,
        Scenario::AuthChurn,
        Scenario::PusherIdle10k,
        Scenario::PusherFanout10k,
        Scenario::PusherLatency1k,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Connect => "connect-5k",
            Scenario::Idle10k => "idle-10k",
            Scenario::Idle18k => "idle-18k",
            Scenario::Fanout1k => "fanout-1k",
            Scenario::Fanout10k => "fanout-10k",
            Scenario::Fanout10kPipelined => "fanout-10k-pipelined",
            Scenario::Fanout10kPublishers => "fanout-10k-publishers",
            Scenario::Pipes10k => "pipes-10k",
            Scenario::Latency1k => "latency-1k",
            Scenario::PublishOneConn => "publish-1conn",
            Scenario::ConnectWss => "connect-5k-wss",
            Scenario::Idle10kWss => "idle-10k-wss",
            Scenario::CometqlConnect => "cometql-connect-2k",
            Scenario::CometqlConnectTls => "cometql-connect-2k-tls",
            Scenario::ReconnectStorm => "reconnect-storm-10k",
            Scenario::ReconnectStormPipes => "reconnect-storm-10k-pipes",
            Scenario::Windows => "windows-10k",
            Scenario::HistoryOneConn => "history-1conn",
            Scenario::HistoryFourConn => "history-4conn",
            Scenario::PlainOneConn => "plain-1conn",
            Scenario::PlainFourConn => "plain-4conn",
            Scenario::QueueOneConn => "queue-1conn",
            Scenario::QueueFourConn => "queue-4conn",
            Scenario::History32Conn => "history-32conn",
            Scenario::Plain32Conn => "plain-32conn",
            Scenario::AuthChurn => "auth-churn-1k",
            Scenario::PusherIdle10k => "pusher-idle-10k",
            Scenario::PusherFanout10k => "pusher-fanout-10k",
            Scenario::PusherLatency1k => "pusher-latency-1k",
        }
    }

    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    /// The raw baseline has no real publish protocol to compare; TLS and CometQL logins are Halley's own;
    /// the Pusher scenarios are for the Pusher servers and only they.
    pub fn applies_to(self, kind: Kind) -> bool {
        if self.is_pusher() || kind.is_pusher() {
            return self.is_pusher() && kind.is_pusher();
        }
        match self {
            Scenario::PublishOneConn => kind != Kind::Raw,
            Scenario::ConnectWss
            | Scenario::Idle10kWss
            | Scenario::CometqlConnect
            | Scenario::CometqlConnectTls
            | Scenario::ReconnectStorm
            | Scenario::ReconnectStormPipes
            | Scenario::Windows => kind.is_halley(),
            s if s.is_durable() => kind.is_halley(),
            _ => true,
        }
    }

    /// Issue 17's scenarios, reported in their own table (per database).
    pub fn is_durable(self) -> bool {
        matches!(
            self,
            Scenario::HistoryOneConn
                | Scenario::HistoryFourConn
                | Scenario::PlainOneConn
                | Scenario::PlainFourConn
                | Scenario::QueueOneConn
                | Scenario::QueueFourConn
                | Scenario::History32Conn
                | Scenario::Plain32Conn
                | Scenario::AuthChurn
        )
    }

    /// Issue 16's Pusher protocol scenarios, reported in their own table (Halley, Sockudo, Soketi).
    pub fn is_pusher(self) -> bool {
        matches!(
            self,
            Scenario::PusherIdle10k | Scenario::PusherFanout10k | Scenario::PusherLatency1k
        )
    }

    /// Whether the server must be started with a certificate.
    pub fn uses_tls(self) -> bool {
        matches!(
            self,
            Scenario::ConnectWss | Scenario::Idle10kWss | Scenario::CometqlConnectTls
        )
    }
}

/// How long the durable-write scenarios INSERT (the 5 s).
const FIVE_S: Duration = Duration::from_secs(5);

pub async fn run(s: Scenario, t: &Target, o: &Options) -> anyhow::Result<Record> {
    let mut r = Record::new(s.name(), t.kind);
    match s {
        Scenario::Connect => connections::connect(t, o, 5_000, false, &mut r).await?,
        Scenario::Idle10k => {
            connections::idle(t, o, 10_000, false, connections::Pipes::Own, &mut r).await?
        }
        Scenario::Idle18k => {
            connections::idle(t, o, 18_000, false, connections::Pipes::Own, &mut r).await?
        }
        Scenario::ConnectWss => connections::connect(t, o, 5_000, true, &mut r).await?,
        Scenario::Idle10kWss => {
            connections::idle(t, o, 10_000, true, connections::Pipes::Own, &mut r).await?
        }
        Scenario::CometqlConnect => {
            connections::cometql_connect(t, o, 2_000, false, &mut r).await?
        }
        Scenario::CometqlConnectTls => {
            connections::cometql_connect(t, o, 2_000, true, &mut r).await?
        }
        Scenario::Fanout1k => fanout(t, o, 1_000, 1_000, (1, 1), &mut r).await?,
        Scenario::Fanout10k => fanout(t, o, 10_000, 100, (1, 1), &mut r).await?,
        Scenario::Fanout10kPipelined => fanout(t, o, 10_000, 200, (1, o.window), &mut r).await?,
        Scenario::Fanout10kPublishers => {
            fanout(t, o, 10_000, 200, (o.publishers, u64::MAX), &mut r).await?
        }
        Scenario::Pipes10k => many_pipes(t, o, 10_000, 100_000, &mut r).await?,
        Scenario::Latency1k => latency(t, o, 1_000, 20, 10, &mut r).await?,
        Scenario::PublishOneConn => publish_one_conn(t, Duration::from_secs(5), &mut r).await?,
        Scenario::ReconnectStorm => {
            let spread = Duration::from_secs(1);
            recovery::reconnect_storm(t, o, o.storm_clients, 100, (5, 20), spread, &mut r).await?
        }
        // Each client its own pipe: a node has as many channels to SUBSCRIBE again as clients come back
        // (fewer messages per pipe, so that the publishing before the storm stays short).
        Scenario::ReconnectStormPipes => {
            let (spread, n) = (Duration::from_secs(1), o.storm_clients);
            recovery::reconnect_storm(t, o, n, n, (1, 2), spread, &mut r).await?
        }
        Scenario::Windows => recovery::windows(t, o, o.windows_pipes, (100, 100), &mut r).await?,
        Scenario::HistoryOneConn => {
            durable::inserts(t, o, Write::History, 1, FIVE_S, &mut r).await?
        }
        Scenario::HistoryFourConn => {
            durable::inserts(t, o, Write::History, 4, FIVE_S, &mut r).await?
        }
        Scenario::PlainOneConn => durable::inserts(t, o, Write::Plain, 1, FIVE_S, &mut r).await?,
        Scenario::PlainFourConn => durable::inserts(t, o, Write::Plain, 4, FIVE_S, &mut r).await?,
        Scenario::QueueOneConn => durable::inserts(t, o, Write::Queue, 1, FIVE_S, &mut r).await?,
        Scenario::QueueFourConn => durable::inserts(t, o, Write::Queue, 4, FIVE_S, &mut r).await?,
        // Many backends at once: what group commit is for.
        Scenario::History32Conn => {
            durable::inserts(t, o, Write::History, 32, FIVE_S, &mut r).await?
        }
        Scenario::Plain32Conn => durable::inserts(t, o, Write::Plain, 32, FIVE_S, &mut r).await?,
        Scenario::AuthChurn => durable::auth_churn(t, o, 1_000, 1_000, 10, &mut r).await?,
        // The three figures, measured like their CometQL counterparts (idle-10k, fanout-10k,
        // latency-1k) but with Pusher clients and the HTTP API; idle ones share one public channel.
        Scenario::PusherIdle10k => {
            connections::idle(t, o, 10_000, false, connections::Pipes::One, &mut r).await?
        }
        Scenario::PusherFanout10k => fanout(t, o, 10_000, 100, (1, 1), &mut r).await?,
        Scenario::PusherLatency1k => latency(t, o, 1_000, 20, 10, &mut r).await?,
    }
    meter::redis_figures(&mut r);
    Ok(r)
}

fn one_pipe(pipe: &str) -> impl Fn(usize) -> Option<String> + Sync + '_ {
    move |_| Some(pipe.to_owned())
}

pub(crate) fn spec<'a>(
    o: &'a Options,
    n: usize,
    pipe_of: &'a (dyn Fn(usize) -> Option<String> + Sync),
    record_latency: bool,
) -> CrowdSpec<'a> {
    CrowdSpec {
        n,
        pipe_of,
        concurrency: o.concurrency,
        sources: &o.sources,
        record_latency,
        tls: false,
    }
}

fn ms(us: Option<u32>) -> f64 {
    us.map_or(f64::NAN, |v| f64::from(v) / 1000.0)
}

/// Deliveries, rates, losses and latency quantiles of a publishing scenario.
fn deliveries(r: &mut Record, got: &CrowdResult, expected: u64, elapsed: f64, server_cpu: f64) {
    r.set("deliveries", got.received as f64);
    r.set("lost", expected.saturating_sub(got.received) as f64);
    r.set("closed_by_server", got.closed_by_server as f64);
    r.set("deliveries_per_s", got.received as f64 / elapsed);
    r.set(
        "deliveries_per_cpu_s",
        got.received as f64 / server_cpu.max(0.01),
    );
    r.set("p50_ms", ms(quantile(&got.latencies_us, 0.50)));
    r.set("p99_ms", ms(quantile(&got.latencies_us, 0.99)));
    r.set("max_ms", ms(got.latencies_us.last().copied()));
}

const STALL: Duration = Duration::from_secs(3);

/// N subscribers on one pipe; `publishers` connections publish to it at once, each query after query, at
/// most `window` publishes of each not yet delivered to all. With one publisher and a window of 1 each
/// publish reaches every subscriber before the next one is sent, so no server can write two messages to a
/// socket at once: the cost of one delivery, like for like. A wider window lets a server that queues per
/// connection coalesce frames into fewer writes; several publishers (backend workers feeding one popular
/// pipe) let a server send messages that arrive together in fewer writes.
async fn fanout(
    t: &Target,
    o: &Options,
    n: usize,
    messages: u64,
    (publishers, window): (usize, u64),
    r: &mut Record,
) -> anyhow::Result<()> {
    let pipe = format!("fan{n}");
    let pipe_of = one_pipe(&pipe);
    let subscribing = SetupMeter::start(t)?;
    let crowd = crowd::open(t, spec(o, n, &pipe_of, true)).await?;
    subscribing.finish(n, r).await?;
    let mut conns = Vec::with_capacity(publishers.max(1));
    for _ in 0..publishers.max(1) {
        conns.push(t.publisher().await?);
    }
    crowd::wait_subscribed(&mut conns[0], std::slice::from_ref(&pipe), n as u64).await?;
    let meter = Meter::start(t)?;
    let deadline = Instant::now() + Duration::from_secs(40);
    let n64 = n as u64;
    let count = conns.len();
    let payload_bytes = o.payload_bytes;
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(k, mut publisher)| {
            let (pipe, shared) = (pipe.clone(), crowd.shared.clone());
            tokio::spawn(async move {
                let mut sent = 0u64;
                for seq in (k as u64..messages).step_by(count) {
                    // With one publisher: all of the messages before `seq - window` reached everyone.
                    let before = seq.saturating_sub(window.saturating_mul(count as u64) - 1);
                    if before > 0 && !shared.wait_or_stall(before * n64, deadline, STALL).await {
                        break;
                    }
                    let body = payload::encode(seq, payload::now_us(), payload_bytes);
                    publisher.publish(&pipe, "ev", &body).await?;
                    sent += 1;
                }
                anyhow::Ok(sent)
            })
        })
        .collect();
    let mut sent = 0;
    for task in tasks {
        sent += task.await.context("publisher task")??;
    }
    crowd
        .shared
        .wait_or_stall(sent * n64, deadline, STALL)
        .await;
    let (elapsed, cpu) = meter.finish(t, r)?;
    let got = crowd.finish().await;
    r.set("subscribers", n as f64);
    r.set("publishers", count as f64);
    if window != u64::MAX {
        r.set("window", window as f64);
    }
    r.set("publishes", sent as f64);
    deliveries(r, &got, messages * n64, elapsed, cpu);
    Ok(())
}

/// N pipes with one subscriber each; several publishing connections spread messages over the pipes.
async fn many_pipes(
    t: &Target,
    o: &Options,
    n: usize,
    messages: u64,
    r: &mut Record,
) -> anyhow::Result<()> {
    let pipes: Arc<Vec<String>> = Arc::new((0..n).map(|i| format!("mp{i}")).collect());
    let pipe_of = |i: usize| Some(pipes[i].clone());
    let subscribing = SetupMeter::start(t)?;
    let crowd = crowd::open(t, spec(o, n, &pipe_of, true)).await?;
    subscribing.finish(n, r).await?;
    let mut checker = t.publisher().await?;
    crowd::wait_subscribed(&mut checker, &pipes, n as u64).await?;
    let k = o.publishers.max(1);
    let mut publishers = Vec::with_capacity(k);
    for _ in 0..k {
        publishers.push(t.publisher().await?);
    }
    let window = o.window.max(1) * 256;
    let payload_bytes = o.payload_bytes;
    let meter = Meter::start(t)?;
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut tasks = Vec::new();
    for (j, mut publisher) in publishers.into_iter().enumerate() {
        let pipes = pipes.clone();
        let shared = crowd.shared.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            for seq in (j as u64..messages).step_by(k) {
                if seq >= window
                    && !shared
                        .wait_or_stall(seq - window + 1, deadline, STALL)
                        .await
                {
                    break;
                }
                let pipe = &pipes[(seq % pipes.len() as u64) as usize];
                let body = payload::encode(seq, payload::now_us(), payload_bytes);
                publisher.publish(pipe, "ev", &body).await?;
                sent += 1;
            }
            Ok::<u64, std::io::Error>(sent)
        }));
    }
    let mut sent = 0;
    for task in tasks {
        sent += task.await.context("publisher task")??;
    }
    crowd.shared.wait_or_stall(sent, deadline, STALL).await;
    let (elapsed, cpu) = meter.finish(t, r)?;
    let got = crowd.finish().await;
    r.set("pipes", n as f64);
    r.set("publishers", k as f64);
    r.set("publishes", sent as f64);
    deliveries(r, &got, messages, elapsed, cpu);
    Ok(())
}

/// N subscribers on one pipe, publishes at a fixed rate: publish-to-delivery latency.
async fn latency(
    t: &Target,
    o: &Options,
    n: usize,
    rate: u64,
    secs: u64,
    r: &mut Record,
) -> anyhow::Result<()> {
    let pipe = format!("lat{n}");
    let pipe_of = one_pipe(&pipe);
    let subscribing = SetupMeter::start(t)?;
    let crowd = crowd::open(t, spec(o, n, &pipe_of, true)).await?;
    subscribing.finish(n, r).await?;
    let mut publisher = t.publisher().await?;
    crowd::wait_subscribed(&mut publisher, std::slice::from_ref(&pipe), n as u64).await?;
    let meter = Meter::start(t)?;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let messages = rate * secs;
    for seq in 0..messages {
        tick.tick().await;
        let body = payload::encode(seq, payload::now_us(), o.payload_bytes);
        publisher.publish(&pipe, "ev", &body).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    crowd
        .shared
        .wait_or_stall(messages * n as u64, deadline, STALL)
        .await;
    let (elapsed, cpu) = meter.finish(t, r)?;
    let got = crowd.finish().await;
    r.set("subscribers", n as f64);
    r.set("publishes_per_s", rate as f64);
    r.set("publishes", messages as f64);
    deliveries(r, &got, messages * n as u64, elapsed, cpu);
    Ok(())
}

/// One publishing connection, query after query to a pipe nobody listens to, like a PHP script in a loop.
async fn publish_one_conn(t: &Target, limit: Duration, r: &mut Record) -> anyhow::Result<()> {
    let mut publisher = t.publisher().await?;
    let meter = Meter::start(t)?;
    let stop = Instant::now() + limit;
    let mut lat: Vec<u32> = Vec::new();
    let mut seq = 0;
    while Instant::now() < stop && seq < 1_000_000 {
        let body = payload::encode(seq, payload::now_us(), 32);
        let q = Instant::now();
        publisher.publish("nobody", "ev", &body).await?;
        lat.push(q.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
        seq += 1;
    }
    let (elapsed, cpu) = meter.finish(t, r)?;
    lat.sort_unstable();
    r.set("publishes", seq as f64);
    r.set("publishes_per_s", seq as f64 / elapsed);
    r.set("server_cpu_us_per_publish", cpu * 1e6 / seq.max(1) as f64);
    r.set("p50_ms", ms(quantile(&lat, 0.5)));
    r.set("p99_ms", ms(quantile(&lat, 0.99)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pusher_scenarios_run_on_pusher_servers_only() {
        let pusher = [Kind::HalleyPusher, Kind::Sockudo, Kind::Soketi];
        let others = [Kind::Halley, Kind::HalleyPg, Kind::Raw, Kind::Nchan];
        for s in Scenario::ALL {
            for k in pusher {
                assert_eq!(
                    s.applies_to(k),
                    s.is_pusher(),
                    "{} on {}",
                    s.name(),
                    k.name()
                );
            }
            if s.is_pusher() {
                assert!(others.iter().all(|&k| !s.applies_to(k)), "{}", s.name());
            }
        }
        assert!(Scenario::Fanout10k.applies_to(Kind::Nchan));
        assert_eq!(
            Scenario::parse("pusher-fanout-10k"),
            Some(Scenario::PusherFanout10k)
        );
        assert_eq!(Kind::parse("sockudo"), Some(Kind::Sockudo));
    }
}
