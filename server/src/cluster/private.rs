//! Private messages (users_messages) across nodes. The queue stays in PostgreSQL; what a single node
//! decides under its users map's lock (is a connection of the user past its drain? was a message queued
//! while all of them drained?) is decided here in Redis, per user, by scripts on one hash, so that a
//! sender on one node and a draining connection on another see one order of events.
//!
//! Per user: a channel (`Keys::user_channel`), subscribed by every node that holds connections of the
//! user (from their first link to their last unlink), and a hash of those nodes (`Keys::holders`):
//! `d` while every connection of the user there is draining, `q` the same after a message was queued
//! meanwhile, `r` once one of them is past its drain (until the node's last connection of the user goes).
//!
//! The steps (`commands::users_messages::deliver` and `drain` drive them, in this order):
//! - a connection links; its node subscribes the user's channel and, before the drain's first read of the
//!   queue, notes itself `d` (`hold`, unless already `r`);
//! - a sender runs `SEND`: when some holder is `r`, the message is PUBLISHed on the user's channel in the
//!   same script, and every holder node pushes it to all its connections of the user (draining ones get
//!   it behind their drain). PUBLISH counts the nodes that got it; 0 (no holder is listening: a node died
//!   or its pub/sub connection is down) counts as not sent;
//! - not sent: the sender commits the message to the queue, then runs `QUEUED`: when some holder is `r`
//!   now, it claims the message back (one statement, so a drain that claimed it first wins) and sends it;
//!   otherwise every `d` holder becomes `q`;
//! - a drain pass that found the queue empty runs `DRAINED`: `q` means a message was queued after the
//!   sender's `SEND` and perhaps after the pass's read: `d` again, and one more pass; otherwise `r`.
//!
//! Why no message is missed or doubled: the scripts are atomic, so `QUEUED` runs either before the last
//! `DRAINED` (then it left `q`, and the extra pass reads the message, committed before `QUEUED`) or
//! after it (then it sees `r` and the sender claims and sends the message itself; a node that is `r` is
//! subscribed, since it subscribed before its `hold`). A claim is one DELETE, so of a drain and a sender
//! only one delivers a queued message. A user online nowhere has no holder: the message stays queued.
//!
//! A node leaves a user's holders when their last connection there closes, before the close is done
//! (`release`, from `commands::presence::disconnect`), not only when its pub/sub task leaves the user's
//! channel a moment later: in between, a sender would still find the node ready and publish to it, and
//! the message would be lost although the user may be connecting on another node (found by
//! `compat_races` on a cluster). The channel's own release (`subscriber.rs`) stays, for the users a
//! reconnect dropped.
//!
//! Bounds, said plainly: a node whose pub/sub connection is down misses what is published to its users
//! meanwhile unless no other node got it (then it is queued, and delivered to the user's connections
//! here once the node hears again: `resync`, `users_messages::redrain`); a message sent at
//! the instant the user's last connection on the only ready node closes is published to a node that no
//! longer holds them (as on one node, where a push to a connection that just went away is lost).

use std::sync::{Arc, LazyLock};

use redis::Script;

use super::broker::{unavailable, RedisBroker};
use super::channels::UserKey;
use super::metrics::Metrics;
use super::wire::{self, Private};
use super::{run, Shared, COMMAND_TIMEOUT, LISTEN_TIMEOUT};
use crate::browser::frames;
use crate::hub::broker::Pending;
use crate::hub::{PrivateMessage, UserRoute};
use crate::ids::{DevId, EventName, UserId};

/// The holders hash outlives its last write by this much (a node that died holding users leaves it).
const HOLDERS_TTL_MS: u64 = 24 * 3600 * 1000;

/// KEYS: holders, channel. ARGV: message. Returns the nodes that got it (0: not sent, none is ready or
/// none listened).
static SEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local h = redis.call('HGETALL', KEYS[1])
for i = 2, #h, 2 do
  if h[i] == 'r' then
    return redis.call('PUBLISH', KEYS[2], ARGV[1])
  end
end
return 0
"#,
    )
});

/// KEYS: holders. Returns 1 when a holder is ready; else marks every draining holder `q` and returns 0.
static QUEUED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local h = redis.call('HGETALL', KEYS[1])
for i = 2, #h, 2 do
  if h[i] == 'r' then return 1 end
end
for i = 1, #h, 2 do
  redis.call('HSET', KEYS[1], h[i], 'q')
end
return 0
"#,
    )
});

/// KEYS: holders. ARGV: node, state to take when absent (`d`, or `r` after Redis lost it), ttl ms.
static HOLD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"#,
    )
});

/// KEYS: holders. ARGV: node, ttl ms. Returns 1 (read the queue again) when a message was queued
/// meanwhile, else 0 (the node is ready).
static DRAINED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HGET', KEYS[1], ARGV[1]) == 'q' then
  redis.call('HSET', KEYS[1], ARGV[1], 'd')
  return 1
end
redis.call('HSET', KEYS[1], ARGV[1], 'r')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
"#,
    )
});

