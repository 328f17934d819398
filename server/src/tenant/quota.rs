//! Storage quotas: how much one tenant may keep stored (history, queued private messages, users_data,
//! revoked_tokens), so that one tenant cannot fill the disk every tenant shares. The global defaults are in
//! `[limits]`; a tenant's own values live in `tenant_limits` (NULL keeps the default) and are reloaded with
//! the other overrides. What is in use comes from `storage::Totals` (running totals, no query per write).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::config::LimitsConfig;
use crate::ids::{DevId, UserId};
use crate::storage::{InUse, Reservation, Storage, StorageError, StoredUsage, Totals};

/// Which quota refused a write: named in the error the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    HistoryBytes,
    HistoryRows,
    QueuedPerUser,
    QueuedPerTenant,
    UsersData,
    RevokedTokens,
}

impl Quota {
    pub fn describe(self) -> &'static str {
        match self {
            Quota::HistoryBytes => "history bytes per tenant",
            Quota::HistoryRows => "history rows per tenant",
            Quota::QueuedPerUser => "queued messages per user",
            Quota::QueuedPerTenant => "queued messages per tenant",
            Quota::UsersData => "users_data rows per tenant",
            Quota::RevokedTokens => "revoked_tokens rows per tenant",
        }
    }
}

/// A write that would take the tenant past a quota; nothing of it was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Quota exceeded: {} (limit {limit})", .quota.describe())]
pub struct OverQuota {
    pub quota: Quota,
    pub limit: i64,
}

/// One tenant's quotas in effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    pub history_bytes: i64,
    pub history_rows: i64,
    pub queued_per_user: i64,
    pub queued_per_tenant: i64,
    pub users_data: i64,
    pub revoked_tokens: i64,
}

impl QuotaLimits {
    pub fn from_config(c: &LimitsConfig) -> QuotaLimits {
        QuotaLimits {
            history_bytes: c.history_bytes_per_tenant,
            history_rows: c.history_rows_per_tenant,
            queued_per_user: c.queued_messages_per_user,
            queued_per_tenant: c.queued_messages_per_tenant,
            users_data: c.users_data_per_tenant,
            revoked_tokens: c.revoked_tokens_per_tenant,
        }
    }

    /// Whether `in_use` (what would be in use with `want` added) stays within every quota `want` adds to.
    /// A write that adds nothing to a quota is never refused by it, even when the tenant is already over it
    /// (after an override was lowered): removing and replacing must keep working.
    pub fn check(&self, in_use: &InUse, want: &StoredUsage) -> Result<(), OverQuota> {
        let t = &in_use.tenant;
        let checks = [
            (
                want.history_bytes,
                t.history_bytes,
                self.history_bytes,
                Quota::HistoryBytes,
            ),
            (
                want.history_rows,
                t.history_rows,
                self.history_rows,
                Quota::HistoryRows,
            ),
            (
                want.queued_messages,
                in_use.user_queue,
                self.queued_per_user,
                Quota::QueuedPerUser,
            ),
            (
                want.queued_messages,
                t.queued_messages,
                self.queued_per_tenant,
                Quota::QueuedPerTenant,
            ),
            (
                want.users_data,
                t.users_data,
                self.users_data,
                Quota::UsersData,
            ),
            (
                want.revoked_tokens,
                t.revoked_tokens,
                self.revoked_tokens,
                Quota::RevokedTokens,
            ),
        ];
        for (adds, used, limit, quota) in checks {
            if adds > 0 && used > limit {
                return Err(OverQuota { quota, limit });
            }
        }
        Ok(())
    }
}

/// A tenant's own quotas (tenant_limits); None keeps the global value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaOverride {
    pub history_bytes: Option<i64>,
    pub history_rows: Option<i64>,
    pub queued_per_user: Option<i64>,
    pub queued_per_tenant: Option<i64>,
    pub users_data: Option<i64>,
    pub revoked_tokens: Option<i64>,
}

pub struct Quotas {
    defaults: QuotaLimits,
    overrides: Mutex<HashMap<DevId, QuotaOverride>>,
}

impl Quotas {
    pub fn new(config: &LimitsConfig) -> Quotas {
        Quotas {
            defaults: QuotaLimits::from_config(config),
            overrides: Mutex::default(),
        }
    }

