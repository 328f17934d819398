//! What every node must hear: revocations (a user's sessions, a key's CometQL sessions; `hub::Revoke`).
//! The revoking node closes its own sessions at once and publishes the revocation on the cluster's control
//! channel (`Keys::control_all`, subscribed by every node with its probe) by one script that numbers it
//! and keeps it in a window, like a pipe's message. Pub/sub is at most once, so a node that sees a number
//! skipped, or whose pub/sub connection came back, reads what it missed from the window. Closing is
//! idempotent, so a revocation read twice does no harm; one the window no longer holds (a node cut off
//! for longer than `WINDOW_TTL_MS` or `WINDOW_MESSAGES` revocations) is counted and logged.
//!
//! ```text
//! <n> u <dev_id> <user>      a user's connections
//! <n> k <key_id>             a key's CometQL sessions
//! <n> t <dev_id> <user hex>  a Pusher user's signed-in connections (`terminate_connections`); the
//!                            user id (up to 128 characters of any kind) in lowercase hex
//! ```

use std::sync::{Arc, LazyLock, MutexGuard};

use redis::Script;

use super::broker::unavailable;
use super::metrics::Metrics;
use super::{Shared, COMMAND_TIMEOUT};
use crate::hub::broker::Pending;
use crate::hub::Revoke;
use crate::ids::{DevId, UserId};

/// Revocations kept for nodes that missed them.
const WINDOW_MESSAGES: u64 = 10_000;
const WINDOW_TTL_MS: u64 = 24 * 3600 * 1000;

/// KEYS: sequence, window, channel. ARGV: body, window messages, ttl ms. Returns the number given.
static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = redis.call('INCR', KEYS[1])
local msg = string.format('%d', n) .. ' ' .. ARGV[1]
redis.call('ZADD', KEYS[2], n, msg)
local c = redis.call('ZCARD', KEYS[2])
if c > tonumber(ARGV[2]) then
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, c - tonumber(ARGV[2]) - 1)
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PUBLISH', KEYS[3], msg)
return n
"#,
    )
});

/// What the control channel says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Control {
    Revoke(Revoke),
    /// A Pusher user's signed-in connections close (4009).
    Terminate(DevId, String),
}

impl Control {
    /// Closes what it names on this node.
    fn apply(&self, s: &Shared) {
        match self {
            Control::Revoke(revoke) => s.registry.revoke_here(*revoke),
            Control::Terminate(dev_id, user) => {
                for outbox in s.pusher.user_connections(*dev_id, user) {
                    outbox.close(crate::hub::CloseReason::Kicked);
                }
            }
        }
    }
}

fn body(control: &Control) -> String {
    match control {
        Control::Revoke(Revoke::User(dev_id, user)) => format!("u {} {}", dev_id.0, user.0),
        Control::Revoke(Revoke::Key(key_id)) => format!("k {key_id}"),
        Control::Terminate(dev_id, user) => {
            let hex: String = user.bytes().map(|b| format!("{b:02x}")).collect();
            format!("t {} {hex}", dev_id.0)
        }
    }
}

fn unhex(s: &str) -> Option<String> {
    if s.is_empty() || !s.len().is_multiple_of(2) || s.len() > 2 * 1024 {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// `<n> <body>` back into its number and what it says; `None` for anything else.
pub(super) fn parse(payload: &[u8]) -> Option<(u64, Control)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut f = text.split(' ');
    let n = f.next()?.parse().ok()?;
    let control = match (f.next()?, f.next(), f.next()) {
        ("u", Some(dev), Some(user)) => Control::Revoke(Revoke::User(
            DevId(dev.parse().ok()?),
            UserId(user.parse().ok()?),
        )),
        ("k", Some(key), None) => Control::Revoke(Revoke::Key(key.parse().ok()?)),
        ("t", Some(dev), Some(user)) => Control::Terminate(DevId(dev.parse().ok()?), unhex(user)?),
        _ => return None,
    };
    f.next().is_none().then_some((n, control))
}

/// Publishes a revocation to every node (this one closed its sessions already).
pub(super) fn publish(s: Arc<Shared>, revoke: Revoke) -> Pending<()> {
    say(s, Control::Revoke(revoke))
}

/// Publishes what every node is to close (this one closed its own already).
pub(super) fn say(s: Arc<Shared>, control: Control) -> Pending<()> {
    Box::pin(async move {
        let mut call = PUBLISH.key(s.keys.control_seq());
        call.key(s.keys.control_window())
            .key(s.keys.control_all())
            .arg(body(&control))
            .arg(WINDOW_MESSAGES)
            .arg(WINDOW_TTL_MS);
        let mut conn = s.conn.clone();
        match tokio::time::timeout(COMMAND_TIMEOUT, call.invoke_async::<u64>(&mut conn)).await {
            Ok(Ok(n)) => {
                // Our own comes back on the channel: nothing to close again, nothing missed.
                seen_up_to(&s, n);
                Ok(())
            }
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable("no answer in time")),
        }
    })
}

