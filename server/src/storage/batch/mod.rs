//! The statements of one group commit (`writer/` decides what goes in a batch and when): every history
//! append, enqueue, claim and users_time change waiting, in one transaction. Rows of one pipe are numbered
//! with one UPDATE, all rows go in with multi-row INSERTs, and each pipe is trimmed once per batch, by
//! position (an index range), not once per message.
//!
//! `plan.rs` writes the statements; `sqlite.rs` runs them in place on the writer's thread, `postgres.rs`
//! through sqlx in as few round trips as it can; `results` reads what both got back (`Returned` rows) into
//! each write's outcome.

mod plan;
pub(super) mod postgres;
pub(super) mod sqlite;

pub(super) use plan::{trim_by_count_sql, ALL, NEWEST_FIRST};

use std::collections::HashMap;

use self::plan::{Plan, Yields};
use super::queue::QueuedMessage;
use super::{Columns, DurablePosition, HistoryRow, StorageError, StoredUsage};
use crate::ids::{DevId, UserId};

/// One history append of a batch, as the batch needs it.
#[derive(Clone, Copy)]
pub(super) struct Append<'a> {
    pub dev_id: DevId,
    pub row: &'a HistoryRow,
    pub keep: i64,
    /// Numbered: the pipe's epoch if it has none yet.
    pub epoch: Option<&'a str>,
}

/// One private message to queue.
pub(super) struct Enqueue<'a> {
    pub dev_id: DevId,
    pub user: UserId,
    pub msg: &'a QueuedMessage,
    pub expires_at: i64,
}

/// Claimed messages that did not reach their user, back into the queue under their own ids (so at its
/// head), with a new expiry.
pub(super) struct PutBack<'a> {
    pub dev_id: DevId,
    pub user: UserId,
    pub msgs: &'a [QueuedMessage],
    pub expires_at: i64,
}

/// A claim of the user's oldest unexpired queued messages (at most `limit`).
pub(super) struct Claim {
    pub dev_id: DevId,
    pub user: UserId,
    pub now: i64,
    pub limit: i64,
}

/// A JWT login's users_auth change: a minted hash, or (`hash: None`) a longer expiry for the minted hash
/// there.
pub(super) struct AuthWrite<'a> {
    pub dev_id: DevId,
    pub user: UserId,
    pub hash: Option<&'a str>,
    pub expires_at: i64,
}

/// Everything one transaction writes; `usize` keys are the writes' places in the batch.
#[derive(Default)]
pub(super) struct Batch<'a> {
    pub appends: Vec<(usize, Append<'a>)>,
    pub enqueues: Vec<Enqueue<'a>>,
    pub put_backs: Vec<PutBack<'a>>,
    pub claims: Vec<(usize, Claim)>,
    pub claim_uuids: Vec<(usize, DevId, &'a str)>,
    pub auths: Vec<AuthWrite<'a>>,
    pub times: &'a [((DevId, UserId), i64)],
}

/// What one append did: its row with the trim it caused (apportioned), and its position.
#[derive(Debug, Clone, Default)]
pub(super) struct Placed {
    pub change: StoredUsage,
    pub position: Option<DurablePosition>,
}

/// What the batch's statements gave each write, by its place in the batch.
#[derive(Default)]
pub(super) struct Results {
    pub placed: HashMap<usize, Placed>,
    pub claimed: HashMap<usize, Vec<QueuedMessage>>,
    pub claimed_uuid: HashMap<usize, Option<UserId>>,
}

/// A row one of the batch's statements returned, as `results` reads it: what the rows of either database
/// become.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Returned {
    /// A numbered pipe's new top, and its epoch.
    Top {
        epoch: String,
        top: i64,
    },
    /// A history row a trim removed: its id and what it counted for.
    Trimmed {
        id: i64,
        bytes: i64,
    },
    Claimed(QueuedMessage),
    ClaimedUuid {
        user_id: i64,
    },
}