impl UserRoute for RedisBroker {
    fn send(
        &self,
        dev_id: DevId,
        user: UserId,
        id: &str,
        event: &str,
        text: &str,
    ) -> Pending<usize> {
        let s = self.shared.clone();
        let Ok(event) = EventName::parse(event) else {
            return Box::pin(async { Err(unavailable("an invalid event name")) });
        };
        let payload = wire::encode_private(&Private {
            origin: s.node.clone(),
            dev_id,
            user,
            id: id.to_string(),
            event,
            text: text.to_string(),
        });
        Box::pin(async move {
            let mut call = SEND.key(s.keys.holders(dev_id, user));
            call.key(s.keys.user_channel(dev_id, user)).arg(payload);
            let nodes: i64 = run(&s, call).await?;
            if nodes > 0 {
                Metrics::add(&s.metrics.private_sent, 1);
            }
            Ok(nodes.max(0) as usize)
        })
    }

    fn queued(&self, dev_id: DevId, user: UserId) -> Pending<bool> {
        let s = self.shared.clone();
        Box::pin(async move {
            let call = QUEUED.key(s.keys.holders(dev_id, user));
            let ready: i64 = run(&s, call).await?;
            Ok(ready == 1)
        })
    }

    fn hold(&self, dev_id: DevId, user: UserId) -> Pending<()> {
        let s = self.shared.clone();
        Box::pin(async move {
            let key = (dev_id, user);
            s.users.pin(&key);
            let held = async {
                if let Some(waiting) = s.users.wait(&key) {
                    match tokio::time::timeout(LISTEN_TIMEOUT, waiting).await {
                        Ok(Ok(())) => {}
                        _ => return Err(unavailable("the user's channel is not subscribed")),
                    }
                }
                let mut call = HOLD.key(s.keys.holders(dev_id, user));
                call.arg(&s.node).arg("d").arg(HOLDERS_TTL_MS);
                run::<i64>(&s, call).await.map(|_| ())
            }
            .await;
            s.users.unpin(&key);
            held
        })
    }

    fn release(&self, dev_id: DevId, user: UserId) -> Pending<()> {
        let s = self.shared.clone();
        Box::pin(async move {
            release(&s, &mut s.conn.clone(), &[(dev_id, user)])
                .await
                .map_err(unavailable)
        })
    }

    fn drained(&self, dev_id: DevId, user: UserId) -> Pending<bool> {
        let s = self.shared.clone();
        Box::pin(async move {
            let mut call = DRAINED.key(s.keys.holders(dev_id, user));
            call.arg(&s.node).arg(HOLDERS_TTL_MS);
            let again: i64 = run(&s, call).await?;
            Ok(again == 1)
        })
    }
}

/// A private message off a user's channel: to this node's connections of the user.
pub(super) fn receive(s: &Shared, channel_of: UserKey, payload: &[u8]) {
    match wire::decode_private(payload) {
        Ok(p) if (p.dev_id, p.user) == channel_of => {
            Metrics::add(&s.metrics.received, 1);
            let frame = frames::private_message(p.event.as_str(), &p.text);
            let message = PrivateMessage::new(p.id, frame);
            s.registry.push_private_here(p.dev_id, p.user, &message);
        }
        _ => {
            Metrics::add(&s.metrics.garbled, 1);
            tracing::warn!("a private message on a user channel does not decode or names another user; dropped");
        }
    }
}

/// The node no longer holds these users: out of their holders, before their channels are unsubscribed
/// (a sender that still finds this node `r` publishes to a node that still listens).
pub(super) async fn release(
    s: &Shared,
    conn: &mut redis::aio::ConnectionManager,
    users: &[UserKey],
) -> Result<(), String> {
    let mut pipe = redis::pipe();
    for (dev_id, user) in users {
        pipe.cmd("HDEL")
            .arg(s.keys.holders(*dev_id, *user))
            .arg(&s.node)
            .ignore();
    }
    match tokio::time::timeout(COMMAND_TIMEOUT, pipe.query_async::<()>(conn)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("HDEL timed out".into()),
    }
}

/// After a reconnect (Redis may have restarted empty): the users this node holds are noted again, ready
/// or draining as they are here (a note that is still there is kept).
pub(super) async fn resync(s: &Arc<Shared>) {
    let held = s.registry.users_held();
    if held.is_empty() {
        return;
    }
    let mut conn = s.conn.clone();
    for chunk in held.chunks(1000) {
        let mut pipe = redis::pipe();
        for (dev_id, user, ready) in chunk {
            let holders = s.keys.holders(*dev_id, *user);
            let state = if *ready { "r" } else { "d" };
            pipe.cmd("HSETNX")
                .arg(&holders)
                .arg(&s.node)
                .arg(state)
                .ignore();
            pipe.cmd("PEXPIRE")
                .arg(&holders)
                .arg(HOLDERS_TTL_MS)
                .ignore();
        }
        let done = pipe.query_async::<()>(&mut conn);
        if !matches!(
            tokio::time::timeout(COMMAND_TIMEOUT, done).await,
            Ok(Ok(()))
        ) {
            tracing::warn!(
                "could not note this node's users in Redis again; next reconnect retries"
            );
            return;
        }
    }
    // While this node could not hear, a message to a user ready here that no other node took was queued:
    // their queue goes to their connections here now.
    for (dev_id, user, ready) in held {
        if ready {
            s.registry.redrain(dev_id, user);
        }
    }
}
