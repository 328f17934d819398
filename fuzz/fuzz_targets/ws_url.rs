//! The WebSocket connect URL (`/ws/sesion=...&myid=...&devid=...&v=...`) on arbitrary request targets.
//!
//! Checked beyond "no panic": a path that is not a WebSocket path never yields parameters, accepted
//! parameters keep the promises of `ConnectParams` (dev_id in 1..=i64::MAX, user_id ≤ i64::MAX, uuid of at
//! most 32 name characters, api of at most 32 characters), and a refusal's error frame is valid JSON.
#![no_main]

use halley::browser::frames::{url_error, ApiEra};
use halley::browser::names::is_name_text;
use halley::browser::url::{percent_decode, API_MAX, UUID_MAX};
use halley::browser::{is_ws_path, parse_connect_url, UrlError};
use libfuzzer_sys::fuzz_target;

#[path = "../src/frame_json.rs"]
mod frame_json;

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    let _ = percent_decode(target);
    match parse_connect_url(target) {
        Ok(p) => {
            assert!(is_ws_path(target), "parameters from a non-WebSocket path");
            assert!(p.dev_id > 0 && p.dev_id <= i64::MAX as u64, "{p:?}");
            assert!(p.user_id <= i64::MAX as u64, "{p:?}");
            assert!(p.uuid.len() <= UUID_MAX && is_name_text(&p.uuid), "{p:?}");
            assert!(p.api.as_ref().is_none_or(|a| a.chars().count() <= API_MAX));
            let _ = ApiEra::from_version(p.api_version);
        }
        Err(e) => {
            if !is_ws_path(target) {
                assert_eq!(e, UrlError::NoSession);
            }
            let json = frame_json::parse(&url_error(e, 1_700_000_000));
            assert!(json.is_object());
        }
    }
});
