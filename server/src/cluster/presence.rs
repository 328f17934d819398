//! Presence cluster-wide: who is in which pipe and which users are online, in Redis, so that every node
//! answers `pipes`, `users_in_pipes`, `pipe_count`, `track_pipe_users`, `user_status` and `users_time`
//! alike, and announces each change once for the whole cluster.
//!
//! What is kept (`keys.rs`, `member.rs`): per (tenant, pipe) a hash `<node>/<conn>` -> member; per
//! (tenant, user) a hash node -> that node's connections of the user; per node the set of what it wrote
//! (`held`), and the set of nodes that write. Every change is one script (`presence_scripts.rs`) that makes
//! the change and, when it is a transition, PUBLISHes the announcement on the pipe's channel (a `track_`
//! join or leave, `online` / `offline` on `user_status_<id>`): one atomic step, so each is announced
//! exactly once, by the node whose script made it, and every node's subscribers get them in Redis's order.
//! Whoever made a user's online or offline transition records it in users_time (`StatusChange`).
//!
//! The registry stays the node's truth. A change only tells the writer task *what* changed (`Op`); the
//! writer reads the registry when it writes, so a burst of changes is merged into one pipeline, and the
//! order of the calls does not matter: the last write says what is. The cost on the hot path: a subscribe
//! (all the pipes of one `subscription` command together) and a user's connect wait for one pipelined
//! round trip to Redis (with the other changes of that moment), about the time of the channel's
//! SUBSCRIBE they already wait for; leaves and disconnects do not wait. In Redis that is per member one
//! SADD and one EVALSHA (HSET, and PUBLISH on `track_` pipes), per connect one SADD and one EVALSHA.
//!
//! Redis unavailable: reads fail (CometQL `ERROR 503`, as publishes) rather than answer with this node's
//! part; changes stay in the registry, and once Redis answers again (or after the pub/sub connection came
//! back, or the lease had to be taken again: Redis may have lost everything) the writer writes the node's
//! whole truth again (`resync`): what its held set lists that the registry no longer has is removed (each
//! leave and offline announced once), and everything the registry has is written (idempotently: nothing
//! already there is announced again).
//!
//! A node that dies leaves its members in Redis until a survivor removes them (`sweep.rs`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot, watch};

use super::broker::unavailable;
use super::member::{self, Held, Transition};
use super::presence_scripts::{self, JOIN_MEMBER, LEAVE_MEMBER, USER_COUNT};
use super::wire::{self, Header, Kind};
use super::{Shared, COMMAND_TIMEOUT};
use crate::browser::names::{is_track, user_status_pipe};
use crate::hub::broker::Pending;
use crate::hub::{BrokerError, Member, SharedPresence};
use crate::ids::{ConnId, DevId, PipeName, UserId};
use crate::tenant::unix_now;

/// Most changes written in one pipeline.
const BATCH: usize = 512;
/// How often a node that could not write tries again to write its whole truth.
const RETRY: Duration = Duration::from_secs(1);
/// Fields one HSCAN asks for at most (a read of a big pipe is several of them, up to its cap).
const SCAN_COUNT: usize = 1000;

/// A user's presence changed cluster-wide, as this node's script made it: to be recorded in users_time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusChange {
    pub dev_id: DevId,
    pub user: UserId,
    pub online: bool,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Op {
    Member(DevId, PipeName, ConnId),
    User(DevId, UserId),
    /// Write the node's whole truth again (Redis may have lost it).
    Resync,
    /// Writes nothing: resolves once every change queued before it is written.
    Barrier,
}

pub(super) struct Queued {
    op: Op,
    done: Option<oneshot::Sender<()>>,
}

/// Where changes are queued for the writer.
#[derive(Clone)]
pub(super) struct Queue(mpsc::UnboundedSender<Queued>);

impl Queue {
    pub(super) fn new() -> (Queue, mpsc::UnboundedReceiver<Queued>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Queue(tx), rx)
    }

    /// Queues `op` now (the order of the calls is the order of the changes); resolves once written.
    fn push(&self, op: Op) -> Pending<()> {
        let (done, written) = oneshot::channel();
        let _ = self.0.send(Queued {
            op,
            done: Some(done),
        });
        Box::pin(async move {
            written
                .await
                .map_err(|_| unavailable("presence not written"))
        })
    }

    pub(super) fn resync(&self) {
        let _ = self.0.send(Queued {
            op: Op::Resync,
            done: None,
        });
    }
}

