//! Tenants and their secret keys. Keys arrive here already sealed; this file never sees a key in clear.

use sqlx::any::AnyRow;

use super::{get, Storage, StorageError};
use crate::ids::DevId;

#[derive(Debug, Clone)]
pub struct TenantRow {
    pub dev_id: DevId,
    pub email: String,
    pub created_at: i64,
    pub active_keys: i64,
    pub app_key: String,
}

#[derive(Debug, Clone)]
pub struct KeyRow {
    pub id: i64,
    pub dev_id: DevId,
    pub name: String,
    pub sealed: Vec<u8>,
    pub verifier: Vec<u8>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// What [`Storage::create_tenant_with_key`] stores besides the sealed key.
#[derive(Debug, Clone, Copy)]
pub struct NewTenantRow<'a> {
    pub email: &'a str,
    pub password_hash: Option<&'a str>,
    /// The public Pusher app key (unique across tenants).
    pub app_key: &'a str,
    pub key_name: &'a str,
    pub verifier: &'a [u8],
    pub now: i64,
}

fn conflict_on_email(e: sqlx::Error) -> StorageError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StorageError::Conflict("a tenant with this email already exists")
        }
        _ => StorageError::Db(e),
    }
}

fn dev(row: &AnyRow) -> Result<DevId, StorageError> {
    Ok(DevId(get::<i64>(row, "dev_id")? as u64))
}

