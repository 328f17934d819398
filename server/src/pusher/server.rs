//! Server → client frames, each encoded once into shared bytes (a channel event is the same text for every
//! subscriber).
//!
//! Where Pusher puts a JSON *string* in `data` (connection_established, subscription_succeeded, the member
//! events, channel events), so do we: pusher-js parses a string `data` as JSON when it can and keeps it as
//! text otherwise, and other clients (pysher, the mobile libraries) expect exactly this shape. `pusher:error`
//! and `pusher:signin_success` carry an object, as Pusher sends them.

use bytes::Bytes;
use serde_json::Value;

use super::error::ErrorCode;
use super::socket_id::SocketId;

/// A presence channel's member, as the member list and `member_added` show it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberInfo<'a> {
    pub user_id: &'a str,
    pub user_info: Option<&'a Value>,
}

/// One server frame.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerFrame<'a> {
    ConnectionEstablished {
        socket_id: &'a SocketId,
        /// Seconds of silence after which the client should ping (Pusher's default: 120).
        activity_timeout: u32,
    },
    /// `members` is `Some` on presence channels: the member list, each user once.
    SubscriptionSucceeded {
        channel: &'a str,
        members: Option<&'a [MemberInfo<'a>]>,
    },
    MemberAdded {
        channel: &'a str,
        member: MemberInfo<'a>,
    },
    MemberRemoved {
        channel: &'a str,
        user_id: &'a str,
    },
    /// `code: None` is Pusher's `"code": null` (the connection is fine, one request failed).
    Error {
        code: Option<ErrorCode>,
        message: &'a str,
    },
    Ping,
    Pong,
    SigninSuccess {
        user_data: &'a str,
    },
    /// An event on a channel; `user_id` on client events of presence channels (who sent it).
    Event {
        event: &'a str,
        channel: &'a str,
        data: &'a str,
        user_id: Option<&'a str>,
    },
    /// A `cache-` channel had no event to replay to a new subscriber.
    CacheMiss {
        channel: &'a str,
    },
}

/// Appends `s` as a JSON string literal.
fn push_str(out: &mut String, s: &str) {
    // A `&str` always serializes; serde_json's escaping is the one every client parses.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn push_value(out: &mut String, v: Option<&Value>) {
    match v {
        Some(v) => out.push_str(&v.to_string()),
        None => out.push_str("null"),
    }
}

/// `{"event":..,"channel":..,"data":"<inner>"}` with `inner` given as JSON text.
fn frame(event: &str, channel: Option<&str>, data_text: &str) -> String {
    let mut out = String::with_capacity(event.len() + data_text.len() * 9 / 8 + 64);
    out.push_str("{\"event\":");
    push_str(&mut out, event);
    if let Some(channel) = channel {
        out.push_str(",\"channel\":");
        push_str(&mut out, channel);
    }
    out.push_str(",\"data\":");
    push_str(&mut out, data_text);
    out.push('}');
    out
}

impl ServerFrame<'_> {
    /// The frame's JSON text, encoded once.
    pub fn encode(&self) -> Bytes {
        Bytes::from(self.encode_string())
    }

    pub fn encode_string(&self) -> String {
        match self {
            Self::ConnectionEstablished {
                socket_id,
                activity_timeout,
            } => {
                let mut data = String::from("{\"socket_id\":");
                push_str(&mut data, socket_id.as_str());
                data.push_str(&format!(",\"activity_timeout\":{activity_timeout}}}"));
                frame("pusher:connection_established", None, &data)
            }
            Self::SubscriptionSucceeded { channel, members } => {
                let data = match members {
                    None => "{}".to_owned(),
                    Some(members) => presence_data(members),
                };
                frame(
                    "pusher_internal:subscription_succeeded",
                    Some(channel),
                    &data,
                )
            }
            Self::MemberAdded { channel, member } => {
                let mut data = String::from("{\"user_id\":");
                push_str(&mut data, member.user_id);
                data.push_str(",\"user_info\":");
                push_value(&mut data, member.user_info);
                data.push('}');
                frame("pusher_internal:member_added", Some(channel), &data)
            }
            Self::MemberRemoved { channel, user_id } => {
                let mut data = String::from("{\"user_id\":");
                push_str(&mut data, user_id);
                data.push('}');
                frame("pusher_internal:member_removed", Some(channel), &data)
            }
            Self::Error { code, message } => {
                let mut out = String::from("{\"event\":\"pusher:error\",\"data\":{\"code\":");
                match code {
                    Some(c) => out.push_str(&c.code().to_string()),
                    None => out.push_str("null"),
                }
                out.push_str(",\"message\":");
                push_str(&mut out, message);
                out.push_str("}}");
                out
            }
            Self::Ping => "{\"event\":\"pusher:ping\",\"data\":{}}".to_owned(),
            Self::Pong => "{\"event\":\"pusher:pong\",\"data\":{}}".to_owned(),
            Self::SigninSuccess { user_data } => {
                let mut out =
                    String::from("{\"event\":\"pusher:signin_success\",\"data\":{\"user_data\":");
                push_str(&mut out, user_data);
                out.push_str("}}");
                out
            }
            Self::Event {
                event,
                channel,
                data,
                user_id,
            } => {
                let mut out = frame(event, Some(channel), data);
                if let Some(user_id) = user_id {
                    out.pop();
                    out.push_str(",\"user_id\":");
                    push_str(&mut out, user_id);
                    out.push('}');
                }
                out
            }
            Self::CacheMiss { channel } => {
                let mut out = String::from("{\"event\":\"pusher:cache_miss\",\"channel\":");
                push_str(&mut out, channel);
                out.push('}');
                out
            }
        }
    }
}

