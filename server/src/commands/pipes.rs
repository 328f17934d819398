//! `pipes` (read-only): how many live connections are subscribed to each named pipe.

use super::table::{where_pipes, Collector, Table, Verb};
use super::{Caller, CommandError, Ctx, ErrorCode, Outcome};
use crate::cometql::Select;

pub(super) const TABLE: Table = Table {
    name: "pipes",
    columns: &["name", "users"],
    key: "name",
};

pub(super) fn read_only() -> CommandError {
    CommandError::new(ErrorCode::ReadOnly, "Table `pipes` is read only")
}

pub(super) fn select(ctx: &Ctx, caller: Caller, sel: &Select) -> Result<Outcome, CommandError> {
    let proj = TABLE.projection(&sel.columns)?;
    let names = TABLE.key_values(&sel.filter, "name", Verb::Select)?;
    // One row per valid requested name, even with no subscriber; invalid names are skipped (reference).
    let mut rows = Collector::new(ctx, sel.limit.as_ref()).projected(&proj);
    for p in where_pipes(names) {
        if rows.done() {
            break;
        }
        let users = ctx.hub.registry().subscribers(caller.dev_id, &p);
        rows.offer(vec![p.as_str().to_string(), users.to_string()])?;
    }
    Ok(rows.finish(&TABLE, &proj))
}
