//! Recovery (issue 14, docs/websocket.md "subscription2"), Halley only. `reconnect-storm-10k`: N clients with
//! positions on 100 pipes drop at once (RST), messages are published while they are away, and all of them come
//! back within one second with their last positions: how long until every one has its `subscribed` frame (and
//! its replay), what that costs the server in CPU and peak memory, and how many recovered. `windows-10k`: the
//! memory one full recovery window costs (100 messages of 100 bytes per pipe, on 10,000 pipes).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::sync::{watch, Semaphore};

use crate::meter::Meter;
use crate::payload;
use crate::procstat;
use crate::record::Record;
use crate::scenarios::Options;
use crate::stats::quantile;
use crate::target::Target;
use crate::wsclient::{Message, WsConn};

const FRAME_WAIT: Duration = Duration::from_secs(30);

/// The number after `key` (e.g. `"offset":`) in a frame; the server's JSON is compact, keys in order.
fn number_after(frame: &str, key: &str) -> Option<u64> {
    let rest = &frame[frame.find(key)? + key.len()..];
    let n = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..n].parse().ok()
}

/// The string after `key` (e.g. `"epoch":`), without its quotes (epochs have no escapes).
fn string_after<'a>(frame: &'a str, key: &str) -> Option<&'a str> {
    let rest = frame[frame.find(key)? + key.len()..].strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// `{"data":{"epoch":"E","offset":N,"recovered":B},"event":"subscribed","pipe":"P"}`: (E, N, B).