/// The seam's side: changes to the writer, reads straight from Redis.
pub(super) struct RedisPresence {
    pub(super) shared: Arc<Shared>,
}

/// A read of Redis as the seam answers it: within `COMMAND_TIMEOUT`, else the broker is unavailable.
pub(super) fn timed<T: Send + 'static>(
    f: impl std::future::Future<Output = redis::RedisResult<T>> + Send + 'static,
) -> Pending<T> {
    Box::pin(async move {
        match tokio::time::timeout(COMMAND_TIMEOUT, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable("no answer in time")),
        }
    })
}

impl SharedPresence for RedisPresence {
    fn member_changed(&self, dev_id: DevId, pipe: &PipeName, conn: ConnId) -> Pending<()> {
        self.shared
            .presence
            .push(Op::Member(dev_id, pipe.clone(), conn))
    }

    fn user_changed(&self, dev_id: DevId, user: UserId) -> Pending<()> {
        self.shared.presence.push(Op::User(dev_id, user))
    }

    fn counts(&self, dev_id: DevId, pipes: Vec<PipeName>) -> Pending<Vec<u64>> {
        let keys = pipes.iter().map(|p| self.shared.keys.members(dev_id, p));
        hash_lengths(&self.shared, keys.collect())
    }

    fn members(&self, dev_id: DevId, pipe: PipeName, max: usize) -> Pending<Vec<Member>> {
        let s = self.shared.clone();
        timed(async move { members(&s.keys.members(dev_id, &pipe), s.conn.clone(), max).await })
    }

    fn last_online(&self, dev_id: DevId, user: UserId) -> Pending<Option<i64>> {
        let s = self.shared.clone();
        timed(async move {
            let pipe = status_pipe(user);
            let (online, offline): (bool, Option<i64>) = redis::pipe()
                .exists(s.keys.users(dev_id, &pipe))
                .get(s.keys.last_offline(dev_id, &pipe))
                .query_async(&mut s.conn.clone())
                .await?;
            Ok(if online { Some(0) } else { offline })
        })
    }

    fn written(&self) -> Pending<()> {
        self.shared.presence.push(Op::Barrier)
    }
}

/// Up to `max` members of a pipe, read `SCAN_COUNT` at a time (a pipe of a million members is not read
/// whole), sorted by (node, connection).
async fn members(
    key: &str,
    mut conn: ConnectionManager,
    max: usize,
) -> redis::RedisResult<Vec<Member>> {
    let mut out = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, flat): (u64, Vec<String>) = redis::cmd("HSCAN")
            .arg(key)
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_COUNT.min(max.max(1)))
            .query_async(&mut conn)
            .await?;
        for pair in flat.chunks_exact(2) {
            if let Some(m) = member::decode(&pair[0], &pair[1]) {
                out.push(m);
            }
        }
        cursor = next;
        if cursor == 0 || out.len() >= max {
            break;
        }
    }
    out.sort_by(|a, b| (&a.node, a.conn).cmp(&(&b.node, b.conn)));
    out.truncate(max);
    Ok(out)
}

/// The `user_status_<id>` pipe (its channel carries the user's announcements; its tag is the user's key's).
pub(super) fn status_pipe(user: UserId) -> PipeName {
    PipeName::parse_command(&user_status_pipe(user.0)).expect("user_status_<id> is a pipe name")
}

/// The header of an announcement on `pipe` by this node.
pub(super) fn head(node: &str, dev_id: DevId, pipe: &PipeName, except: Option<ConnId>) -> String {
    wire::head(&Header {
        kind: Kind::Presence,
        origin: node.to_string(),
        except,
        dev_id,
        pipe: pipe.clone(),
    })
}

