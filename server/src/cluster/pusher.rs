//! The Pusher protocol across nodes (`hub::PusherRoute`). Events published through `pipes_messages`
//! (the HTTP API, CometQL) travel as any pipe message (`broker.rs`; kind `n` when their event is not a
//! comet name or they name a socket id to leave out, `wire.rs`), on the channel's own Redis channel,
//! which a Pusher-only channel has like a pipe (`pusher:<channel>`). What is here:
//!
//! - client events: a kind `x` frame PUBLISHed on the channel's channel, delivered as it is;
//! - presence channels (`presence_scripts`-like scripts, `PJOIN` and `PLEAVE`): per channel, under its
//!   hash tag, the users (`Keys::pusher_users`), the connections `<node>/<conn>` (`pusher_conns`) and
//!   each user's count and leave announcement (`pusher_counts`). A join and its `member_added` are one
//!   script, and so are a leave and its `member_removed`, so each user is announced once cluster-wide,
//!   when their first connection anywhere joins and when their last leaves; the cap is checked in the
//!   same step. What a node wrote is listed in its held set (`member::Held::Pusher`), so that a survivor
//!   removes a dead node's connections with the same leave script (`sweep.rs`);
//! - a `cache-` channel's last event: kept by the publish script (`scripts::PUBLISH`) for 30 minutes;
//! - subscriber counts: each node's in a hash of its own (`Keys::pusher_subscriptions`), removed with
//!   its presence when it dies; the HTTP API adds the other nodes' to its registry's;
//! - `terminate_connections`: on the control channel (`control.rs`).
//!
//! Redis unavailable: a presence join, a client event and the API's reads fail (the caller answers
//! `pusher:error` 4200 or HTTP 503); a leave that could not be written is written again once Redis
//! answers (`retry_leaves`); when the node writes its presence again (Redis came back, perhaps without
//! its data), its presence connections and subscriber counts are written again too (`rewrite`).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use redis::Script;

use super::broker::RedisBroker;
use super::control::{self, Control};
use super::member::{self, Held};
use super::presence::{hash_lengths, timed, timed_query};
use super::wire::{self, Header, Kind};
use super::{receiver, Shared};
use crate::hub::broker::Pending;
use crate::hub::{Frame, Joined, PresenceJoin, PresenceUser, PusherRoute};
use crate::ids::{ConnId, DevId, PipeName};

/// How often leaves Redis did not take are tried again.
const LEAVE_RETRY: Duration = Duration::from_secs(1);

/// KEYS: users, conns, counts, channel. ARGV: field, user id, member JSON, member_removed frame, cap,
/// head (kind `x`, leaving out the joining connection), member_added body. Returns {1 new user | 0 |
/// -1 full, {member JSON...}}.
static PJOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return {0, redis.call('HVALS', KEYS[1])}
end
local new = 0
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then
  if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then
    return {-1, {}}
  end
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
  redis.call('HSET', KEYS[3], 'r:' .. ARGV[2], ARGV[4])
  new = 1
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'n:' .. ARGV[2], 1)
if new == 1 then
  redis.call('PUBLISH', KEYS[4], ARGV[6] .. 'p 0\n' .. ARGV[7])
end
return {new, redis.call('HVALS', KEYS[1])}
"#,
    )
});

/// KEYS: users, conns, counts, channel. ARGV: field, head (kind `x`). Returns 0 (not a member), 1 (the
/// user has other connections), 2 (the user left, announced).
pub(super) static PLEAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local u = redis.call('HGET', KEYS[2], ARGV[1])
if not u then
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[1])
local n = redis.call('HINCRBY', KEYS[3], 'n:' .. u, -1)
if n > 0 then
  return 1
end
local removed = redis.call('HGET', KEYS[3], 'r:' .. u)
redis.call('HDEL', KEYS[3], 'n:' .. u, 'r:' .. u)
redis.call('HDEL', KEYS[1], u)
if removed then
  redis.call('PUBLISH', KEYS[4], ARGV[2] .. 'p 0\n0 - \n' .. removed)
end
return 2
"#,
    )
});

/// A node's count of a channel's subscriptions, gone at 0 (one step, so that a count going to 0 and one
/// coming back do not lose the second). KEYS: the node's counts. ARGV: field, delta.
static COUNT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return n
"#,
    )
});

