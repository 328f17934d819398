//! Browser commands (`subscription\nchat`, `web_pipe2\n...`) on arbitrary frame text.
//!
//! Checked beyond "no panic": a subscription never exceeds the pipe limit and holds distinct names a browser
//! may subscribe to, a `web_pipe2` passes the pipe and event name rules and the frames it causes (the relay
//! to other subscribers and the answer to the sender) are valid JSON carrying the message unchanged, and
//! every refusal's error frame is valid JSON.
#![no_main]

use halley::ids::PipeName;
use halley::browser::frames::{web_pipe_answer, web_pipe_relay, ApiEra};
use halley::browser::names::{check_command_pipe, check_event, check_ws_pipe};
use halley::browser::{parse_command_with, Command, CommandLimits};
use libfuzzer_sys::fuzz_target;

#[path = "../src/frame_json.rs"]
mod frame_json;

const NOW: i64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The default limit, and a per-tenant override derived from the input.
    let small = CommandLimits {
        max_subscriptions: data.len() % 40,
    };
    for limits in [CommandLimits::default(), small] {
        check(text, limits);
    }
});

fn check(text: &str, limits: CommandLimits) {
    match parse_command_with(text, limits) {
        Ok(Command::Subscription(s)) => {
            assert!(s.pipes.len() <= limits.max_subscriptions);
            for (i, pipe) in s.pipes.iter().enumerate() {
                assert!(check_ws_pipe(pipe).is_ok(), "{pipe:?}");
                assert!(PipeName::parse_subscription(pipe).is_ok(), "{pipe:?}");
                assert!(!s.pipes[..i].contains(pipe), "duplicate {pipe:?}");
            }
            if let Some(notice) = s.notice {
                frame_json::parse(&notice.frame(NOW).encode(ApiEra::Modern));
            }
        }
        Ok(Command::WebPipe2 {
            pipe,
            event,
            message,
            anonymous,
            ..
        }) => {
            assert!(check_command_pipe(pipe).is_ok() && check_event(event).is_ok());
            let sender = if anonymous { 0 } else { 7 };
            for era in [ApiEra::Modern, ApiEra::Legacy] {
                let relay = frame_json::parse(
                    &web_pipe_relay(pipe, event, message, sender, NOW).encode(era),
                );
                assert_eq!(relay["data"].as_str(), Some(message));
                assert_eq!(relay["pipe"].as_str(), Some(pipe));
                let answer = frame_json::parse(&web_pipe_answer(pipe, message, 3, NOW).encode(era));
                assert!(answer.is_object());
            }
        }
        Ok(Command::PipeLog { pipe, .. }) | Ok(Command::PipeCount { pipe, .. }) => {
            assert!(check_command_pipe(pipe).is_ok());
        }
        Ok(Command::TrackPipeUsers { pipe, .. }) => {
            assert!(pipe.starts_with("track_") && check_command_pipe(pipe).is_ok());
        }
        Ok(Command::Unknown(word)) => assert!(word.len() <= 64),
        Ok(_) => {}
        Err(e) => {
            let _ = e.closes_connection();
            for era in [ApiEra::Modern, ApiEra::Legacy] {
                assert!(frame_json::parse(&e.frame(NOW).encode(era)).is_object());
            }
        }
    }
}
