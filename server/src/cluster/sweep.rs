//! A dead node's presence: removed by one survivor, each leave and offline announced once.
//!
//! Every `SWEEP_EVERY` each node looks at the nodes that wrote presence (`keys::nodes`); one whose lease
//! (`lease.rs`) has expired is dead. The first survivor to take its sweep lock (SET NX with a TTL, renewed
//! per batch) removes what the dead node's held set lists, with the same scripts as a live leave (so a
//! `track_` leave and a user's offline are announced, and users_time written, by the script that made the
//! transition: once, even if two survivors raced; a Pusher presence user's `member_removed` likewise,
//! `pusher.rs`), then forgets the node and its Pusher subscriber counts. The bound: a node's members
//! are gone at most `LEASE_TTL + SWEEP_EVERY` (10 s + 5 s) after its last heartbeat, plus the sweep
//! itself (a batch of `BATCH` members is one round trip).
//!
//! A node that starts sweeps its own name first (under the same lock: a survivor may be sweeping it),
//! so that a restarted node inherits nothing of its previous life: its connection ids start again, and a
//! leftover `<node>/<conn>` must not be taken for a new connection's.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::member::{self, Held, Transition};
use super::presence::{head, status_pipe, timed_query, StatusChange};
use super::presence_scripts::{self, LEAVE_MEMBER, USER_COUNT};
use super::scripts::RELEASE;
use super::Shared;
use crate::browser::names::is_track;
use crate::hub::BrokerError;
use crate::tenant::unix_now;

pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// How long a sweep lock is held without renewal (renewed at every batch).
const LOCK_TTL: Duration = Duration::from_secs(30);
const BATCH: usize = 256;

pub(super) async fn run(
    s: Arc<Shared>,
    status: mpsc::UnboundedSender<StatusChange>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = sweep_dead(&s, &status).await {
            tracing::debug!(error = %e, "presence sweep skipped");
        }
    }
}

async fn sweep_dead(
    s: &Shared,
    status: &mpsc::UnboundedSender<StatusChange>,
) -> Result<(), BrokerError> {
    let mut p = redis::pipe();
    p.smembers(s.keys.nodes());
    let (nodes,): (Vec<String>,) = timed_query(&p, s.conn.clone()).await?;
    for node in nodes.iter().filter(|n| **n != s.node) {
        let mut p = redis::pipe();
        p.exists(s.keys.lease(node));
        let (alive,): (bool,) = timed_query(&p, s.conn.clone()).await?;
        if alive {
            continue;
        }
        let Some(token) = lock(s, node).await? else {
            continue;
        };
        // A node of that name may have started between the look and the lock (it takes its lease
        // before its own sweep lock): then it is alive, and its presence is its own.
        let mut p = redis::pipe();
        p.exists(s.keys.lease(node));
        let alive = timed_query::<(bool,)>(&p, s.conn.clone())
            .await
            .map(|(a,)| a);
        if alive != Ok(false) {
            unlock(s, node, &token).await;
            continue;
        }
        let swept = remove_node(s, node, status).await;
        unlock(s, node, &token).await;
        let n = swept?;
        tracing::info!(%node, removed = n, "removed a dead node's presence");
    }
    Ok(())
}

/// Takes the node's sweep lock; `None` when another node holds it.
async fn lock(s: &Shared, node: &str) -> Result<Option<String>, BrokerError> {
    let token = format!("{:032x}", rand::random::<u128>());
    let mut p = redis::pipe();
    p.cmd("SET")
        .arg(s.keys.sweep_lock(node))
        .arg(&token)
        .arg("NX")
        .arg("PX")
        .arg(LOCK_TTL.as_millis() as u64);
    let (taken,): (Option<String>,) = timed_query(&p, s.conn.clone()).await?;
    Ok(taken.map(|_| token))
}

async fn unlock(s: &Shared, node: &str, token: &str) {
    let mut p = redis::pipe();
    p.invoke_script(RELEASE.key(s.keys.sweep_lock(node)).arg(token))
        .ignore();
    let _ = timed_query::<()>(&p, s.conn.clone()).await;
}

