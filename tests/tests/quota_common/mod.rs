//! Helpers of the `hardening_quota` tests: CometQL statements and reads, quota overrides as the operator
//! sets them, and what the tables hold counted directly.

use halley::ids::DevId;
use halley::storage::{QuotaRow, StoredUsage};
use halley_tests::mysql_raw::{RawMysql, Reply};
use halley_tests::wait::WAIT;
use halley_tests::ws::WsClient;
use halley_tests::TestServer;
use serde_json::Value;

pub mod net;
pub mod operator;

pub fn insert(pipe: &str, message: &str) -> String {
    format!(
        "INSERT INTO pipes_messages (name, event, message) VALUES ('{pipe}', 'ev', '{message}')"
    )
}

/// A 100-byte message whose first characters tell it apart.
pub fn msg100(tag: &str) -> String {
    format!("{tag:-<100}")
}

pub async fn history_len(q: &mut RawMysql, pipe: &str) -> usize {
    q.query(&format!(
        "SELECT message FROM pipes_messages WHERE name = '{pipe}'"
    ))
    .await
    .rows()
    .len()
}

pub fn assert_quota(reply: &Reply, expected: &str) {
    let (code, message) = reply.err();
    assert_eq!((code, message), (1114, expected));
}

pub async fn queued(q: &mut RawMysql, user: u64) -> usize {
    q.query(&format!(
        "SELECT message FROM users_messages WHERE id = {user}"
    ))
    .await
    .rows()
    .len()
}

pub async fn next_json(ws: &mut WsClient) -> Value {
    ws.recv_json(WAIT).await.expect("a frame")
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

pub async fn reload_quotas(server: &TestServer) {
    server
        .ctx()
        .quotas
        .load_overrides(&server.ctx().storage)
        .await
        .expect("load the overrides");
}

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

/// What the tables hold for the tenant, read directly with sqlx (not through the server's totals):
/// history entries, bytes of their message text, queued messages, users_data rows, revoked_tokens rows.
pub async fn counted_in_tables(server: &TestServer, dev_id: u64) -> StoredUsage {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&server.config().database_url())
        .await
        .expect("open the database");
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
