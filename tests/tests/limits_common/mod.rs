//! Helpers shared by the `limits_*` and `isolation_*` integration tests: CometQL statements, the
//! registry's limit counters and the browser's frames. The raw MySQL client (fast, and able to connect
//! from another loopback address or stop half-way through a handshake) and the browser connections whose
//! subscriptions are known to be registered are the support crate's, re-exported here.
//! Not a test target itself (a `mod.rs` in a sub-folder is not autodiscovered by cargo).
#![allow(dead_code, unused_imports)] // each test target uses a different part

use std::sync::atomic::Ordering;

use halley::ids::DevId;
use halley::storage::LimitRow;
pub use halley_tests::browser::*;
pub use halley_tests::mysql_raw::*;
pub use halley_tests::wait::WAIT;
use halley_tests::ws::WsClient;
use halley_tests::{Backend, Tenant, TestServer};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// A CometQL string literal: single quotes, quotes doubled (the server reads NO_BACKSLASH_ESCAPES first).
pub fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub fn insert_sql(pipe: &str, event: &str, message: &str) -> String {
    format!(
        "INSERT INTO pipes_messages (name, event, message) VALUES ({}, {}, {})",
        q(pipe),
        q(event),
        q(message)
    )
}

/// One INSERT with a row per message.
pub fn multi_insert_sql<'a>(
    pipe: &str,
    event: &str,
    messages: impl IntoIterator<Item = &'a str>,
) -> String {
    let rows: Vec<String> = messages
        .into_iter()
        .map(|m| format!("({}, {}, {})", q(pipe), q(event), q(m)))
        .collect();
    format!(
        "INSERT INTO pipes_messages (name, event, message) VALUES {}",
        rows.join(", ")
    )
}

/// The tenant's `rate_limited` counter.
pub fn rate_limited(server: &TestServer, dev_id: u64) -> u64 {
    server
        .ctx()
        .stats
        .tenant(DevId(dev_id))
        .rate_limited
        .load(Ordering::Relaxed)
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

/// Refusals counted by the limiters, all limits together.
pub fn refusals(server: &TestServer) -> u64 {
    server.ctx().stats.limit_refusals.load(Ordering::Relaxed)
}

/// The next text frame as JSON.
pub async fn next_json(ws: &mut WsClient) -> Value {
    ws.recv_json(WAIT).await.expect("a frame")
}

/// The `data` of the next frame, which must be a pipe message on `pipe`.
pub async fn next_message(ws: &mut WsClient, pipe: &str) -> String {
    let v = next_json(ws).await;
    assert_eq!(v["pipe"], pipe, "expected a message on {pipe}, got {v}");
    v["data"]
        .as_str()
        .unwrap_or_else(|| panic!("data is not a string: {v}"))
        .to_owned()
}

/// The browser's error frame (`pipe: sys, event: error`): its `data.error` text.
pub fn error_text(v: &Value) -> &str {
    assert_eq!(v["pipe"], "sys", "not an error frame: {v}");
    assert_eq!(v["event"], "error", "not an error frame: {v}");
    v["data"]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("error frame without data.error: {v}"))
}

// ---------------------------------------------------------------------------------------------------
// Two tenants (the `isolation_*` tests): A and B on one server, the same pipe names and user ids.

/// A valid browser JWT of `tenant` for `user` (HS256 with key + dev_id, an hour to live).
pub fn jwt(tenant: &Tenant, user: u64) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    encode(
        &Header::new(Algorithm::HS256),
        &json!({"user_id": user, "exp": exp}),
        &EncodingKey::from_secret(format!("{}{}", tenant.key, tenant.dev_id).as_bytes()),
    )
    .expect("JWT")
}

pub async fn two_tenants(backend: Backend) -> (TestServer, Tenant, Tenant) {
    let server = TestServer::start(backend).await;
    let a = server.tenant("a@example.com").await;
    let b = server.tenant("b@example.com").await;
    (server, a, b)
}

/// Two tenants, A and B, each with a raw CometQL session logged in: `(server, a, b, qa, qb)`.
pub async fn world(backend: Backend) -> (TestServer, Tenant, Tenant, RawMysql, RawMysql) {
    let (server, a, b) = two_tenants(backend).await;
    let qa = RawMysql::login(&server, &a).await;
    let qb = RawMysql::login(&server, &b).await;
    (server, a, b, qa, qb)
}
