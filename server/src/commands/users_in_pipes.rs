//! `users_in_pipes` (read-only): one row per live connection subscribed to each named pipe.

use super::table::{where_pipes, Collector, Table, Verb};
use super::{Caller, CommandError, Ctx, ErrorCode, Outcome};
use crate::cometql::Select;

pub(super) const TABLE: Table = Table {
    name: "users_in_pipes",
    columns: &[
        "name",
        "user_id",
        "user_uuid",
        "user_agent",
        "ip",
        "origin",
        "language",
    ],
    key: "name",
};

pub(super) fn read_only() -> CommandError {
    CommandError::new(ErrorCode::ReadOnly, "Table `users_in_pipes` is read only")
}

pub(super) fn select(ctx: &Ctx, caller: Caller, sel: &Select) -> Result<Outcome, CommandError> {
    let proj = TABLE.projection(&sel.columns)?;
    let mut rows = Collector::new(ctx, sel.limit.as_ref()).projected(&proj);
    let names = TABLE.key_values(&sel.filter, "name", Verb::Select)?;
    for pipe in where_pipes(names) {
        if rows.done() {
            break;
        }
        let mut members = ctx.hub.registry().members(caller.dev_id, &pipe);
        members.sort_by_key(|m| m.conn());
        for m in members {
            if rows.done() {
                break;
            }
            let i = m.info();
            rows.offer(vec![
                pipe.as_str().to_string(),
                i.user_id.0.to_string(),
                i.uuid.clone(),
                i.user_agent.clone(),
                i.ip.clone(),
                i.origin.clone(),
                i.language.clone(),
            ])?;
        }
    }
    Ok(rows.finish(&TABLE, &proj))
}