impl Storage {
    /// A new tenant and its first key in one transaction: if the key cannot be stored, the tenant is not
    /// created either (no account without a key, and the email stays free). The key is sealed by `seal`
    /// because its seal names the dev_id, which only the tenant's insert yields. Returns the dev_id and key id.
    pub async fn create_tenant_with_key(
        &self,
        new: NewTenantRow<'_>,
        seal: impl FnOnce(DevId) -> Vec<u8>,
    ) -> Result<(DevId, i64), StorageError> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            "INSERT INTO tenants (email, password_hash, created_at, app_key) VALUES ($1, $2, $3, $4) \
             RETURNING dev_id",
        )
        .bind(new.email)
        .bind(new.password_hash)
        .bind(new.now)
        .bind(new.app_key)
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict_on_email)?;
        let dev_id = dev(&row)?;
        let row = sqlx::query(
            "INSERT INTO tenant_keys (dev_id, name, sealed, verifier, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(dev_id.0 as i64)
        .bind(new.key_name)
        .bind(seal(dev_id))
        .bind(new.verifier.to_vec())
        .bind(new.now)
        .fetch_one(&mut *tx)
        .await?;
        let key_id = get(&row, "id")?;
        tx.commit().await?;
        Ok((dev_id, key_id))
    }

    pub async fn list_tenants(&self) -> Result<Vec<TenantRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT t.dev_id, t.email, t.created_at, t.app_key, \
                    (SELECT COUNT(*) FROM tenant_keys k WHERE k.dev_id = t.dev_id AND k.revoked_at IS NULL) AS active_keys \
             FROM tenants t ORDER BY t.dev_id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TenantRow {
                    dev_id: dev(r)?,
                    email: get(r, "email")?,
                    created_at: get(r, "created_at")?,
                    active_keys: get(r, "active_keys")?,
                    app_key: get::<Option<String>>(r, "app_key")?.unwrap_or_default(),
                })
            })
            .collect()
    }

    /// The tenant whose public Pusher app key is `app_key`.
    pub async fn tenant_by_app_key(&self, app_key: &str) -> Result<Option<DevId>, StorageError> {
        let row = sqlx::query("SELECT dev_id FROM tenants WHERE app_key = $1")
            .bind(app_key)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(dev).transpose()
    }

    /// A tenant's public Pusher app key (None: no such tenant).
    pub async fn app_key(&self, dev_id: DevId) -> Result<Option<String>, StorageError> {
        let row = sqlx::query("SELECT app_key FROM tenants WHERE dev_id = $1")
            .bind(dev_id.0 as i64)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(r) => Ok(get::<Option<String>>(&r, "app_key")?),
            None => Ok(None),
        }
    }

    pub async fn tenant_exists(&self, dev_id: DevId) -> Result<bool, StorageError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM tenants WHERE dev_id = $1")
            .bind(dev_id.0 as i64)
            .fetch_one(self.pool())
            .await?;
        Ok(get::<i64>(&row, "n")? > 0)
    }

    /// Stores a key unless the tenant already has `cap` active keys (None then). On PostgreSQL the tenant's
    /// row is locked first so that concurrent creations cannot pass the cap together; SQLite has one writer.
    pub async fn add_key(
        &self,
        dev_id: DevId,
        name: &str,
        sealed: &[u8],
        verifier: &[u8],
        now: i64,
        cap: usize,
    ) -> Result<Option<i64>, StorageError> {
        let mut tx = self.pool().begin().await?;
        if self.backend() == super::Backend::Postgres {
            sqlx::query("SELECT dev_id FROM tenants WHERE dev_id = $1 FOR UPDATE")
                .bind(dev_id.0 as i64)
                .fetch_optional(&mut *tx)
                .await?;
        }
        let row = sqlx::query(
            "INSERT INTO tenant_keys (dev_id, name, sealed, verifier, created_at) \
             SELECT $1, $2, $3, $4, $5 \
             WHERE (SELECT COUNT(*) FROM tenant_keys WHERE dev_id = $1 AND revoked_at IS NULL) < $6 \
             RETURNING id",
        )
        .bind(dev_id.0 as i64)
        .bind(name)
        .bind(sealed.to_vec())
        .bind(verifier.to_vec())
        .bind(now)
        .bind(i64::try_from(cap).unwrap_or(i64::MAX))
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.map(|r| get(&r, "id")).transpose()
    }

    /// The tenant's keys that are not revoked, oldest first.
    pub async fn active_keys(&self, dev_id: DevId) -> Result<Vec<KeyRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT id, dev_id, name, sealed, verifier, created_at, last_used_at FROM tenant_keys \
             WHERE dev_id = $1 AND revoked_at IS NULL ORDER BY id",
        )
        .bind(dev_id.0 as i64)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyRow {
                    id: get(r, "id")?,
                    dev_id: dev(r)?,
                    name: get(r, "name")?,
                    sealed: get(r, "sealed")?,
                    verifier: get(r, "verifier")?,
                    created_at: get(r, "created_at")?,
                    last_used_at: get(r, "last_used_at")?,
                })
            })
            .collect()
    }

    pub async fn touch_key(&self, key_id: i64, now: i64) -> Result<(), StorageError> {
        sqlx::query("UPDATE tenant_keys SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(key_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

/// A tenant's limit overrides as stored (NULL keeps the global value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitRow {
    pub dev_id: DevId,
    pub publishes_per_sec: Option<i64>,
    pub publish_burst: Option<i64>,
    pub websocket_connections: Option<i64>,
    pub queue_ttl_secs: Option<i64>,
    /// The tenant's recovery window: messages kept per pipe, and for how long.
    pub window_messages: Option<i64>,
    pub window_secs: Option<i64>,
}

impl Storage {
    pub async fn tenant_limits(&self) -> Result<Vec<LimitRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT dev_id, publishes_per_sec, publish_burst, websocket_connections, queue_ttl_secs, \
             window_messages, window_secs FROM tenant_limits",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LimitRow {
                    dev_id: dev(r)?,
                    publishes_per_sec: get(r, "publishes_per_sec")?,
                    publish_burst: get(r, "publish_burst")?,
                    websocket_connections: get(r, "websocket_connections")?,
                    queue_ttl_secs: get(r, "queue_ttl_secs")?,
                    window_messages: get(r, "window_messages")?,
                    window_secs: get(r, "window_secs")?,
                })
            })
            .collect()
    }

    pub async fn set_tenant_limits(&self, l: &LimitRow) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO tenant_limits \
             (dev_id, publishes_per_sec, publish_burst, websocket_connections, queue_ttl_secs, \
             window_messages, window_secs) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (dev_id) DO UPDATE SET \
             publishes_per_sec = excluded.publishes_per_sec, publish_burst = excluded.publish_burst, \
             websocket_connections = excluded.websocket_connections, \
             queue_ttl_secs = excluded.queue_ttl_secs, window_messages = excluded.window_messages, \
             window_secs = excluded.window_secs",
        )
        .bind(l.dev_id.0 as i64)
        .bind(l.publishes_per_sec)
        .bind(l.publish_burst)
        .bind(l.websocket_connections)
        .bind(l.queue_ttl_secs)
        .bind(l.window_messages)
        .bind(l.window_secs)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

/// A tenant's storage quota overrides as stored in tenant_limits (NULL keeps the global value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaRow {
    pub dev_id: DevId,
    pub history_bytes: Option<i64>,
    pub history_rows: Option<i64>,
    pub queued_per_user: Option<i64>,
    pub queued_per_tenant: Option<i64>,
    pub users_data: Option<i64>,
    pub revoked_tokens: Option<i64>,
}

const QUOTA_COLUMNS: &str =
    "history_bytes, history_rows, queued_per_user, queued_per_tenant, users_data, revoked_tokens";

