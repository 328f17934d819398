//! Values of the per-user tables that are keyed by `id` (a tenant's user id).

use super::table::{Collector, Table, Verb};
use super::{Caller, CommandError, Ctx, ErrorCode, Outcome};
use crate::cometql::{Delete, Select, Value};
use crate::ids::UserId;
use crate::storage::UserTable;

pub(crate) fn id_error() -> CommandError {
    CommandError::new(ErrorCode::Invalid, "The id field must be non-negative")
}

/// A user id from an INSERT: a positive integer (0 only where `allow_zero`), else ERR 12.
pub(crate) fn insert_id(text: &str, allow_zero: bool) -> Result<UserId, CommandError> {
    match text.trim().parse::<i64>() {
        Ok(n) if n > 0 || (allow_zero && n == 0) => Ok(UserId(n as u64)),
        _ => Err(id_error()),
    }
}

/// The valid ids of a WHERE list; the rest are skipped, as in the reference.
pub(crate) fn where_ids(values: &[Value]) -> Vec<UserId> {
    // Each id once: `5`, `'5'` and `005` are the same user.
    let mut seen = std::collections::HashSet::new();
    values
        .iter()
        .filter_map(|v| v.as_text())
        .filter_map(|t| t.trim().parse::<i64>().ok())
        .filter(|&n| n > 0 && seen.insert(n))
        .map(|n| UserId(n as u64))
        .collect()
}

/// Stores one value per user (users_auth, users_data); returns OK(rows, last id) as the reference does.
pub(crate) async fn put_values(
    ctx: &Ctx,
    caller: Caller,
    store: UserTable,
    items: &[(UserId, &str)],
) -> Result<Outcome, CommandError> {
    for (id, value) in items {
        ctx.storage
            .put_user_value(store, caller.dev_id, *id, value)
            .await?;
    }
    Ok(Outcome::Done {
        affected_rows: items.len() as u64,
        last_insert_id: items.last().map_or(0, |(id, _)| id.0),
    })
}

/// SELECT over a per-user value table (`id` plus the value column): rows only for users that have one.
pub(crate) async fn select_values(
    ctx: &Ctx,
    caller: Caller,
    table: &Table,
    store: UserTable,
    sel: &Select,
) -> Result<Outcome, CommandError> {
    let proj = table.projection(&sel.columns)?;
    // Charged row by row: values have no size quota, so 4,000 ids could otherwise build hundreds of MB.
    let mut rows = Collector::new(ctx, sel.limit.as_ref()).projected(&proj);
    for id in where_ids(table.key_values(&sel.filter, "id", Verb::Select)?) {
        if rows.done() {
            break;
        }
        if let Some(value) = ctx.storage.user_value(store, caller.dev_id, id).await? {
            rows.offer(vec![id.0.to_string(), value])?;
        }
    }
    Ok(rows.finish(table, &proj))
}

/// DELETE over a per-user value table; returns the users whose value was asked to go.
pub(crate) async fn delete_values(
    ctx: &Ctx,
    caller: Caller,
    table: &Table,
    store: UserTable,
    del: &Delete,
) -> Result<Vec<UserId>, CommandError> {
    let ids = where_ids(table.key_values(&del.filter, "id", Verb::Delete)?);
    for id in &ids {
        ctx.storage
            .delete_user_value(store, caller.dev_id, *id)
            .await?;
    }
    Ok(ids)
}