fn subscribed(frame: &str) -> Option<(String, u64, bool)> {
    if !frame.contains(r#""event":"subscribed""#) {
        return None;
    }
    let epoch = string_after(frame, r#""epoch":"#)?.to_owned();
    let top = number_after(frame, r#""offset":"#)?;
    let recovered = frame.contains(r#""recovered":true"#);
    Some((epoch, top, recovered))
}

/// A pipe's stream position: the epoch and the last offset processed.
#[derive(Clone, Debug, Default)]
struct Position {
    epoch: String,
    offset: u64,
}

/// What one `subscription2` got: the position after it, whether it recovered, and the replay before it.
struct Joined {
    at: Position,
    recovered: bool,
    replayed: u64,
    /// The replay was not exactly the offsets after the position given, in order.
    disorder: bool,
}

/// Connects, reads the greeting, sends `subscription2` for `pipes` (with positions when given) and reads up
/// to every pipe's `subscribed` frame.
async fn join(
    server: SocketAddr,
    source: Option<IpAddr>,
    path: &str,
    n: u64,
    lines: &[String],
    from: &[Option<Position>],
) -> Result<(WsConn, Vec<Joined>), String> {
    let mut conn = WsConn::connect(server, source, path, n, None)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    conn.next_text(FRAME_WAIT)
        .await
        .map_err(|e| format!("greeting: {e}"))?;
    conn.send_text(&format!("subscription2\n{}", lines.join("\n")))
        .await
        .map_err(|e| format!("subscription2: {e}"))?;
    // The pipes come back in the order sent; each one's replay comes just before its frame.
    let mut out = Vec::with_capacity(lines.len());
    for position in from {
        let mut next = position.as_ref().map_or(0, |p| p.offset + 1);
        let (mut replayed, mut disorder) = (0, false);
        loop {
            let frame = conn
                .next_text(FRAME_WAIT)
                .await
                .map_err(|e| format!("waiting for subscribed: {e}"))?;
            let frame = String::from_utf8_lossy(&frame);
            if let Some((epoch, top, recovered)) = subscribed(&frame) {
                if recovered
                    && position
                        .as_ref()
                        .is_some_and(|p| top - p.offset != replayed)
                {
                    disorder = true;
                }
                out.push(Joined {
                    at: Position { epoch, offset: top },
                    recovered,
                    replayed,
                    disorder,
                });
                break;
            }
            if let Some(offset) = number_after(&frame, r#""offset":"#) {
                replayed += 1;
                disorder |= offset != next;
                next = offset + 1;
            }
        }
    }
    Ok((conn, out))
}

fn pipe_names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn source(o: &Options, i: usize) -> Option<IpAddr> {
    (!o.sources.is_empty()).then(|| o.sources[i % o.sources.len()])
}

/// Waits until the server reports no subscriber left on `pipes`: the dropped connections are gone.
async fn wait_empty(t: &Target, pipes: &[String]) -> anyhow::Result<()> {
    let mut checker = t.publisher().await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = checker.subscribers(pipes).await?;
        if n == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{n} subscriptions still on the server 30 s after the drop");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes `per_pipe` messages to each pipe, round robin, over one connection.
async fn publish_round(
    t: &Target,
    pipes: &[String],
    per_pipe: u64,
    seq0: u64,
) -> anyhow::Result<()> {
    let mut publisher = t.publisher().await?;
    let mut seq = seq0;
    for _ in 0..per_pipe {
        for pipe in pipes {
            publisher
                .publish(pipe, "ev", &payload::encode(seq, payload::now_us(), 64))
                .await?;
            seq += 1;
        }
    }
    Ok(())
}

/// The server's peak memory from now on: `VmHWM` after resetting it (`clear_refs` 5), else sampled VmRSS.
struct Peak {
    pid: i32,
    reset: bool,
    sampled: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Peak {
    fn start(pid: i32) -> Peak {
        let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
        let (sampled, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (s, halt) = (sampled.clone(), stop.clone());
        tokio::spawn(async move {
            while !halt.load(Ordering::Relaxed) {
                if let Ok(kb) = procstat::vm_rss_kb(pid) {
                    s.fetch_max(kb, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Peak {
            pid,
            reset,
            sampled,
            stop,
        }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let sampled = self.sampled.load(Ordering::Relaxed);
        match self.reset {
            true => procstat::vm_hwm_kb(self.pid)
                .unwrap_or(sampled)
                .max(sampled),
            false => sampled,
        }
    }
}

/// One client of the storm as it came back.
struct Back {
    /// From the start of the storm to its last `subscribed` frame.
    done: Duration,
    /// From its own connect to its last `subscribed` frame.
    latency: Duration,
    joined: Joined,
    _conn: WsConn,
}

/// See the module doc. `n` clients, client `i` on pipe `i % pipes`; `before` messages per pipe while they
/// are connected, `away` while they are gone, the reconnects spread evenly over `spread`.
pub async fn reconnect_storm(
    t: &Target,
    o: &Options,
    n: usize,
    pipes: usize,
    (before, away): (u64, u64),
    spread: Duration,
    r: &mut Record,
) -> anyhow::Result<()> {
    let names = Arc::new(pipe_names("storm", pipes));
    let server = t.server.http;
    // 1. Everyone joins with subscription2 and follows its pipe's offsets.
    let gate = Arc::new(Semaphore::new(o.concurrency.max(1)));
    let got = Arc::new(AtomicU64::new(0));
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (gate, got, names, mut stop_rx) =
            (gate.clone(), got.clone(), names.clone(), stop_rx.clone());
        let path = t.ws_path("", i as u64);
        let src = source(o, i);
        tasks.push(tokio::spawn(async move {
            let pipe = names[i % names.len()].clone();
            let (mut conn, joined) = {
                let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
                join(server, src, &path, i as u64, &[pipe], &[None]).await?
            };
            let mut at = joined.into_iter().next().ok_or("no subscribed frame")?.at;
            loop {
                tokio::select! {
                    biased;
                    _ = stop_rx.changed() => return Ok::<_, String>(at),
                    m = conn.next_message() => match m {
                        Ok(Message::Text(frame)) => {
                            if let Some(offset) = number_after(&String::from_utf8_lossy(&frame), r#""offset":"#) {
                                at.offset = offset;
                                got.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(Message::Close) | Err(_) => return Err("closed by the server".into()),
                    }
                }
            }
        }));
    }
    let mut checker = t.publisher().await?;
    crate::crowd::wait_subscribed(&mut checker, &names, n as u64).await?;
    publish_round(t, &names, before, 0).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.load(Ordering::Relaxed) < before * n as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 2. All drop at once (each socket closes with RST), and the server lets them go.
    let _ = stop.send(true);
    let mut positions = Vec::with_capacity(n);
    for task in tasks {
        positions.push(
            task.await
                .context("client task")?
                .map_err(anyhow::Error::msg)?,
        );
    }
    wait_empty(t, &names).await?;
    // 3. Published while they are away.
    publish_round(t, &names, away, before * pipes as u64).await?;
    // 4. The storm: every client back within `spread`, with its position, while publishes go on.
    let mem_before = t.server.child.memory_kb()?;
    let peak = Peak::start(t.server.child.pid());
    let live = Arc::new(AtomicBool::new(true));
    let live_publisher = {
        let (names, live, mut publisher) = (names.clone(), live.clone(), t.publisher().await?);
        tokio::spawn(async move {
            let mut sent = 0u64;
            while live.load(Ordering::Relaxed) {
                let pipe = &names[sent as usize % names.len()];
                let body = payload::encode(1_000_000 + sent, payload::now_us(), 64);
                publisher.publish(pipe, "ev", &body).await?;
                sent += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<u64, std::io::Error>(sent)
        })
    };
    let meter = Meter::start(t)?;
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for (i, at) in positions.into_iter().enumerate() {
        let names = names.clone();
        let path = t.ws_path("", i as u64);
        let src = source(o, i);
        let start = t0 + spread.mul_f64(i as f64 / n as f64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let began = Instant::now();
            let pipe = &names[i % names.len()];
            let line = format!("{pipe}\t{}\t{}", at.epoch, at.offset);
            let (conn, joined) = join(server, src, &path, i as u64, &[line], &[Some(at)]).await?;
            let joined = joined.into_iter().next().ok_or("no subscribed frame")?;
            Ok::<_, String>(Back {
                done: t0.elapsed(),
                latency: began.elapsed(),
                joined,
                _conn: conn,
            })
        }));
    }
    let mut back = Vec::with_capacity(n);
    let mut failed = 0u64;
    let mut first_error = None;
    for task in tasks {
        match task.await.context("client task")? {
            Ok(b) => back.push(b),
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let all_back = back.iter().map(|b| b.done).max().unwrap_or_default();
    meter.finish(t, r)?;
    let peak_kb = peak.finish();
    live.store(false, Ordering::Relaxed);
    let live_sent = live_publisher.await.context("live publisher")??;
    if let Some(e) = first_error {
        eprintln!("  {failed} of {n} reconnects failed; first: {e}");
    }
    let mut lat: Vec<u32> = back
        .iter()
        .map(|b| b.latency.as_micros().min(u128::from(u32::MAX)) as u32)
        .collect();
    lat.sort_unstable();
    let ms = |v: Option<u32>| v.map_or(f64::NAN, |us| f64::from(us) / 1000.0);
    let recovered = back.iter().filter(|b| b.joined.recovered).count();
    r.set("clients", n as f64);
    r.set("pipes", pipes as f64);
    r.set("away_per_pipe", away as f64);
    r.set("spread_s", spread.as_secs_f64());
    r.set("all_recovered_s", all_back.as_secs_f64());
    r.set("p50_ms", ms(quantile(&lat, 0.5)));
    r.set("p99_ms", ms(quantile(&lat, 0.99)));
    r.set("recovered_true", recovered as f64);
    r.set("recovered_false", (back.len() - recovered) as f64);
    r.set("failed_reconnects", failed as f64);
    r.set(
        "replayed",
        back.iter().map(|b| b.joined.replayed).sum::<u64>() as f64,
    );
    r.set(
        "replay_disorder",
        back.iter().filter(|b| b.joined.disorder).count() as f64,
    );
    r.set("server_mem_before_mb", mem_before as f64 / 1024.0);
    r.set("server_peak_mb", peak_kb as f64 / 1024.0);
    r.set("live_publishes", live_sent as f64);
    // Everyone is back (and connected until `back` is dropped): a cluster's nodes lose Redis's pub/sub.
    crate::cluster::resubscribe(t, r).await?;
    drop(back);
    Ok(())
}

/// See the module doc. Connections subscribe with `subscription2` to `pipes` pipes (32 per connection: a
/// stream and an empty window each) and leave at once: a stream outlives its last subscriber by a window's
/// age (120 s), and a publish fills its window whether anyone listens or not, so what is measured is the
/// windows alone, not deliveries or connections. Then `messages` messages of `bytes` bytes go to every pipe
/// (one multi-row INSERT per pipe, over `o.publishers` connections); the server's memory before and after,
/// per pipe, is what a full window costs. A sample of windows is read back to check they are full.
pub async fn windows(
    t: &Target,
    o: &Options,
    pipes: usize,
    (messages, bytes): (u64, usize),
    r: &mut Record,
) -> anyhow::Result<()> {
    const PER_CONN: usize = 32;
    let names = pipe_names("win", pipes);
    let server = t.server.http;
    let mut epochs: Vec<Position> = Vec::with_capacity(pipes);
    let gate = Arc::new(Semaphore::new(o.concurrency.max(1)));
    let mut tasks = Vec::new();
    for (k, chunk) in names.chunks(PER_CONN).enumerate() {
        let (gate, lines, path, src) = (
            gate.clone(),
            chunk.to_vec(),
            t.ws_path("", k as u64),
            source(o, k),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
            let from = vec![None; lines.len()];
            join(server, src, &path, k as u64, &lines, &from).await
        }));
    }
    for task in tasks {
        let (conn, joined) = task
            .await
            .context("subscriber task")?
            .map_err(anyhow::Error::msg)?;
        drop(conn);
        epochs.extend(joined.into_iter().map(|j| j.at));
    }
    wait_empty(t, &names).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let empty_kb = t.server.child.memory_kb()?;
    let meter = Meter::start(t)?;
    let k = o.publishers.max(1);
    let mut fill = Vec::with_capacity(k);
    for j in 0..k {
        let mut publisher = t.publisher().await?;
        let mine: Vec<String> = names.iter().skip(j).step_by(k).cloned().collect();
        fill.push(tokio::spawn(async move {
            for (p, pipe) in mine.iter().enumerate() {
                let rows: Vec<String> = (0..messages)
                    .map(|m| payload::encode(p as u64 * messages + m, payload::now_us(), bytes))
                    .collect();
                publisher.publish_rows(pipe, "ev", &rows).await?;
            }
            Ok::<(), std::io::Error>(())
        }));
    }
    for task in fill {
        task.await.context("publisher task")??;
    }
    let (elapsed, cpu) = meter.finish(t, r)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let full_kb = t.server.child.memory_kb()?;
    // A sample read back from the start of its stream: every window must hold all `messages`.
    let sample: Vec<usize> = (0..pipes)
        .step_by((pipes / PER_CONN).max(1))
        .take(PER_CONN)
        .collect();
    let lines: Vec<String> = sample
        .iter()
        .map(|&i| format!("{}	{}	0", names[i], epochs[i].epoch))
        .collect();
    let from: Vec<Option<Position>> = sample
        .iter()
        .map(|&i| {
            Some(Position {
                epoch: epochs[i].epoch.clone(),
                offset: 0,
            })
        })
        .collect();
    let (_, joined) = join(server, source(o, 0), &t.ws_path("", 0), 0, &lines, &from)
        .await
        .map_err(anyhow::Error::msg)?;
    let full = joined
        .iter()
        .filter(|j| j.recovered && j.replayed == messages && !j.disorder)
        .count();
    let publishes = pipes as u64 * messages;
    r.set("pipes", pipes as f64);
    r.set("messages_per_window", messages as f64);
    r.set("payload_bytes", bytes as f64);
    r.set("server_mem_empty_mb", empty_kb as f64 / 1024.0);
    r.set("server_mem_full_mb", full_kb as f64 / 1024.0);
    r.set(
        "kb_per_window",
        (full_kb as f64 - empty_kb as f64) / pipes as f64,
    );
    r.set(
        "bytes_per_message",
        (full_kb as f64 - empty_kb as f64) * 1024.0 / publishes as f64,
    );
    r.set("publishes_per_s", publishes as f64 / elapsed);
    r.set("server_cpu_us_per_publish", cpu * 1e6 / publishes as f64);
    r.set("sample_windows", sample.len() as f64);
    r.set("sample_windows_full", full as f64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_subscribed_and_message_frames() {
        let s = r#"{"data":{"epoch":"00ff00ff00ff00ff","offset":12,"recovered":true},"event":"subscribed","pipe":"storm1"}"#;
        assert_eq!(subscribed(s), Some(("00ff00ff00ff00ff".into(), 12, true)));
        let m = r#"{"data":"bench:1:2:xx","event":"ev","message_send_time":1700000000,"offset":7,"pipe":"storm1"}"#;
        assert_eq!(subscribed(m), None);
        assert_eq!(number_after(m, r#""offset":"#), Some(7));
        let lost = s.replace("true", "false");
        assert_eq!(subscribed(&lost).map(|x| x.2), Some(false));
    }
}
