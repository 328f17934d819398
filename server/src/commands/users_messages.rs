//! `users_messages`: private messages to a tenant's authorized users. Delivered live to every connection of
//! the user, otherwise queued (TTL `messages.queue_ttl_secs`) and delivered in order on their next
//! authorized connect.

use super::table::{required, streamed, Collector, Table, Verb, STREAM_AT, STREAM_PART};
use super::users::{insert_id, where_ids};
use super::{Caller, CommandError, Ctx, Outcome};
use crate::browser::frames;
use crate::cometql::{Delete, Insert, Select};
use crate::hub::outgoing;
use crate::ids::{DevId, EventName, UserId};
use crate::storage::QueuedMessage;
use crate::tenant::unix_now;

pub const TABLE: Table = Table {
    name: "users_messages",
    columns: &["id", "index", "event", "message"],
    key: "id",
};

/// Queued messages read per database round trip when a user connects.
pub const QUEUE_BATCH: i64 = 100;

/// Queued messages read per database round trip by a SELECT (at most 2 MiB of 64 KiB messages).
const SELECT_PAGE: i64 = 32;

pub async fn insert(ctx: &Ctx, caller: Caller, ins: &Insert) -> Result<Outcome, CommandError> {
    let max = ctx.config.websocket.max_message_bytes;
    let mut items = Vec::new();
    for row in &ins.rows {
        let row = TABLE.insert_row(ins.columns.as_deref(), row)?;
        let id = insert_id(required(&row, "id")?, true)?;
        let event = EventName::parse(required(&row, "event")?)?;
        let message = required(&row, "message")?;
        if message.len() > max {
            return Err(CommandError::new(
                super::ErrorCode::TooLong,
                "Data is too long",
            ));
        }
        items.push((id, event, message));
    }
    // Room for every row first, then pay for every row, before sending any: a statement over the quota
    // or the budget sends nothing, and one refused by the quota costs no budget.
    let users: Vec<UserId> = items.iter().map(|(id, _, _)| *id).collect();
    let ctx = &super::quota::queue_statement(ctx, caller.dev_id, &users)?;
    ctx.spend_publishes(caller.dev_id, items.len())?;
    let mut last = 0;
    for (id, event, message) in items {
        deliver(ctx, caller.dev_id, id, event.as_str(), message).await?;
        last = id.0;
    }
    Ok(Outcome::Done {
        affected_rows: 0,
        last_insert_id: last,
    })
}

/// Live to every connection of the user, or queued when none is online.
pub async fn send(
    ctx: &Ctx,
    dev_id: DevId,
    user: UserId,
    event: &str,
    message: &str,
) -> Result<(), CommandError> {
    let ctx = &super::quota::queue_statement(ctx, dev_id, &[user])?;
    ctx.spend_publish(dev_id)?;
    deliver(ctx, dev_id, user, event, message).await
}

/// [`send`] of a message already paid for.
async fn deliver(
    ctx: &Ctx,
    dev_id: DevId,
    user: UserId,
    event: &str,
    message: &str,
) -> Result<(), CommandError> {
    let frame = outgoing::shared(frames::private_message(event, message));
    if ctx.hub.registry().send_to_user(dev_id, user, &frame) > 0 {
        return Ok(());
    }
    let now = unix_now();
    let queued = QueuedMessage {
        id: 0,
        uuid: uuid::Uuid::now_v7().to_string(),
        event: event.to_string(),
        message: message.to_string(),
        sent_at: now,
    };
    let ttl = ctx
        .limits
        .queue_ttl_secs(dev_id, ctx.config.messages.queue_ttl_secs);
    let expires = now + ttl as i64;
    let _room = super::quota::queued_message(ctx, dev_id, user)?;
    ctx.storage
        .enqueue_message(dev_id, user, &queued, expires)
        .await?;
    // The user may have finished draining the queue while the message was being queued, after their
    // connection's last read of it: then nobody would deliver it until their next connect. Whoever removes
    // it from the queue delivers it, so it arrives exactly once either way. While every connection of the
    // user is still draining, `queued` makes the drain read the queue once more before it ends.
    if ctx.hub.registry().queued(dev_id, user)
        && ctx.storage.claim_queued_uuid(dev_id, &queued.uuid).await?
    {
        ctx.hub.registry().send_to_user(dev_id, user, &frame);
    }
    Ok(())
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