/// At start: this node's leftovers from a previous life, removed (waiting for a survivor that is
/// sweeping them) before the node serves anyone.
pub(super) async fn own_leftovers(
    s: &Shared,
    status: &mpsc::UnboundedSender<StatusChange>,
) -> Result<usize, BrokerError> {
    let deadline = tokio::time::Instant::now() + LOCK_TTL;
    let token = loop {
        if let Some(token) = lock(s, &s.node).await? {
            break token;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(BrokerError::Unavailable(
                "the node's presence is being swept by another node".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let removed = remove_node(s, &s.node, status).await;
    unlock(s, &s.node, &token).await;
    removed
}

/// Removes every member and user count `node` wrote, announcing each leave and offline once. Returns
/// how many entries were removed.
async fn remove_node(
    s: &Shared,
    node: &str,
    status: &mpsc::UnboundedSender<StatusChange>,
) -> Result<usize, BrokerError> {
    let held = s.keys.held(node);
    let mut p = redis::pipe();
    for script in presence_scripts::all() {
        p.load_script(script).ignore();
    }
    p.load_script(&super::pusher::PLEAVE).ignore();
    timed_query::<()>(&p, s.conn.clone()).await?;
    let mut removed = 0;
    let mut cursor = 0u64;
    loop {
        // SSCAN returns every entry there from start to end of a pass; removing entries meanwhile is
        // allowed. A pass that ends with entries left (none are added: the node is dead or not serving
        // yet) starts another.
        let mut p = redis::pipe();
        p.cmd("SSCAN")
            .arg(&held)
            .arg(cursor)
            .arg("COUNT")
            .arg(BATCH);
        let ((next, entries),): ((u64, Vec<String>),) = timed_query(&p, s.conn.clone()).await?;
        cursor = next;
        if entries.is_empty() {
            if cursor != 0 {
                continue;
            }
            let mut p = redis::pipe();
            p.scard(&held);
            let (left,): (u64,) = timed_query(&p, s.conn.clone()).await?;
            if left == 0 {
                break;
            }
            continue;
        }
        let now = unix_now();
        let mut p = redis::pipe();
        p.pexpire(s.keys.sweep_lock(node), LOCK_TTL.as_millis() as i64)
            .ignore();
        let mut users = Vec::new();
        for e in &entries {
            match Held::decode(e) {
                Some(Held::Member(dev_id, pipe, conn)) => {
                    let announce = if is_track(pipe.as_str()) {
                        head(&s.node, dev_id, &pipe, None)
                    } else {
                        String::new()
                    };
                    let mut call = LEAVE_MEMBER.prepare_invoke();
                    call.key(s.keys.members(dev_id, &pipe))
                        .key(s.keys.channel(dev_id, &pipe))
                        .arg(member::field(node, conn))
                        .arg(announce)
                        .arg(now);
                    p.invoke_script(&call).ignore();
                }
                Some(Held::User(dev_id, user)) => {
                    let pipe = status_pipe(user);
                    let mut call = USER_COUNT.prepare_invoke();
                    call.key(s.keys.users(dev_id, &pipe))
                        .key(s.keys.channel(dev_id, &pipe))
                        .key(s.keys.last_offline(dev_id, &pipe))
                        .arg(node)
                        .arg(0)
                        .arg(head(&s.node, dev_id, &pipe, None))
                        .arg(now);
                    p.invoke_script(&call);
                    users.push((dev_id, user));
                }
                Some(Held::Pusher(dev_id, pipe, conn)) => {
                    super::pusher::stage_leave(s, &mut p, node, dev_id, &pipe, conn);
                }
                None => {}
            }
            p.srem(&held, e).ignore();
        }
        let answers: Vec<i64> = timed_query(&p, s.conn.clone()).await?;
        for ((dev_id, user), answer) in users.into_iter().zip(answers) {
            if Transition::of(answer) == Transition::Offline {
                let _ = status.send(StatusChange {
                    dev_id,
                    user,
                    online: false,
                    at: now,
                });
            }
        }
        removed += entries.len();
    }
    // Its Pusher subscriber counts go with it.
    let mut p = redis::pipe();
    p.del(s.keys.pusher_subscriptions(node)).ignore();
    if node != s.node {
        p.srem(s.keys.nodes(), node).ignore();
    }
    timed_query::<()>(&p, s.conn.clone()).await?;
    Ok(removed)
}
