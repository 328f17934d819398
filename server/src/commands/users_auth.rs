//! `users_auth`: which key authorizes a browser user (hash mode), and the browser login check for both
//! hash and JWT modes.

use subtle::ConstantTimeEq;

use super::table::{required, Table};
use super::users::{delete_values, insert_id, put_values, select_values};
use super::{Caller, CommandError, Ctx, ErrorCode, Outcome};
use crate::cometql::{Delete, Insert, Select};
use crate::ids::{DevId, UserId};
use crate::storage::UserTable;
use crate::tenant::{jwt, unix_now};

pub(crate) const TABLE: Table = Table {
    name: "users_auth",
    columns: &["id", "hash"],
    key: "id",
};

const MAX_HASH: usize = 32;

fn hash_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'=' | b'+' | b'/' | b'_')
}

pub(crate) async fn insert(
    ctx: &Ctx,
    caller: Caller,
    ins: &Insert,
) -> Result<Outcome, CommandError> {
    let mut items = Vec::new();
    for row in &ins.rows {
        let row = TABLE.insert_row(ins.columns.as_deref(), row)?;
        let id = insert_id(required(&row, "id")?, false)?;
        let hash = required(&row, "hash")?;
        if !hash.bytes().all(hash_char) {
            return Err(CommandError::new(
                ErrorCode::Invalid,
                "Contains an invalid characters in the string hash",
            ));
        }
        if hash.len() > MAX_HASH {
            return Err(CommandError::new(
                ErrorCode::TooLong,
                "Hash string is too long",
            ));
        }
        items.push((id, hash));
    }
    put_values(ctx, caller, UserTable::Auth, &items).await
}

pub(crate) async fn select(
    ctx: &Ctx,
    caller: Caller,
    sel: &Select,
) -> Result<Outcome, CommandError> {
    select_values(ctx, caller, &TABLE, UserTable::Auth, sel).await
}

/// Deleting a user's hash also closes every live connection of that user (reference).
pub(crate) async fn delete(
    ctx: &Ctx,
    caller: Caller,
    del: &Delete,
) -> Result<Outcome, CommandError> {
    for id in delete_values(ctx, caller, &TABLE, UserTable::Auth, del).await? {
        ctx.hub
            .revoke(crate::hub::Revoke::User(caller.dev_id, id))
            .await?;
    }
    Ok(Outcome::OK)
}

/// The browser login: `key` is either the user's users_auth hash or a JWT of the tenant. Returns the
/// user's hash (the serverInfo `data`), creating one for a JWT login when the user has none.
///
/// A hash minted for a JWT login is a bearer credential like the token, so it expires with the token: it is
/// stored with the token's `exp` (extended by a later login with a longer-lived token) and authorizes no one
/// after it. Minting stays (rather than answering JWT logins without a hash) because pages and backends of
/// comet-server read `data` and the minted hash logs in by itself. A hash the backend stored never expires.
pub(crate) async fn authorize(
    ctx: &Ctx,
    dev_id: DevId,
    user: UserId,
    key: &str,
) -> Result<Option<String>, CommandError> {
    if user.0 == 0 || key.is_empty() {
        return Ok(None);
    }
    let now = unix_now();
    let live = ctx
        .storage
        .auth_hash(dev_id, user)
        .await?
        .filter(|(hash, until)| !hash.is_empty() && until.is_none_or(|t| t > now));
    if let Some((hash, _)) = &live {
        // An empty stored hash never authorizes anyone (the reference let an empty key in).
        if bool::from(hash.as_bytes().ct_eq(key.as_bytes())) {
            return Ok(Some(hash.clone()));
        }
    }
    if !jwt::looks_like_jwt(key) || ctx.storage.is_revoked(dev_id, key).await? {
        return Ok(None);
    }
    let keys = ctx
        .tenants
        .secret_keys(dev_id)
        .await
        .map_err(|e| CommandError::internal("reading tenant keys", e))?;
    let Some(token) = jwt::verify_claims(&keys, dev_id, key, Some(user)) else {
        return Ok(None);
    };
    match live {
        Some((hash, None)) => Ok(Some(hash)),
        Some((hash, Some(until))) => {
            if token.exp > until {
                ctx.storage
                    .extend_minted_hash(dev_id, user, token.exp)
                    .await?;
            }
            Ok(Some(hash))
        }
        None => {
            let hash = uuid::Uuid::new_v4().simple().to_string();
            ctx.storage
                .put_minted_hash(dev_id, user, &hash, token.exp)
                .await?;
            Ok(Some(hash))
        }
    }
}
