//! Who is here: the pipes a browser connection listens to, with the `track_` announcements of who came and
//! went, and whether a user is online, announced on `user_status_<id>` and kept in `users_time`. Every door
//! that holds browser connections (the WebSocket door now; an HTTP stream or the Pusher protocol's presence
//! channels later) goes through here, so the rules and the order of the announcements are the same for all.
//! The registry (`hub`) holds the state; this module decides what a change means and who is told.

use super::{Client, Ctx};
use crate::browser::frames::{self, TrackEvent};
use crate::browser::names::{is_private, is_track};
use crate::hub::outgoing::shared;
use crate::hub::{Hub, LinkError, Outbox, Publication};
use crate::ids::{ConnId, DevId, PipeName, UserId};
use crate::tenant::unix_now;

/// Most pipes one connection may hold (docs/reference-cppcomet.md 2.5; docs/compatibility.md §5).
pub(crate) const MAX_PIPES: usize = 32;

/// The pipes one connection is subscribed to.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    pipes: Vec<PipeName>,
    /// The set was given by `subscription2` (a set is replaced whole, so all its pipes are positioned).
    positioned: bool,
}

/// One pipe asked for by `subscription2`, with the last position the client processed.
pub(crate) struct Wanted<'a> {
    pub name: &'a str,
    pub position: Option<(&'a str, u64)>,
}

impl Subscriptions {
    /// `subscription` replaces the whole set (docs/reference-cppcomet.md 2.5). `private_` pipes are skipped for
    /// anonymous connections; `track_` pipes tell their other subscribers who came and went. Only real changes
    /// count: pipes left are left (announced) first, then pipes joined are joined in order, and a pipe in both sets
    /// stays subscribed without a word. The reference left and re-joined every pipe, so one 20-byte command re-sent
    /// in a loop made two presence frames per subscriber of each `track_` pipe.
    pub(crate) async fn replace(
        &mut self,
        ctx: &Ctx,
        client: Client,
        outbox: &Outbox,
        names: &[&str],
    ) {
        let wanted: Vec<Wanted<'_>> = names
            .iter()
            .map(|name| Wanted {
                name,
                position: None,
            })
            .collect();
        self.replace_with(ctx, client, outbox, &wanted, false).await;
    }

