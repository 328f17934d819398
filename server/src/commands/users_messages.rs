//! `users_messages`: private messages to a tenant's authorized users. Delivered live to every connection of
//! the user, otherwise queued (TTL `messages.queue_ttl_secs`) and delivered in order on their next
//! authorized connect.

use super::table::{required, streamed, Collector, Table, Verb, STREAM_AT, STREAM_PART};
use super::users::{insert_id, where_ids};
use super::{Caller, CommandError, Ctx, Outcome};
use crate::browser::frames::{self, Frame};
use crate::browser::json::Value;
use crate::cometql::{Delete, Insert, Select};
use crate::hub::PrivateMessage;
use crate::ids::{ConnId, DevId, EventName, UserId};
use crate::storage::QueuedMessage;
use crate::tenant::unix_now;

pub const TABLE: Table = Table {
    name: "users_messages",
    columns: &["id", "index", "event", "message"],
    key: "id",
};

/// Queued messages read per database round trip when a user connects.
const QUEUE_BATCH: i64 = 100;

/// Queued messages read per database round trip by a SELECT (at most 2 MiB of 64 KiB messages).
const SELECT_PAGE: i64 = 32;

pub async fn insert(ctx: &Ctx, caller: Caller, ins: &Insert) -> Result<Outcome, CommandError> {
    let items = ins
        .rows
        .iter()
        .map(|row| {
            let row = TABLE.insert_row(ins.columns.as_deref(), row)?;
            Letter::new(
                ctx,
                required(&row, "id")?,
                required(&row, "event")?,
                required(&row, "message")?,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let last = items.last().map_or(0, |l| l.user.0);
    send_all(ctx, caller, items).await?;
    Ok(Outcome::Done {
        affected_rows: 0,
        last_insert_id: last,
    })
}

/// One private message to send, validated. Shared by every front door that sends them.
#[derive(Debug, Clone)]
pub(crate) struct Letter {
    pub user: UserId,
    pub event: EventName,
    pub text: String,
}

impl Letter {
    /// Validates in the reference's order: the user id, the event, then the message size.
    pub(crate) fn new(
        ctx: &Ctx,
        user: &str,
        event: &str,
        text: &str,
    ) -> Result<Letter, CommandError> {
        let user = insert_id(user, true)?;
        let event = EventName::parse(event)?;
        if text.len() > ctx.config.websocket.max_message_bytes {
            return Err(CommandError::new(
                super::ErrorCode::TooLong,
                "Data is too long",
            ));
        }
        Ok(Letter {
            user,
            event,
            text: text.to_owned(),
        })
    }
}

/// Sends validated messages as one statement: room for every one first, then the budget for every one,
/// before any is sent (a statement over the quota or the budget sends nothing, and one refused by the
/// quota costs no budget). Each goes live to every connection of its user, or is queued when none is
/// online; returns, per message, the connections it reached (0: queued). A multi-row INSERT and an HTTP
/// batch both come here.
pub(crate) async fn send_all(
    ctx: &Ctx,
    caller: Caller,
    letters: Vec<Letter>,
) -> Result<Vec<usize>, CommandError> {
    let users: Vec<UserId> = letters.iter().map(|l| l.user).collect();
    let ctx = &super::quota::queue_statement(ctx, caller.dev_id, &users)?;
    ctx.spend_publishes(caller.dev_id, letters.len()).await?;
    let mut reached = Vec::with_capacity(letters.len());
    for l in letters {
        reached.push(deliver(ctx, caller.dev_id, l.user, l.event.as_str(), &l.text).await?);
    }
    Ok(reached)
}

/// Live to every connection of the user, or queued when none is online (one message, already valid).
pub async fn send(
    ctx: &Ctx,
    dev_id: DevId,
    user: UserId,
    event: &str,
    message: &str,
) -> Result<(), CommandError> {
    let ctx = &super::quota::queue_statement(ctx, dev_id, &[user])?;
    ctx.spend_publish(dev_id).await?;
    deliver(ctx, dev_id, user, event, message).await?;
    Ok(())
}

/// A message already paid for: the connections of the user it reached live (0: queued for their next
/// connect).
async fn deliver(
    ctx: &Ctx,
    dev_id: DevId,
    user: UserId,
    event: &str,
    message: &str,
) -> Result<usize, CommandError> {
    // One id for the message wherever it goes (live, queued, drained, replayed from the window): what a
    // client dedupes on and resumes after.
    let id = uuid::Uuid::now_v7().to_string();
    if let Some(route) = ctx.hub.users() {
        return deliver_cluster(ctx, route, dev_id, user, id, event, message).await;
    }
    let frame = PrivateMessage::new(id.clone(), frames::private_message(event, message));
    let reached = ctx.hub.registry().send_private(dev_id, user, &frame);
    if reached > 0 {
        return Ok(reached);
    }
    let (queued, expires, _room) = enqueue(ctx, dev_id, user, id, event, message).await?;
    // The user may have finished draining the queue while the message was being queued, after their
    // connection's last read of it: then nobody would deliver it until their next connect. Whoever removes
    // it from the queue delivers it, so it arrives exactly once either way. While every connection of the
    // user is still draining, `queued` makes the drain read the queue once more before it ends.
    if ctx.hub.registry().queued(dev_id, user)
        && ctx.storage.claim_queued_uuid(dev_id, &queued.uuid).await?
    {
        let reached = ctx.hub.registry().send_private(dev_id, user, &frame);
        if reached > 0 {
            return Ok(reached);
        }
        // The user's last ready connection went away between the two looks: back into the queue, for
        // their next connect, rather than lost.
        ctx.storage
            .enqueue_message(dev_id, user, &queued, expires)
            .await?;
    }
    Ok(0)
}

/// Queues a message nobody took live, within the user's queue quota and the tenant's time to live.
/// Returns it (a sender may claim it back and send it after all) with its expiry, and the quota room,
/// held until the sender is done with it.
async fn enqueue(
    ctx: &Ctx,
    dev_id: DevId,
    user: UserId,
    id: String,
    event: &str,
    message: &str,
) -> Result<(QueuedMessage, i64, crate::storage::Reservation), CommandError> {
    let now = unix_now();
    let queued = QueuedMessage {
        id: 0,
        uuid: id,
        event: event.to_string(),
        message: message.to_string(),
        sent_at: now,
    };
    let ttl = ctx
        .limits
        .queue_ttl_secs(dev_id, ctx.config.messages.queue_ttl_secs);
    let expires = now + ttl as i64;
    let room = super::quota::queued_message(ctx, dev_id, user)?;
    ctx.storage
        .enqueue_message(dev_id, user, &queued, expires)
        .await?;
    Ok((queued, expires, room))
}

/// `deliver` on a cluster node: the same protocol, with the user's state in Redis (`crate::cluster`'s
/// `private.rs` says why nothing is missed): sent when a node holding the user is ready, otherwise
/// queued, then claimed back and sent if a node became ready meanwhile. Returns the nodes it reached.
async fn deliver_cluster(
    ctx: &Ctx,
    route: &dyn crate::hub::UserRoute,
    dev_id: DevId,
    user: UserId,
    id: String,
    event: &str,
    message: &str,
) -> Result<usize, CommandError> {
    let nodes = route.send(dev_id, user, &id, event, message).await?;
    if nodes > 0 {
        return Ok(nodes);
    }
    let (queued, expires, _room) = enqueue(ctx, dev_id, user, id, event, message).await?;
    if route.queued(dev_id, user).await?
        && ctx.storage.claim_queued_uuid(dev_id, &queued.uuid).await?
    {
        let sent = route.send(dev_id, user, &queued.uuid, event, message).await;
        if let Ok(nodes @ 1..) = sent {
            return Ok(nodes);
        }
        // The ready node went away between the two looks (or Redis did): back into the queue, for
        // the user's next drain, rather than lost.
        ctx.storage
            .enqueue_message(dev_id, user, &queued, expires)
            .await?;
    }
    Ok(0)
}

/// Where a drain writes the user's queued messages: a connection's socket, written with back-pressure.
/// Each call gets one claimed batch, in order; an error means the batch did not reach the client.
pub trait QueueSink {
    type Error;

    fn deliver(
        &mut self,
        batch: Vec<Frame>,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send;
}

/// What a connection of the user gets before live messages: with `msg_after` (it asked for ids) the
/// messages it missed from the window ([`resume`]), then the queue ([`drain`]). Connections of the user
/// that come at once take turns (`Registry::drain_turn`): the queue is drained by the first, and the
/// others resume from the window behind it, rather than each claiming part of the queue.
pub async fn on_connect<S: QueueSink>(
    ctx: &Ctx,
    dev_id: DevId,
    user: UserId,
    conn: ConnId,
    msg_after: Option<&str>,
    sink: &mut S,
) -> Result<(), S::Error> {
    // The user's window follows the tenant's (its override and its quota's room) from the first message.
    super::quota::refresh_window(ctx, dev_id);
    // A cluster: this node holds the user (their channel listened to, noted in Redis) before the queue is
    // read, so that a sender either finds this node or leaves its message for this drain.
    if let Some(route) = ctx.hub.users() {
        if let Err(e) = route.hold(dev_id, user).await {
            tracing::warn!(error = %e, "cannot note the user's connection in the cluster");
        }
    }
    let turn = ctx.hub.registry().drain_turn(dev_id, user);
    let _turn = match &turn {
        Some(t) => Some(t.lock().await),
        None => None,
    };
    if let Some(after) = msg_after {
        resume(ctx, dev_id, user, after, sink).await?;
    }
    drain(ctx, dev_id, user, conn, msg_after.is_some(), sink).await
}

/// What a connection that asked for ids gets before the queue drain: the messages after `after` (the last
/// one it processed) from the user's window, when the window holds every one of them; otherwise nothing
/// from the window and, for a client that gave an id, the `msg_recovery` signal. A connection that gave
/// no id (it processed none yet) gets neither. Messages the window and the drain or a live send both
/// carry reach the client twice, with the same id: at least once on the wire.
pub async fn resume<S: QueueSink>(
    ctx: &Ctx,
    dev_id: DevId,
    user: UserId,
    after: &str,
    sink: &mut S,
) -> Result<(), S::Error> {
    if after.is_empty() {
        return Ok(());
    }
    let batch = match ctx.hub.registry().resume_private(dev_id, user, after) {
        Some(missed) if missed.is_empty() => return Ok(()),
        Some(missed) => missed,
        None => vec![frames::msg_recovery_failed()],
    };
    sink.deliver(batch).await
}

/// Private messages queued while the user was away, in order and all of them, handed to `sink` batch by
/// batch (a client that reads slowly slows the drain), with their `id` when the connection asked for ids
/// (`ids`); each batch delivered is kept in the user's private-message window, so that the user's other
/// devices can resume from it. The connection was linked to its user *draining*
/// (`presence::connect`): live messages sent meanwhile are queued behind these instead of reaching it
/// first. Once a read finds the queue empty the connection stops draining, unless a sender queued a
/// message meanwhile (it finds the user draining after committing it): then it reads the queue again,
/// still draining, until a pass ends with nothing queued meanwhile. A sender that commits after that
/// finds the user ready and delivers the message itself ([`send`]). Each batch is claimed (removed from
/// the queue, in one statement) before it is delivered, so whoever races with the drain never delivers a
/// message a second time; a batch the sink fails to deliver goes back into the queue, and the drain stops
/// with the sink's error.
pub async fn drain<S: QueueSink>(
    ctx: &Ctx,
    dev_id: DevId,
    user: UserId,
    conn: ConnId,
    ids: bool,
    sink: &mut S,
) -> Result<(), S::Error> {
    loop {
        drain_pass(ctx, dev_id, user, ids, sink).await?;
        // A cluster: whether a message was queued meanwhile is Redis's to say (any node may have sent it).
        if let Some(route) = ctx.hub.users() {
            match route.drained(dev_id, user).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot note the end of a drain in the cluster")
                }
            }
        }
        if !ctx.hub.registry().drained(dev_id, user, conn) {
            return Ok(());
        }
    }
}

/// Delivers the user's queue until a read finds less than a full batch (or fails: what is left stays
/// queued for the next pass or connect).
async fn drain_pass<S: QueueSink>(
    ctx: &Ctx,
    dev_id: DevId,
    user: UserId,
    ids: bool,
    sink: &mut S,
) -> Result<(), S::Error> {
    loop {
        // Most users have nothing queued: the running totals say so without a write (which would wait
        // for the database, behind other writes, even with nothing to claim). A cluster node's totals do
        // not see what other nodes queued: it reads.
        if !ctx.hub.clustered() && ctx.storage.totals().queued_for(dev_id, user) == 0 {
            return Ok(());
        }
        let claimed = match ctx
            .storage
            .claim_queued_batch(dev_id, user, unix_now(), QUEUE_BATCH)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "claiming queued private messages failed");
                return Ok(());
            }
        };
        let full = claimed.len() as i64 == QUEUE_BATCH;
        // Into the window before the write, not after: once the last batch is written the connection
        // must become ready at once (a message sent meanwhile would wait in the queue). A batch that then
        // fails goes back into the queue and may come twice, with its id.
        for m in &claimed {
            let frame = frames::queued_private_message(&m.event, &m.message, m.sent_at)
                .with("id", Value::str(m.uuid.as_str()));
            ctx.hub
                .registry()
                .keep_private(dev_id, user, &m.uuid, frame);
        }
        let batch = claimed
            .iter()
            .map(|m| {
                let frame = frames::queued_private_message(&m.event, &m.message, m.sent_at);
                if ids {
                    frame.with("id", Value::str(m.uuid.as_str()))
                } else {
                    frame
                }
            })
            .collect();
        if let Err(e) = sink.deliver(batch).await {
            requeue(ctx, dev_id, user, &claimed).await;
            return Err(e);
        }
        if !full {
            return Ok(());
        }
    }
}

