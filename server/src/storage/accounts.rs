//! Dashboard accounts: the tenant's email and password hash, its keys as the owner manages them (look one
//! up, revoke it), and the sessions its owner logged out of. Key material stays sealed here, as in
//! `tenants.rs`.

use super::{get, KeyRow, Storage, StorageError};
use crate::ids::DevId;

/// What logging in to the dashboard needs about a tenant.
#[derive(Debug, Clone)]
pub struct AccountRow {
    pub dev_id: DevId,
    pub email: String,
    /// None for a tenant created from the command line: it cannot log in until a password is set.
    pub password_hash: Option<String>,
    pub created_at: i64,
    /// The public Pusher app key (every tenant has one since migration 20261205000001).
    pub app_key: String,
}

const ACCOUNT_COLUMNS: &str = "dev_id, email, password_hash, created_at, app_key";

fn account(row: &sqlx::any::AnyRow) -> Result<AccountRow, StorageError> {
    Ok(AccountRow {
        dev_id: DevId(get::<i64>(row, "dev_id")? as u64),
        email: get(row, "email")?,
        password_hash: get(row, "password_hash")?,
        created_at: get(row, "created_at")?,
        app_key: get::<Option<String>>(row, "app_key")?.unwrap_or_default(),
    })
}

impl Storage {
    pub async fn account_by_email(&self, email: &str) -> Result<Option<AccountRow>, StorageError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM tenants WHERE email = $1");
        let row = sqlx::query(&sql)
            .bind(email)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(account).transpose()
    }

    pub async fn account(&self, dev_id: DevId) -> Result<Option<AccountRow>, StorageError> {
        let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM tenants WHERE dev_id = $1");
        let row = sqlx::query(&sql)
            .bind(dev_id.0 as i64)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(account).transpose()
    }

    pub async fn set_password_hash(&self, dev_id: DevId, hash: &str) -> Result<(), StorageError> {
        sqlx::query("UPDATE tenants SET password_hash = $1 WHERE dev_id = $2")
            .bind(hash)
            .bind(dev_id.0 as i64)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// One active key of the tenant; None when it does not exist, is revoked or belongs to another tenant.
    pub async fn active_key(
        &self,
        dev_id: DevId,
        key_id: i64,
    ) -> Result<Option<KeyRow>, StorageError> {
        Ok(self
            .active_keys(dev_id)
            .await?
            .into_iter()
            .find(|k| k.id == key_id))
    }

    /// Marks the key revoked. Unless `allow_last`, the tenant's last active key is left alone; the check and
    /// the update are one statement so two concurrent revocations cannot remove the last two keys. False when
    /// nothing was revoked (not an active key of this tenant, or the last one).
    pub async fn revoke_key(
        &self,
        dev_id: DevId,
        key_id: i64,
        allow_last: bool,
        now: i64,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "UPDATE tenant_keys SET revoked_at = $1 \
             WHERE id = $2 AND dev_id = $3 AND revoked_at IS NULL \
               AND ($4 = 1 OR (SELECT COUNT(*) FROM tenant_keys k \
                               WHERE k.dev_id = $3 AND k.revoked_at IS NULL) > 1)",
        )
        .bind(now)
        .bind(key_id)
        .bind(dev_id.0 as i64)
        .bind(i64::from(allow_last))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Remembers that session `sid` ended (logout) until `expires_at`, when its token stops verifying anyway.
    pub async fn end_session(&self, sid: &str, expires_at: i64) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO dashboard_ended_sessions (sid, expires_at) VALUES ($1, $2) \
             ON CONFLICT (sid) DO NOTHING",
        )
        .bind(sid)
        .bind(expires_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn session_ended(&self, sid: &str) -> Result<bool, StorageError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM dashboard_ended_sessions WHERE sid = $1")
            .bind(sid)
            .fetch_one(self.pool())
            .await?;
        Ok(get::<i64>(&row, "n")? > 0)
    }

    pub async fn purge_ended_sessions(&self, now: i64) -> Result<u64, StorageError> {
        let r = sqlx::query("DELETE FROM dashboard_ended_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(r.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ended_sessions_are_remembered_until_their_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
        let s = Storage::open(&url).await.unwrap();
        s.migrate().await.unwrap();
        s.end_session("a", 100).await.unwrap();
        s.end_session("a", 100).await.unwrap();
        s.end_session("b", 300).await.unwrap();
        assert!(s.session_ended("a").await.unwrap());
        assert!(!s.session_ended("c").await.unwrap());
        assert_eq!(s.purge_ended_sessions(200).await.unwrap(), 1);
        assert!(!s.session_ended("a").await.unwrap());
        assert!(s.session_ended("b").await.unwrap());
        s.close().await;
    }
}
