//! Durable per-tenant usage: messages published per UTC day (`day` = days since 1970-01-01).

use super::{get, Storage, StorageError};
use crate::ids::DevId;

impl Storage {
    /// Adds `messages` to the tenant's count for `day`.
    pub async fn add_usage(
        &self,
        dev_id: DevId,
        day: i64,
        messages: u64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO usage_daily (dev_id, day, messages) VALUES ($1, $2, $3) \
             ON CONFLICT (dev_id, day) DO UPDATE SET messages = usage_daily.messages + excluded.messages",
        )
        .bind(dev_id.0 as i64)
        .bind(day)
        .bind(messages as i64)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Messages stored for the days `from..=to`.
    pub async fn usage_between(
        &self,
        dev_id: DevId,
        from: i64,
        to: i64,
    ) -> Result<u64, StorageError> {
        // CAST: SUM of a BIGINT is NUMERIC in PostgreSQL, which the Any driver cannot decode.
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(messages), 0) AS BIGINT) AS n FROM usage_daily \
             WHERE dev_id = $1 AND day >= $2 AND day <= $3",
        )
        .bind(dev_id.0 as i64)
        .bind(from)
        .bind(to)
        .fetch_one(self.pool())
        .await?;
        Ok(get::<i64>(&row, "n")?.max(0) as u64)
    }
}
