//! Limits and quotas as the operator sets them (per-tenant overrides stored, then loaded the way the admin
//! command and the once-a-minute reload do), the counters the limiters keep, and what the tables hold
//! for a tenant counted directly (not through the server's running totals).

use std::sync::atomic::Ordering;

use halley::ids::DevId;
use halley::storage::{LimitRow, QuotaRow, StoredUsage};

use crate::mysql_raw::Reply;
use crate::TestServer;

/// The tenant's `rate_limited` counter.
pub fn rate_limited(server: &TestServer, dev_id: u64) -> u64 {
    server
        .ctx()
        .stats
        .tenant(DevId(dev_id))
        .rate_limited
        .load(Ordering::Relaxed)
}

/// Refusals counted by the limiters, all limits together.
pub fn refusals(server: &TestServer) -> u64 {
    server.ctx().stats.limit_refusals.load(Ordering::Relaxed)
}

/// Stores a per-tenant limit override and has the limiters load it (what the admin command does).
pub async fn set_tenant_limits(server: &TestServer, row: LimitRow) {
    server
        .ctx()
        .storage
        .set_tenant_limits(&row)
        .await
        .expect("store the override");
    server
        .ctx()
        .limits
        .load_overrides(&server.ctx().storage)
        .await
        .expect("load the overrides");
}

/// Stores a quota override and has the server load it, as its once-a-minute reload does.
pub async fn set_quotas(server: &TestServer, row: QuotaRow) {
    server
        .ctx()
        .storage
        .set_tenant_quotas(&row)
        .await
        .expect("store the override");
    reload_quotas(server).await;
}

/// Loads the stored quota overrides now, as the once-a-minute reload does.
pub async fn reload_quotas(server: &TestServer) {
    server
        .ctx()
        .quotas
        .load_overrides(&server.ctx().storage)
        .await
        .expect("load the overrides");
}

/// A quota row of the tenant that overrides nothing, to fill in with `..`.
pub fn no_override(dev_id: u64) -> QuotaRow {
    QuotaRow {
        dev_id: DevId(dev_id),
        history_bytes: None,
        history_rows: None,
        queued_per_user: None,
        queued_per_tenant: None,
        users_data: None,
        revoked_tokens: None,
    }
}

/// The statement was refused by a quota with exactly this message.
#[track_caller]
pub fn assert_quota(reply: &Reply, expected: &str) {
    let (code, message) = reply.err();
    assert_eq!((code, message), (1114, expected));
}

/// What the tables hold for the tenant, read directly with sqlx (not through the server's totals):
/// history entries, bytes of their message text, queued messages, users_data rows, revoked_tokens rows.
pub async fn counted_in_tables(server: &TestServer, dev_id: u64) -> StoredUsage {
    let pool = server.database().await;
    let dev = dev_id as i64;
    let messages: Vec<(String,)> =
        sqlx::query_as("SELECT message FROM pipe_history WHERE dev_id = $1")
            .bind(dev)
            .fetch_all(&pool)
            .await
            .unwrap();
    let count = |table: &'static str| {
        let pool = pool.clone();
        async move {
            let (n,): (i64,) =
                sqlx::query_as(&format!("SELECT COUNT(*) FROM {table} WHERE dev_id = $1"))
                    .bind(dev)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            n
        }
    };
    let usage = StoredUsage {
        history_rows: messages.len() as i64,
        history_bytes: messages.iter().map(|(m,)| m.len() as i64).sum(),
        queued_messages: count("user_messages").await,
        users_data: count("users_data").await,
        revoked_tokens: count("revoked_tokens").await,
    };
    pool.close().await;
    usage
}