impl Storage {
    pub async fn tenant_quotas(&self) -> Result<Vec<QuotaRow>, StorageError> {
        let rows = sqlx::query(&format!(
            "SELECT dev_id, {QUOTA_COLUMNS} FROM tenant_limits"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QuotaRow {
                    dev_id: dev(r)?,
                    history_bytes: get(r, "history_bytes")?,
                    history_rows: get(r, "history_rows")?,
                    queued_per_user: get(r, "queued_per_user")?,
                    queued_per_tenant: get(r, "queued_per_tenant")?,
                    users_data: get(r, "users_data")?,
                    revoked_tokens: get(r, "revoked_tokens")?,
                })
            })
            .collect()
    }

    /// Sets the tenant's quota overrides, leaving its other limits as they are.
    pub async fn set_tenant_quotas(&self, q: &QuotaRow) -> Result<(), StorageError> {
        sqlx::query(&format!(
            "INSERT INTO tenant_limits (dev_id, {QUOTA_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (dev_id) DO UPDATE SET history_bytes = excluded.history_bytes, \
             history_rows = excluded.history_rows, queued_per_user = excluded.queued_per_user, \
             queued_per_tenant = excluded.queued_per_tenant, users_data = excluded.users_data, \
             revoked_tokens = excluded.revoked_tokens"
        ))
        .bind(q.dev_id.0 as i64)
        .bind(q.history_bytes)
        .bind(q.history_rows)
        .bind(q.queued_per_user)
        .bind(q.queued_per_tenant)
        .bind(q.users_data)
        .bind(q.revoked_tokens)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

/// A tenant's on/off settings kept in `tenant_limits` (0 or 1, off without a row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantFlag {
    /// CometQL logins must come over TLS.
    RequireTls,
    /// Pusher client events (`client-*`) are relayed.
    ClientEvents,
}

impl TenantFlag {
    fn column(self) -> &'static str {
        match self {
            TenantFlag::RequireTls => "require_tls",
            TenantFlag::ClientEvents => "client_events",
        }
    }
}

impl Storage {
    /// The tenants that have `flag` on.
    pub async fn tenants_with(&self, flag: TenantFlag) -> Result<Vec<DevId>, StorageError> {
        let sql = format!(
            "SELECT dev_id FROM tenant_limits WHERE {} = 1",
            flag.column()
        );
        let rows = sqlx::query(&sql).fetch_all(self.pool()).await?;
        rows.iter().map(dev).collect()
    }

    /// Whether the tenant has `flag` on (off when it has no `tenant_limits` row).
    pub async fn tenant_flag(&self, dev_id: DevId, flag: TenantFlag) -> Result<bool, StorageError> {
        let column = flag.column();
        let sql = format!("SELECT {column} FROM tenant_limits WHERE dev_id = $1");
        let row = sqlx::query(&sql)
            .bind(dev_id.0 as i64)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => get::<i64>(&r, column)? != 0,
            None => false,
        })
    }

    /// Sets one of the tenant's flags, leaving its other limits as they are.
    pub async fn set_tenant_flag(
        &self,
        dev_id: DevId,
        flag: TenantFlag,
        on: bool,
    ) -> Result<(), StorageError> {
        let column = flag.column();
        let sql = format!(
            "INSERT INTO tenant_limits (dev_id, {column}) VALUES ($1, $2) \
             ON CONFLICT (dev_id) DO UPDATE SET {column} = excluded.{column}"
        );
        sqlx::query(&sql)
            .bind(dev_id.0 as i64)
            .bind(i64::from(on))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The tenants that refuse plaintext CometQL logins (`tenant_limits.require_tls`).
    pub async fn tenants_requiring_tls(&self) -> Result<Vec<DevId>, StorageError> {
        self.tenants_with(TenantFlag::RequireTls).await
    }

    /// Whether the tenant refuses plaintext CometQL logins (false when it has no `tenant_limits` row).
    pub async fn tenant_requires_tls(&self, dev_id: DevId) -> Result<bool, StorageError> {
        self.tenant_flag(dev_id, TenantFlag::RequireTls).await
    }

    /// Sets the tenant's require-TLS flag, leaving its other limits as they are.
    pub async fn set_tenant_require_tls(
        &self,
        dev_id: DevId,
        require: bool,
    ) -> Result<(), StorageError> {
        self.set_tenant_flag(dev_id, TenantFlag::RequireTls, require)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tenants created before app keys existed get one each from the migration, all different (run
    /// again here on rows stored without one).
    #[tokio::test]
    async fn tenants_from_before_get_distinct_app_keys() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let s = Storage::open(&url).await.unwrap();
        s.migrate().await.unwrap();
        for i in 0..50 {
            sqlx::query("INSERT INTO tenants (email, created_at) VALUES ($1, 0)")
                .bind(format!("t{i}@example.com"))
                .execute(s.pool())
                .await
                .unwrap();
        }
        let migration = include_str!("../../../migrations/sqlite/20261205000001_app_key.sql")
            .replace("ALTER TABLE tenants ADD COLUMN app_key TEXT;", "")
            .replace(
                "CREATE UNIQUE INDEX tenants_app_key ON tenants (app_key);",
                "",
            );
        sqlx::raw_sql(&migration).execute(s.pool()).await.unwrap();
        let keys: Vec<String> = s
            .list_tenants()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.app_key)
            .collect();
        assert_eq!(keys.len(), 50);
        assert!(keys
            .iter()
            .all(|k| k.len() == 20 && k.bytes().all(|c| c.is_ascii_hexdigit())));
        let distinct: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), 50);
        s.close().await;
    }
}
