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

pub(super) async fn select(
    ctx: &Ctx,
    caller: Caller,
    sel: &Select,
) -> Result<Outcome, CommandError> {
    let proj = TABLE.projection(&sel.columns)?;
    let names = TABLE.key_values(&sel.filter, "name", Verb::Select)?;
    // One row per valid requested name, even with no subscriber; invalid names are skipped (reference).
    let mut rows = Collector::new(ctx, sel.limit.as_ref()).projected(&proj);
    let pipes = where_pipes(names);
    // A cluster: every node's subscribers, counted by Redis (one round trip for all the names).
    let shared = match ctx.hub.shared_presence() {
        Some(shared) => Some(shared.counts(caller.dev_id, pipes.clone()).await?),
        None => None,
    };
    for (i, p) in pipes.iter().enumerate() {
        if rows.done() {
            break;
        }
        let users = match &shared {
            Some(counts) => counts.get(i).copied().unwrap_or(0),
            None => ctx.hub.registry().subscribers(caller.dev_id, p) as u64,
        };
        rows.offer(vec![p.as_str().to_string(), users.to_string()])?;
    }
    Ok(rows.finish(&TABLE, &proj))
}
