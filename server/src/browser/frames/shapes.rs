//! One constructor per frame shape of the reference (docs/reference-cppcomet.md 2.3, 2.4). `now` and `sent_at` are
//! unix seconds. Message texts travel as JSON strings, verbatim (`"data":"{\"a\":1}"`).

use bytes::Bytes;

use super::{ApiEra, Frame};
use crate::browser::json::{Object, Value};
use crate::browser::names::{user_status_pipe, MSG_PIPE, SYS_PIPE};
use crate::browser::url::UrlError;

/// `info` of the connect-URL error frame.
pub const URL_ERROR_INFO: &str = "Closed due to error. See last message.";
/// `_info` of the track_pipe_users answer.
pub const TRACK_PIPE_USERS_INFO: &str = "answer for track_pipe_users";
/// Event of a history entry stored with an empty event.
pub const EMPTY_HISTORY_EVENT: &str = "undefined";

/// First frame of every connection: the authentication result.
pub fn server_info(authorized: bool, user_key: &str, server_name: &str, now: i64) -> Frame {
    Frame::new(SYS_PIPE, "serverInfo", Value::str(user_key))
        .with("authorized", Value::Bool(authorized))
        .with("server", Value::str(server_name))
        .at(now)
}

/// A CometQL insert into pipes_messages (no user_id).
pub fn pipe_message(pipe: &str, event: &str, message: &str, now: i64) -> Frame {
    Frame::new(pipe, event, Value::str(message)).at(now)
}

/// A browser's `web_pipe2`, relayed to the pipe's other subscribers; `sender_id` is 0 for an
/// anonymous sender or an `@web_` send.
pub fn web_pipe_relay(pipe: &str, event: &str, message: &str, sender_id: u64, now: i64) -> Frame {
    pipe_message(pipe, event, message, now).with("user_id", Value::UInt(sender_id))
}

/// The delivery report to the `web_pipe2` sender.
pub fn web_pipe_answer(pipe: &str, message: &str, number_messages: u64, now: i64) -> Frame {
    let data = Object::new()
        .with("message", Value::str(message))
        .with("number_messages", Value::UInt(number_messages));
    Frame::new(format!("_answer_to_{pipe}"), "answer", Value::Obj(data)).at(now)
}

/// A private message (users_messages) to a live connection.
pub fn private_message(event: &str, message: &str) -> Frame {
    Frame::new(MSG_PIPE, event, Value::str(message))
}

/// A private message that waited in the queue, sent on connect.
pub fn queued_private_message(event: &str, message: &str, sent_at: i64) -> Frame {
    private_message(event, message)
        .with("fromQueue", Value::Bool(true))
        .at(sent_at)
}

/// Told to a connection that asked for private-message ids (`msg_after`) with a last id the node cannot
/// resume after (unknown, too old, from before a restart): messages may have been missed, and none were
/// replayed. The queue drain still follows.
pub fn msg_recovery_failed() -> Frame {
    let data = Object::new().with("recovered", Value::Bool(false));
    Frame::new(MSG_PIPE, "msg_recovery", Value::Obj(data))
}

/// One stored message of a pipe, answering `pipe_log`.
pub fn history_entry(
    pipe: &str,
    event: &str,
    message: &str,
    sent_at: i64,
    sender_id: u64,
) -> Frame {
    let event = if event.is_empty() {
        EMPTY_HISTORY_EVENT
    } else {
        event
    };
    Frame::new(pipe, event, Value::str(message))
        .with("fromQueue", Value::Bool(true))
        .with("user_id", Value::UInt(sender_id))
        .at(sent_at)
}

/// Sent once per pipe to a connection that used `subscription2`, before any live frame of the pipe:
/// the pipe's epoch and top offset, and whether the messages after the client's position were replayed
/// (just before this frame).
pub fn subscribed(pipe: &str, epoch: &str, offset: u64, recovered: bool) -> Frame {
    let data = Object::new()
        .with("epoch", Value::str(epoch))
        .with("offset", Value::UInt(offset))
        .with("recovered", Value::Bool(recovered));
    Frame::new(pipe, "subscribed", Value::Obj(data))
}

/// Sent to a connection that used `subscription2` instead of a frame of the pipe it would not be able
/// to place (the pipe's numbering changed or broke under it): it should subscribe the pipe again with its
/// last position.
pub fn gap(pipe: &str) -> Frame {
    let data = Object::new().with("pipe", Value::str(pipe));
    Frame::new(pipe, "gap", Value::Obj(data))
}