type ChannelConn = (DevId, PipeName, ConnId);

/// What this node wrote to Redis, kept so that it can be written again: after Redis came back without
/// its data (`rewrite`, with the node's presence), and the leaves Redis did not take (`retry_leaves`).
#[derive(Default)]
pub(super) struct Local {
    leaves: Vec<ChannelConn>,
    /// This node's presence connections.
    joins: HashMap<ChannelConn, PresenceJoin>,
    /// This node's Pusher subscriptions per channel.
    counts: HashMap<(DevId, PipeName), i64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The head of a kind `x` frame on `pipe`'s channel by `node`.
pub(super) fn head(node: &str, dev_id: DevId, pipe: &PipeName, except: Option<ConnId>) -> String {
    wire::head(&Header {
        kind: Kind::Pusher,
        origin: node.to_string(),
        except,
        dev_id,
        pipe: pipe.clone(),
    })
}

/// Adds to `p` the leave of `<node>/<conn>` from a presence channel, announced by this node.
pub(super) fn stage_leave(
    s: &Shared,
    p: &mut redis::Pipeline,
    node: &str,
    dev_id: DevId,
    pipe: &PipeName,
    conn: ConnId,
) {
    let mut call = PLEAVE.prepare_invoke();
    call.key(s.keys.pusher_users(dev_id, pipe))
        .key(s.keys.pusher_conns(dev_id, pipe))
        .key(s.keys.pusher_counts(dev_id, pipe))
        .key(s.keys.channel(dev_id, pipe))
        .arg(member::field(node, conn))
        .arg(head(&s.node, dev_id, pipe, None));
    p.invoke_script(&call).ignore();
}

async fn leave(s: &Shared, dev_id: DevId, pipe: &PipeName, conn: ConnId) -> bool {
    let mut p = redis::pipe();
    p.load_script(&PLEAVE).ignore();
    stage_leave(s, &mut p, &s.node, dev_id, pipe, conn);
    p.srem(
        s.keys.held(&s.node),
        Held::Pusher(dev_id, pipe.clone(), conn).encode(),
    )
    .ignore();
    timed_query::<()>(&p, s.conn.clone()).await.is_ok()
}

/// Queues a leave for `retry_leaves`.
pub(super) fn leave_later(s: &Shared, dev_id: DevId, pipe: PipeName, conn: ConnId) {
    let leaves = &mut lock(&s.pusher_local).leaves;
    if !leaves
        .iter()
        .any(|l| l.0 == dev_id && l.1 == pipe && l.2 == conn)
    {
        leaves.push((dev_id, pipe, conn));
    }
}

/// Adds to `p` a presence join (idempotent: a connection already there changes nothing).
fn stage_join(s: &Shared, p: &mut redis::Pipeline, j: &PresenceJoin) {
    let (d, pipe) = (j.dev_id, &j.pipe);
    // Listed before it is written: a node dying in between leaves an entry that removes nothing.
    p.sadd(
        s.keys.held(&s.node),
        Held::Pusher(d, pipe.clone(), j.conn).encode(),
    )
    .ignore();
    let mut call = PJOIN.prepare_invoke();
    call.key(s.keys.pusher_users(d, pipe))
        .key(s.keys.pusher_conns(d, pipe))
        .key(s.keys.pusher_counts(d, pipe))
        .key(s.keys.channel(d, pipe))
        .arg(member::field(&s.node, j.conn))
        .arg(&j.user.user_id)
        .arg(member_json(&j.user))
        .arg(&j.removed)
        .arg(j.cap)
        .arg(head(&s.node, d, pipe, Some(j.conn)))
        .arg(wire::pusher_body(&j.added));
    p.invoke_script(&call);
}

/// Writes this node's Pusher presence connections and subscriber counts again (with its presence, after
/// Redis was away: it may have lost them). A user new to a channel again is announced again.
pub(super) async fn rewrite(s: &Shared) -> Result<(), crate::hub::BrokerError> {
    let (joins, counts) = {
        let local = lock(&s.pusher_local);
        let joins: Vec<PresenceJoin> = local.joins.values().cloned().collect();
        let counts: Vec<(String, i64)> = local
            .counts
            .iter()
            .map(|((d, pipe), n)| (format!("{} {}", d.0, pipe.as_str()), *n))
            .collect();
        (joins, counts)
    };
    let key = s.keys.pusher_subscriptions(&s.node);
    let mut p = redis::pipe();
    p.load_script(&PJOIN).ignore();
    p.del(&key).ignore();
    for (field, n) in counts {
        p.hset(&key, field, n).ignore();
    }
    timed_query::<()>(&p, s.conn.clone()).await?;
    for chunk in joins.chunks(256) {
        let mut p = redis::pipe();
        for j in chunk {
            stage_join(s, &mut p, j);
        }
        timed_query::<Vec<redis::Value>>(&p, s.conn.clone()).await?;
    }
    Ok(())
}

/// Writes again the leaves Redis did not take, until it does.
pub(super) async fn retry_leaves(s: Arc<Shared>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(LEAVE_RETRY) => {}
            _ = shutdown.changed() => return,
        }
        let todo: Vec<_> = std::mem::take(&mut lock(&s.pusher_local).leaves);
        for (i, (dev_id, pipe, conn)) in todo.iter().enumerate() {
            if !leave(&s, *dev_id, pipe, *conn).await {
                lock(&s.pusher_local)
                    .leaves
                    .extend(todo[i..].iter().cloned());
                break;
            }
        }
    }
}

