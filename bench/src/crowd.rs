//! Many subscribers at once: open N WebSocket connections (bounded concurrency, spread over several
//! 127.0.0.x source addresses), subscribe each to its pipe (awaiting the server's confirmation where the
//! protocol has one), then count and time every benchmark message they receive until told to stop.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinHandle;

use crate::payload;
use crate::target::Target;
use crate::wsclient::{Message, WsConn};

/// Counters every subscriber updates; the publishers pace themselves on `delivered`.
#[derive(Default)]
pub struct Shared {
    delivered: AtomicU64,
    wake_at: AtomicU64,
    notify: Notify,
    ready: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    setup_done: Notify,
}

impl Shared {
    fn delivered_one(&self) {
        let v = self.delivered.fetch_add(1, Ordering::Relaxed) + 1;
        if v == self.wake_at.load(Ordering::Relaxed) {
            self.notify.notify_one();
        }
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Waits until `at_least` benchmark messages were received in all; false at the deadline.
    pub async fn wait_for(&self, at_least: u64, deadline: Instant) -> bool {
        loop {
            self.wake_at.store(at_least, Ordering::Relaxed);
            if self.delivered() >= at_least {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let nap = (deadline - now).min(Duration::from_millis(20));
            let _ = tokio::time::timeout(nap, self.notify.notified()).await;
        }
    }

    /// Like `wait_for`, but also gives up once nothing has arrived for `stall` (lost messages).
    pub async fn wait_or_stall(&self, at_least: u64, deadline: Instant, stall: Duration) -> bool {
        let mut last = self.delivered();
        let mut since = Instant::now();
        loop {
            let step = deadline.min(Instant::now() + Duration::from_millis(200));
            if self.wait_for(at_least, step).await {
                return true;
            }
            let now = Instant::now();
            let d = self.delivered();
            if d != last {
                last = d;
                since = now;
            } else if now - since >= stall || now >= deadline {
                return false;
            }
        }
    }

    fn setup_finished(&self, result: Result<(), String>) {
        match result {
            Ok(()) => self.ready.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                self.first_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(e);
                self.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        self.setup_done.notify_one();
    }
}

/// What one subscriber saw.
#[derive(Default)]
struct SubStats {
    received: u64,
    latencies_us: Vec<u32>,
    closed_by_server: bool,
}

/// All subscribers' figures once stopped.
pub struct CrowdResult {
    pub received: u64,
    /// Sorted publish-to-delivery latencies (µs), when recorded.
    pub latencies_us: Vec<u32>,
    pub closed_by_server: u64,
}

pub struct Crowd {
    pub shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<SubStats>>,
    /// From the first connect to the last subscription sent.
    pub setup: Duration,
}

pub struct CrowdSpec<'a> {
    pub n: usize,
    /// The pipe of subscriber `i`; `None` connects without subscribing.
    pub pipe_of: &'a (dyn Fn(usize) -> Option<String> + Sync),
    pub concurrency: usize,
    pub sources: &'a [IpAddr],
    pub record_latency: bool,
    /// Connect over WSS (the server's HTTPS port) instead of WS.
    pub tls: bool,
}

/// Opens every connection; fails if any could not connect, be greeted or subscribe within the time limit.
pub async fn open(target: &Target, spec: CrowdSpec<'_>) -> anyhow::Result<Crowd> {
    let shared = Arc::new(Shared::default());
    let (stop, stop_rx) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(spec.concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(spec.n);
    for i in 0..spec.n {
        let pipe = (spec.pipe_of)(i);
        let path = target.ws_path(pipe.as_deref().unwrap_or("idle"), i as u64);
        let command = pipe.as_deref().and_then(|p| target.subscribe_command(p));
        let greets = target.greets();
        let ack = target.subscribe_ack();
        let (server, tls) = match spec.tls {
            true => (
                target
                    .server
                    .https
                    .context("the server has no HTTPS port")?,
                target.server.tls.clone(),
            ),
            false => (target.ws_addr(i as u64), None),
        };
        let source = (!spec.sources.is_empty()).then(|| spec.sources[i % spec.sources.len()]);
        let shared = shared.clone();
        let gate = gate.clone();
        let stop_rx = stop_rx.clone();
        let record = spec.record_latency;
        tasks.push(tokio::spawn(async move {
            let setup = async {
                let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
                let mut conn = WsConn::connect(server, source, &path, i as u64, tls.as_ref())
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                if greets {
                    conn.next_text(Duration::from_secs(20))
                        .await
                        .map_err(|e| format!("greeting: {e}"))?;
                }
                if let Some(c) = command {
                    conn.send_text(&c)
                        .await
                        .map_err(|e| format!("subscribe: {e}"))?;
                    if let Some(ack) = ack {
                        wait_ack(&mut conn, ack).await?;
                    }
                }
                Ok::<_, String>(conn)
            };
            match setup.await {
                Ok(conn) => {
                    shared.setup_finished(Ok(()));
                    listen(conn, &shared, stop_rx, record).await
                }
                Err(e) => {
                    shared.setup_finished(Err(e));
                    SubStats::default()
                }
            }
        }));
    }
    let crowd = Crowd {
        shared,
        stop,
        tasks,
        setup: Duration::ZERO,
    };
    let deadline = started + Duration::from_secs(45);
    loop {
        let done = crowd.shared.ready.load(Ordering::Relaxed)
            + crowd.shared.failed.load(Ordering::Relaxed);
        if done as usize >= spec.n {
            break;
        }
        if Instant::now() > deadline {
            crowd.finish().await;
            bail!("only {done} of {} connections set up within 45 s", spec.n);
        }
        let _ = tokio::time::timeout(Duration::from_millis(5), crowd.shared.setup_done.notified())
            .await;
    }
    let failed = crowd.shared.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = crowd
            .shared
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        crowd.finish().await;
        bail!(
            "{failed} of {} connections failed; first: {}",
            spec.n,
            first.unwrap_or_default()
        );
    }
    Ok(Crowd {
        setup: started.elapsed(),
        ..crowd
    })
}

/// Reads frames until one that contains `ack` (the subscription's confirmation).
async fn wait_ack(conn: &mut WsConn, ack: &[u8]) -> Result<(), String> {
    loop {
        let frame = conn
            .next_text(Duration::from_secs(20))
            .await
            .map_err(|e| format!("subscription answer: {e}"))?;
        if frame.windows(ack.len()).any(|w| w == ack) {
            return Ok(());
        }
    }
}

async fn listen(
    mut conn: WsConn,
    shared: &Shared,
    mut stop: watch::Receiver<bool>,
    record: bool,
) -> SubStats {
    let mut stats = SubStats::default();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return stats,
            m = conn.next_message() => match m {
                Ok(Message::Text(t)) => {
                    if let Some((_, sent)) = payload::parse(&t) {
                        stats.received += 1;
                        if record {
                            let lat = payload::now_us().saturating_sub(sent);
                            stats.latencies_us.push(lat.min(u64::from(u32::MAX)) as u32);
                        }
                        shared.delivered_one();
                    }
                }
                Ok(Message::Close) | Err(_) => {
                    stats.closed_by_server = true;
                    return stats;
                }
            }
        }
    }
}

impl Crowd {
    /// Stops every subscriber, closes its socket and adds up what they saw.
    pub async fn finish(self) -> CrowdResult {
        let _ = self.stop.send(true);
        let mut result = CrowdResult {
            received: 0,
            latencies_us: Vec::new(),
            closed_by_server: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        for mut task in self.tasks {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, &mut task).await {
                Ok(Ok(s)) => {
                    result.received += s.received;
                    result.latencies_us.extend(s.latencies_us);
                    result.closed_by_server += u64::from(s.closed_by_server);
                }
                Ok(Err(_)) => {}
                Err(_) => {
                    eprintln!("a subscriber did not stop within 20 s: aborted");
                    task.abort();
                }
            }
        }
        result.latencies_us.sort_unstable();
        result
    }
}

/// Waits until the server reports `expected` subscriptions to `pipes` (subscribing has no answer frame).
pub async fn wait_subscribed(
    publisher: &mut crate::target::Publisher,
    pipes: &[String],
    expected: u64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = publisher.subscribers(pipes).await?;
        if n >= expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server reports {n} of {expected} subscriptions after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
