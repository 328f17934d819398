//! The node's pub/sub connection: subscribes the channels the node wants (in batches), hands what
//! arrives to the receiver, probes itself for liveness, and reconnects with backoff when the connection
//! drops or wedges; after a reconnect every channel is subscribed again and every pipe checked.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::PubSubSink;
use tokio::sync::watch;

use super::channels::{Key, UserKey};
use super::metrics::Metrics;
use super::{control, private, receiver, stale, wire, Shared, COMMAND_TIMEOUT};

/// Channels per SUBSCRIBE (or UNSUBSCRIBE) command: 10,000 pipes take ten commands.
const BATCH: usize = 1000;
/// The node publishes to its own probe channel this often...
const PROBE_EVERY: Duration = Duration::from_secs(2);
/// ...and reconnects when a probe has not come back after this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// After a SUBSCRIBE, channels that arrive within this long wait for its end and go in one command: a
/// reconnect storm of 10,000 clients on 10,000 pipes then costs tens of commands, not one per round trip
/// (measured: 487-670 without it). A channel wanted after a quiet spell is subscribed at once.
const GATHER: Duration = Duration::from_millis(50);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

enum Ended {
    Shutdown,
    Lost(String),
}

pub(super) async fn run(s: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = MIN_BACKOFF;
    let mut connected_once = false;
    loop {
        let mut connected = false;
        let ended = serve(&s, &mut shutdown, &mut connected).await;
        s.link_up.store(false, Ordering::Relaxed);
        s.channels.lost();
        s.users.lost();
        match ended {
            Ended::Shutdown => return,
            Ended::Lost(why) => {
                tracing::warn!(reason = %why, "cluster pub/sub connection lost; reconnecting");
            }
        }
        if connected {
            backoff = MIN_BACKOFF;
            connected_once = true;
        }
        if connected_once {
            Metrics::add(&s.metrics.reconnects, 1);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn serve(
    s: &Arc<Shared>,
    shutdown: &mut watch::Receiver<bool>,
    connected: &mut bool,
) -> Ended {
    if *shutdown.borrow() {
        return Ended::Shutdown;
    }
    let pubsub = match tokio::time::timeout(COMMAND_TIMEOUT, s.client.get_async_pubsub()).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return Ended::Lost(e.to_string()),
        Err(_) => return Ended::Lost("connect timed out".into()),
    };
    let (mut sink, mut stream) = pubsub.split();
    let probe = s.keys.probe(&s.node);
    let control = s.keys.control_all();
    if let Err(e) = sink.subscribe(&[&probe, &control]).await {
        return Ended::Lost(e.to_string());
    }
    if let Err(e) = apply(s, &mut sink).await {
        return Ended::Lost(e);
    }
    *connected = true;
    s.link_up.store(true, Ordering::Relaxed);
    receiver::check_all(s);
    // Redis may have restarted without its data: the node's presence is written again.
    s.presence.resync();
    private::resync(s).await;
    control::resync(s).await;
    // What the other nodes told the caches while the link was down is lost: forget everything.
    s.registry.stale.tell(&crate::hub::Stale::All);
    let mut tick = tokio::time::interval(PROBE_EVERY);
    let mut outstanding: Option<(String, Instant)> = None;
    let mut applied = Instant::now();
    let mut gathering: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else {
                    return Ended::Lost("the connection closed".into());
                };
                let channel = msg.get_channel_name();
                if channel == probe {
                    let back = outstanding
                        .as_ref()
                        .filter(|(nonce, _)| nonce.as_bytes() == msg.get_payload_bytes());
                    if let Some((_, sent)) = back {
                        let us = sent.elapsed().as_micros().min(u64::MAX as u128) as u64;
                        s.metrics.lag_us.store(us, Ordering::Relaxed);
                        outstanding = None;
                        s.link_up.store(true, Ordering::Relaxed);
                    }
                    continue;
                }
                if channel == control {
                    if stale::is_stale(msg.get_payload_bytes()) {
                        stale::receive(s, msg.get_payload_bytes());
                        continue;
                    }
                    tokio::spawn(control::receive(s.clone(), msg.get_payload_bytes().to_vec()));
                    continue;
                }
                match s.keys.parse_user_channel(channel) {
                    Some(user) => private::receive(s, user, msg.get_payload_bytes()),
                    None => handle(s, channel, msg.get_payload_bytes()),
                }
            }
            _ = s.channels.wake.notified() => {
                if gathering.is_none() {
                    match applied.elapsed() < GATHER {
                        true => gathering = Some(tokio::time::Instant::from_std(applied + GATHER)),
                        false => {
                            if let Err(e) = apply(s, &mut sink).await {
                                return Ended::Lost(e);
                            }
                            applied = Instant::now();
                        }
                    }
                }
            }
            _ = async { tokio::time::sleep_until(gathering.unwrap_or_else(tokio::time::Instant::now)).await },
                if gathering.is_some() => {
                gathering = None;
                if let Err(e) = apply(s, &mut sink).await {
                    return Ended::Lost(e);
                }
                applied = Instant::now();
            }
            _ = tick.tick() => {
                if let Some((_, sent)) = &outstanding {
                    if sent.elapsed() > PROBE_TIMEOUT {
                        return Ended::Lost("the liveness probe did not come back".into());
                    }
                    continue;
                }
                let nonce = format!("{:016x}", rand::random::<u64>());
                let mut conn = s.conn.clone();
                let mut cmd = redis::cmd("PUBLISH");
                cmd.arg(&probe).arg(&nonce);
                let sent = cmd.query_async::<i64>(&mut conn);
                match tokio::time::timeout(COMMAND_TIMEOUT, sent).await {
                    Ok(Ok(_)) => outstanding = Some((nonce, Instant::now())),
                    _ => s.link_up.store(false, Ordering::Relaxed),
                }
            }
            _ = shutdown.changed() => return Ended::Shutdown,
        }
    }
}

