//! Storage quotas at the command level: each write takes room for what it adds before it is stored
//! (`tenant/quota.rs` says how much a tenant may keep, `storage::Totals` what it keeps), and an INSERT
//! reserves room for all its rows before the first takes effect, so that a statement that does not fit
//! changes nothing. Its rows then take their room out of the statement's (`StatementRoom`, handed down
//! through `Ctx::room`), so a concurrent write of the same tenant cannot take it in between. Room freed by
//! deletes, trims and expiry is counted as soon as the rows are gone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::pipes_messages::Message;
use super::{history, CommandError, Ctx, ErrorCode};
use crate::hub::TenantWindow;
use crate::ids::{DevId, UserId};
use crate::storage::{Reservation, StoredUsage, UserTable};
use crate::tenant::quota::OverQuota;

impl From<OverQuota> for CommandError {
    fn from(e: OverQuota) -> Self {
        CommandError::new(ErrorCode::QuotaExceeded, e.to_string())
    }
}

/// What the tenant keeps stored and what it may keep (running totals: no query), for the dashboard.
pub(crate) fn in_use(ctx: &Ctx, dev_id: DevId) -> (StoredUsage, crate::tenant::quota::QuotaLimits) {
    (
        ctx.storage.totals().stored(dev_id),
        ctx.quotas.for_tenant(dev_id),
    )
}

/// The tenant's recovery window: its override of `[recovery]`, holding at most the bytes its history quota
/// leaves free, so that windows count in the storage quota. Stored history comes first: history written
/// after this reading shrinks the windows at the next refresh (every `subscription2` and every minute).
pub(crate) fn window(ctx: &Ctx, dev_id: DevId) -> TenantWindow {
    let r = &ctx.config.recovery;
    let (messages, secs) = ctx.limits.window(dev_id, r.window_messages, r.window_secs);
    let quota = ctx.quotas.for_tenant(dev_id).history_bytes;
    let stored = ctx.storage.totals().stored(dev_id).history_bytes;
    TenantWindow {
        messages,
        max_age: Duration::from_secs(secs),
        max_bytes: usize::try_from(quota.saturating_sub(stored).max(0)).unwrap_or(usize::MAX),
    }
}

/// Sets the tenant's window in the hub from its current limits and quota.
pub(crate) fn refresh_window(ctx: &Ctx, dev_id: DevId) {
    ctx.hub
        .registry()
        .set_tenant_window(dev_id, window(ctx, dev_id));
}

/// Room reserved by a statement for its rows; each row's write takes its part.
#[derive(Default)]
pub(crate) struct StatementRoom {
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

/// Room for what one history write changes (`Storage::append_history` hands the change over inside its
/// transaction, after the trim): only growth takes room, so a write to a pipe already at its length whose
/// entry is no larger than the one it trims needs none, even at the quota.
pub(crate) fn history_change(
    ctx: &Ctx,
    dev_id: DevId,
    change: StoredUsage,
) -> Result<Reservation, CommandError> {
    let want = StoredUsage {
        history_rows: change.history_rows.max(0),
        history_bytes: change.history_bytes.max(0),
        ..StoredUsage::default()
    };
    room_for(ctx, dev_id, None, want)
}

/// Reserves room for every history entry of a publish (an INSERT into pipes_messages, or one message of
/// another front door) before any is published; publish its rows with the context returned.
///
/// First as if nothing were trimmed, which costs no query. Near the quota that may not fit while the
/// statement fits after all, because its pipes are at their length: then the room it needs is worked out
/// from the sizes of the entries its writes will trim, and the most it grows at any row is reserved.
pub(crate) async fn history_statement(
    ctx: &Ctx,
    dev_id: DevId,
    messages: &[Message],
) -> Result<Ctx, CommandError> {
    let mut kept = Vec::new();
    let mut worst = StoredUsage::default();
    for m in messages {
        let keep = history::kept(ctx, dev_id, &m.pipe).await?;
        if keep > 0 {
            worst.history_rows += 1;
            worst.history_bytes += m.text.len() as i64;
            kept.push((m, keep));
        }
    }
    if kept.is_empty() {
        return Ok(with_room(ctx, Vec::new()));
    }
    let refused = match reserve(ctx, dev_id, None, worst) {
        Ok(r) => return Ok(with_room(ctx, vec![r])),
        Err(e) => e,
    };
    let mut trims = BTreeMap::new();
    for (m, keep) in &kept {
        if !trims.contains_key(m.pipe.as_str()) {
            let adding = kept.iter().filter(|(o, _)| o.pipe == m.pipe).count() as i64;
            let sizes = ctx
                .storage
                .history_to_trim(dev_id, m.pipe.as_str(), *keep, adding)
                .await?;
            trims.insert(m.pipe.as_str(), PipeTrim::new(sizes, *keep, adding));
        }
    }
    let peak = peak_growth(kept.iter().map(|(m, _)| {
        let t = trims
            .get_mut(m.pipe.as_str())
            .expect("every pipe looked up");
        t.write(m.text.len() as i64)
    }));
    if peak == worst {
        return Err(refused);
    }
    Ok(with_room(ctx, vec![reserve(ctx, dev_id, None, peak)?]))
}

/// The entries of one pipe a statement's writes trim, in the order they go: first the pipe's entries
/// beyond its newest `keep - adding` (when there are any, the pipe then holds `keep - adding` more), then
/// the statement's own once `keep` newer ones are written.
struct PipeTrim {
    queue: std::collections::VecDeque<i64>,
    /// Entries in the pipe (as far as trims go: the entries never trimmed are not counted when none is).
    held: i64,
    keep: i64,
}

impl PipeTrim {
    fn new(oldest: Vec<i64>, keep: i64, adding: i64) -> PipeTrim {
        let held = if oldest.is_empty() {
            0
        } else {
            oldest.len() as i64 + (keep - adding).max(0)
        };
        PipeTrim {
            queue: oldest.into(),
            held,
            keep,
        }
    }