fn member_json(user: &PresenceUser) -> String {
    let mut m = serde_json::Map::new();
    m.insert("user_id".into(), user.user_id.clone().into());
    if let Some(info) = &user.user_info {
        m.insert("user_info".into(), info.clone());
    }
    serde_json::Value::Object(m).to_string()
}

fn parse_member(json: &str) -> Option<PresenceUser> {
    let serde_json::Value::Object(mut m) = serde_json::from_str(json).ok()? else {
        return None;
    };
    let serde_json::Value::String(user_id) = m.remove("user_id")? else {
        return None;
    };
    Some(PresenceUser {
        user_id,
        user_info: m.remove("user_info"),
    })
}

impl PusherRoute for RedisBroker {
    fn relay(&self, dev_id: DevId, pipe: &PipeName, except: ConnId, json: String) -> Pending<()> {
        let s = self.shared.clone();
        let mut msg = head(&s.node, dev_id, pipe, Some(except)).into_bytes();
        msg.extend_from_slice(b"p 0\n");
        msg.extend_from_slice(&wire::pusher_body(&json));
        let channel = s.keys.channel(dev_id, pipe);
        timed(async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(msg)
                .query_async::<i64>(&mut s.conn.clone())
                .await
                .map(|_| ())
        })
    }

    fn join(&self, j: PresenceJoin) -> Pending<Joined> {
        let s = self.shared.clone();
        Box::pin(async move {
            let mut p = redis::pipe();
            p.load_script(&PJOIN).ignore();
            stage_join(&s, &mut p, &j);
            let ((answer, members),): ((i64, Vec<String>),) =
                timed_query(&p, s.conn.clone()).await?;
            let held = (j.dev_id, j.pipe.clone(), j.conn);
            if answer < 0 {
                let mut p = redis::pipe();
                p.srem(
                    s.keys.held(&s.node),
                    Held::Pusher(held.0, held.1, held.2).encode(),
                )
                .ignore();
                let _ = timed_query::<()>(&p, s.conn.clone()).await;
                return Ok(Joined::Full);
            }
            lock(&s.pusher_local).joins.insert(held, j);
            Ok(Joined::Members {
                users: members.iter().filter_map(|m| parse_member(m)).collect(),
                first: answer == 1,
            })
        })
    }

    fn leave(&self, dev_id: DevId, pipe: &PipeName, conn: ConnId) {
        let s = self.shared.clone();
        let pipe = pipe.clone();
        lock(&s.pusher_local)
            .joins
            .remove(&(dev_id, pipe.clone(), conn));
        tokio::spawn(async move {
            if !leave(&s, dev_id, &pipe, conn).await {
                leave_later(&s, dev_id, pipe, conn);
            }
        });
    }

    fn users(&self, dev_id: DevId, pipe: &PipeName) -> Pending<Vec<String>> {
        let s = self.shared.clone();
        let key = s.keys.pusher_users(dev_id, pipe);
        timed(async move {
            redis::cmd("HKEYS")
                .arg(key)
                .query_async(&mut s.conn.clone())
                .await
        })
    }

    fn user_counts(&self, dev_id: DevId, pipes: Vec<PipeName>) -> Pending<Vec<u64>> {
        let keys = pipes
            .iter()
            .map(|p| self.shared.keys.pusher_users(dev_id, p));
        hash_lengths(&self.shared, keys.collect())
    }

    fn cached(&self, dev_id: DevId, pipe: &PipeName) -> Pending<Option<Frame>> {
        let s = self.shared.clone();
        let key = s.keys.cached(dev_id, pipe);
        let pipe = pipe.clone();
        Box::pin(async move {
            let read = timed(async move {
                redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<Vec<u8>>>(&mut s.conn.clone())
                    .await
            });
            Ok(read.await?.and_then(|bytes| {
                let w = wire::decode(&bytes).ok()?;
                (w.header.dev_id == dev_id && w.header.pipe == pipe).then(|| receiver::frame_of(&w))
            }))
        })
    }

    fn subscribed(&self, dev_id: DevId, pipe: &PipeName, delta: i64) -> Pending<()> {
        let s = self.shared.clone();
        let field = format!("{} {}", dev_id.0, pipe.as_str());
        {
            let counts = &mut lock(&s.pusher_local).counts;
            let key = (dev_id, pipe.clone());
            let n = counts.entry(key.clone()).or_default();
            *n += delta;
            if *n <= 0 {
                counts.remove(&key);
            }
        }
        Box::pin(async move {
            let mut call = COUNT.key(s.keys.pusher_subscriptions(&s.node));
            call.arg(field).arg(delta);
            super::run::<i64>(&s, call).await.map(|_| ())
        })
    }

    fn subscriptions(&self, dev_id: DevId) -> Pending<Vec<(PipeName, u64)>> {
        let s = self.shared.clone();
        timed(async move {
            let mut conn = s.conn.clone();
            let nodes: Vec<String> = redis::cmd("SMEMBERS")
                .arg(s.keys.nodes())
                .query_async(&mut conn)
                .await?;
            let prefix = format!("{} ", dev_id.0);
            let mut out = Vec::new();
            for node in nodes.iter().filter(|n| **n != s.node) {
                let mut cursor = 0u64;
                loop {
                    let (next, flat): (u64, Vec<String>) = redis::cmd("HSCAN")
                        .arg(s.keys.pusher_subscriptions(node))
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(format!("{prefix}*"))
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut conn)
                        .await?;
                    for pair in flat.chunks_exact(2) {
                        let pipe = pair[0].strip_prefix(&prefix).and_then(wire::pipe_name);
                        if let (Some(pipe), Ok(n)) = (pipe, pair[1].parse::<u64>()) {
                            out.push((pipe, n));
                        }
                    }
                    cursor = next;
                    if cursor == 0 {
                        break;
                    }
                }
            }
            Ok(out)
        })
    }

    fn terminate(&self, dev_id: DevId, user_id: &str) -> Pending<()> {
        control::say(
            self.shared.clone(),
            Control::Terminate(dev_id, user_id.to_owned()),
        )
    }
}

