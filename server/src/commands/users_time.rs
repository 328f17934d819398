//! `users_time` (read-only): 0 while the user is online, the time of their last disconnect after, -1 when
//! never seen. Durable across restarts.

use super::table::{Collector, Table, Verb};
use super::users::where_ids;
use super::{Caller, CommandError, Ctx, ErrorCode, Outcome};
use crate::cometql::Select;
use crate::ids::{DevId, UserId};

pub(crate) const TABLE: Table = Table {
    name: "users_time",
    columns: &["id", "time"],
    key: "id",
};

pub(crate) fn read_only() -> CommandError {
    CommandError::new(ErrorCode::ReadOnly, "Table `users_time` is read only")
}

/// The users_time value of one user (also the `user_status` answer).
pub(crate) async fn last_online(
    ctx: &Ctx,
    dev_id: DevId,
    user: UserId,
) -> Result<i64, CommandError> {
    match ctx.hub.shared_presence() {
        // A cluster: online on any node, or offline since a time Redis still keeps (the node that saw
        // the user go records it in the database through its own writer, a little later); Redis
        // unavailable: an error, not this node's half.
        Some(shared) => {
            if let Some(t) = shared.last_online(dev_id, user).await? {
                return Ok(t);
            }
        }
        None if ctx.hub.registry().user_online(dev_id, user) => return Ok(0),
        None => {}
    }
    Ok(ctx.storage.last_online(dev_id, user).await?.unwrap_or(-1))
}

pub(crate) async fn select(
    ctx: &Ctx,
    caller: Caller,
    sel: &Select,
) -> Result<Outcome, CommandError> {
    let proj = TABLE.projection(&sel.columns)?;
    let mut rows = Collector::new(ctx, sel.limit.as_ref()).projected(&proj);
    for id in where_ids(TABLE.key_values(&sel.filter, "id", Verb::Select)?) {
        if rows.done() {
            break;
        }
        let t = last_online(ctx, caller.dev_id, id).await?;
        rows.offer(vec![id.0.to_string(), t.to_string()])?;
    }
    Ok(rows.finish(&TABLE, &proj))
}