    /// What one more write of `bytes` changes: its entry less those the trim then removes.
    fn write(&mut self, bytes: i64) -> StoredUsage {
        self.queue.push_back(bytes);
        self.held += 1;
        let mut change = StoredUsage {
            history_rows: 1,
            history_bytes: bytes,
            ..StoredUsage::default()
        };
        while self.held > self.keep {
            self.held -= 1;
            change.history_rows -= 1;
            change.history_bytes -= self.queue.pop_front().unwrap_or(0);
        }
        change
    }
}

/// The most the changes, applied in order, ever add up to (each quota on its own; never below nothing).
fn peak_growth(changes: impl Iterator<Item = StoredUsage>) -> StoredUsage {
    let (mut now, mut peak) = (StoredUsage::default(), StoredUsage::default());
    for c in changes {
        now.history_rows += c.history_rows;
        now.history_bytes += c.history_bytes;
        peak.history_rows = peak.history_rows.max(now.history_rows);
        peak.history_bytes = peak.history_bytes.max(now.history_bytes);
    }
    peak
}

/// Room for one private message in `user`'s queue.
pub(crate) fn queued_message(
    ctx: &Ctx,
    dev_id: DevId,
    user: UserId,
) -> Result<Reservation, CommandError> {
    room_for(ctx, dev_id, Some(user), queued(1))
}

fn queued(n: i64) -> StoredUsage {
    StoredUsage {
        queued_messages: n,
        ..StoredUsage::default()
    }
}

/// Reserves room in their users' queues and the tenant's for the messages of an INSERT into
/// users_messages that would be queued (their users are offline, or not ready yet), before any is sent; send its rows
/// with the context returned.
pub(crate) fn queue_statement(
    ctx: &Ctx,
    dev_id: DevId,
    users: &[UserId],
) -> Result<Ctx, CommandError> {
    let mut per_user: BTreeMap<UserId, i64> = BTreeMap::new();
    for u in users {
        // A user who is online but still draining their queue gets live messages queued too.
        if !ctx.hub.registry().user_ready(dev_id, *u) {
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
pub(crate) async fn users_data(
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
pub(crate) async fn revoked_tokens(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn change(rows: i64, bytes: i64) -> StoredUsage {
        StoredUsage {
            history_rows: rows,
            history_bytes: bytes,
            ..StoredUsage::default()
        }
    }

    #[test]
    fn a_write_to_a_full_pipe_adds_no_row_and_its_bytes_less_the_trimmed() {
        // Pipe of length 3 holding 3 entries of 10, 20, 30 bytes; two more of 15 and 50 bytes.
        let mut t = PipeTrim::new(vec![10, 20], 3, 2);
        assert_eq!(t.write(15), change(0, 5));
        assert_eq!(t.write(50), change(0, 30));
        // A pipe with room: nothing is trimmed until it is full.
        let mut t = PipeTrim::new(vec![], 5, 2);
        assert_eq!(t.write(7), change(1, 7));
        assert_eq!(t.write(7), change(1, 7));
        // More rows than the length: the statement's own first entries are trimmed by its later ones.
        let mut t = PipeTrim::new(vec![4], 1, 3);
        assert_eq!(t.write(1), change(0, -3));
        assert_eq!(t.write(2), change(0, 1));
        assert_eq!(t.write(3), change(0, 1));
        // A pipe longer than its length (shortened, not trimmed yet): the first write trims the excess.
        let mut t = PipeTrim::new(vec![1, 1, 1], 2, 1);
        assert_eq!(t.write(5), change(-2, 2));
    }

    #[test]
    fn the_peak_is_the_most_the_changes_reach_in_order() {
        let peak = peak_growth([change(1, 100), change(-1, -100), change(1, 100)].into_iter());
        assert_eq!(peak, change(1, 100));
        assert_eq!(
            peak_growth([change(0, -5), change(0, -5)].into_iter()),
            change(0, 0)
        );
        assert_eq!(
            peak_growth([change(1, -50), change(1, 80)].into_iter()),
            change(2, 30)
        );
    }
}
