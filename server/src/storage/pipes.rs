//! Pipe history and pipe settings (pipes_messages, pipes_settings).

use sqlx::any::AnyRow;

use std::collections::HashMap;

use super::batch::{ALL, NEWEST_FIRST};
use super::totals::ENTRY_BYTES;
use super::{get, Storage, StorageError, StoredUsage};
use crate::ids::DevId;

/// One stored message of a pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub pipe: String,
    pub uuid: String,
    pub event: String,
    pub message: String,
    pub user_id: i64,
    pub sent_at: i64,
    /// The row's offset in its pipe's epoch (a pipe that keeps history numbers its messages); `None` for
    /// rows stored before positions existed and for `trust_` pipes.
    pub pos: Option<i64>,
    /// The `web_pipe2` sender (`None`: a CometQL publish), so that a replay is the frame sent live.
    pub sender: Option<i64>,
}

/// A pipe's durable position: its epoch and the last offset given in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurablePosition {
    pub epoch: String,
    pub top: i64,
}

fn history_row(r: &AnyRow) -> Result<HistoryRow, StorageError> {
    Ok(HistoryRow {
        pipe: get(r, "pipe")?,
        uuid: get(r, "uuid")?,
        event: get(r, "event")?,
        message: get(r, "message")?,
        user_id: get(r, "user_id")?,
        sent_at: get(r, "sent_at")?,
        pos: get(r, "pos")?,
        sender: get(r, "sender")?,
    })
}

/// What deleting history rows that answered `RETURNING dev_id, <ENTRY_BYTES> AS bytes` took away, per tenant.
fn removed_history(rows: &[AnyRow]) -> Result<HashMap<DevId, StoredUsage>, StorageError> {
    let mut out: HashMap<DevId, StoredUsage> = HashMap::new();
    for r in rows {
        let e = out
            .entry(DevId(get::<i64>(r, "dev_id")? as u64))
            .or_default();
        e.history_rows -= 1;
        e.history_bytes -= get::<i64>(r, "bytes")?;
    }
    Ok(out)
}

impl Storage {
    fn apply_removed(&self, removed: HashMap<DevId, StoredUsage>) {
        for (dev_id, d) in removed {
            self.totals.apply(dev_id, d);
        }
    }