/// `{"presence":{"ids":[..],"hash":{id: info},"count":n}}`.
fn presence_data(members: &[MemberInfo<'_>]) -> String {
    let mut ids = String::from("[");
    let mut hash = String::from("{");
    for (i, m) in members.iter().enumerate() {
        if i > 0 {
            ids.push(',');
            hash.push(',');
        }
        push_str(&mut ids, m.user_id);
        push_str(&mut hash, m.user_id);
        hash.push(':');
        push_value(&mut hash, m.user_info);
    }
    ids.push(']');
    hash.push('}');
    format!(
        "{{\"presence\":{{\"ids\":{ids},\"hash\":{hash},\"count\":{}}}}}",
        members.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: ServerFrame<'_>) -> String {
        let s = f.encode_string();
        assert_eq!(f.encode(), s.as_bytes());
        let _: Value = serde_json::from_str(&s).expect("valid JSON");
        s
    }

    /// What pusher-js does with a frame: parse it, then parse `data` again when it is a string.
    fn as_client_sees(s: &str) -> Value {
        let mut v: Value = serde_json::from_str(s).unwrap();
        if let Some(Value::String(d)) = v.get("data").cloned() {
            if let Ok(inner) = serde_json::from_str::<Value>(&d) {
                v["data"] = inner;
            }
        }
        v
    }

    #[test]
    fn connection_established_carries_its_data_as_a_string() {
        let id = SocketId::parse("1234.5678").unwrap();
        let s = text(ServerFrame::ConnectionEstablished {
            socket_id: &id,
            activity_timeout: 120,
        });
        assert_eq!(
            s,
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1234.5678\",\"activity_timeout\":120}"}"#
        );
    }

    #[test]
    fn subscriptions_and_members() {
        assert_eq!(
            text(ServerFrame::SubscriptionSucceeded {
                channel: "private-a",
                members: None
            }),
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"private-a","data":"{}"}"#
        );
        let info = serde_json::json!({"name": "Ada"});
        let members = [
            MemberInfo {
                user_id: "1",
                user_info: Some(&info),
            },
            MemberInfo {
                user_id: "2",
                user_info: None,
            },
        ];
        let s = text(ServerFrame::SubscriptionSucceeded {
            channel: "presence-room",
            members: Some(&members),
        });
        assert_eq!(
            as_client_sees(&s)["data"],
            serde_json::json!({"presence": {"ids": ["1", "2"], "hash": {"1": {"name": "Ada"}, "2": null}, "count": 2}})
        );
        assert_eq!(
            text(ServerFrame::MemberAdded {
                channel: "presence-room",
                member: members[0].clone()
            }),
            r#"{"event":"pusher_internal:member_added","channel":"presence-room","data":"{\"user_id\":\"1\",\"user_info\":{\"name\":\"Ada\"}}"}"#
        );
        assert_eq!(
            text(ServerFrame::MemberRemoved {
                channel: "presence-room",
                user_id: "1"
            }),
            r#"{"event":"pusher_internal:member_removed","channel":"presence-room","data":"{\"user_id\":\"1\"}"}"#
        );
        let empty = text(ServerFrame::SubscriptionSucceeded {
            channel: "presence-x",
            members: Some(&[]),
        });
        assert_eq!(
            as_client_sees(&empty)["data"]["presence"]["count"],
            serde_json::json!(0)
        );
    }

    #[test]
    fn errors_pings_signin_and_cache_miss() {
        assert_eq!(
            text(ServerFrame::Error {
                code: Some(ErrorCode::AppDoesNotExist),
                message: "Application does not exist"
            }),
            r#"{"event":"pusher:error","data":{"code":4001,"message":"Application does not exist"}}"#
        );
        assert_eq!(
            text(ServerFrame::Error {
                code: None,
                message: "Invalid signature"
            }),
            r#"{"event":"pusher:error","data":{"code":null,"message":"Invalid signature"}}"#
        );
        assert_eq!(
            text(ServerFrame::Pong),
            r#"{"event":"pusher:pong","data":{}}"#
        );
        assert_eq!(
            text(ServerFrame::Ping),
            r#"{"event":"pusher:ping","data":{}}"#
        );
        assert_eq!(
            text(ServerFrame::SigninSuccess {
                user_data: r#"{"id":"1"}"#
            }),
            r#"{"event":"pusher:signin_success","data":{"user_data":"{\"id\":\"1\"}"}}"#
        );
        assert_eq!(
            text(ServerFrame::CacheMiss { channel: "cache-a" }),
            r#"{"event":"pusher:cache_miss","channel":"cache-a"}"#
        );
    }

    #[test]
    fn channel_events_escape_what_they_carry() {
        assert_eq!(
            text(ServerFrame::Event {
                event: "App\\Events\\Shipped",
                channel: "orders",
                data: r#"{"id":1}"#,
                user_id: None
            }),
            r#"{"event":"App\\Events\\Shipped","channel":"orders","data":"{\"id\":1}"}"#
        );
        assert_eq!(
            text(ServerFrame::Event {
                event: "client-typing",
                channel: "presence-a",
                data: "line\n\"quoted\" </script> é",
                user_id: Some("7")
            }),
            "{\"event\":\"client-typing\",\"channel\":\"presence-a\",\"data\":\"line\\n\\\"quoted\\\" </script> é\",\"user_id\":\"7\"}"
        );
    }
}
