//! Helpers shared by the `core_*` integration tests: the exact pipe-frame check and the CometQL statements
//! these tests write by hand. The raw MySQL client and the browser helpers (subscribers known to be
//! subscribed before anything is published) are the support crate's, re-exported here.
//! Not a test target itself (a `mod.rs` in a sub-folder is not autodiscovered by cargo).
#![allow(dead_code, unused_imports)] // each test target uses a different part

pub use halley_tests::browser::*;
use halley_tests::clients::Login;
pub use halley_tests::mysql_raw::*;
pub use halley_tests::wait::WAIT;
use halley_tests::ws::WsClient;
use halley_tests::{Tenant, TestServer};
use serde_json::Value;

/// How the tenant's backend logs in: user = dev_id, password = key, database CometQL_v1.
pub fn login(server: &TestServer, tenant: &Tenant) -> Login {
    Login::new(
        server.cometql_port(),
        tenant.dev_id.to_string(),
        tenant.key.clone(),
    )
}

/// Checks a CometQL-published pipe frame key by key and value by value; returns its message_send_time.
/// The keys must be exactly these four, in this (alphabetical) order, as the reference sends them.
pub fn check_pipe_frame(text: &str, pipe: &str, event: &str, data: &str) -> i64 {
    let v: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {text}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["data", "event", "message_send_time", "pipe"],
        "frame keys: {text}"
    );
    // Alphabetical order in the text itself (serde_json's map does not keep the order).
    let positions: Vec<usize> = [
        "\"data\":",
        "\"event\":",
        "\"message_send_time\":",
        "\"pipe\":",
    ]
    .iter()
    .map(|k| {
        text.find(k)
            .unwrap_or_else(|| panic!("{k} missing: {text}"))
    })
    .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "keys are not in alphabetical order: {text}"
    );
    assert_eq!(obj["pipe"], pipe, "pipe of {text}");
    assert_eq!(obj["event"], event, "event of {text}");
    let got = obj["data"]
        .as_str()
        .unwrap_or_else(|| panic!("data is not a string: {text}"));
    if got != data {
        let at = got
            .bytes()
            .zip(data.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(data.len()));
        panic!(
            "data differs at byte {at} (got {} bytes, want {}): got {:?}... want {:?}...",
            got.len(),
            data.len(),
            &got[floor(got, at.saturating_sub(20))..floor(got, (at + 40).min(got.len()))],
            &data[floor(data, at.saturating_sub(20))..floor(data, (at + 40).min(data.len()))],
        );
    }
    let t = obj["message_send_time"]
        .as_i64()
        .unwrap_or_else(|| panic!("message_send_time is not an integer: {text}"));
    let now = unix_now();
    assert!(
        (now - 10..=now + 1).contains(&t),
        "message_send_time {t} is not within seconds of now ({now}): {text}"
    );
    t
}

fn floor(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The next text frame of `ws`, checked as a pipe frame carrying `data`.
pub async fn expect_pipe_frame(ws: &mut WsClient, pipe: &str, event: &str, data: &str) -> i64 {
    let text = ws.recv_text(WAIT).await.expect("a pipe frame");
    check_pipe_frame(&text, pipe, event, data)
}

/// A CometQL string literal the way a PHP developer writes one by hand: single quotes, quotes doubled.
pub fn sql_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub fn insert_sql(pipe: &str, event: &str, message_literal: &str) -> String {
    format!(
        "INSERT INTO pipes_messages (name, event, message) VALUES ('{pipe}', '{event}', {message_literal})"
    )
}