/// A revocation off the control channel: closed here; any number skipped before it is read first.
pub(super) async fn receive(s: Arc<Shared>, payload: Vec<u8>) {
    let s = &s;
    let Some((n, control)) = parse(&payload) else {
        Metrics::add(&s.metrics.garbled, 1);
        return;
    };
    let seen = *seen(s);
    if let Some(seen) = seen.filter(|seen| n > seen + 1) {
        catch_up(s, seen, n - 1).await;
    }
    control.apply(s);
    seen_up_to(s, n);
}

fn seen(s: &Shared) -> MutexGuard<'_, Option<u64>> {
    s.control_seen.lock().unwrap_or_else(|e| e.into_inner())
}

fn seen_up_to(s: &Shared, n: u64) {
    let mut seen = seen(s);
    *seen = Some(seen.map_or(n, |m| m.max(n)));
}

/// After the pub/sub connection came back: what was revoked meanwhile is read from the window. The
/// first time, the node starts from the current number (it had no sessions before).
pub(super) async fn resync(s: &Arc<Shared>) {
    let Some(after) = *seen(s) else {
        let mut conn = s.conn.clone();
        let mut cmd = redis::cmd("GET");
        cmd.arg(s.keys.control_seq());
        let read = cmd.query_async::<Option<u64>>(&mut conn);
        if let Ok(Ok(n)) = tokio::time::timeout(COMMAND_TIMEOUT, read).await {
            seen_up_to(s, n.unwrap_or(0));
        }
        return;
    };
    catch_up(s, after, u64::MAX).await;
}

/// Closes what revocations `after+1..=to` name, from the window.
async fn catch_up(s: &Arc<Shared>, after: u64, to: u64) {
    let mut conn = s.conn.clone();
    let mut cmd = redis::cmd("ZRANGEBYSCORE");
    cmd.arg(s.keys.control_window())
        .arg(format!("({after}"))
        .arg(if to == u64::MAX {
            "+inf".to_string()
        } else {
            to.to_string()
        });
    let read = cmd.query_async::<Vec<Vec<u8>>>(&mut conn);
    let Ok(Ok(entries)) = tokio::time::timeout(COMMAND_TIMEOUT, read).await else {
        tracing::warn!("cannot read missed revocations; the next reconnect tries again");
        return;
    };
    let mut want = after + 1;
    for entry in entries {
        let Some((n, control)) = parse(&entry) else {
            continue;
        };
        if n > want {
            missed(s, want, n - 1);
        }
        control.apply(s);
        seen_up_to(s, n);
        want = n + 1;
    }
    if to != u64::MAX && want <= to {
        missed(s, want, to);
    }
}

fn missed(s: &Shared, from: u64, to: u64) {
    Metrics::add(&s.metrics.revocations_missed, to - from + 1);
    tracing::error!(
        from,
        to,
        "revocations this node missed are no longer in Redis; their sessions may still be open here"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_read_back_and_nothing_else_does() {
        for r in [
            Control::Revoke(Revoke::User(DevId(3), UserId(9))),
            Control::Revoke(Revoke::Key(12)),
            Control::Terminate(DevId(3), "user 42 é".into()),
        ] {
            assert_eq!(parse(format!("7 {}", body(&r)).as_bytes()), Some((7, r)));
        }
        assert_eq!(
            body(&Control::Terminate(DevId(3), "a b".into())),
            "t 3 612062"
        );
        for bad in [
            "",
            "7",
            "x u 1 2",
            "7 u 1",
            "7 u 1 2 3",
            "7 k",
            "7 k 1 2",
            "7 z 1",
            "7 u -1 2",
            "7 t 1",
            "7 t 1 6",
            "7 t 1 zz",
            "7 t 1 ff",
            "7 t 1 61 2",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad}");
        }
    }
}