/// First live connection of a user: `online` on `user_status_<id>`.
pub fn user_online(user_id: u64) -> Frame {
    Frame::new(user_status_pipe(user_id), "online", Value::str("online"))
}

/// Last connection of a user closed: `offline` on `user_status_<id>`.
pub fn user_offline(user_id: u64) -> Frame {
    Frame::new(user_status_pipe(user_id), "offline", Value::str("offline"))
}

/// Presence change on a `track_` pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackEvent {
    Subscription,
    Unsubscription,
}

impl TrackEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subscription => "subscription",
            Self::Unsubscription => "unsubscription",
        }
    }
}

/// Sent to a `track_` pipe's subscribers when a connection joins or leaves it.
pub fn track_event(pipe: &str, event: TrackEvent, user_id: u64, uuid: &str, now: i64) -> Frame {
    Frame::new(pipe, event.as_str(), Value::Obj(user_entry(user_id, uuid))).at(now)
}

/// `pipe_count` answer; `{"user_in_pipe": n}` as documented (the reference's array was a bug).
pub fn pipe_count_answer(marker: &str, users: u64, now: i64) -> Frame {
    let data = Object::new().with("user_in_pipe", Value::UInt(users));
    Frame::new("_answer_pipe_count", "user_in_pipe", Value::Obj(data))
        .with("marker", Value::str(marker))
        .at(now)
}

/// `track_pipe_users` answer: `(user_id, uuid)` of every subscriber, anonymous ones included.
pub fn track_pipe_users_answer<'a>(
    marker: &str,
    users: impl IntoIterator<Item = (u64, &'a str)>,
    now: i64,
) -> Frame {
    let list = users
        .into_iter()
        .map(|(id, uuid)| Value::Obj(user_entry(id, uuid)))
        .collect();
    Frame::new("_answer", "answer", Value::Arr(list))
        .with("_info", Value::str(TRACK_PIPE_USERS_INFO))
        .with("marker", Value::str(marker))
        .at(now)
}

/// `user_data` answer (`user_data` is empty when nothing is stored).
pub fn user_data_answer(marker: &str, user_id: u64, user_data: &str, now: i64) -> Frame {
    let data = Object::new()
        .with("user_data", Value::str(user_data))
        .with("user_id", Value::UInt(user_id));
    Frame::new("_answer", "answer", Value::Obj(data))
        .with("marker", Value::str(marker))
        .at(now)
}

/// `user_status` answer: the real last-online time, 0 while online, -1 when unknown.
pub fn user_status_answer(user_id: u64, last_online: i64, now: i64) -> Frame {
    let data = Object::new()
        .with("data", Value::Int(last_online))
        .with("last_online_time", Value::Int(last_online));
    let event = user_status_pipe(user_id);
    Frame::new("_answer_user_status", event, Value::Obj(data)).at(now)
}

/// Error frame with `data: {error}`.
pub fn error(text: &str, now: i64) -> Frame {
    error_with(Object::new(), text, now)
}

/// Error about a `subscription` (`"code":"403"`, a string as in the reference).
pub fn subscription_error(text: &str, now: i64) -> Frame {
    error_with(Object::new().with("code", Value::str("403")), text, now)
}

/// Error about another command (`"number_messages":-1`).
pub fn command_error(text: &str, now: i64) -> Frame {
    error_with(
        Object::new().with("number_messages", Value::Int(-1)),
        text,
        now,
    )
}

/// The one frame sent before closing a connection whose URL was refused. Encoded in the
/// pre-4.0 format, as the reference does, since the client's version is not known yet.
pub fn url_error(err: UrlError, now: i64) -> Bytes {
    let data = Object::new()
        .with("error_code", Value::UInt(u64::from(err.code())))
        .with("info", Value::str(URL_ERROR_INFO));
    error_with(data, &err.error_text(), now).encode(ApiEra::Legacy)
}

fn error_with(data: Object, text: &str, now: i64) -> Frame {
    let data = data.with("error", Value::str(text));
    Frame::new(SYS_PIPE, "error", Value::Obj(data)).at(now)
}

fn user_entry(user_id: u64, uuid: &str) -> Object {
    Object::new()
        .with("user_id", Value::UInt(user_id))
        .with("uuid", Value::str(uuid))
}

#[cfg(test)]
#[path = "shapes_tests.rs"]
mod tests;
