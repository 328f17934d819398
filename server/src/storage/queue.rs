//! The queue of private messages (users_messages): what waits for a user who is not connected. Enqueues,
//! claims and put-backs go through the writer (`writer/`, their statements in `batch/`), batched with
//! other writes; reads and the rare deletes run here.

use std::collections::HashMap;

use super::{get, Columns, Storage, StorageError};
use crate::ids::{DevId, UserId};

/// A private message waiting for its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub id: i64,
    pub uuid: String,
    pub event: String,
    pub message: String,
    pub sent_at: i64,
}

impl QueuedMessage {
    pub(super) fn from_row(r: &impl Columns) -> Result<Self, StorageError> {
        Ok(QueuedMessage {
            id: r.int("id")?,
            uuid: r.text("uuid")?,
            event: r.text("event")?,
            message: r.text("message")?,
            sent_at: r.int("sent_at")?,
        })
    }
}

impl Storage {
    /// Queues a message for the user (through the writer: committed before this returns).
    pub async fn enqueue_message(
        &self,
        dev_id: DevId,
        user: UserId,
        msg: &QueuedMessage,
        expires_at: i64,
    ) -> Result<(), StorageError> {
        self.writer
            .enqueue(dev_id, user, msg.clone(), expires_at)
            .await
    }

    /// Puts claimed messages back where they were: under their own ids, so that they come before the
    /// messages queued after them (a new id would send them to the back of the queue), with `expires_at`.
    /// Through the writer, like the claim: while the database is locked it waits (and tries again) as every
    /// queue write does, rather than failing and losing them.
    pub async fn put_back_messages(
        &self,
        dev_id: DevId,
        user: UserId,
        msgs: &[QueuedMessage],
        expires_at: i64,
    ) -> Result<(), StorageError> {
        if msgs.is_empty() {
            return Ok(());
        }
        self.writer
            .put_back(dev_id, user, msgs.to_vec(), expires_at)
            .await
    }

    /// The user's unexpired queued messages, oldest first.
    pub async fn queued_messages(
        &self,
        dev_id: DevId,
        user: UserId,
        now: i64,
        limit: i64,
    ) -> Result<Vec<QueuedMessage>, StorageError> {
        self.queued_messages_after(dev_id, user, now, 0, limit)
            .await
    }

    /// One page of the user's unexpired queued messages, oldest first: those after the id `after` (0 for the
    /// first page), at most `limit`. For readers that must not hold a whole queue at once.
    pub async fn queued_messages_after(
        &self,
        dev_id: DevId,
        user: UserId,
        now: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<QueuedMessage>, StorageError> {
        let rows = sqlx::query(
            "SELECT id, uuid, event, message, sent_at FROM user_messages \
             WHERE dev_id = $1 AND user_id = $2 AND expires_at > $3 AND id > $4 ORDER BY id LIMIT $5",
        )
        .bind(dev_id.0 as i64)
        .bind(user.0 as i64)
        .bind(now)
        .bind(after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(QueuedMessage::from_row).collect()
    }

    /// Takes the user's oldest unexpired queued messages (at most `limit`) out of the queue in one
    /// statement (through the writer), oldest first: the caller now owns their delivery. A message a
    /// concurrent sender claimed first (`claim_queued_uuid`) is not among them, and one in them is not
    /// claimed by anyone else.
    pub async fn claim_queued_batch(
        &self,
        dev_id: DevId,
        user: UserId,
        now: i64,
        limit: i64,
    ) -> Result<Vec<QueuedMessage>, StorageError> {
        self.writer.claim(dev_id, user, now, limit).await
    }

    /// Takes one queued message out of the queue by its uuid (known to its sender); `true` for the one
    /// caller that removed it, who then owns its delivery (a connecting user's drain and the sender race
    /// for it).
    pub async fn claim_queued_uuid(&self, dev_id: DevId, uuid: &str) -> Result<bool, StorageError> {
        self.writer.claim_uuid(dev_id, uuid).await
    }

    /// Removes queued messages up to and including `through_id` (those just delivered).
    pub async fn delete_queued_through(
        &self,
        dev_id: DevId,
        user: UserId,
        through_id: i64,
    ) -> Result<u64, StorageError> {
        let r = sqlx::query(
            "DELETE FROM user_messages WHERE dev_id = $1 AND user_id = $2 AND id <= $3",
        )
        .bind(dev_id.0 as i64)
        .bind(user.0 as i64)
        .bind(through_id)
        .execute(self.pool())
        .await?;
        self.totals
            .apply_queued(dev_id, user, -(r.rows_affected() as i64));
        Ok(r.rows_affected())
    }

    pub async fn delete_queued(&self, dev_id: DevId, user: UserId) -> Result<u64, StorageError> {
        self.delete_queued_through(dev_id, user, i64::MAX).await
    }

    pub async fn purge_expired_messages(&self, now: i64) -> Result<u64, StorageError> {
        let rows = sqlx::query(
            "DELETE FROM user_messages WHERE expires_at <= $1 RETURNING dev_id, user_id",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await?;
        self.unqueued(&rows)?;
        Ok(rows.len() as u64)
    }

    /// Counts out of the totals the queued messages that a `RETURNING dev_id, user_id` delete removed.
    fn unqueued(&self, rows: &[sqlx::any::AnyRow]) -> Result<(), StorageError> {
        let mut per_user: HashMap<(DevId, UserId), i64> = HashMap::new();
        for r in rows {
            let key = (
                DevId(get::<i64>(r, "dev_id")? as u64),
                UserId(get::<i64>(r, "user_id")? as u64),
            );
            *per_user.entry(key).or_default() += 1;
        }
        for ((dev_id, user), n) in per_user {
            self.totals.apply_queued(dev_id, user, -n);
        }
        Ok(())
    }
}
