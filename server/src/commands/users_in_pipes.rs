//! `users_in_pipes` (read-only): one row per live connection subscribed to each named pipe.

use super::table::{where_pipes, Collector, Table, Verb};
use super::{Caller, CommandError, Ctx, ErrorCode, Outcome};
use crate::cometql::Select;
use crate::hub::Member;
use crate::ids::{DevId, PipeName};

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

pub(super) async fn select(
    ctx: &Ctx,
    caller: Caller,
    sel: &Select,
) -> Result<Outcome, CommandError> {
    let proj = TABLE.projection(&sel.columns)?;
    let mut rows = Collector::new(ctx, sel.limit.as_ref()).projected(&proj);
    let names = TABLE.key_values(&sel.filter, "name", Verb::Select)?;
    for pipe in where_pipes(names) {
        if rows.done() {
            break;
        }
        for m in members(ctx, caller.dev_id, &pipe, rows_left(ctx, &rows, sel)).await? {
            if rows.done() {
                break;
            }
            rows.offer(vec![
                pipe.as_str().to_string(),
                m.user_id.0.to_string(),
                m.uuid,
                m.user_agent,
                m.ip,
                m.origin,
                m.language,
            ])?;
        }
    }
    Ok(rows.finish(&TABLE, &proj))
}

/// Most members worth reading for the rest of the result: what the LIMIT still takes (with its offset),
/// and one more than the row cap (so that a result over the cap still fails as on one node).
fn rows_left(ctx: &Ctx, rows: &Collector, sel: &Select) -> usize {
    let limit = sel
        .limit
        .as_ref()
        .map_or(u64::MAX, |l| l.offset.saturating_add(l.count))
        .saturating_sub(rows.seen());
    let cap = ctx.config.cometql.max_result_rows as u64 + 1;
    usize::try_from(limit.min(cap)).unwrap_or(usize::MAX)
}

/// The pipe's members: this node's registry on one node (sorted by connection), every node's from Redis
/// in a cluster (sorted by node, then connection), at most `max`.
pub(crate) async fn members(
    ctx: &Ctx,
    dev_id: DevId,
    pipe: &PipeName,
    max: usize,
) -> Result<Vec<Member>, CommandError> {
    if let Some(shared) = ctx.hub.shared_presence() {
        return Ok(shared.members(dev_id, pipe.clone(), max).await?);
    }
    let mut members = ctx.hub.registry().members(dev_id, pipe);
    members.sort_by_key(|m| m.conn());
    Ok(members
        .iter()
        .take(max)
        .map(|m| {
            let i = m.info();
            Member {
                node: String::new(),
                conn: i.conn.0,
                user_id: i.user_id,
                uuid: i.uuid.clone(),
                ip: i.ip.clone(),
                user_agent: i.user_agent.clone(),
                origin: i.origin.clone(),
                language: i.language.clone(),
            }
        })
        .collect())
}