    /// The pipe's durable position, giving it an epoch (`fresh`) if it has none yet; `None` when the pipe
    /// keeps no history (no settings row, or length 0: such a pipe must not get an epoch).
    pub async fn durable_position(
        &self,
        dev_id: DevId,
        pipe: &str,
        fresh: &str,
    ) -> Result<Option<DurablePosition>, StorageError> {
        let dev = dev_id.0 as i64;
        let row =
            sqlx::query("SELECT epoch, top FROM pipe_settings WHERE dev_id = $1 AND pipe = $2")
                .bind(dev)
                .bind(pipe)
                .fetch_optional(self.pool())
                .await?;
        let Some(row) = row else { return Ok(None) };
        if let Some(epoch) = get::<Option<String>>(&row, "epoch")? {
            let top = get(&row, "top")?;
            return Ok(Some(DurablePosition { epoch, top }));
        }
        // The first positioned reader of the pipe names its epoch (a concurrent one may win: read it back).
        let row = sqlx::query(
            "UPDATE pipe_settings SET epoch = COALESCE(epoch, $3) \
             WHERE dev_id = $1 AND pipe = $2 AND length > 0 RETURNING epoch, top",
        )
        .bind(dev)
        .bind(pipe)
        .bind(fresh)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(DurablePosition {
                epoch: get(&r, "epoch")?,
                top: get(&r, "top")?,
            })
        })
        .transpose()
    }

    /// The pipe's stored rows after offset `after`, in offset order, at most `limit`.
    pub async fn history_after(
        &self,
        dev_id: DevId,
        pipe: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<HistoryRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT pipe, uuid, event, message, user_id, sent_at, pos, sender FROM pipe_history \
             WHERE dev_id = $1 AND pipe = $2 AND pos > $3 ORDER BY pos LIMIT $4",
        )
        .bind(dev_id.0 as i64)
        .bind(pipe)
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(history_row).collect()
    }

    /// Sizes of the entries that `adding` more to the pipe would trim at its length `keep` (the oldest
    /// first): those beyond its newest `keep - adding`.
    pub async fn history_to_trim(
        &self,
        dev_id: DevId,
        pipe: &str,
        keep: i64,
        adding: i64,
    ) -> Result<Vec<i64>, StorageError> {
        let rows = sqlx::query(&format!(
            "SELECT bytes FROM (SELECT {ENTRY_BYTES} AS bytes, pos, id FROM pipe_history \
             WHERE dev_id = $1 AND pipe = $2 {NEWEST_FIRST} {ALL} OFFSET $3) t ORDER BY pos, id"
        ))
        .bind(dev_id.0 as i64)
        .bind(pipe)
        .bind((keep - adding).max(0))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| get(r, "bytes")).collect()
    }

    /// Trims the pipe's history to its newest `keep` entries now (its length was shortened).
    pub async fn trim_history(
        &self,
        dev_id: DevId,
        pipe: &str,
        keep: i64,
    ) -> Result<u64, StorageError> {
        let rows = sqlx::query(&super::batch::trim_by_count_sql())
            .bind(dev_id.0 as i64)
            .bind(pipe)
            .bind(keep)
            .fetch_all(self.pool())
            .await?;
        self.apply_removed(removed_history(&rows)?);
        Ok(rows.len() as u64)
    }

    /// The pipe's history, oldest first, at most `limit` newest entries.
    pub async fn history(
        &self,
        dev_id: DevId,
        pipe: &str,
        limit: i64,
    ) -> Result<Vec<HistoryRow>, StorageError> {
        let rows = sqlx::query(&format!(
            "SELECT pipe, uuid, event, message, user_id, sent_at, pos, sender FROM \
             (SELECT * FROM pipe_history WHERE dev_id = $1 AND pipe = $2 {NEWEST_FIRST} LIMIT $3) h \
             ORDER BY pos, id"
        ))
        .bind(dev_id.0 as i64)
        .bind(pipe)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(history_row).collect()
    }

    pub async fn delete_history(&self, dev_id: DevId, pipe: &str) -> Result<u64, StorageError> {
        let rows = sqlx::query(&format!(
            "DELETE FROM pipe_history WHERE dev_id = $1 AND pipe = $2 \
             RETURNING dev_id, {ENTRY_BYTES} AS bytes"
        ))
        .bind(dev_id.0 as i64)
        .bind(pipe)
        .fetch_all(self.pool())
        .await?;
        self.apply_removed(removed_history(&rows)?);
        Ok(rows.len() as u64)
    }

    pub async fn delete_history_entry(
        &self,
        dev_id: DevId,
        uuid: &str,
    ) -> Result<u64, StorageError> {
        let rows = sqlx::query(&format!(
            "DELETE FROM pipe_history WHERE dev_id = $1 AND uuid = $2 \
             RETURNING dev_id, {ENTRY_BYTES} AS bytes"
        ))
        .bind(dev_id.0 as i64)
        .bind(uuid)
        .fetch_all(self.pool())
        .await?;
        self.apply_removed(removed_history(&rows)?);
        Ok(rows.len() as u64)
    }

    /// `trust_` pipes keep every message for a while only (docs/reference-cppcomet.md 7.3). (`LIKE 'trust_%'` would
    /// also match `trusty`: `_` is a wildcard.)
    pub async fn purge_trust_history(&self, before: i64) -> Result<u64, StorageError> {
        let rows = sqlx::query(&format!(
            "DELETE FROM pipe_history WHERE substr(pipe, 1, 6) = 'trust_' AND sent_at < $1 \
             RETURNING dev_id, {ENTRY_BYTES} AS bytes"
        ))
        .bind(before)
        .fetch_all(self.pool())
        .await?;
        self.apply_removed(removed_history(&rows)?);
        Ok(rows.len() as u64)
    }

    /// The configured history length of the pipe, if it has settings.
    pub async fn pipe_length(
        &self,
        dev_id: DevId,
        pipe: &str,
    ) -> Result<Option<i64>, StorageError> {
        let row = sqlx::query("SELECT length FROM pipe_settings WHERE dev_id = $1 AND pipe = $2")
            .bind(dev_id.0 as i64)
            .bind(pipe)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| get(&r, "length")).transpose()
    }

    /// Sets the pipe's history length. Switching history off (0) forgets the pipe's epoch: messages
    /// published meanwhile are neither stored nor numbered, so a page must not resume the old epoch later.
    pub async fn set_pipe_length(
        &self,
        dev_id: DevId,
        pipe: &str,
        length: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO pipe_settings (dev_id, pipe, length) VALUES ($1, $2, $3) \
             ON CONFLICT (dev_id, pipe) DO UPDATE SET length = excluded.length, \
             epoch = CASE WHEN excluded.length = 0 THEN NULL ELSE pipe_settings.epoch END",
        )
        .bind(dev_id.0 as i64)
        .bind(pipe)
        .bind(length)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Removes the pipe's settings and its history.
    pub async fn delete_pipe_settings(
        &self,
        dev_id: DevId,
        pipe: &str,
    ) -> Result<(), StorageError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM pipe_settings WHERE dev_id = $1 AND pipe = $2")
            .bind(dev_id.0 as i64)
            .bind(pipe)
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(&format!(
            "DELETE FROM pipe_history WHERE dev_id = $1 AND pipe = $2 \
             RETURNING dev_id, {ENTRY_BYTES} AS bytes"
        ))
        .bind(dev_id.0 as i64)
        .bind(pipe)
        .fetch_all(&mut *tx)
        .await?;
        let removed = removed_history(&rows)?;
        tx.commit().await?;
        self.apply_removed(removed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fewer-pages migration rebuilds SQLite's pipe_history without AUTOINCREMENT and its id index:
    /// rows keep their ids and positions, sqlite_sequence forgets the table, and the pipe's one index
    /// serves reads in (position, id) order.
    #[tokio::test]
    async fn sqlite_history_is_rebuilt_without_autoincrement_or_its_id_index() {
        const REBUILD: i64 = 20261207000017;
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
        let s = Storage::open(&url).await.unwrap();
        let before = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(
                super::super::SQLITE_MIGRATIONS
                    .migrations
                    .iter()
                    .filter(|m| m.version < REBUILD)
                    .cloned()
                    .collect(),
            ),
            ignore_missing: false,
            locking: true,
            no_tx: false,
        };
        before.run(s.pool()).await.unwrap();
        for (pipe, pos) in [("web_a", Some(1)), ("trust_x", None), ("web_a", Some(2))] {
            sqlx::query(
                "INSERT INTO pipe_history (dev_id, pipe, uuid, event, message, user_id, sent_at, pos) \
                 VALUES (1, $1, $2, 'e', 'm', 0, 0, $3)",
            )
            .bind(pipe)
            .bind(format!("{pipe}{pos:?}"))
            .bind(pos)
            .execute(s.pool())
            .await
            .unwrap();
        }
        let ids = "SELECT id, pipe, pos FROM pipe_history ORDER BY id";
        let read = |rows: Vec<AnyRow>| -> Vec<(i64, String, Option<i64>)> {
            rows.iter()
                .map(|r| {
                    let id = get(r, "id").unwrap();
                    (id, get(r, "pipe").unwrap(), get(r, "pos").unwrap())
                })
                .collect()
        };
        let was = read(sqlx::query(ids).fetch_all(s.pool()).await.unwrap());
        s.migrate().await.unwrap();
        assert_eq!(
            read(sqlx::query(ids).fetch_all(s.pool()).await.unwrap()),
            was
        );
        let schema: Vec<String> = sqlx::query(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'pipe_history' AND sql IS NOT NULL ORDER BY name",
        )
        .fetch_all(s.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| get(r, "sql").unwrap())
        .collect();
        assert_eq!(schema.len(), 3, "the table and two indexes: {schema:?}");
        assert!(!schema[0].contains("AUTOINCREMENT"), "{schema:?}");
        assert!(schema[1].contains("(dev_id, pipe, pos)"), "{schema:?}");
        assert!(schema[2].contains("(dev_id, uuid)"), "{schema:?}");
        let sequenced = sqlx::query("SELECT name FROM sqlite_sequence WHERE name = 'pipe_history'")
            .fetch_optional(s.pool())
            .await
            .unwrap();
        assert!(sequenced.is_none());
        let rows = s.history(DevId(1), "web_a", 99).await.unwrap();
        let pos: Vec<Option<i64>> = rows.iter().map(|r| r.pos).collect();
        assert_eq!(pos, [Some(1), Some(2)]);
        assert_eq!(s.history(DevId(1), "trust_x", 99).await.unwrap().len(), 1);
        s.close().await;
    }

    /// The trim-by-position migration numbers rows stored before positions existed 0, -1, -2... newest
    /// first, per pipe, and leaves trust_ pipes alone (run again here on rows stored without positions).
    #[tokio::test]
    async fn legacy_rows_are_numbered_below_the_first_offset() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
        let s = Storage::open(&url).await.unwrap();
        s.migrate().await.unwrap();
        for (pipe, n) in [("web_a", 3), ("web_b", 2), ("trust_x", 2)] {
            for i in 0..n {
                sqlx::query(
                    "INSERT INTO pipe_history (dev_id, pipe, uuid, event, message, user_id, sent_at) \
                     VALUES (1, $1, $2, 'e', 'm', 0, 0)",
                )
                .bind(pipe)
                .bind(format!("{pipe}{i}"))
                .execute(s.pool())
                .await
                .unwrap();
            }
        }
        let migration =
            include_str!("../../../migrations/sqlite/20261204000001_history_by_position.sql")
                .replace(
                    "CREATE INDEX pipe_history_by_pos ON pipe_history (dev_id, pipe, pos);",
                    "",
                );
        sqlx::raw_sql(&migration).execute(s.pool()).await.unwrap();
        let rows = sqlx::query("SELECT pipe, pos FROM pipe_history ORDER BY id")
            .fetch_all(s.pool())
            .await
            .unwrap();
        let got: Vec<(String, Option<i64>)> = rows
            .iter()
            .map(|r| (get(r, "pipe").unwrap(), get(r, "pos").unwrap()))
            .collect();
        let want = [
            ("web_a", Some(-2)),
            ("web_a", Some(-1)),
            ("web_a", Some(0)),
            ("web_b", Some(-1)),
            ("web_b", Some(0)),
            ("trust_x", None),
            ("trust_x", None),
        ];
        let want: Vec<(String, Option<i64>)> =
            want.iter().map(|(p, n)| (p.to_string(), *n)).collect();
        assert_eq!(got, want);
        s.close().await;
    }
}