/// A message off a pipe channel: decoded and checked to be of that channel (a message naming another
/// tenant or pipe than its channel is dropped: no tenant's message reaches another's subscribers).
fn handle(s: &Arc<Shared>, channel: &str, payload: &[u8]) {
    let Some((dev_id, pipe)) = s.keys.parse_channel(channel) else {
        Metrics::add(&s.metrics.garbled, 1);
        return;
    };
    match wire::decode(payload) {
        Ok(w) if w.header.dev_id == dev_id && w.header.pipe.as_str() == pipe => {
            Metrics::add(&s.metrics.received, 1);
            match w.header.kind {
                wire::Kind::Presence => super::presence::receive(s, &w),
                wire::Kind::Pusher => super::pusher::receive(s, &w),
                _ => receiver::receive(s, w),
            }
        }
        Ok(_) => {
            Metrics::add(&s.metrics.garbled, 1);
            tracing::warn!(%channel, "a message on a channel names another pipe; dropped");
        }
        Err(e) => {
            Metrics::add(&s.metrics.garbled, 1);
            tracing::warn!(%channel, error = %e, "a message on a channel does not decode; dropped");
        }
    }
}

/// SUBSCRIBEs and UNSUBSCRIBEs what changed, many channels per command.
async fn apply(s: &Arc<Shared>, sink: &mut PubSubSink) -> Result<(), String> {
    let changes = s.channels.take_changes();
    let names =
        |keys: &[Key]| -> Vec<String> { keys.iter().map(|(d, p)| s.keys.channel(*d, p)).collect() };
    for chunk in changes.subscribe.chunks(BATCH) {
        let subscribed = tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(names(chunk))).await;
        Metrics::add(&s.metrics.subscribe_commands, 1);
        match subscribed {
            Ok(Ok(())) => {
                s.channels.subscribed(chunk);
                receiver::sync(s, chunk);
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("SUBSCRIBE timed out".into()),
        }
    }
    for chunk in changes.unsubscribe.chunks(BATCH) {
        let left = tokio::time::timeout(COMMAND_TIMEOUT, sink.unsubscribe(names(chunk))).await;
        Metrics::add(&s.metrics.subscribe_commands, 1);
        match left {
            Ok(Ok(())) => {
                s.channels.unsubscribed(chunk);
                receiver::forget(s, chunk);
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("UNSUBSCRIBE timed out".into()),
        }
    }
    apply_users(s, sink).await
}

/// The same for user channels; a user's node leaves their holders before it stops listening.
async fn apply_users(s: &Arc<Shared>, sink: &mut PubSubSink) -> Result<(), String> {
    let changes = s.users.take_changes();
    let names = |keys: &[UserKey]| -> Vec<String> {
        keys.iter()
            .map(|(d, u)| s.keys.user_channel(*d, *u))
            .collect()
    };
    for chunk in changes.subscribe.chunks(BATCH) {
        let subscribed = tokio::time::timeout(COMMAND_TIMEOUT, sink.subscribe(names(chunk))).await;
        Metrics::add(&s.metrics.subscribe_commands, 1);
        match subscribed {
            Ok(Ok(())) => s.users.subscribed(chunk),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("SUBSCRIBE timed out".into()),
        }
    }
    let mut conn = s.conn.clone();
    for chunk in changes.unsubscribe.chunks(BATCH) {
        private::release(s, &mut conn, chunk).await?;
        let left = tokio::time::timeout(COMMAND_TIMEOUT, sink.unsubscribe(names(chunk))).await;
        Metrics::add(&s.metrics.subscribe_commands, 1);
        match left {
            Ok(Ok(())) => s.users.unsubscribed(chunk),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("UNSUBSCRIBE timed out".into()),
        }
    }
    Ok(())
}