/// A cluster node heard nothing for a while (its pub/sub connection came back): what was queued for the
/// user meanwhile, because no node holding them could hear it, goes to their connections here, in order
/// (as queued messages, with their ids). A batch that finds none of them left goes back into the queue.
pub(crate) async fn redrain(ctx: &Ctx, dev_id: DevId, user: UserId) {
    loop {
        let claimed = match ctx
            .storage
            .claim_queued_batch(dev_id, user, unix_now(), QUEUE_BATCH)
            .await
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "claiming queued private messages failed");
                return;
            }
        };
        let full = claimed.len() as i64 == QUEUE_BATCH;
        for (i, m) in claimed.iter().enumerate() {
            let frame = frames::queued_private_message(&m.event, &m.message, m.sent_at);
            let message = PrivateMessage::new(m.uuid.clone(), frame);
            if ctx.hub.registry().push_private_here(dev_id, user, &message) == 0 {
                requeue(ctx, dev_id, user, &claimed[i..]).await;
                return;
            }
        }
        if !full {
            return;
        }
    }
}

/// Puts back a claimed batch that did not reach the client, in its place at the head of the queue, with a
/// fresh TTL.
async fn requeue(ctx: &Ctx, dev_id: DevId, user: UserId, claimed: &[QueuedMessage]) {
    let ttl = ctx
        .limits
        .queue_ttl_secs(dev_id, ctx.config.messages.queue_ttl_secs);
    let expires = unix_now() + ttl as i64;
    if let Err(e) = ctx
        .storage
        .put_back_messages(dev_id, user, claimed, expires)
        .await
    {
        tracing::error!(error = %e, "re-queuing undelivered private messages failed");
    }
}