    /// The quotas in effect for the tenant: its overrides, else the global values.
    pub fn for_tenant(&self, dev_id: DevId) -> QuotaLimits {
        let o = self
            .overrides
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&dev_id)
            .copied()
            .unwrap_or_default();
        let d = &self.defaults;
        QuotaLimits {
            history_bytes: o.history_bytes.unwrap_or(d.history_bytes),
            history_rows: o.history_rows.unwrap_or(d.history_rows),
            queued_per_user: o.queued_per_user.unwrap_or(d.queued_per_user),
            queued_per_tenant: o.queued_per_tenant.unwrap_or(d.queued_per_tenant),
            users_data: o.users_data.unwrap_or(d.users_data),
            revoked_tokens: o.revoked_tokens.unwrap_or(d.revoked_tokens),
        }
    }

    pub fn set_override(&self, dev_id: DevId, o: QuotaOverride) {
        let mut map = self.overrides.lock().unwrap_or_else(|e| e.into_inner());
        if o == QuotaOverride::default() {
            map.remove(&dev_id);
        } else {
            map.insert(dev_id, o);
        }
    }

    /// Loads every tenant's quota overrides (with the other limits: at start, then every minute).
    pub async fn load_overrides(&self, storage: &Storage) -> Result<(), StorageError> {
        for r in storage.tenant_quotas().await? {
            // A negative value read as "none at all" would be a surprise; it counts as 0 (nothing allowed).
            let v = |n: Option<i64>| n.map(|n| n.max(0));
            self.set_override(
                r.dev_id,
                QuotaOverride {
                    history_bytes: v(r.history_bytes),
                    history_rows: v(r.history_rows),
                    queued_per_user: v(r.queued_per_user),
                    queued_per_tenant: v(r.queued_per_tenant),
                    users_data: v(r.users_data),
                    revoked_tokens: v(r.revoked_tokens),
                },
            );
        }
        Ok(())
    }

    /// Holds room for `want` (and, for queued messages, in `user`'s queue) until the reservation is
    /// dropped, or says which quota it would pass.
    pub fn reserve(
        &self,
        totals: &Arc<Totals>,
        dev_id: DevId,
        user: Option<UserId>,
        want: StoredUsage,
    ) -> Result<Reservation, OverQuota> {
        let limits = self.for_tenant(dev_id);
        totals.reserve(dev_id, user, want, |in_use| limits.check(in_use, &want))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> LimitsConfig {
        LimitsConfig {
            history_bytes_per_tenant: 100,
            history_rows_per_tenant: 3,
            queued_messages_per_user: 2,
            queued_messages_per_tenant: 3,
            users_data_per_tenant: 1,
            revoked_tokens_per_tenant: 1,
            ..LimitsConfig::default()
        }
    }

    fn history(rows: i64, bytes: i64) -> StoredUsage {
        StoredUsage {
            history_rows: rows,
            history_bytes: bytes,
            ..StoredUsage::default()
        }
    }

    fn queued(n: i64) -> StoredUsage {
        StoredUsage {
            queued_messages: n,
            ..StoredUsage::default()
        }
    }

    #[test]
    fn each_quota_is_named_when_passed() {
        let q = Quotas::new(&small());
        let t = Arc::new(Totals::default());
        let d = DevId(1);
        let e = q.reserve(&t, d, None, history(1, 101)).err().unwrap();
        assert_eq!(e.quota, Quota::HistoryBytes);
        assert_eq!(
            e.to_string(),
            "Quota exceeded: history bytes per tenant (limit 100)"
        );
        let e = q.reserve(&t, d, None, history(4, 4)).err().unwrap();
        assert_eq!(e.quota, Quota::HistoryRows);
        let e = q.reserve(&t, d, Some(UserId(5)), queued(3)).err().unwrap();
        assert_eq!(e.quota, Quota::QueuedPerUser);
        let _a = q.reserve(&t, d, Some(UserId(5)), queued(2)).unwrap();
        let e = q.reserve(&t, d, Some(UserId(6)), queued(2)).err().unwrap();
        assert_eq!(e.quota, Quota::QueuedPerTenant);
        let e = q
            .reserve(
                &t,
                d,
                None,
                StoredUsage {
                    users_data: 2,
                    ..StoredUsage::default()
                },
            )
            .err()
            .unwrap();
        assert_eq!(e.quota, Quota::UsersData);
        q.reserve(&t, d, None, history(3, 100))
            .expect("exactly at the quota is within it");
    }

    #[test]
    fn an_override_applies_to_one_tenant_and_adding_nothing_is_never_refused() {
        let q = Quotas::new(&small());
        let t = Arc::new(Totals::default());
        q.set_override(
            DevId(1),
            QuotaOverride {
                history_rows: Some(10),
                ..Default::default()
            },
        );
        q.reserve(&t, DevId(1), None, history(10, 10)).unwrap();
        assert!(q.reserve(&t, DevId(2), None, history(10, 10)).is_err());
        assert_eq!(q.for_tenant(DevId(1)).history_bytes, 100, "not overridden");
        q.set_override(
            DevId(1),
            QuotaOverride {
                history_rows: Some(0),
                ..Default::default()
            },
        );
        q.reserve(&t, DevId(1), None, StoredUsage::default())
            .expect("adds nothing");
        q.set_override(DevId(1), QuotaOverride::default());
        assert_eq!(q.for_tenant(DevId(1)), QuotaLimits::from_config(&small()));
    }
}
