//! The statements of one group commit (`writer.rs` decides what goes in a batch and when): every history
//! append, enqueue, claim and users_time change waiting, run on one transaction. Rows of one pipe are
//! numbered with one UPDATE, all rows go in with multi-row INSERTs, and each pipe is trimmed once per batch,
//! by position (an index range), not once per message.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::AnyConnection;

use super::queue::QueuedMessage;
use super::totals::ENTRY_BYTES;
use super::{get, DurablePosition, HistoryRow, StorageError, StoredUsage};
use crate::ids::{DevId, UserId};

/// Rows per multi-row INSERT: few distinct statements for the connection's statement cache, and far below
/// either database's bind limit.
const CHUNK: usize = 32;

/// One history append of a batch, as the batch needs it.
#[derive(Clone, Copy)]
pub(super) struct Append<'a> {
    pub dev_id: DevId,
    pub row: &'a HistoryRow,
    pub keep: i64,
    /// Numbered: the pipe's epoch if it has none yet.
    pub epoch: Option<&'a str>,
}

/// What one append did: its row with the trim it caused (apportioned), and its position.
#[derive(Debug, Clone, Default)]
pub(super) struct Placed {
    pub change: StoredUsage,
    pub position: Option<DurablePosition>,
}

/// Deletes the rows of pipe `$2` of tenant `$1` older than its newest `$3`, walking the pipe's index from
/// the newest: for pipes whose rows have no positions (`trust_` pipes).
pub(super) fn trim_by_id_sql() -> String {
    format!(
        "DELETE FROM pipe_history WHERE dev_id = $1 AND pipe = $2 AND id <= \
         (SELECT id FROM pipe_history WHERE dev_id = $1 AND pipe = $2 ORDER BY id DESC LIMIT 1 OFFSET $3) \
         RETURNING dev_id, {ENTRY_BYTES} AS bytes"
    )
}

/// Deletes the rows of pipe `$2` of tenant `$1` at or below position `$3`.
fn trim_by_pos_sql() -> String {
    format!(
        "DELETE FROM pipe_history WHERE dev_id = $1 AND pipe = $2 AND pos <= $3 \
         RETURNING dev_id, {ENTRY_BYTES} AS bytes"
    )
}

fn values(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let p: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", p.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn trimmed(rows: &[AnyRow]) -> Result<Vec<i64>, StorageError> {
    rows.iter().map(|r| get::<i64>(r, "bytes")).collect()
}

/// Runs the appends in order: per pipe one numbering UPDATE, then every row, then one trim per pipe.
/// Returns per append what it changed and its position.
pub(super) async fn history(
    tx: &mut AnyConnection,
    appends: &[Append<'_>],
) -> Result<Vec<Placed>, StorageError> {
    let mut placed = vec![Placed::default(); appends.len()];
    // Pipes in the order they first appear, each with its appends in order.
    let mut pipes: Vec<(DevId, &str, Vec<usize>)> = Vec::new();
    let mut index: HashMap<(DevId, &str), usize> = HashMap::new();
    for (i, a) in appends.iter().enumerate() {
        let key = (a.dev_id, a.row.pipe.as_str());
        let at = *index.entry(key).or_insert_with(|| {
            pipes.push((key.0, key.1, Vec::new()));
            pipes.len() - 1
        });
        pipes[at].2.push(i);
    }
    // Positions: the settings row's `top` goes up by the pipe's numbered appends at once; its row lock
    // orders this batch after any other writer of the pipe.
    let mut tops: Vec<Option<i64>> = vec![None; pipes.len()];
    for (p, (dev_id, pipe, members)) in pipes.iter().enumerate() {
        let numbered: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| appends[i].epoch.is_some())
            .collect();
        let Some(&first) = numbered.first() else {
            continue;
        };
        let r = sqlx::query(
            "UPDATE pipe_settings SET top = top + $4, epoch = COALESCE(epoch, $3) \
             WHERE dev_id = $1 AND pipe = $2 AND length > 0 RETURNING epoch, top",
        )
        .bind(dev_id.0 as i64)
        .bind(*pipe)
        .bind(appends[first].epoch)
        .bind(numbered.len() as i64)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(r) = r {
            let epoch: String = get(&r, "epoch")?;
            let top: i64 = get(&r, "top")?;
            let base = top - numbered.len() as i64;
            for (k, &i) in numbered.iter().enumerate() {
                placed[i].position = Some(DurablePosition {
                    epoch: epoch.clone(),
                    top: base + 1 + k as i64,
                });
            }
            // Trimmed by position only when every append of the batch got one.
            if numbered.len() == members.len() {
                tops[p] = Some(top);
            }
        }
    }
    // Every row, in submission order, so that ids (the read order) follow positions.
    for chunk in (0..appends.len()).collect::<Vec<_>>().chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO pipe_history (dev_id, pipe, uuid, event, message, user_id, sent_at, pos, sender) \
             VALUES {}",
            values(chunk.len(), 9)
        );
        let mut q = sqlx::query(&sql);
        for &i in chunk {
            let (a, row) = (&appends[i], appends[i].row);
            q = q
                .bind(a.dev_id.0 as i64)
                .bind(&row.pipe)
                .bind(&row.uuid)
                .bind(&row.event)
                .bind(&row.message)
                .bind(row.user_id)
                .bind(row.sent_at)
                .bind(placed[i].position.as_ref().map(|p| p.top))
                .bind(row.sender);
        }
        q.execute(&mut *tx).await?;
    }
    // One trim per pipe, to the length its last append saw; what it removed is shared out over the
    // pipe's appends in order (one entry each, the rest on the last), so each append's change is what
    // it would have changed alone as long as the pipe was at its length.
    for (p, (dev_id, pipe, members)) in pipes.iter().enumerate() {
        let keep = appends[*members.last().expect("a pipe has appends")].keep;
        let rows = match tops[p] {
            Some(top) => {
                sqlx::query(&trim_by_pos_sql())
                    .bind(dev_id.0 as i64)
                    .bind(*pipe)
                    .bind(top - keep)
                    .fetch_all(&mut *tx)
                    .await?
            }
            None => {
                sqlx::query(&trim_by_id_sql())
                    .bind(dev_id.0 as i64)
                    .bind(*pipe)
                    .bind(keep)
                    .fetch_all(&mut *tx)
                    .await?
            }
        };
        let mut removed = trimmed(&rows)?.into_iter();
        for (k, &i) in members.iter().enumerate() {
            let c = &mut placed[i].change;
            c.history_rows = 1;
            c.history_bytes = appends[i].row.message.len() as i64;
            let take = if k + 1 == members.len() {
                removed.by_ref().collect::<Vec<_>>()
            } else {
                removed.next().into_iter().collect()
            };
            c.history_rows -= take.len() as i64;
            c.history_bytes -= take.iter().sum::<i64>();
        }
    }
    Ok(placed)
}