impl Returned {
    /// Reads a row of a statement that `yields` it (none for a statement whose rows are not read).
    fn read(yields: Yields, row: &impl Columns) -> Result<Option<Returned>, StorageError> {
        Ok(Some(match yields {
            Yields::Nothing => return Ok(None),
            Yields::Top(_) => Returned::Top {
                epoch: row.text("epoch")?,
                top: row.int("top")?,
            },
            Yields::Trim(_) => Returned::Trimmed {
                id: row.int("id")?,
                bytes: row.int("bytes")?,
            },
            Yields::Claim(_) => Returned::Claimed(QueuedMessage::from_row(row)?),
            Yields::ClaimUuid(_) => Returned::ClaimedUuid {
                user_id: row.int("user_id")?,
            },
        }))
    }
}

/// Each write's outcome from the rows the batch's statements returned (`rows[n]`: statement `n`'s).
fn results(batch: &Batch<'_>, plan: &Plan<'_>, rows: Vec<Vec<Returned>>) -> Results {
    let mut out = Results::default();
    let mut tops: HashMap<usize, (String, i64)> = HashMap::new();
    let mut trims: HashMap<usize, Vec<i64>> = HashMap::new();
    for (s, rows) in plan.stmts.iter().zip(rows) {
        match s.yields {
            Yields::Nothing => {}
            Yields::Top(p) => {
                if let Some(Returned::Top { epoch, top }) = rows.into_iter().next() {
                    tops.insert(p, (epoch, top));
                }
            }
            Yields::Trim(p) => {
                // Oldest first (RETURNING promises no order), so each append is charged the entry its
                // write pushed out.
                let mut removed: Vec<(i64, i64)> = rows
                    .into_iter()
                    .filter_map(|r| match r {
                        Returned::Trimmed { id, bytes } => Some((id, bytes)),
                        _ => None,
                    })
                    .collect();
                removed.sort_unstable();
                trims.insert(p, removed.into_iter().map(|(_, b)| b).collect());
            }
            Yields::Claim(i) => {
                let mut got: Vec<QueuedMessage> = rows
                    .into_iter()
                    .filter_map(|r| match r {
                        Returned::Claimed(m) => Some(m),
                        _ => None,
                    })
                    .collect();
                // RETURNING promises no order.
                got.sort_by_key(|m| m.id);
                out.claimed.insert(i, got);
            }
            Yields::ClaimUuid(i) => {
                let user = rows.into_iter().find_map(|r| match r {
                    Returned::ClaimedUuid { user_id } => Some(user_id),
                    _ => None,
                });
                out.claimed_uuid.insert(i, user.map(|u| UserId(u as u64)));
            }
        }
    }
    for (p, (_, _, members)) in plan.pipes.iter().enumerate() {
        let top = tops.get(&p);
        // What the trim removed is shared out over the pipe's appends in order (one entry each, the rest
        // on the last), so each append's change is what it would have changed alone at its length.
        let mut removed = trims.remove(&p).unwrap_or_default().into_iter();
        for (k, &m) in members.iter().enumerate() {
            let (place, a) = &batch.appends[m];
            let back = (members.len() - 1 - k) as i64;
            let take: Vec<i64> = if plan.one && back >= a.keep {
                // Not inserted: as if written and trimmed at once.
                vec![a.row.message.len() as i64]
            } else if k + 1 == members.len() {
                removed.by_ref().collect()
            } else {
                removed.next().into_iter().collect()
            };
            let position = top.map(|(epoch, top)| DurablePosition {
                epoch: epoch.clone(),
                top: top - (members.len() - 1 - k) as i64,
            });
            let change = StoredUsage {
                history_rows: 1 - take.len() as i64,
                history_bytes: a.row.message.len() as i64 - take.iter().sum::<i64>(),
                ..StoredUsage::default()
            };
            out.placed.insert(*place, Placed { change, position });
        }
    }
    out
}