/// Where a streamed queue read goes on from: the users asked for, the one being read and the last
/// queued message sent of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rest {
    ids: Vec<UserId>,
    next: usize,
    after: i64,
    now: i64,
    rows: Collector,
}

pub async fn select(ctx: &Ctx, caller: Caller, sel: &Select) -> Result<Outcome, CommandError> {
    let proj = TABLE.projection(&sel.columns)?;
    let mut rest = Rest {
        ids: where_ids(TABLE.key_values(&sel.filter, "id", Verb::Select)?),
        next: 0,
        after: 0,
        now: unix_now(),
        rows: Collector::new(ctx, sel.limit.as_ref()).projected(&proj),
    };
    if read_on(ctx, caller, &mut rest, STREAM_AT).await? {
        return Ok(rest.rows.finish(&TABLE, &proj));
    }
    let first = rest.rows.take_rows();
    Ok(streamed(
        ctx,
        &TABLE,
        &proj,
        first,
        super::Rest::UsersMessages(rest),
    ))
}

/// The next part of a streamed queue read.
pub async fn more(
    ctx: &Ctx,
    caller: Caller,
    rest: &mut Rest,
) -> Result<Option<Vec<Vec<String>>>, CommandError> {
    if rest.next >= rest.ids.len() || rest.rows.done() {
        return Ok(None);
    }
    read_on(ctx, caller, rest, STREAM_PART).await?;
    Ok(Some(rest.rows.take_rows()))
}

