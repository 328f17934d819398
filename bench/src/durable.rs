//! Durable writes (issue 17), Halley only, on either database: publishes to a pipe with history against the
//! same publishes to a pipe without it, private messages queued for users who are never connected, and
//! authorized connect/disconnect churn (each connect and disconnect writes users_time). Every INSERT waits
//! for its OK before the next is sent on its connection, as a PHP backend's do.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::sync::Mutex;

use crate::meter::Meter;
use crate::mysql_client::MysqlConn;
use crate::payload;
use crate::record::Record;
use crate::scenarios::Options;
use crate::stats::quantile;
use crate::target::Target;
use crate::wsclient::WsConn;

/// The history length the issue measures (`pipes_settings.length`).
const HISTORY_LENGTH: u32 = 99;
/// Users the queue scenarios spread their messages over; none of them ever connects.
const QUEUE_USERS: u64 = 8;
/// The first user id the durable scenarios use.
const FIRST_USER: u64 = 1_000;

/// What the INSERT loop writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// `pipes_messages` to a pipe with a history of 99.
    History,
    /// `pipes_messages` to a pipe without history: what the issue compares against.
    Plain,
    /// `users_messages` to users who are never connected: every message is queued in the database.
    Queue,
}

impl Write {
    /// The statement number `seq` of connection `conn` sends.
    fn sql(self, conn: usize, seq: u64, payload: &str) -> String {
        match self {
            Write::History => format!(
                "INSERT INTO pipes_messages (name, event, message) VALUES ('hist','e','{payload}')"
            ),
            Write::Plain => format!(
                "INSERT INTO pipes_messages (name, event, message) VALUES ('plain','e','{payload}')"
            ),
            Write::Queue => {
                let user = FIRST_USER + (conn as u64 + seq) % QUEUE_USERS;
                format!("INSERT INTO users_messages (id, event, message) VALUES ({user},'e','{payload}')")
            }
        }
    }
}

async fn login(t: &Target) -> anyhow::Result<MysqlConn> {
    let s = &t.server;
    MysqlConn::connect(s.publish, &s.dev_id.to_string(), &s.key, "CometQL_v1", None)
        .await
        .context("CometQL login")
}

