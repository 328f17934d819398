//! `users_messages`: private messages to a tenant's authorized users. Delivered live to every connection of
//! the user, otherwise queued (TTL `messages.queue_ttl_secs`) and delivered in order on their next
//! authorized connect.

use super::table::{required, Collector, Table, Verb};
use super::users::{insert_id, where_ids};
use super::{Caller, CommandError, Ctx, Outcome};
use crate::cometql::{Delete, Insert, Select};
use crate::ids::{DevId, EventName, UserId};
use crate::push::outgoing;
use crate::push::protocol::frames;
use crate::storage::QueuedMessage;
use crate::tenant::unix_now;

pub const TABLE: Table = Table {
    name: "users_messages",
    columns: &["id", "index", "event", "message"],
    key: "id",
};

/// Queued messages read per database round trip when a user connects.
pub const QUEUE_BATCH: i64 = 100;

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
    // Pay for every row before sending any, so that a statement over the budget sends nothing.
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
    ctx.storage
        .enqueue_message(dev_id, user, &queued, expires)
        .await?;
    // The user may have connected while the message was being queued, after their connection read the
    // queue: then nobody would deliver it until their next connect. Whoever removes it from the queue
    // delivers it, so it arrives exactly once either way.
    if ctx.hub.registry().user_online(dev_id, user)
        && ctx.storage.claim_queued_uuid(dev_id, &queued.uuid).await?
    {
        ctx.hub.registry().send_to_user(dev_id, user, &frame);
    }
    Ok(())
}

pub async fn select(ctx: &Ctx, caller: Caller, sel: &Select) -> Result<Outcome, CommandError> {
    let proj = TABLE.projection(&sel.columns)?;
    let now = unix_now();
    let mut rows = Collector::new(ctx, sel.limit.as_ref()).projected(&proj);
    for id in where_ids(TABLE.key_values(&sel.filter, "id", Verb::Select)?) {
        // Page by page, so that neither a long queue nor a large OFFSET is ever held at once.
        let mut after = 0;
        while !rows.done() {
            let page = ctx
                .storage
                .queued_messages_after(caller.dev_id, id, now, after, QUEUE_BATCH)
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            after = last.id;
            let full = page.len() as i64 == QUEUE_BATCH;
            for m in page {
                rows.offer(vec![id.0.to_string(), m.uuid, m.event, m.message])?;
            }
            if !full {
                break;
            }
        }
        if rows.done() {
            break;
        }
    }
    Ok(rows.finish(&TABLE, &proj))
}

pub async fn delete(ctx: &Ctx, caller: Caller, del: &Delete) -> Result<Outcome, CommandError> {
    for id in where_ids(TABLE.key_values(&del.filter, "id", Verb::Delete)?) {
        ctx.storage.delete_queued(caller.dev_id, id).await?;
    }
    Ok(Outcome::OK)
}
