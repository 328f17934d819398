//! Per-user durable state of a tenant: users_auth, users_data, users_time, revoked_tokens and the queue of
//! private messages (users_messages).

use super::{get, Storage, StorageError};
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

/// The per-user tables that are a plain (dev_id, user_id) → text map.
#[derive(Debug, Clone, Copy)]
pub enum UserTable {
    Auth,
    Data,
}

impl UserTable {
    fn sql(self) -> (&'static str, &'static str) {
        match self {
            UserTable::Auth => ("users_auth", "hash"),
            UserTable::Data => ("users_data", "data"),
        }
    }
}

impl Storage {
    pub async fn put_user_value(
        &self,
        table: UserTable,
        dev_id: DevId,
        user: UserId,
        value: &str,
    ) -> Result<(), StorageError> {
        let (t, c) = table.sql();
        sqlx::query(&format!(
            "INSERT INTO {t} (dev_id, user_id, {c}) VALUES ($1, $2, $3) \
             ON CONFLICT (dev_id, user_id) DO UPDATE SET {c} = excluded.{c}"
        ))
        .bind(dev_id.0 as i64)
        .bind(user.0 as i64)
        .bind(value)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn user_value(
        &self,
        table: UserTable,
        dev_id: DevId,
        user: UserId,
    ) -> Result<Option<String>, StorageError> {
        let (t, c) = table.sql();
        let row = sqlx::query(&format!(
            "SELECT {c} AS v FROM {t} WHERE dev_id = $1 AND user_id = $2"
        ))
        .bind(dev_id.0 as i64)
        .bind(user.0 as i64)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| get(&r, "v")).transpose()
    }

    pub async fn delete_user_value(
        &self,
        table: UserTable,
        dev_id: DevId,
        user: UserId,
    ) -> Result<u64, StorageError> {
        let (t, _) = table.sql();
        let r = sqlx::query(&format!(
            "DELETE FROM {t} WHERE dev_id = $1 AND user_id = $2"
        ))
        .bind(dev_id.0 as i64)
        .bind(user.0 as i64)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected())
    }

    /// 0 while online, the last disconnect time after.
    pub async fn set_last_online(
        &self,
        dev_id: DevId,
        user: UserId,
        time: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO users_time (dev_id, user_id, last_online) VALUES ($1, $2, $3) \
             ON CONFLICT (dev_id, user_id) DO UPDATE SET last_online = excluded.last_online",
        )
        .bind(dev_id.0 as i64)
        .bind(user.0 as i64)
        .bind(time)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn last_online(
        &self,
        dev_id: DevId,
        user: UserId,
    ) -> Result<Option<i64>, StorageError> {
        let row =
            sqlx::query("SELECT last_online FROM users_time WHERE dev_id = $1 AND user_id = $2")
                .bind(dev_id.0 as i64)
                .bind(user.0 as i64)
                .fetch_optional(self.pool())
                .await?;
        row.map(|r| get(&r, "last_online")).transpose()
    }

    /// Users recorded online (time 0) when the server stopped are offline now: their sockets are gone.
    pub async fn mark_all_offline(&self, now: i64) -> Result<(), StorageError> {
        sqlx::query("UPDATE users_time SET last_online = $1 WHERE last_online = 0")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn enqueue_message(
        &self,
        dev_id: DevId,
        user: UserId,
        msg: &QueuedMessage,
        expires_at: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO user_messages (dev_id, user_id, uuid, event, message, sent_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(dev_id.0 as i64)
        .bind(user.0 as i64)
        .bind(&msg.uuid)
        .bind(&msg.event)
        .bind(&msg.message)
        .bind(msg.sent_at)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The user's unexpired queued messages, oldest first.
    pub async fn queued_messages(
        &self,
        dev_id: DevId,
        user: UserId,
        now: i64,
        limit: i64,
    ) -> Result<Vec<QueuedMessage>, StorageError> {
        let rows = sqlx::query(
            "SELECT id, uuid, event, message, sent_at FROM user_messages \
             WHERE dev_id = $1 AND user_id = $2 AND expires_at > $3 ORDER BY id LIMIT $4",
        )
        .bind(dev_id.0 as i64)
        .bind(user.0 as i64)
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QueuedMessage {
                    id: get(r, "id")?,
                    uuid: get(r, "uuid")?,
                    event: get(r, "event")?,
                    message: get(r, "message")?,
                    sent_at: get(r, "sent_at")?,
                })
            })
            .collect()
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
        rows.iter()
            .map(|r| {
                Ok(QueuedMessage {
                    id: get(r, "id")?,
                    uuid: get(r, "uuid")?,
                    event: get(r, "event")?,
                    message: get(r, "message")?,
                    sent_at: get(r, "sent_at")?,
                })
            })
            .collect()
    }

    /// Takes one queued message out of the queue; `true` for the one caller that removed it, who then
    /// owns its delivery (a connecting user's drain and a concurrent sender may race for it).
    pub async fn claim_queued(
        &self,
        dev_id: DevId,
        user: UserId,
        id: i64,
    ) -> Result<bool, StorageError> {
        let r =
            sqlx::query("DELETE FROM user_messages WHERE dev_id = $1 AND user_id = $2 AND id = $3")
                .bind(dev_id.0 as i64)
                .bind(user.0 as i64)
                .bind(id)
                .execute(self.pool())
                .await?;
        Ok(r.rows_affected() == 1)
    }

    /// As `claim_queued`, by the message's uuid (known to its sender).
    pub async fn claim_queued_uuid(&self, dev_id: DevId, uuid: &str) -> Result<bool, StorageError> {
        let r = sqlx::query("DELETE FROM user_messages WHERE dev_id = $1 AND uuid = $2")
            .bind(dev_id.0 as i64)
            .bind(uuid)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected() == 1)
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
        Ok(r.rows_affected())
    }

    pub async fn delete_queued(&self, dev_id: DevId, user: UserId) -> Result<u64, StorageError> {
        self.delete_queued_through(dev_id, user, i64::MAX).await
    }

    pub async fn purge_expired_messages(&self, now: i64) -> Result<u64, StorageError> {
        let r = sqlx::query("DELETE FROM user_messages WHERE expires_at <= $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected())
    }

    pub async fn revoke_token(
        &self,
        dev_id: DevId,
        token: &str,
        now: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO revoked_tokens (dev_id, token, revoked_at) VALUES ($1, $2, $3) \
             ON CONFLICT (dev_id, token) DO NOTHING",
        )
        .bind(dev_id.0 as i64)
        .bind(token)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn is_revoked(&self, dev_id: DevId, token: &str) -> Result<bool, StorageError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM revoked_tokens WHERE dev_id = $1 AND token = $2",
        )
        .bind(dev_id.0 as i64)
        .bind(token)
        .fetch_one(self.pool())
        .await?;
        Ok(get::<i64>(&row, "n")? > 0)
    }

    /// All revoked tokens of the tenant, oldest first.
    pub async fn revoked_tokens(&self, dev_id: DevId) -> Result<Vec<String>, StorageError> {
        let rows = sqlx::query(
            "SELECT token FROM revoked_tokens WHERE dev_id = $1 ORDER BY revoked_at, token",
        )
        .bind(dev_id.0 as i64)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| get(r, "token")).collect()
    }

    pub async fn unrevoke_token(&self, dev_id: DevId, token: &str) -> Result<u64, StorageError> {
        let r = sqlx::query("DELETE FROM revoked_tokens WHERE dev_id = $1 AND token = $2")
            .bind(dev_id.0 as i64)
            .bind(token)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected())
    }
}