/// `conns` CometQL connections INSERT query after query for `limit`: rate, latency, server CPU per 1,000.
pub async fn inserts(
    t: &Target,
    o: &Options,
    write: Write,
    conns: usize,
    limit: Duration,
    r: &mut Record,
) -> anyhow::Result<()> {
    let mut setup = login(t).await?;
    if write == Write::History {
        setup
            .query(&format!(
                "INSERT INTO pipes_settings (name, length) VALUES ('hist', {HISTORY_LENGTH})"
            ))
            .await
            .context("pipes_settings")?;
    }
    let mut clients = Vec::with_capacity(conns);
    for _ in 0..conns {
        clients.push(login(t).await?);
    }
    let payload_bytes = o.payload_bytes;
    let meter = Meter::start(t)?;
    let stop = Instant::now() + limit;
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(k, mut c)| {
            tokio::spawn(async move {
                let mut lat: Vec<u32> = Vec::new();
                let mut seq = 0u64;
                while Instant::now() < stop && seq < 10_000_000 {
                    let sql = write.sql(k, seq, &payload::encode(seq, 0, payload_bytes));
                    let q = Instant::now();
                    // A refusal (a quota, a limit) would repeat on every query: stop this connection.
                    if let Err(e) = c.query(&sql).await {
                        return (lat, Some(e.to_string()));
                    }
                    lat.push(q.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    seq += 1;
                }
                (lat, None)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        let (l, e) = task.await.context("INSERT task")?;
        lat.extend(l);
        errors.extend(e);
    }
    let (elapsed, cpu) = meter.finish(t, r)?;
    if let Some(e) = errors.first() {
        eprintln!(
            "  {} of {conns} connection(s) stopped on an error, e.g. {e}",
            errors.len()
        );
    }
    lat.sort_unstable();
    let n = lat.len() as f64;
    r.set("connections", conns as f64);
    r.set("inserts", n);
    r.set("inserts_per_s", n / elapsed);
    r.set("p50_ms", ms(quantile(&lat, 0.5)));
    r.set("p99_ms", ms(quantile(&lat, 0.99)));
    r.set("server_cpu_s_per_1k", cpu * 1000.0 / n.max(1.0));
    r.set("errors", errors.len() as f64);
    Ok(())
}

fn ms(us: Option<u32>) -> f64 {
    us.map_or(f64::NAN, |v| f64::from(v) / 1000.0)
}

/// The users_auth hash of user `id`.
fn hash_of(id: u64) -> String {
    format!("benchhash{id}")
}

/// How one churn connect ended.
#[derive(Default)]
struct Churn {
    latencies_us: Vec<u32>,
    /// TCP connect, upgrade or the wait for serverInfo failed (or timed out).
    failed: u64,
    /// serverInfo came but said `"authorized":false`.
    unauthorized: u64,
    first_error: Option<String>,
}

/// The wait for one connect's serverInfo frame; a connect slower than this counts as an error.
const CHURN_WAIT: Duration = Duration::from_secs(10);

async fn churn_one(
    server: SocketAddr,
    source: Option<std::net::IpAddr>,
    path: &str,
    n: u64,
) -> Result<(u32, bool), String> {
    let started = Instant::now();
    let mut conn = WsConn::connect(server, source, path, n, None)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let frame = conn
        .next_text(CHURN_WAIT)
        .await
        .map_err(|e| format!("serverInfo: {e}"))?;
    let us = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
    let authorized = frame.windows(17).any(|w| w == br#""authorized":true"#);
    // Dropped here: closed with RST (zero linger), so repeated runs leave no TIME_WAIT behind.
    Ok((us, authorized))
}

/// `users` users get a users_auth hash; then `rate` authorized WebSocket connects per second for `secs`
/// seconds, each closed as soon as its serverInfo frame came: connect latency (TCP connect to serverInfo),
/// connects done, errors.
pub async fn auth_churn(
    t: &Target,
    o: &Options,
    users: u64,
    rate: u64,
    secs: u64,
    r: &mut Record,
) -> anyhow::Result<()> {
    let mut setup = login(t).await?;
    for id in FIRST_USER..FIRST_USER + users {
        setup
            .query(&format!(
                "INSERT INTO users_auth (id, hash) VALUES ({id}, '{}')",
                hash_of(id)
            ))
            .await
            .context("users_auth")?;
    }
    let dev_id = t.server.dev_id;
    let server = t.server.http;
    let total = rate * secs;
    let result = Arc::new(Mutex::new(Churn::default()));
    let started = Arc::new(AtomicU64::new(0));
    let meter = Meter::start(t)?;
    let t0 = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        tick.tick().await;
        let id = FIRST_USER + n % users;
        let path = format!(
            "/ws/sesion={}&myid={id}&devid={dev_id}&v=4.08&uuid={n:032x}&api=js",
            hash_of(id)
        );
        let source = (!o.sources.is_empty()).then(|| o.sources[n as usize % o.sources.len()]);
        let (result, started) = (result.clone(), started.clone());
        tasks.push(tokio::spawn(async move {
            started.fetch_add(1, Ordering::Relaxed);
            let outcome = churn_one(server, source, &path, n).await;
            let mut c = result.lock().await;
            match outcome {
                Ok((us, true)) => c.latencies_us.push(us),
                Ok((us, false)) => {
                    c.latencies_us.push(us);
                    c.unauthorized += 1;
                }
                Err(e) => {
                    c.failed += 1;
                    c.first_error.get_or_insert(e);
                }
            }
        }));
    }
    let schedule_s = t0.elapsed().as_secs_f64();
    for task in tasks {
        task.await.context("churn task")?;
    }
    let (_, cpu) = meter.finish(t, r)?;
    let mut c = std::mem::take(&mut *result.lock().await);
    if let Some(e) = &c.first_error {
        eprintln!("  {} connect(s) failed, e.g. {e}", c.failed);
    }
    if c.latencies_us.is_empty() {
        bail!("no connect got its serverInfo");
    }
    c.latencies_us.sort_unstable();
    r.set("users", users as f64);
    r.set("connects", total as f64);
    r.set("connects_per_s", total as f64 / schedule_s);
    r.set("done", c.latencies_us.len() as f64);
    r.set("errors", c.failed as f64);
    r.set("unauthorized", c.unauthorized as f64);
    r.set("p50_ms", ms(quantile(&c.latencies_us, 0.5)));
    r.set("p99_ms", ms(quantile(&c.latencies_us, 0.99)));
    r.set("max_ms", ms(c.latencies_us.last().copied()));
    r.set("server_cpu_us_per_connect", cpu * 1e6 / total as f64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_spreads_over_the_users_and_connections_start_apart() {
        let users = |conn| -> Vec<String> {
            (0..QUEUE_USERS)
                .map(|seq| Write::Queue.sql(conn, seq, "p"))
                .collect()
        };
        let first = users(0);
        assert!(first[0].contains("VALUES (1000,'e','p')"), "{}", first[0]);
        assert!(first[7].contains("VALUES (1007,"), "{}", first[7]);
        assert!(users(1)[0].contains("VALUES (1001,"));
        assert!(Write::History.sql(0, 0, "p").contains("('hist','e','p')"));
    }
}
