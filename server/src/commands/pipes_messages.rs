//! `pipes_messages`: publishing to a pipe (INSERT), reading its history (SELECT) and clearing it (DELETE).

use super::history;
use super::table::{
    required, streamed, where_pipes, Collector, Table, Verb, STREAM_AT, STREAM_PART,
};
use super::{Caller, Client, CommandError, Ctx, ErrorCode, Outcome};
use crate::browser::names::{is_name_text, is_private};
use crate::cometql::{Delete, Insert, Select};
use crate::hub::outgoing;
use crate::hub::{Publication, Stale};
use crate::ids::{ConnId, EventName, PipeName, UserId};
use crate::storage::HistoryRow;
use crate::tenant::unix_now;

pub(crate) const TABLE: Table = Table {
    name: "pipes_messages",
    columns: &["id", "time", "name", "index", "event", "message", "user_id"],
    key: "name",
};

/// One message to publish, validated. Shared by every front door that publishes.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub pipe: PipeName,
    pub event: EventName,
    pub text: String,
    /// The browser sender of a `web_pipe2` message; None for server-side publishes (no user_id in the frame).
    pub sender: Option<UserId>,
    /// A connection that must not get it (the Pusher HTTP API's `socket_id`, Laravel's `toOthers()`).
    pub except: Option<ConnId>,
    /// The same socket id as it was given: on a cluster each node leaves out its own connection of it.
    pub socket: Option<std::sync::Arc<str>>,
}

impl Message {
    /// Validates in the reference's order: name, then event, then message size.
    pub(crate) fn new(
        pipe: &str,
        event: &str,
        text: &str,
        max_bytes: usize,
    ) -> Result<Message, CommandError> {
        let pipe = PipeName::parse(pipe)?;
        let event = EventName::parse(event)?;
        if text.len() > max_bytes {
            return Err(CommandError::new(ErrorCode::TooLong, "Data is too long"));
        }
        Ok(Message {
            pipe,
            event,
            text: text.to_string(),
            sender: None,
            except: None,
            socket: None,
        })
    }
}

pub(crate) async fn insert(
    ctx: &Ctx,
    caller: Caller,
    ins: &Insert,
) -> Result<Outcome, CommandError> {
    let max = ctx.config.websocket.max_message_bytes;
    // Validate every row before publishing any, so a bad row in a multi-row INSERT publishes nothing.
    let messages = ins
        .rows
        .iter()
        .map(|row| {
            let row = TABLE.insert_row(ins.columns.as_deref(), row)?;
            let name = required(&row, "name")?;
            let event = required(&row, "event")?;
            let message = required(&row, "message")?;
            Message::new(name, event, message, max)
        })
        .collect::<Result<Vec<_>, _>>()?;
    publish_all(ctx, caller, messages).await?;
    // The number of receivers is deliberately not returned (reference): OK(0, 0).
    Ok(Outcome::OK)
}

/// What one publish did: the local connections it reached and, on a pipe that numbers its history
/// (`positions`), the place it took there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Published {
    pub delivered: usize,
    pub position: Option<Position>,
}

/// A message's place in a pipe that numbers its history: what a `subscription2` client resumes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Position {
    pub epoch: std::sync::Arc<str>,
    pub offset: u64,
}

/// Publishes validated messages as one statement: room for every one first, then the budget for every
/// one, before any is published, so a batch over the quota or the budget publishes nothing, and one
/// refused by the quota costs no budget. Then each is delivered in order. A multi-row INSERT and an HTTP
/// batch both come here.
pub(crate) async fn publish_all(
    ctx: &Ctx,
    caller: Caller,
    messages: Vec<Message>,
) -> Result<Vec<Published>, CommandError> {
    let ctx = &super::quota::history_statement(ctx, caller.dev_id, &messages).await?;
    ctx.spend_publishes(caller.dev_id, messages.len()).await?;
    let mut published = Vec::with_capacity(messages.len());
    for m in messages {
        let except = m.except;
        published.push(deliver(ctx, caller, m, except).await?);
    }
    Ok(published)
}

