//! The frames a browser receives, as the tests check them: exact pipe frames (keys, their order, the
//! data byte by byte), frames pinned for snapshot comparison (`message_send_time` checked, then replaced
//! by `T`), the next frame as JSON or as a pipe's message, and the text of error frames.

use serde_json::Value;

use crate::browser::unix_now;
use crate::wait::WAIT;
use crate::ws::WsClient;

/// `text` parsed as JSON; anything else fails the test with the text.
pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A JSON string literal (with quotes) of `s`, as the server writes it (serde_json escapes the same way
/// for the characters the tests use).
pub fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// The frame text with every `"message_send_time":<n>` replaced by `"message_send_time":T`, after
/// checking that `<n>` is within seconds of now (queued and history frames carry the original time,
/// which is within the test's own lifetime too).
#[track_caller]
pub fn pin(text: &str) -> String {
    const KEY: &str = "\"message_send_time\":";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        out.push_str(&rest[..at + KEY.len()]);
        rest = &rest[at + KEY.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let t: i64 = rest[..digits]
            .parse()
            .unwrap_or_else(|_| panic!("message_send_time is not a number: {text}"));
        let now = unix_now();
        assert!(
            (now - 60..=now + 1).contains(&t),
            "message_send_time {t} is not within a minute of now ({now}): {text}"
        );
        out.push('T');
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// The serverInfo frame, pinned.
pub fn server_info(authorized: bool, data: &str) -> String {
    format!(
        r#"{{"authorized":{authorized},"data":{},"event":"serverInfo","message_send_time":T,"pipe":"sys","server":"{}"}}"#,
        js(data),
        halley::commands::server_version()
    )
}

/// Checks a CometQL-published pipe frame key by key and value by value; returns its message_send_time.
/// The keys must be exactly these four, in this (alphabetical) order, as the reference sends them.
pub fn check_pipe_frame(text: &str, pipe: &str, event: &str, data: &str) -> i64 {
    let v = json(text);
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

/// The nearest character boundary at or before `i`, to quote a slice of a string around a byte offset.
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