/// One private message to queue.
pub(super) struct Enqueue<'a> {
    pub dev_id: DevId,
    pub user: UserId,
    pub msg: &'a QueuedMessage,
    pub expires_at: i64,
}

pub(super) async fn enqueue(
    tx: &mut AnyConnection,
    items: &[Enqueue<'_>],
) -> Result<(), StorageError> {
    for chunk in items.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO user_messages (dev_id, user_id, uuid, event, message, sent_at, expires_at) \
             VALUES {}",
            values(chunk.len(), 7)
        );
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(e.dev_id.0 as i64)
                .bind(e.user.0 as i64)
                .bind(&e.msg.uuid)
                .bind(&e.msg.event)
                .bind(&e.msg.message)
                .bind(e.msg.sent_at)
                .bind(e.expires_at);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

/// Takes the user's oldest unexpired queued messages (at most `limit`) out of the queue, oldest first.
pub(super) async fn claim(
    tx: &mut AnyConnection,
    dev_id: DevId,
    user: UserId,
    now: i64,
    limit: i64,
) -> Result<Vec<QueuedMessage>, StorageError> {
    let rows = sqlx::query(
        "DELETE FROM user_messages WHERE id IN (SELECT id FROM user_messages \
         WHERE dev_id = $1 AND user_id = $2 AND expires_at > $3 ORDER BY id LIMIT $4) \
         RETURNING id, uuid, event, message, sent_at",
    )
    .bind(dev_id.0 as i64)
    .bind(user.0 as i64)
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let mut batch = rows
        .iter()
        .map(QueuedMessage::from_row)
        .collect::<Result<Vec<_>, StorageError>>()?;
    // RETURNING promises no order.
    batch.sort_by_key(|m| m.id);
    Ok(batch)
}

/// Takes one queued message out by its uuid: the user it was queued for, if it was still there.
pub(super) async fn claim_uuid(
    tx: &mut AnyConnection,
    dev_id: DevId,
    uuid: &str,
) -> Result<Option<UserId>, StorageError> {
    let row =
        sqlx::query("DELETE FROM user_messages WHERE dev_id = $1 AND uuid = $2 RETURNING user_id")
            .bind(dev_id.0 as i64)
            .bind(uuid)
            .fetch_optional(&mut *tx)
            .await?;
    row.map(|r| Ok(UserId(get::<i64>(&r, "user_id")? as u64)))
        .transpose()
}

/// The newest users_time value of each user, in one upsert per chunk.
pub(super) async fn users_time(
    tx: &mut AnyConnection,
    times: &[((DevId, UserId), i64)],
) -> Result<(), StorageError> {
    for chunk in times.chunks(CHUNK * 4) {
        let sql = format!(
            "INSERT INTO users_time (dev_id, user_id, last_online) VALUES {} \
             ON CONFLICT (dev_id, user_id) DO UPDATE SET last_online = excluded.last_online",
            values(chunk.len(), 3)
        );
        let mut q = sqlx::query(&sql);
        for ((dev_id, user), t) in chunk {
            q = q.bind(dev_id.0 as i64).bind(user.0 as i64).bind(*t);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_number_placeholders_row_by_row() {
        assert_eq!(values(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values(1, 1), "($1)");
    }
}