/// Records history when the pipe keeps it, encodes the frame once and hands it to the hub. Returns the
/// number of local receivers (and the message's position, see [`Published`]). A message its history has no room for is refused whole (not delivered live
/// either: the sender learns it was not stored, and the budget is not spent on it).
pub(crate) async fn publish(
    ctx: &Ctx,
    caller: Caller,
    m: Message,
    except: Option<ConnId>,
) -> Result<Published, CommandError> {
    let ctx =
        &super::quota::history_statement(ctx, caller.dev_id, std::slice::from_ref(&m)).await?;
    ctx.spend_publish(caller.dev_id).await?;
    deliver(ctx, caller, m, except).await
}

/// [`publish`] of a message already paid for. A message to a pipe that keeps history is delivered by
/// the storage writer once its entry is committed (`history::record`): the OK means stored.
async fn deliver(
    ctx: &Ctx,
    caller: Caller,
    m: Message,
    except: Option<ConnId>,
) -> Result<Published, CommandError> {
    let mut keep = history::kept(ctx, caller.dev_id, &m.pipe).await?;
    // A pipe that numbers its history delivers in the order its writes took offsets (see `positions`).
    let order = match super::positions::durable(&m.pipe, keep) {
        true => {
            let order = ctx.pipe_locks.lock(caller.dev_id, &m.pipe).await;
            // Its settings may have changed while this waited (they change under the same lock).
            keep = history::kept(ctx, caller.dev_id, &m.pipe).await?;
            Some(order)
        }
        false => None,
    };
    let sent_at = unix_now();
    let socket = m.socket.clone();
    let frame = outgoing::pipe_message(&m.pipe, &m.event, &m.text, sent_at, m.sender);
    super::channels::keep_cached(ctx, caller.dev_id, &m.pipe, &frame);
    let publication = Publication {
        dev_id: caller.dev_id,
        pipe: m.pipe.clone(),
        frame,
        except,
        position: None,
        presence: false,
        socket,
    };
    if keep <= 0 {
        return Ok(Published {
            delivered: ctx.hub.publish(publication).await?,
            position: None,
        });
    }
    let row = HistoryRow {
        pipe: m.pipe.as_str().to_string(),
        uuid: uuid::Uuid::now_v7().to_string(),
        event: m.event.as_str().to_string(),
        message: m.text,
        user_id: m.sender.map_or(0, |u| u.0 as i64),
        sent_at,
        pos: None,
        sender: m.sender.map(|u| u.0 as i64),
    };
    let delivered = history::record(ctx, caller.dev_id, keep, row, publication).await?;
    // Handed over in lock order: the next publish of the pipe may be handed over while this one commits.
    drop(order);
    delivered.await.map_err(|_| {
        CommandError::from(crate::storage::StorageError::Conflict("storage is closed"))
    })?
}

/// A browser's read of a pipe's history (`pipe_log`): its newest entries, oldest first, as frames. Whoever
/// may not subscribe to a pipe may not read its history either: `private_` pipes are for authorized users.
/// `offsets`: the connection asked positions for the pipe, so entries that have one carry `offset`.
pub(crate) async fn log(
    ctx: &Ctx,
    client: Client,
    pipe: &PipeName,
    offsets: bool,
) -> Result<history::Log, CommandError> {
    if is_private(pipe.as_str()) && !client.authorized() {
        return Err(CommandError::new(
            ErrorCode::AccessDenied,
            "Anonymous users can not read channels named private_*",
        ));
    }
    let rows = history::read(ctx, client.dev_id, pipe).await?;
    Ok(history::Log::new(rows, offsets))
}

/// Where a streamed history read goes on from: the pipes asked for, the one being read and the last
/// entry sent of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rest {
    pipes: Vec<PipeName>,
    next: usize,
    after: Option<String>,
    rows: Collector,
}

