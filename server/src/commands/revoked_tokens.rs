//! `revoked_tokens`: JWTs that must no longer log anyone in. Revoking a valid token also removes its user's
//! hash and closes that user's connections (reference).

use super::table::{required, Collector, Table, Verb};
use super::{Caller, CommandError, Ctx, ErrorCode, Outcome};
use crate::cometql::{Delete, Insert, Select};
use crate::storage::UserTable;
use crate::tenant::{jwt, unix_now};

pub(super) const TABLE: Table = Table {
    name: "revoked_tokens",
    columns: &["token"],
    key: "token",
};

pub(super) async fn insert(
    ctx: &Ctx,
    caller: Caller,
    ins: &Insert,
) -> Result<Outcome, CommandError> {
    let mut tokens = Vec::new();
    for row in &ins.rows {
        let row = TABLE.insert_row(ins.columns.as_deref(), row)?;
        let token = required(&row, "token")?;
        if token.is_empty() || token.len() > jwt::MAX_TOKEN_LEN {
            return Err(CommandError::new(ErrorCode::Invalid, "Error in token"));
        }
        tokens.push(token);
    }
    let keys = ctx
        .tenants
        .secret_keys(caller.dev_id)
        .await
        .map_err(|e| CommandError::internal("reading tenant keys", e))?;
    let _room = super::quota::revoked_tokens(ctx, caller.dev_id, &tokens).await?;
    for token in &tokens {
        ctx.storage
            .revoke_token(caller.dev_id, token, unix_now())
            .await?;
        if let Some(user) = jwt::verify(&keys, caller.dev_id, token, None) {
            ctx.storage
                .delete_user_value(UserTable::Auth, caller.dev_id, user)
                .await?;
            ctx.hub
                .revoke(crate::hub::Revoke::User(caller.dev_id, user))
                .await?;
        }
    }
    Ok(Outcome::Done {
        affected_rows: tokens.len() as u64,
        last_insert_id: 1,
    })
}

/// Without WHERE: every revoked token of the tenant (a comet-server 4.07 feature, docs/reference-cppcomet.md 1.6).
pub(super) async fn select(
    ctx: &Ctx,
    caller: Caller,
    sel: &Select,
) -> Result<Outcome, CommandError> {
    let proj = TABLE.projection(&sel.columns)?;
    let mut rows = Collector::new(ctx, sel.limit.as_ref()).projected(&proj);
    if sel.filter.conditions.is_empty() {
        // Read as the database returns them and stopped at LIMIT or at the caps.
        let mut refused = None;
        ctx.storage
            .revoked_tokens(caller.dev_id, |t| {
                if let Err(e) = rows.offer(vec![t]) {
                    refused = Some(e);
                }
                refused.is_none() && !rows.done()
            })
            .await?;
        if let Some(e) = refused {
            return Err(e);
        }
    } else {
        let wanted = TABLE.key_values(&sel.filter, "token", Verb::Select)?;
        let mut seen = std::collections::HashSet::new();
        let wanted: Vec<&str> = wanted
            .iter()
            .filter_map(|v| v.as_text())
            .filter(|t| seen.insert(*t))
            .collect();
        for t in ctx.storage.revoked_among(caller.dev_id, &wanted).await? {
            if rows.done() {
                break;
            }
            rows.offer(vec![t])?;
        }
    }
    Ok(rows.finish(&TABLE, &proj))
}

pub(super) async fn delete(
    ctx: &Ctx,
    caller: Caller,
    del: &Delete,
) -> Result<Outcome, CommandError> {
    let tokens = TABLE.key_values(&del.filter, "token", Verb::Delete)?;
    for t in tokens.iter().filter_map(|v| v.as_text()) {
        ctx.storage.unrevoke_token(caller.dev_id, t).await?;
    }
    Ok(Outcome::OK)
}
