//! `pipes_messages`: publishing to a pipe (INSERT). History (SELECT, DELETE) follows the reference's columns.

use super::table::{required, Table};
use super::{Caller, CommandError, Ctx, ErrorCode, Outcome};
use crate::cometql::Insert;
use crate::hub::Publication;
use crate::ids::{ConnId, EventName, PipeName, UserId};
use crate::push::outgoing;
use crate::tenant::unix_now;

pub const TABLE: Table = Table {
    name: "pipes_messages",
    columns: &["id", "time", "name", "index", "event", "message", "user_id"],
};

/// One message to publish, validated. Shared by every front door that publishes.
#[derive(Debug, Clone)]
pub struct Message {
    pub pipe: PipeName,
    pub event: EventName,
    pub text: String,
    /// The browser sender of a `web_pipe2` message; None for server-side publishes (no user_id in the frame).
    pub sender: Option<UserId>,
}

impl Message {
    /// Validates in the reference's order: name, then event, then message size.
    pub fn new(
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
        })
    }
}

pub async fn insert(ctx: &Ctx, caller: Caller, ins: &Insert) -> Result<Outcome, CommandError> {
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
    for m in messages {
        publish(ctx, caller, m, None);
    }
    // The number of receivers is deliberately not returned (reference): OK(0, 0).
    Ok(Outcome::OK)
}

/// Encodes the frame once and hands it to the hub. Returns the number of local receivers.
pub fn publish(ctx: &Ctx, caller: Caller, m: Message, except: Option<ConnId>) -> usize {
    let frame = outgoing::pipe_message(&m.pipe, &m.event, &m.text, unix_now(), m.sender);
    ctx.hub.publish(Publication {
        dev_id: caller.dev_id,
        pipe: m.pipe,
        frame,
        except,
    })
}
