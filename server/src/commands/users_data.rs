//! `users_data`: a free-form text value per user, readable from browsers with the `user_data` command.

use super::table::{apply_limit, project, required, Table, Verb};
use super::users::{insert_id, where_ids};
use super::{Caller, CommandError, Ctx, Outcome};
use crate::cometql::{Delete, Insert, Select};
use crate::storage::UserTable;

pub const TABLE: Table = Table {
    name: "users_data",
    columns: &["id", "data"],
    key: "id",
};

pub async fn insert(ctx: &Ctx, caller: Caller, ins: &Insert) -> Result<Outcome, CommandError> {
    let mut items = Vec::new();
    for row in &ins.rows {
        let row = TABLE.insert_row(ins.columns.as_deref(), row)?;
        items.push((
            insert_id(required(&row, "id")?, false)?,
            required(&row, "data")?,
        ));
    }
    let mut last = 0;
    for (id, data) in &items {
        ctx.storage
            .put_user_value(UserTable::Data, caller.dev_id, *id, data)
            .await?;
        last = id.0;
    }
    Ok(Outcome::Done {
        affected_rows: items.len() as u64,
        last_insert_id: last,
    })
}

pub async fn select(ctx: &Ctx, caller: Caller, sel: &Select) -> Result<Outcome, CommandError> {
    let proj = TABLE.projection(&sel.columns)?;
    let ids = where_ids(TABLE.key_values(&sel.filter, "id", Verb::Select)?);
    let mut rows = Vec::new();
    for id in ids {
        if let Some(data) = ctx
            .storage
            .user_value(UserTable::Data, caller.dev_id, id)
            .await?
        {
            rows.push(vec![id.0.to_string(), data]);
        }
    }
    Ok(project(
        &TABLE,
        &proj,
        apply_limit(rows, sel.limit.as_ref()),
    ))
}

pub async fn delete(ctx: &Ctx, caller: Caller, del: &Delete) -> Result<Outcome, CommandError> {
    for id in where_ids(TABLE.key_values(&del.filter, "id", Verb::Delete)?) {
        ctx.storage
            .delete_user_value(UserTable::Data, caller.dev_id, id)
            .await?;
    }
    Ok(Outcome::OK)
}