    /// `subscription2`: the same replacement, and every pipe of the new set (kept ones too) is joined
    /// with positions: the missed frames when its position can be honoured, then its `subscribed` frame,
    /// then live frames carrying `offset`.
    pub(crate) async fn replace_positioned(
        &mut self,
        ctx: &Ctx,
        client: Client,
        outbox: &Outbox,
        wanted: &[Wanted<'_>],
    ) {
        self.replace_with(ctx, client, outbox, wanted, true).await;
    }

    /// Whether `pipe` is in the set and was asked with positions (its `pipe_log` entries carry offsets).
    pub(crate) fn positioned(&self, pipe: &PipeName) -> bool {
        self.positioned && self.pipes.contains(pipe)
    }

    async fn replace_with(
        &mut self,
        ctx: &Ctx,
        client: Client,
        outbox: &Outbox,
        names: &[Wanted<'_>],
        positions: bool,
    ) {
        let mut wanted: Vec<(PipeName, Option<(&str, u64)>)> =
            Vec::with_capacity(names.len().min(MAX_PIPES));
        for w in names.iter().take(MAX_PIPES) {
            let Ok(pipe) = PipeName::parse_subscription(w.name) else {
                continue;
            };
            if (is_private(pipe.as_str()) && !client.authorized())
                || wanted.iter().any(|(p, _)| *p == pipe)
            {
                continue;
            }
            wanted.push((pipe, w.position));
        }
        for pipe in std::mem::take(&mut self.pipes) {
            if wanted.iter().any(|(p, _)| *p == pipe) {
                self.pipes.push(pipe);
            } else {
                leave(ctx, client.dev_id, outbox, pipe);
            }
        }
        // A cluster: the joins are written to Redis together, and the answer waits for them (one round
        // trip), so that every node's reads show them once the client is told it is subscribed.
        let mut written = Vec::new();
        self.positioned = positions;
        let registry = ctx.hub.registry();
        if positions {
            super::quota::refresh_window(ctx, client.dev_id);
        }
        for (pipe, position) in wanted {
            let kept = self.pipes.contains(&pipe);
            let shared = ctx.hub.shared_presence();
            if !kept && is_track(pipe.as_str()) && shared.is_none() {
                track(ctx, client.dev_id, outbox, &pipe, TrackEvent::Subscription);
            }
            if positions {
                // A kept pipe is joined again too: the client asks where it stands (after a gap).
                if let Err(e) = super::positions::join(ctx, client, outbox, &pipe, position).await {
                    // The history could not be read: joined from memory (no durable position), so the
                    // page is told `recovered:false` at worst, never a hole.
                    tracing::warn!(error = %e, "durable position unavailable");
                    registry.subscribe_positioned(client.dev_id, &pipe, outbox.clone(), None, None);
                }
            } else {
                // (Re)subscribing a kept pipe turns a positioned subscription back into a plain one.
                registry.subscribe(client.dev_id, &pipe, outbox.clone());
                // A cluster: answered once the pipe's messages reach this node.
                if let Err(e) = ctx.hub.listen(client.dev_id, &pipe).await {
                    tracing::warn!(error = %e, "subscribed while the cluster is unavailable");
                }
            }
            if let Some(shared) = shared.filter(|_| !kept) {
                written.push(shared.member_changed(client.dev_id, &pipe, outbox.conn()));
            }
            if !kept {
                self.pipes.push(pipe);
            }
        }
        for w in futures_util::future::join_all(written).await {
            if let Err(e) = w {
                // Kept in the registry: written when Redis answers again.
                tracing::warn!(error = %e, "presence not written yet");
            }
        }
    }

    /// Leaves every pipe (announced on `track_` pipes): the connection is going.
    pub(crate) fn clear(&mut self, ctx: &Ctx, client: Client, outbox: &Outbox) {
        for pipe in std::mem::take(&mut self.pipes) {
            leave(ctx, client.dev_id, outbox, pipe);
        }
    }
}

fn leave(ctx: &Ctx, dev_id: DevId, outbox: &Outbox, pipe: PipeName) {
    ctx.hub.registry().unsubscribe(dev_id, &pipe, outbox.conn());
    if let Some(shared) = ctx.hub.shared_presence() {
        // Queued now, in order; not waited for (the cluster announces the leave on `track_` pipes).
        drop(shared.member_changed(dev_id, &pipe, outbox.conn()));
        return;
    }
    if is_track(pipe.as_str()) {
        track(ctx, dev_id, outbox, &pipe, TrackEvent::Unsubscription);
    }
}

/// Tells a `track_` pipe's other subscribers that this connection came or went.
fn track(ctx: &Ctx, dev_id: DevId, outbox: &Outbox, pipe: &PipeName, event: TrackEvent) {
    let info = outbox.info();
    let frame = frames::track_event(pipe.as_str(), event, info.user_id.0, &info.uuid, unix_now());
    ctx.hub.publish_local(Publication {
        dev_id,
        pipe: pipe.clone(),
        frame: shared(frame),
        except: Some(outbox.conn()),
        position: None,
        presence: true,
        socket: None,
    });
}

/// Links an authorized connection to its user, who is then online: announced (when it is their first
/// connection) and recorded in users_time. The connection starts draining the user's queue
/// (`users_messages::drain`). An error when the user has too many connections: the connection stays
/// anonymous and nothing is announced.
pub(crate) async fn connect(
    ctx: &Ctx,
    dev_id: DevId,
    user: UserId,
    outbox: Outbox,
) -> Result<(), LinkError> {
    let hub = &ctx.hub;
    if let Some(shared) = hub.shared_presence() {
        // The cluster announces and records the user's first connection anywhere (`cluster_status`).
        hub.registry().link_user(dev_id, user, outbox, || {})?;
        if let Err(e) = shared.user_changed(dev_id, user).await {
            tracing::warn!(error = %e, "presence not written yet");
        }
        return Ok(());
    }
    let announce = || announce_status(hub, dev_id, user, true);
    if hub.registry().link_user(dev_id, user, outbox, announce)? {
        record_status(ctx, dev_id, user, true);
    }
    Ok(())
}

/// Unlinks a connection from its user (none for UserId(0)); when it was their last, the user is offline:
/// announced and recorded with the time.
pub(crate) async fn disconnect(ctx: &Ctx, dev_id: DevId, user: UserId, conn: ConnId) {
    if let Some(shared) = ctx.hub.shared_presence() {
        if user.0 != 0 {
            let last = ctx.hub.registry().unlink_user(dev_id, user, conn, || {});
            drop(shared.user_changed(dev_id, user));
            // Out of the user's holders before the close is done: a message sent from now on is
            // queued or goes to the nodes that have the user (`cluster::private`).
            if let Some(route) = ctx.hub.users().filter(|_| last) {
                if let Err(e) = route.release(dev_id, user).await {
                    tracing::warn!(error = %e, "user not released in Redis; their channel's release will");
                }
            }
        }
        return;
    }
    let announce = || announce_status(&ctx.hub, dev_id, user, false);
    if user.0 != 0 && ctx.hub.registry().unlink_user(dev_id, user, conn, announce) {
        record_status(ctx, dev_id, user, false);
    }
}

/// `pipe_count`: the pipe's subscribers (every node's, in a cluster).
pub(crate) async fn pipe_count(
    ctx: &Ctx,
    dev_id: DevId,
    pipe: &PipeName,
) -> Result<u64, super::CommandError> {
    match ctx.hub.shared_presence() {
        Some(shared) => {
            let counts = shared.counts(dev_id, vec![pipe.clone()]).await?;
            Ok(counts.first().copied().unwrap_or(0))
        }
        None => Ok(ctx.hub.registry().subscribers(dev_id, pipe) as u64),
    }
}

/// `track_pipe_users`: the pipe's members (every node's in a cluster, at most `max_result_rows` of them:
/// a huge pipe is not read whole for one answer).
pub(crate) async fn track_users(
    ctx: &Ctx,
    dev_id: DevId,
    pipe: &PipeName,
) -> Result<Vec<crate::hub::Member>, super::CommandError> {
    let max = match ctx.hub.shared_presence() {
        Some(_) => ctx.config.cometql.max_result_rows,
        None => usize::MAX,
    };
    super::users_in_pipes::members(ctx, dev_id, pipe, max).await
}

/// A cluster: records in users_time the users this node's presence scripts brought online or offline
/// cluster-wide (each transition is made, and so recorded, by exactly one node).
pub(crate) async fn cluster_status(
    ctx: Ctx,
    mut changes: tokio::sync::mpsc::UnboundedReceiver<crate::cluster::StatusChange>,
) {
    while let Some(c) = changes.recv().await {
        let time = if c.online { 0 } else { c.at };
        ctx.storage.note_last_online(c.dev_id, c.user, time);
    }
}

/// The durable users_time value: 0 while online, the disconnect time after. Noted for the storage
/// writer, not waited for: a connect never waits for the database (reads see the value at once).
fn record_status(ctx: &Ctx, dev_id: DevId, user: UserId, online: bool) {
    let time = if online { 0 } else { unix_now() };
    ctx.storage.note_last_online(dev_id, user, time);
}

/// `online` / `offline` on `user_status_<id>`. Called by the hub under its users lock, so that the
/// announcements of one user keep their order.
fn announce_status(hub: &Hub, dev_id: DevId, user: UserId, online: bool) {
    let frame = if online {
        frames::user_online(user.0)
    } else {
        frames::user_offline(user.0)
    };
    if let Ok(pipe) = PipeName::parse_subscription(frame.pipe()) {
        hub.publish_local(Publication {
            dev_id,
            pipe,
            frame: shared(frame),
            except: None,
            position: None,
            presence: true,
            socket: None,
        });
    }
}
