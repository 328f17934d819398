//! Server → browser frames as the hub carries them: a `SharedFrame` encodes each dialect at most once per
//! publish (pre-4.0 only if such a client is subscribed) and hands out the same bytes to every subscriber.

use std::sync::Arc;

use bytes::Bytes;

use super::{Encoded, Frame};
use crate::browser::{frames, ApiEra, SharedFrame};
use crate::ids::{EventName, PipeName, UserId};

impl Encoded for SharedFrame {
    fn wire(&self, era: ApiEra) -> Bytes {
        self.bytes(era)
    }

    fn with_offset(&self, offset: u64) -> Option<Frame> {
        Some(shared(self.frame().clone().with_offset(offset)))
    }

    fn frame(&self) -> Option<&frames::Frame> {
        Some(SharedFrame::frame(self))
    }
}

pub fn shared(frame: frames::Frame) -> Frame {
    Arc::new(SharedFrame::new(frame))
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