/// Reads the queues page by page (so that neither a long queue nor a large OFFSET is held at once)
/// until `part` bytes of rows are held (`false`) or the result is complete (`true`).
async fn read_on(
    ctx: &Ctx,
    caller: Caller,
    rest: &mut Rest,
    part: usize,
) -> Result<bool, CommandError> {
    while rest.next < rest.ids.len() && !rest.rows.done() {
        let id = rest.ids[rest.next];
        let page = ctx
            .storage
            .queued_messages_after(caller.dev_id, id, rest.now, rest.after, SELECT_PAGE)
            .await?;
        let last_page = page.len() < SELECT_PAGE as usize;
        for m in page {
            rest.after = m.id;
            rest.rows
                .offer(vec![id.0.to_string(), m.uuid, m.event, m.message])?;
            // The rest of the page is read again next time, after the last message sent.
            if rest.rows.held_bytes() >= part {
                return Ok(false);
            }
        }
        if last_page {
            rest.next += 1;
            rest.after = 0;
        }
    }
    Ok(true)
}

pub async fn delete(ctx: &Ctx, caller: Caller, del: &Delete) -> Result<Outcome, CommandError> {
    for id in where_ids(TABLE.key_values(&del.filter, "id", Verb::Delete)?) {
        ctx.storage.delete_queued(caller.dev_id, id).await?;
    }
    Ok(Outcome::OK)
}

#[cfg(test)]
mod tests;
