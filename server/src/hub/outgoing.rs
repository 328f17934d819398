//! Frames as the hub carries them. A publish is encoded at most once per dialect, on first need, and the
//! same bytes go to every subscriber of that dialect: the comet eras through `SharedFrame` (pre-4.0 only if
//! such a client is subscribed), the Pusher protocol's event frame only if a Pusher connection is.
//!
//! A comet frame read by a Pusher connection is `{"event": E, "channel": C, "data": "<text>"}`: the pipe's
//! event, the channel the Pusher client subscribed to (the pipe, see [`pusher_channel`]), and the message as
//! text, as Pusher carries every event's data. Frames that only Pusher connections can receive (presence
//! members, client events) are [`PusherFrame`]s.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::{Encoded, Era, Frame};
use crate::browser::json::Value;
use crate::browser::wsframe::encode_text;
use crate::browser::{frames, SharedFrame};
use crate::ids::{EventName, PipeName, UserId};
use crate::pusher::ServerFrame;

pub use crate::ids::PUSHER_ONLY;

/// The Pusher channel a registry key stands for: the pipe's own name, or the name behind [`PUSHER_ONLY`].
pub fn pusher_channel(pipe: &PipeName) -> &str {
    let name = pipe.as_str();
    name.strip_prefix(PUSHER_ONLY).unwrap_or(name)
}

/// A comet frame on its way, with its Pusher encoding made on first need.
#[derive(Debug)]
pub struct PipeFrame {
    comet: SharedFrame,
    pusher: OnceLock<Bytes>,
}

impl Encoded for PipeFrame {
    fn wire(&self, era: Era) -> Bytes {
        match era {
            Era::Pusher => self
                .pusher
                .get_or_init(|| pusher_event(self.comet.frame()))
                .clone(),
            comet => self.comet.bytes(comet.api()),
        }
    }

    fn with_offset(&self, offset: u64) -> Option<Frame> {
        Some(shared(self.comet.frame().clone().with_offset(offset)))
    }

    fn frame(&self) -> Option<&frames::Frame> {
        Some(self.comet.frame())
    }
}

/// A comet frame as a Pusher channel event.
fn pusher_event(frame: &frames::Frame) -> Bytes {
    let data = match frame.get("data") {
        Some(Value::Str(s)) => s.clone(),
        Some(other) => crate::browser::json::to_text(other),
        None => String::new(),
    };
    let channel = frame.pipe();
    let channel = channel.strip_prefix(PUSHER_ONLY).unwrap_or(channel);
    let text = ServerFrame::Event {
        event: frame.event(),
        channel,
        data: &data,
        user_id: None,
    }
    .encode_string();
    encode_text(text.as_bytes())
}

pub fn shared(frame: frames::Frame) -> Frame {
    Arc::new(PipeFrame {
        comet: SharedFrame::new(frame),
        pusher: OnceLock::new(),
    })
}

/// A message published to a pipe: from CometQL (no user_id), or a `web_pipe2` relayed with its sender's id.
pub fn pipe_message(
    pipe: &PipeName,
    event: &EventName,
    text: &str,
    now: i64,
    sender: Option<UserId>,
) -> Frame {
    let frame = match sender {
        None => frames::pipe_message(pipe.as_str(), event.as_str(), text, now),
        Some(u) => frames::web_pipe_relay(pipe.as_str(), event.as_str(), text, u.0, now),
    };
    shared(frame)
}

/// A frame of the Pusher protocol alone (presence members, client events), encoded once. Only Pusher
/// connections subscribe where these are published; any dialect gets the same bytes. Bytes only (no typed
/// frame): they are delivered on the node where they happen (`Hub::publish_local`).
#[derive(Debug)]
pub struct PusherFrame(Bytes);

impl Encoded for PusherFrame {
    fn wire(&self, _era: Era) -> Bytes {
        self.0.clone()
    }
}

/// `frame` as one WebSocket text frame.
pub fn pusher_bytes(frame: &ServerFrame<'_>) -> Bytes {
    encode_text(frame.encode_string().as_bytes())
}

pub fn pusher_frame(frame: &ServerFrame<'_>) -> Frame {
    Arc::new(PusherFrame(pusher_bytes(frame)))
}

/// A Pusher-only frame from its JSON text (as another node of a cluster encoded it).
pub fn pusher_text(json: &str) -> Frame {
    Arc::new(PusherFrame(encode_text(json.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: &Bytes) -> String {
        // A server frame of less than 126 bytes: two header bytes.
        String::from_utf8(b[2..].to_vec()).unwrap()
    }

    #[test]
    fn a_pipe_message_read_by_a_pusher_client() {
        let pipe = PipeName::parse("orders").unwrap();
        let event = EventName::parse("shipped").unwrap();
        let f = pipe_message(&pipe, &event, r#"{"id":1}"#, 5, None);
        assert_eq!(
            text(&f.wire(Era::Pusher)),
            r#"{"event":"shipped","channel":"orders","data":"{\"id\":1}"}"#
        );
        // Encoded once: the same bytes again.
        assert_eq!(f.wire(Era::Pusher).as_ptr(), f.wire(Era::Pusher).as_ptr());
        assert!(text(&f.wire(Era::Modern)).contains("\"pipe\":\"orders\""));
    }

    #[test]
    fn pusher_only_keys_name_their_channel() {
        let key = PipeName::pusher_only("private-chat.1");
        assert_eq!(pusher_channel(&key), "private-chat.1");
        let event = EventName::parse("e").unwrap();
        let f = pipe_message(&key, &event, "x", 5, None);
        assert_eq!(
            text(&f.wire(Era::Pusher)),
            r#"{"event":"e","channel":"private-chat.1","data":"x"}"#
        );
    }
}
