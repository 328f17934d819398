//! Per-user durable state of a tenant: users_auth, users_data, users_time and revoked_tokens (the queue of
//! private messages is in `queue.rs`).

use super::{get, Storage, StorageError, StoredUsage};
use crate::ids::{DevId, UserId};

/// Values per `IN (...)` list: well under the bind limits of both databases.
const IN_CHUNK: usize = 500;

/// `$2, $3, ...` for `n` values after the dev_id.
fn placeholders(n: usize) -> String {
    (2..n + 2)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
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
        // A hash the backend stores never expires, even where a JWT login had minted one that would.
        let never_expires = match table {
            UserTable::Auth => ", expires_at = NULL",
            UserTable::Data => "",
        };
        // Insert first, update when the user already has a value: the row count tells a new row (which
        // the running totals count) from a replaced one, on both databases.
        let mut tx = self.pool().begin().await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO {t} (dev_id, user_id, {c}) VALUES ($1, $2, $3) \
             ON CONFLICT (dev_id, user_id) DO NOTHING"
        ))
        .bind(dev_id.0 as i64)
        .bind(user.0 as i64)
        .bind(value)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            sqlx::query(&format!(
                "UPDATE {t} SET {c} = $3{never_expires} WHERE dev_id = $1 AND user_id = $2"
            ))
            .bind(dev_id.0 as i64)
            .bind(user.0 as i64)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.count_user_values(table, dev_id, inserted as i64);
        Ok(())
    }

    fn count_user_values(&self, table: UserTable, dev_id: DevId, n: i64) {
        if let UserTable::Data = table {
            self.totals.apply(
                dev_id,
                StoredUsage {
                    users_data: n,
                    ..StoredUsage::default()
                },
            );
        }
    }

    /// Which of `users` have a value in the table (for quota checks near the limit: replacing a value
    /// takes no room). One query per 500 users.
    pub async fn users_with_value(
        &self,
        table: UserTable,
        dev_id: DevId,
        users: &[UserId],
    ) -> Result<Vec<UserId>, StorageError> {
        let (t, _) = table.sql();
        let mut found = Vec::new();
        for chunk in users.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT user_id FROM {t} WHERE dev_id = $1 AND user_id IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(dev_id.0 as i64);
            for u in chunk {
                q = q.bind(u.0 as i64);
            }
            for r in q.fetch_all(self.pool()).await? {
                found.push(UserId(get::<i64>(&r, "user_id")? as u64));
            }
        }
        Ok(found)
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

    /// The user's users_auth hash and, for a hash minted by a JWT login, when it expires.
    pub async fn auth_hash(
        &self,
        dev_id: DevId,
        user: UserId,
    ) -> Result<Option<(String, Option<i64>)>, StorageError> {
        let row = sqlx::query(
            "SELECT hash, expires_at FROM users_auth WHERE dev_id = $1 AND user_id = $2",
        )
        .bind(dev_id.0 as i64)
        .bind(user.0 as i64)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| Ok((get(&r, "hash")?, get(&r, "expires_at")?)))
            .transpose()
    }

    /// Stores a hash minted by a JWT login, valid until `expires_at` (the token's `exp`). Through the
    /// writer (committed before this returns): a burst of first logins (a site's JWT users arriving) is
    /// then one commit, not one each, and on SQLite it never fights the writer for the write lock.
    pub async fn put_minted_hash(
        &self,
        dev_id: DevId,
        user: UserId,
        hash: &str,
        expires_at: i64,
    ) -> Result<(), StorageError> {
        self.writer
            .auth(dev_id, user, Some(hash.to_string()), expires_at)
            .await
    }

    /// A later JWT login with a longer-lived token keeps the minted hash valid as long as that token.
    pub async fn extend_minted_hash(
        &self,
        dev_id: DevId,
        user: UserId,
        expires_at: i64,
    ) -> Result<(), StorageError> {
        // Through the writer too, for the same reasons as `put_minted_hash`.
        self.writer.auth(dev_id, user, None, expires_at).await
    }

    /// Drops minted hashes whose token has expired (they authorize no one already).
    pub async fn purge_expired_hashes(&self, now: i64) -> Result<u64, StorageError> {
        let r =
            sqlx::query("DELETE FROM users_auth WHERE expires_at IS NOT NULL AND expires_at <= $1")
                .bind(now)
                .execute(self.pool())
                .await?;
        Ok(r.rows_affected())
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
        self.count_user_values(table, dev_id, -(r.rows_affected() as i64));
        Ok(r.rows_affected())
    }

    /// Notes the users_time value (0 while online, the last disconnect time after), written by the
    /// writer's next batch: a connect or disconnect never waits for the database.
    pub fn note_last_online(&self, dev_id: DevId, user: UserId, time: i64) {
        self.writer.note_time(dev_id, user, time);
    }

    /// The users_time value: one noted and not yet written first.
    pub async fn last_online(
        &self,
        dev_id: DevId,
        user: UserId,
    ) -> Result<Option<i64>, StorageError> {
        if let Some(t) = self.writer.pending_time(dev_id, user) {
            return Ok(Some(t));
        }
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

    pub async fn revoke_token(
        &self,
        dev_id: DevId,
        token: &str,
        now: i64,
    ) -> Result<(), StorageError> {
        let r = sqlx::query(
            "INSERT INTO revoked_tokens (dev_id, token, revoked_at) VALUES ($1, $2, $3) \
             ON CONFLICT (dev_id, token) DO NOTHING",
        )
        .bind(dev_id.0 as i64)
        .bind(token)
        .bind(now)
        .execute(self.pool())
        .await?;
        self.add_revoked(dev_id, r.rows_affected() as i64);
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

    /// How many of `tokens` (distinct) are revoked already. One query per 500 tokens.
    pub async fn count_revoked(&self, dev_id: DevId, tokens: &[&str]) -> Result<i64, StorageError> {
        let mut n = 0;
        for chunk in tokens.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT COUNT(*) AS n FROM revoked_tokens WHERE dev_id = $1 AND token IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(dev_id.0 as i64);
            for t in chunk {
                q = q.bind(*t);
            }
            n += get::<i64>(&q.fetch_one(self.pool()).await?, "n")?;
        }
        Ok(n)
    }

    /// The revoked tokens of the tenant, oldest first, handed to `each` one at a time as the database returns
    /// them, until `each` says stop (`false`): a tenant may hold 100,000 tokens of up to 4 KiB.
    pub async fn revoked_tokens(
        &self,
        dev_id: DevId,
        mut each: impl FnMut(String) -> bool,
    ) -> Result<(), StorageError> {
        use futures_util::TryStreamExt;
        let mut rows = sqlx::query(
            "SELECT token FROM revoked_tokens WHERE dev_id = $1 ORDER BY revoked_at, token",
        )
        .bind(dev_id.0 as i64)
        .fetch(self.pool());
        while let Some(row) = rows.try_next().await? {
            if !each(get(&row, "token")?) {
                break;
            }
        }
        Ok(())
    }

    /// Which of `tokens` (distinct) are revoked, oldest first as [`Storage::revoked_tokens`] orders them.
    /// One query per 500 tokens; what it returns is at most what was asked for.
    pub async fn revoked_among(
        &self,
        dev_id: DevId,
        tokens: &[&str],
    ) -> Result<Vec<String>, StorageError> {
        let mut found: Vec<(i64, String)> = Vec::new();
        for chunk in tokens.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT token, revoked_at FROM revoked_tokens WHERE dev_id = $1 AND token IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(dev_id.0 as i64);
            for t in chunk {
                q = q.bind(*t);
            }
            for r in q.fetch_all(self.pool()).await? {
                found.push((get(&r, "revoked_at")?, get(&r, "token")?));
            }
        }
        found.sort();
        Ok(found.into_iter().map(|(_, t)| t).collect())
    }

    pub async fn unrevoke_token(&self, dev_id: DevId, token: &str) -> Result<u64, StorageError> {
        let r = sqlx::query("DELETE FROM revoked_tokens WHERE dev_id = $1 AND token = $2")
            .bind(dev_id.0 as i64)
            .bind(token)
            .execute(self.pool())
            .await?;
        self.add_revoked(dev_id, -(r.rows_affected() as i64));
        Ok(r.rows_affected())
    }

    fn add_revoked(&self, dev_id: DevId, n: i64) {
        self.totals.apply(
            dev_id,
            StoredUsage {
                revoked_tokens: n,
                ..StoredUsage::default()
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn minted_hashes_expire_and_a_stored_hash_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("h.db").display());
        let s = Storage::open(&url).await.unwrap();
        s.migrate().await.unwrap();
        let (dev, u5, u6) = (DevId(1), UserId(5), UserId(6));
        s.put_minted_hash(dev, u5, "m5", 100).await.unwrap();
        s.put_minted_hash(dev, u6, "m6", 100).await.unwrap();
        s.extend_minted_hash(dev, u5, 200).await.unwrap();
        s.extend_minted_hash(dev, u5, 150).await.unwrap();
        assert_eq!(
            s.auth_hash(dev, u5).await.unwrap(),
            Some(("m5".into(), Some(200))),
            "extended, never shortened"
        );
        // The backend storing a hash makes it permanent.
        s.put_user_value(UserTable::Auth, dev, u6, "mine")
            .await
            .unwrap();
        s.extend_minted_hash(dev, u6, 300).await.unwrap();
        assert_eq!(
            s.auth_hash(dev, u6).await.unwrap(),
            Some(("mine".into(), None))
        );
        assert_eq!(s.purge_expired_hashes(200).await.unwrap(), 1);
        assert_eq!(s.auth_hash(dev, u5).await.unwrap(), None);
        assert!(s.auth_hash(dev, u6).await.unwrap().is_some());
        s.close().await;
    }
}
