//! `users_data`: a free-form text value per user, readable from browsers with the `user_data` command.

use super::table::{required, Table};
use super::users::{delete_values, insert_id, put_values, select_values};
use super::{Caller, CommandError, Ctx, Outcome};
use crate::cometql::{Delete, Insert, Select};
use crate::ids::UserId;
use crate::storage::UserTable;

pub(crate) const TABLE: Table = Table {
    name: "users_data",
    columns: &["id", "data"],
    key: "id",
};

pub(crate) async fn insert(
    ctx: &Ctx,
    caller: Caller,
    ins: &Insert,
) -> Result<Outcome, CommandError> {
    let mut items = Vec::new();
    for row in &ins.rows {
        let row = TABLE.insert_row(ins.columns.as_deref(), row)?;
        items.push((
            insert_id(required(&row, "id")?, false)?,
            required(&row, "data")?,
        ));
    }
    let users: Vec<_> = items.iter().map(|(id, _)| *id).collect();
    let _room = super::quota::users_data(ctx, caller.dev_id, &users).await?;
    put_values(ctx, caller, UserTable::Data, &items).await
}

pub(crate) async fn select(
    ctx: &Ctx,
    caller: Caller,
    sel: &Select,
) -> Result<Outcome, CommandError> {
    select_values(ctx, caller, &TABLE, UserTable::Data, sel).await
}

/// One user's value, "" when none is stored (the browser's `user_data` command; any connection of the
/// tenant may read it, as in the reference).
pub(crate) async fn get(ctx: &Ctx, caller: Caller, user: UserId) -> Result<String, CommandError> {
    let data = ctx
        .storage
        .user_value(UserTable::Data, caller.dev_id, user)
        .await?;
    Ok(data.unwrap_or_default())
}

pub(crate) async fn delete(
    ctx: &Ctx,
    caller: Caller,
    del: &Delete,
) -> Result<Outcome, CommandError> {
    delete_values(ctx, caller, &TABLE, UserTable::Data, del).await?;
    Ok(Outcome::OK)
}
