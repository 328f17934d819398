//! Per-tenant allowed origins for WebSocket upgrades. An empty list means any origin may connect.

use super::{get, Storage, StorageError};
use crate::ids::DevId;

impl Storage {
    /// The tenant's allowed origins, sorted; empty means "any origin".
    pub async fn allowed_origins(&self, dev_id: DevId) -> Result<Vec<String>, StorageError> {
        let rows =
            sqlx::query("SELECT origin FROM tenant_origins WHERE dev_id = $1 ORDER BY origin")
                .bind(dev_id.0 as i64)
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(|r| get(r, "origin")).collect()
    }

    /// Replaces the whole list in one transaction, so a WebSocket upgrade never sees half of it.
    pub async fn set_allowed_origins(
        &self,
        dev_id: DevId,
        origins: &[String],
    ) -> Result<(), StorageError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM tenant_origins WHERE dev_id = $1")
            .bind(dev_id.0 as i64)
            .execute(&mut *tx)
            .await?;
        for origin in origins {
            sqlx::query("INSERT INTO tenant_origins (dev_id, origin) VALUES ($1, $2)")
                .bind(dev_id.0 as i64)
                .bind(origin)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
