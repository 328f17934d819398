//! Storage quotas at the command level: each write takes room for what it adds before it is stored
//! (`tenant/quota.rs` says how much a tenant may keep, `storage::Totals` what it keeps), and an INSERT
//! reserves room for all its rows before the first takes effect, so that a statement that does not fit
//! changes nothing. Its rows then take their room out of the statement's (`StatementRoom`, handed down
//! through `Ctx::room`), so a concurrent write of the same tenant cannot take it in between. Room freed by
//! deletes, trims and expiry is counted as soon as the rows are gone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

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

/// Room reserved by a statement for its rows; each row's write takes its part.
#[derive(Default)]
pub struct StatementRoom {
    held: Mutex<Vec<Reservation>>,
}

impl StatementRoom {
    fn take(&self, user: Option<UserId>, part: &StoredUsage) -> Option<Reservation> {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
            .find_map(|r| r.split(user, part))
    }
}

/// The context for the rows of a statement that reserved `held`.
fn with_room(ctx: &Ctx, held: Vec<Reservation>) -> Ctx {
    let mut ctx = ctx.clone();
    ctx.room = (!held.is_empty()).then(|| {
        Arc::new(StatementRoom {
            held: Mutex::new(held),
        })
    });
    ctx
}

/// Room for one write: its part of the statement's room when there is one, else its own.
fn room_for(
    ctx: &Ctx,
    dev_id: DevId,
    user: Option<UserId>,
    want: StoredUsage,
) -> Result<Reservation, CommandError> {
    match ctx.room.as_ref().and_then(|r| r.take(user, &want)) {
        Some(part) => Ok(part),
        None => reserve(ctx, dev_id, user, want),
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

fn history_part(message: &str) -> StoredUsage {
    StoredUsage {
        history_rows: 1,
        history_bytes: message.len() as i64,
        ..StoredUsage::default()
    }
}

/// Room for one history entry (held until the entry is stored).
pub fn history_entry(ctx: &Ctx, dev_id: DevId, message: &str) -> Result<Reservation, CommandError> {
    room_for(ctx, dev_id, None, history_part(message))
}

/// Reserves room for every history entry of an INSERT into pipes_messages before any is published;
/// publish its rows with the context returned.
pub async fn history_statement(
    ctx: &Ctx,
    dev_id: DevId,
    messages: &[Message],
) -> Result<Ctx, CommandError> {
    let mut want = StoredUsage::default();
    for m in messages {
        if history::keeps_history(ctx, dev_id, &m.pipe).await? {
            let part = history_part(&m.text);
            want.history_rows += part.history_rows;
            want.history_bytes += part.history_bytes;
        }
    }
    let mut held = Vec::new();
    if want.history_rows > 0 {
        held.push(reserve(ctx, dev_id, None, want)?);
    }
    Ok(with_room(ctx, held))
}

/// Room for one private message in `user`'s queue.
pub fn queued_message(ctx: &Ctx, dev_id: DevId, user: UserId) -> Result<Reservation, CommandError> {
    room_for(ctx, dev_id, Some(user), queued(1))
}

fn queued(n: i64) -> StoredUsage {
    StoredUsage {
        queued_messages: n,
        ..StoredUsage::default()
    }
}

/// Reserves room in their users' queues and the tenant's for the messages of an INSERT into
/// users_messages that would be queued (their users are offline now), before any is sent; send its rows
/// with the context returned.
pub fn queue_statement(ctx: &Ctx, dev_id: DevId, users: &[UserId]) -> Result<Ctx, CommandError> {
    let mut per_user: BTreeMap<UserId, i64> = BTreeMap::new();
    for u in users {
        if !ctx.hub.registry().user_online(dev_id, *u) {
            *per_user.entry(*u).or_default() += 1;
        }
    }
    let mut held = Vec::with_capacity(per_user.len());
    for (user, n) in per_user {
        held.push(reserve(ctx, dev_id, Some(user), queued(n))?);
    }
    Ok(with_room(ctx, held))
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
