//! Storage quotas at the command level: each write takes room for what it adds before it is stored
//! (`tenant/quota.rs` says how much a tenant may keep, `storage::Totals` what it keeps), and a multi-row
//! INSERT is checked whole before any of its rows takes effect, so that a statement that does not fit
//! changes nothing. Room freed by deletes, trims and expiry is counted as soon as the rows are gone.

use std::collections::{BTreeMap, BTreeSet};

use super::pipes_messages::Message;
use super::{history, CommandError, Ctx, ErrorCode};
use crate::ids::{DevId, UserId};
use crate::storage::{Reservation, StoredUsage, UserTable};
use crate::tenant::quota::OverQuota;

impl From<OverQuota> for CommandError {
    fn from(e: OverQuota) -> Self {
        CommandError::new(ErrorCode::QuotaExceeded, e.to_string())
    }
}

fn reserve(
    ctx: &Ctx,
    dev_id: DevId,
    user: Option<UserId>,
    want: StoredUsage,
) -> Result<Reservation, CommandError> {
    Ok(ctx
        .quotas
        .reserve(ctx.storage.totals(), dev_id, user, want)?)
}

/// Room for one history entry (held until the entry is stored).
pub fn history_entry(ctx: &Ctx, dev_id: DevId, message: &str) -> Result<Reservation, CommandError> {
    reserve(
        ctx,
        dev_id,
        None,
        StoredUsage {
            history_rows: 1,
            history_bytes: message.len() as i64,
            ..StoredUsage::default()
        },
    )
}

/// Whether every history entry of a multi-row INSERT fits, before any is published. Each row still takes
/// its own room when it is stored; only a concurrent write of the same tenant can take the room in between.
pub async fn history_statement(
    ctx: &Ctx,
    dev_id: DevId,
    messages: &[Message],
) -> Result<(), CommandError> {
    let mut want = StoredUsage::default();
    for m in messages {
        if history::keeps_history(ctx, dev_id, &m.pipe).await? {
            want.history_rows += 1;
            want.history_bytes += m.text.len() as i64;
        }
    }
    if want.history_rows > 0 {
        reserve(ctx, dev_id, None, want)?;
    }
    Ok(())
}

/// Room for one private message in `user`'s queue.
pub fn queued_message(ctx: &Ctx, dev_id: DevId, user: UserId) -> Result<Reservation, CommandError> {
    reserve(ctx, dev_id, Some(user), queued(1))
}

fn queued(n: i64) -> StoredUsage {
    StoredUsage {
        queued_messages: n,
        ..StoredUsage::default()
    }
}

/// Whether the messages of a multi-row INSERT that would be queued (their users are offline now) fit in
/// their users' queues and the tenant's, before any is sent.
pub fn queue_statement(ctx: &Ctx, dev_id: DevId, users: &[UserId]) -> Result<(), CommandError> {
    let mut per_user: BTreeMap<UserId, i64> = BTreeMap::new();
    for u in users {
        if !ctx.hub.registry().user_online(dev_id, *u) {
            *per_user.entry(*u).or_default() += 1;
        }
    }
    // Held together, so that the tenant's quota sees the whole statement.
    let mut held = Vec::with_capacity(per_user.len());
    for (user, n) in per_user {
        held.push(reserve(ctx, dev_id, Some(user), queued(n))?);
    }
    Ok(())
}

/// Room for the users_data rows an INSERT may add (one per distinct user; a user who has a value already
/// takes no more room, which is only looked up when the tenant is near its quota).
pub async fn users_data(
    ctx: &Ctx,
    dev_id: DevId,
    users: &[UserId],
) -> Result<Reservation, CommandError> {
    let distinct: Vec<UserId> = users
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut new = distinct.len() as i64;
    let used = ctx.storage.totals().stored(dev_id).users_data;
    if used + new > ctx.quotas.for_tenant(dev_id).users_data {
        let existing = ctx
            .storage
            .users_with_value(UserTable::Data, dev_id, &distinct)
            .await?;
        new -= existing.len() as i64;
    }
    reserve(
        ctx,
        dev_id,
        None,
        StoredUsage {
            users_data: new,
            ..StoredUsage::default()
        },
    )
}

/// Room for the revoked_tokens rows an INSERT may add (a token revoked already takes no more room).
pub async fn revoked_tokens(
    ctx: &Ctx,
    dev_id: DevId,
    tokens: &[&str],
) -> Result<Reservation, CommandError> {
    let distinct: BTreeSet<&str> = tokens.iter().copied().collect();
    let mut new = distinct.len() as i64;
    let used = ctx.storage.totals().stored(dev_id).revoked_tokens;
    if used + new > ctx.quotas.for_tenant(dev_id).revoked_tokens {
        let distinct: Vec<&str> = distinct.into_iter().collect();
        new -= ctx.storage.count_revoked(dev_id, &distinct).await?;
    }
    reserve(
        ctx,
        dev_id,
        None,
        StoredUsage {
            revoked_tokens: new,
            ..StoredUsage::default()
        },
    )
}