/// Adds to `p` the writes that make Redis say what the registry says of `op`. Returns whether the
/// pipeline gets an answer from it (a user's script: its transition).
fn stage(s: &Shared, p: &mut redis::Pipeline, op: &Op, now: i64) -> Option<(DevId, UserId)> {
    let held = s.keys.held(&s.node);
    match op {
        Op::Member(dev_id, pipe, conn) => {
            let entry = Held::Member(*dev_id, pipe.clone(), *conn).encode();
            let announced = is_track(pipe.as_str());
            let head = |except| {
                if announced {
                    self::head(&s.node, *dev_id, pipe, except)
                } else {
                    String::new()
                }
            };
            let field = member::field(&s.node, *conn);
            let key = s.keys.members(*dev_id, pipe);
            let channel = s.keys.channel(*dev_id, pipe);
            match s.registry.member(*dev_id, pipe, *conn) {
                Some(outbox) => {
                    // Listed before it is written: a node dying in between leaves an entry that removes
                    // nothing, never a member nobody would remove.
                    p.sadd(&held, &entry).ignore();
                    let mut call = JOIN_MEMBER.prepare_invoke();
                    call.key(key)
                        .key(channel)
                        .arg(field)
                        .arg(member::encode(outbox.info()))
                        .arg(head(Some(*conn)))
                        .arg(now);
                    p.invoke_script(&call).ignore();
                }
                None => {
                    let mut call = LEAVE_MEMBER.prepare_invoke();
                    call.key(key)
                        .key(channel)
                        .arg(field)
                        .arg(head(Some(*conn)))
                        .arg(now);
                    p.invoke_script(&call).ignore();
                    p.srem(&held, &entry).ignore();
                }
            }
            None
        }
        Op::User(dev_id, user) => {
            let entry = Held::User(*dev_id, *user).encode();
            let n = s.registry.user_connections(*dev_id, *user);
            if n > 0 {
                p.sadd(&held, &entry).ignore();
            }
            let status = status_pipe(*user);
            let mut call = USER_COUNT.prepare_invoke();
            call.key(s.keys.users(*dev_id, &status))
                .key(s.keys.channel(*dev_id, &status))
                .key(s.keys.last_offline(*dev_id, &status))
                .arg(&s.node)
                .arg(n)
                .arg(head(&s.node, *dev_id, &status, None))
                .arg(now);
            p.invoke_script(&call);
            if n == 0 {
                p.srem(&held, &entry).ignore();
            }
            Some((*dev_id, *user))
        }
        Op::Resync | Op::Barrier => None,
    }
}

/// Writes `ops` (merged) in one pipeline; the transitions the user scripts made are sent to `status`.
pub(super) async fn apply(
    s: &Shared,
    ops: impl IntoIterator<Item = Op>,
    status: &mpsc::UnboundedSender<StatusChange>,
) -> Result<(), BrokerError> {
    let mut seen = HashSet::new();
    let mut p = redis::pipe();
    let now = unix_now();
    let mut users = Vec::new();
    for op in ops {
        if !matches!(op, Op::Resync | Op::Barrier) && seen.insert(op.clone()) {
            users.extend(stage(s, &mut p, &op, now));
        }
    }
    if seen.is_empty() {
        return Ok(());
    }
    let answers: Vec<i64> = timed_query(&p, s.conn.clone()).await?;
    for ((dev_id, user), answer) in users.into_iter().zip(answers) {
        let online = match Transition::of(answer) {
            Transition::Online => true,
            Transition::Offline => false,
            Transition::None => continue,
        };
        let _ = status.send(StatusChange {
            dev_id,
            user,
            online,
            at: now,
        });
    }
    Ok(())
}

/// The number of fields of each hash, in one round trip.
pub(super) fn hash_lengths(s: &Arc<Shared>, keys: Vec<String>) -> Pending<Vec<u64>> {
    let mut conn = s.conn.clone();
    timed(async move {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = redis::pipe();
        for key in &keys {
            p.hlen(key);
        }
        p.query_async(&mut conn).await
    })
}

pub(super) async fn timed_query<T: redis::FromRedisValue>(
    p: &redis::Pipeline,
    mut conn: ConnectionManager,
) -> Result<T, BrokerError> {
    match tokio::time::timeout(COMMAND_TIMEOUT * 2, p.query_async(&mut conn)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(_) => Err(unavailable("no answer in time")),
    }
}