pub(crate) async fn select(
    ctx: &Ctx,
    caller: Caller,
    sel: &Select,
) -> Result<Outcome, CommandError> {
    let proj = TABLE.projection(&sel.columns)?;
    let names = TABLE.key_values(&sel.filter, "name", Verb::Select)?;
    let mut rest = Rest {
        pipes: where_pipes(names),
        next: 0,
        after: None,
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
        super::Rest::PipesMessages(rest),
    ))
}

/// The next part of a streamed history read.
pub(crate) async fn more(
    ctx: &Ctx,
    caller: Caller,
    rest: &mut Rest,
) -> Result<Option<Vec<Vec<String>>>, CommandError> {
    if rest.next >= rest.pipes.len() || rest.rows.done() {
        return Ok(None);
    }
    read_on(ctx, caller, rest, STREAM_PART).await?;
    Ok(Some(rest.rows.take_rows()))
}

/// Reads history until `part` bytes of rows are held (`false`) or the result is complete (`true`). Each
/// pipe's entries come from the cache and are dropped before returning, so nothing but the rows is held
/// between two parts.
async fn read_on(
    ctx: &Ctx,
    caller: Caller,
    rest: &mut Rest,
    part: usize,
) -> Result<bool, CommandError> {
    while rest.next < rest.pipes.len() && !rest.rows.done() {
        let entries = history::read(ctx, caller.dev_id, &rest.pipes[rest.next]).await?;
        // The pipe may have changed since the last part: go on after the entry sent last.
        let start = match &rest.after {
            None => 0,
            Some(after) => entries
                .iter()
                .position(|h| h.uuid == *after)
                .map(|i| i + 1)
                .or_else(|| entries.iter().position(|h| h.uuid > *after))
                .unwrap_or(entries.len()),
        };
        for h in &entries[start..] {
            let index = rest.rows.seen().to_string();
            let event = if h.event.is_empty() {
                "undefined".to_string()
            } else {
                h.event.clone()
            };
            rest.rows.offer(vec![
                h.uuid.clone(),
                h.sent_at.to_string(),
                h.pipe.clone(),
                index,
                event,
                h.message.clone(),
                h.user_id.to_string(),
            ])?;
            rest.after = Some(h.uuid.clone());
            if rest.rows.held_bytes() >= part {
                return Ok(false);
            }
        }
        rest.next += 1;
        rest.after = None;
    }
    Ok(true)
}

/// `WHERE name = ...` clears pipes' history, `WHERE id = ...` removes single entries; both may be given.
pub(crate) async fn delete(
    ctx: &Ctx,
    caller: Caller,
    del: &Delete,
) -> Result<Outcome, CommandError> {
    let names = TABLE.key_values(&del.filter, "name", Verb::Delete);
    let ids = TABLE.key_values(&del.filter, "id", Verb::Delete);
    if let (Err(e), Err(_)) = (&names, &ids) {
        return Err(e.clone());
    }
    for pipe in names.unwrap_or(&[]).iter().filter_map(|v| v.as_text()) {
        if let Ok(pipe) = PipeName::parse(pipe) {
            let deleted = ctx
                .storage
                .delete_history(caller.dev_id, pipe.as_str())
                .await;
            ctx.history_cache.invalidate(caller.dev_id, &pipe);
            ctx.hub
                .tell_stale(Stale::History(caller.dev_id, pipe.clone()))
                .await;
            deleted?;
        }
    }
    for id in ids.unwrap_or(&[]).iter().filter_map(|v| v.as_text()) {
        if (3..=64).contains(&id.len()) && is_name_text(id) {
            let deleted = ctx.storage.delete_history_entry(caller.dev_id, id).await;
            // Which pipe held the entry is not known here.
            ctx.history_cache.invalidate_tenant(caller.dev_id);
            ctx.hub.tell_stale(Stale::Tenant(caller.dev_id)).await;
            deleted?;
        }
    }
    Ok(Outcome::OK)
}