/// A kind `x` frame off a channel: to this node's subscribers of it at once, as it is.
pub(super) fn receive(s: &Shared, w: &wire::Wire) {
    let except = if w.header.origin == s.node {
        w.header.except
    } else {
        None
    };
    s.registry.deliver(&crate::hub::Publication {
        dev_id: w.header.dev_id,
        pipe: w.header.pipe.clone(),
        frame: crate::hub::outgoing::pusher_text(&w.body.text),
        except,
        position: None,
        presence: true,
        socket: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_kept_as_json_and_read_back() {
        let u = PresenceUser {
            user_id: "7".into(),
            user_info: Some(serde_json::json!({"name": "A \"b\""})),
        };
        let json = member_json(&u);
        assert_eq!(json, r#"{"user_id":"7","user_info":{"name":"A \"b\""}}"#);
        assert_eq!(parse_member(&json), Some(u));
        let bare = PresenceUser {
            user_id: "x".into(),
            user_info: None,
        };
        assert_eq!(member_json(&bare), r#"{"user_id":"x"}"#);
        assert_eq!(parse_member(r#"{"user_id":"x"}"#), Some(bare));
        for bad in ["", "[]", r#"{"user_id":7}"#, r#"{"user_info":{}}"#] {
            assert_eq!(parse_member(bad), None, "{bad}");
        }
    }
}