/// The writer: merges what is queued, writes it, and after a failure writes the node's whole truth again.
pub(super) async fn write(
    s: Arc<Shared>,
    mut queue: mpsc::UnboundedReceiver<Queued>,
    status: mpsc::UnboundedSender<StatusChange>,
    mut shutdown: watch::Receiver<bool>,
) {
    // At start the scripts are loaded (and the node listed) by a first resync of an empty registry.
    let mut dirty = true;
    loop {
        // While the last write failed, the writer wakes up every `RETRY` to try again.
        let wait = if dirty { RETRY } else { Duration::MAX };
        let first = tokio::select! {
            q = tokio::time::timeout(wait, queue.recv()) => match q {
                Ok(q) => q,
                Err(_) => Some(Queued { op: Op::Resync, done: None }),
            },
            _ = shutdown.changed() => return,
        };
        let Some(first) = first else { return };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(q) => batch.push(q),
                Err(_) => break,
            }
        }
        if batch.iter().any(|q| q.op == Op::Resync) {
            dirty = true;
        }
        if dirty {
            // What the batch asked is in the registry, which the resync writes whole.
            match resync(&s, &status).await {
                Ok(()) => {
                    dirty = false;
                    tracing::info!(node = %s.node, "presence written to Redis");
                }
                Err(e) => tracing::warn!(error = %e, "cannot write presence; will try again"),
            }
            continue;
        }
        let (ops, done): (Vec<Op>, Vec<_>) = batch.into_iter().map(|q| (q.op, q.done)).unzip();
        match apply(&s, ops, &status).await {
            Ok(()) => done.into_iter().flatten().for_each(|d| {
                let _ = d.send(());
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot write presence; will write it again");
                dirty = true;
            }
        }
    }
}

/// Writes the node's whole truth: scripts loaded, the node listed, what its held set lists that the
/// registry no longer has removed, and everything the registry has written.
async fn resync(
    s: &Shared,
    status: &mpsc::UnboundedSender<StatusChange>,
) -> Result<(), BrokerError> {
    let mut p = redis::pipe();
    for script in presence_scripts::all() {
        p.load_script(script).ignore();
    }
    p.sadd(s.keys.nodes(), &s.node).ignore();
    timed_query::<()>(&p, s.conn.clone()).await?;
    let held = s.keys.held(&s.node);
    let mut cursor = 0u64;
    loop {
        let mut p = redis::pipe();
        p.cmd("SSCAN")
            .arg(&held)
            .arg(cursor)
            .arg("COUNT")
            .arg(BATCH);
        let ((next, entries),): ((u64, Vec<String>),) = timed_query(&p, s.conn.clone()).await?;
        let mut ops = Vec::new();
        let mut garbage = redis::pipe();
        let mut any_garbage = false;
        for e in entries {
            match Held::decode(&e) {
                Some(Held::Member(d, pipe, c)) => ops.push(Op::Member(d, pipe, c)),
                Some(Held::User(d, u)) => ops.push(Op::User(d, u)),
                // A Pusher presence connection gone while Redis was away: its leave is written.
                Some(Held::Pusher(d, pipe, c)) => {
                    if s.registry.member(d, &pipe, c).is_none() {
                        super::pusher::leave_later(s, d, pipe, c);
                    }
                }
                None => {
                    garbage.srem(&held, e).ignore();
                    any_garbage = true;
                }
            }
        }
        apply(s, ops, status).await?;
        if any_garbage {
            timed_query::<()>(&garbage, s.conn.clone()).await?;
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let mut ops: Vec<Op> = s
        .registry
        .all_members()
        .into_iter()
        .map(|(d, p, c)| Op::Member(d, p, c))
        .collect();
    ops.extend(
        s.registry
            .linked_users()
            .into_iter()
            .map(|(d, u)| Op::User(d, u)),
    );
    while !ops.is_empty() {
        let rest = ops.split_off(ops.len().saturating_sub(BATCH));
        apply(s, rest, status).await?;
    }
    super::pusher::rewrite(s).await
}

/// A presence announcement off a pipe's channel: delivered to this node's subscribers at once (it takes
/// no position, as on one node); the connection it is about does not get it back.
pub(super) fn receive(s: &Shared, w: &wire::Wire) {
    let b = &w.body;
    let Some(frame) = member::frame(&w.header.pipe, b.event.as_str(), b.sent_at, &b.text) else {
        super::metrics::Metrics::add(&s.metrics.garbled, 1);
        return;
    };
    let except = if w.header.origin == s.node {
        w.header.except
    } else {
        None
    };
    s.registry.deliver(&crate::hub::Publication {
        dev_id: w.header.dev_id,
        pipe: w.header.pipe.clone(),
        frame: crate::hub::outgoing::shared(frame),
        except,
        position: None,
        presence: true,
        socket: None,
    });
}
