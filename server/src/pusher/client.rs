//! Client → server frames: one JSON object per text frame, `{"event": .., "data": .., "channel"?: ..}`.
//!
//! `data` is an object in what pusher-js sends; some clients send it as a JSON string holding the object,
//! which Pusher accepts, so both are read. Everything a frame names is validated here (channel and event
//! names, sizes, member and user data), so the door gets only typed, bounded values; whether the
//! connection may do what the frame asks (signatures, sign-in, rate limits) is decided above.

use serde_json::{Map, Value};

use super::channel::Channel;
use super::error::{EventError, FrameError};
use super::limits::{CLIENT_FRAME_MAX, EVENT_DATA_MAX, EVENT_NAME_MAX, USER_ID_MAX, USER_INFO_MAX};

/// A client frame, read.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    Ping,
    Pong,
    Subscribe(Subscribe),
    Unsubscribe {
        channel: Channel,
    },
    Signin(Signin),
    /// A `client-*` event to the other subscribers of a channel.
    ClientEvent(ClientEvent),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subscribe {
    pub channel: Channel,
    /// `key:signature`, required (and checked above) where `channel.needs_signature()`.
    pub auth: Option<String>,
    /// The text the signature covers, exactly as sent.
    pub channel_data: Option<String>,
    /// A presence channel's member, read from `channel_data` (`None` on other kinds).
    pub member: Option<Member>,
}

/// A presence channel's member as its `channel_data` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// A string; a number (Laravel sends the auth identifier as is) is kept as its decimal text.
    pub user_id: String,
    pub user_info: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Signin {
    pub auth: String,
    /// The text the signature covers, exactly as sent.
    pub user_data: String,
    /// `user_data.id`: who the connection becomes once the signature is checked.
    pub user_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClientEvent {
    pub event: String,
    pub channel: Channel,
    /// The event's data as the text forwarded to the other subscribers: a string as is, anything else as
    /// its JSON text.
    pub data: String,
}

/// Reads one client text frame.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, FrameError> {
    if text.len() > CLIENT_FRAME_MAX {
        return Err(FrameError::TooLarge {
            len: text.len(),
            max: CLIENT_FRAME_MAX,
        });
    }
    let Ok(Value::Object(mut frame)) = serde_json::from_str::<Value>(text) else {
        return Err(FrameError::NotJson);
    };
    let event = match frame.remove("event") {
        Some(Value::String(e)) if !e.is_empty() => e,
        _ => return Err(FrameError::NoEvent),
    };
    match event.as_str() {
        "pusher:ping" => Ok(ClientFrame::Ping),
        "pusher:pong" => Ok(ClientFrame::Pong),
        "pusher:subscribe" => subscribe(data_object(&mut frame)?),
        "pusher:unsubscribe" => {
            let data = data_object(&mut frame)?;
            Ok(ClientFrame::Unsubscribe {
                channel: channel(&data)?,
            })
        }
        "pusher:signin" => signin(data_object(&mut frame)?),
        e if e.starts_with("client-") => client_event(event, &mut frame),
        _ => Err(FrameError::UnknownEvent(truncated(&event))),
    }
}

/// An event name the server or a client may use: 1..=200 characters, no control characters, and not in
/// the protocol's own namespaces.
pub fn check_event_name(name: &str) -> Result<(), EventError> {
    if name.is_empty() {
        return Err(EventError::Empty);
    }
    if name.chars().count() > EVENT_NAME_MAX {
        return Err(EventError::TooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(EventError::InvalidChars);
    }
    if name.starts_with("pusher:") || name.starts_with("pusher_internal:") {
        return Err(EventError::Reserved);
    }
    Ok(())
}

/// An unknown event's name, shortened to what an error message may echo.
fn truncated(name: &str) -> String {
    name.chars().take(EVENT_NAME_MAX).collect()
}

/// `data` as an object, or a string holding one.
fn data_object(frame: &mut Map<String, Value>) -> Result<Map<String, Value>, FrameError> {
    match frame.remove("data") {
        Some(Value::Object(o)) => Ok(o),
        Some(Value::String(s)) => match serde_json::from_str(&s) {
            Ok(Value::Object(o)) => Ok(o),
            _ => Err(FrameError::BadField("data is not an object")),
        },
        _ => Err(FrameError::BadField("data is not an object")),
    }
}

fn channel(data: &Map<String, Value>) -> Result<Channel, FrameError> {
    match data.get("channel") {
        Some(Value::String(c)) => Ok(Channel::parse(c)?),
        _ => Err(FrameError::BadField("channel is not a string")),
    }
}

fn optional_string(
    data: &mut Map<String, Value>,
    key: &'static str,
    wrong: &'static str,
) -> Result<Option<String>, FrameError> {
    match data.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(FrameError::BadField(wrong)),
    }
}

fn subscribe(mut data: Map<String, Value>) -> Result<ClientFrame, FrameError> {
    let channel = channel(&data)?;
    let auth = optional_string(&mut data, "auth", "auth is not a string")?;
    let channel_data = optional_string(&mut data, "channel_data", "channel_data is not a string")?;
    let member = match channel.kind() {
        super::ChannelKind::Presence => {
            let text = channel_data.as_deref().ok_or(FrameError::ChannelData(
                "a presence channel needs channel_data",
            ))?;
            Some(parse_member(text)?)
        }
        _ => None,
    };
    Ok(ClientFrame::Subscribe(Subscribe {
        channel,
        auth,
        channel_data,
        member,
    }))
}

/// A presence member from `channel_data`: `{"user_id": .., "user_info"?: ..}`.
pub fn parse_member(text: &str) -> Result<Member, FrameError> {
    let Ok(Value::Object(mut o)) = serde_json::from_str::<Value>(text) else {
        return Err(FrameError::ChannelData("not a JSON object"));
    };
    let user_id = user_id(o.remove("user_id")).map_err(FrameError::ChannelData)?;
    let user_info = match o.remove("user_info") {
        None | Some(Value::Null) => None,
        Some(info) => {
            if serde_json::to_string(&info).map_or(usize::MAX, |s| s.len()) > USER_INFO_MAX {
                return Err(FrameError::ChannelData("user_info is larger than 1 KB"));
            }
            Some(info)
        }
    };
    Ok(Member { user_id, user_info })
}

/// A user id: a non-empty string of at most [`USER_ID_MAX`] characters without control characters, or a
/// non-negative integer (as its text).
fn user_id(value: Option<Value>) -> Result<String, &'static str> {
    let id = match value {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        _ => return Err("user_id is missing or not a string"),
    };
    if id.is_empty() || id.chars().count() > USER_ID_MAX || id.chars().any(char::is_control) {
        return Err("user_id is empty, longer than 128 characters or has control characters");
    }
    Ok(id)
}

fn signin(mut data: Map<String, Value>) -> Result<ClientFrame, FrameError> {
    let auth = optional_string(&mut data, "auth", "auth is not a string")?
        .ok_or(FrameError::BadField("auth is not a string"))?;
    let user_data = optional_string(&mut data, "user_data", "user_data is not a string")?
        .ok_or(FrameError::BadField("user_data is not a string"))?;
    if user_data.len() > EVENT_DATA_MAX {
        return Err(FrameError::UserData("larger than 10 KB"));
    }
    let Ok(Value::Object(mut user)) = serde_json::from_str::<Value>(&user_data) else {
        return Err(FrameError::UserData("not a JSON object"));
    };
    // pusher-js refuses a sign-in whose id is not a string; so does the server.
    let user_id = match user.remove("id") {
        Some(Value::String(id)) => {
            user_id(Some(Value::String(id))).map_err(FrameError::UserData)?
        }
        _ => return Err(FrameError::UserData("id is missing or not a string")),
    };
    Ok(ClientFrame::Signin(Signin {
        auth,
        user_data,
        user_id,
    }))
}

fn client_event(event: String, frame: &mut Map<String, Value>) -> Result<ClientFrame, FrameError> {
    if event.chars().count() > EVENT_NAME_MAX {
        return Err(EventError::TooLong.into());
    }
    if event.chars().any(char::is_control) {
        return Err(EventError::InvalidChars.into());
    }
    let channel = match frame.get("channel") {
        Some(Value::String(c)) => Channel::parse(c)?,
        _ => return Err(FrameError::BadField("channel is not a string")),
    };
    let data = match frame.remove("data") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    };
    if data.len() > EVENT_DATA_MAX {
        return Err(FrameError::DataTooLarge {
            len: data.len(),
            max: EVENT_DATA_MAX,
        });
    }
    Ok(ClientFrame::ClientEvent(ClientEvent {
        event,
        channel,
        data,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pusher::error::ChannelError;
    use crate::pusher::ChannelKind;

    fn parse(text: &str) -> Result<ClientFrame, FrameError> {
        parse_client_frame(text)
    }

    #[test]
    fn ping_and_pong_as_pusher_js_sends_them() {
        assert_eq!(
            parse(r#"{"event":"pusher:ping","data":{}}"#),
            Ok(ClientFrame::Ping)
        );
        assert_eq!(parse(r#"{"event":"pusher:pong"}"#), Ok(ClientFrame::Pong));
    }

    #[test]
    fn subscriptions_of_each_kind() {
        let Ok(ClientFrame::Subscribe(s)) =
            parse(r#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#)
        else {
            panic!()
        };
        assert_eq!(s.channel.name(), "news");
        assert_eq!((s.auth, s.channel_data, s.member), (None, None, None));

        let Ok(ClientFrame::Subscribe(s)) = parse(
            r#"{"event":"pusher:subscribe","data":{"auth":"278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4","channel":"private-foobar"}}"#,
        ) else {
            panic!()
        };
        assert_eq!(s.channel.kind(), ChannelKind::Private);
        assert!(s.auth.unwrap().starts_with("278d425bdf160c739803:"));

        // Laravel's broadcaster sends the user id as a number.
        let text = r#"{"event":"pusher:subscribe","data":{"channel":"presence-room","auth":"k:s","channel_data":"{\"user_id\":10,\"user_info\":{\"name\":\"Mr. Channels\"}}"}}"#;
        let Ok(ClientFrame::Subscribe(s)) = parse(text) else {
            panic!()
        };
        assert_eq!(
            s.channel_data.as_deref(),
            Some(r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#)
        );
        let m = s.member.unwrap();
        assert_eq!(m.user_id, "10");
        assert_eq!(m.user_info.unwrap()["name"], "Mr. Channels");

        // data as a JSON string holding the object.
        let Ok(ClientFrame::Subscribe(s)) =
            parse(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"a\"}"}"#)
        else {
            panic!()
        };
        assert_eq!(s.channel.name(), "a");
    }

    #[test]
    fn unsubscribe_signin_and_client_events() {
        assert_eq!(
            parse(r#"{"event":"pusher:unsubscribe","data":{"channel":"private-a"}}"#),
            Ok(ClientFrame::Unsubscribe {
                channel: Channel::parse("private-a").unwrap()
            })
        );
        let text = r#"{"event":"pusher:signin","data":{"auth":"278d425bdf160c739803:7206f57027410b0d4d247ad4bc76b3cdca5dacda4878ea6cd8fb9a9d32c8bf5e","user_data":"{\"id\":\"12345\",\"name\":\"Ada\"}"}}"#;
        let Ok(ClientFrame::Signin(s)) = parse(text) else {
            panic!()
        };
        assert_eq!(s.user_id, "12345");
        assert_eq!(s.user_data, r#"{"id":"12345","name":"Ada"}"#);

        let text = r#"{"event":"client-typing","channel":"private-chat","data":{"name":"Ada"}}"#;
        assert_eq!(
            parse(text),
            Ok(ClientFrame::ClientEvent(ClientEvent {
                event: "client-typing".into(),
                channel: Channel::parse("private-chat").unwrap(),
                data: r#"{"name":"Ada"}"#.into(),
            }))
        );
        let text = r#"{"event":"client-x","channel":"presence-a","data":"plain"}"#;
        let Ok(ClientFrame::ClientEvent(e)) = parse(text) else {
            panic!()
        };
        assert_eq!(e.data, "plain");
    }

    #[test]
    fn unreadable_frames() {
        let too_big = format!(
            r#"{{"event":"client-a","channel":"private-a","data":"{}"}}"#,
            "x".repeat(CLIENT_FRAME_MAX)
        );
        assert!(matches!(parse(&too_big), Err(FrameError::TooLarge { .. })));
        for text in ["", "nope", "[]", "1", "\"pusher:ping\"", "{\"event\":"] {
            assert_eq!(parse(text), Err(FrameError::NotJson), "{text:?}");
        }
        for text in [
            r#"{}"#,
            r#"{"event":""}"#,
            r#"{"event":1}"#,
            r#"{"data":{}}"#,
        ] {
            assert_eq!(parse(text), Err(FrameError::NoEvent), "{text:?}");
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse(&deep).is_err(), "serde_json's depth limit holds");
        assert_eq!(
            parse(r#"{"event":"pusher:subscribe","data":{"channel":1}}"#),
            Err(FrameError::BadField("channel is not a string"))
        );
        assert_eq!(
            parse(r#"{"event":"pusher:subscribe","data":[]}"#),
            Err(FrameError::BadField("data is not an object"))
        );
        assert_eq!(
            parse(r#"{"event":"pusher:subscribe","data":{"channel":"a","auth":5}}"#),
            Err(FrameError::BadField("auth is not a string"))
        );
        assert_eq!(
            parse(r#"{"event":"pusher:hello"}"#),
            Err(FrameError::UnknownEvent("pusher:hello".into()))
        );
        assert_eq!(
            parse(r#"{"event":"my-event","channel":"a","data":"x"}"#),
            Err(FrameError::UnknownEvent("my-event".into()))
        );
    }

    #[test]
    fn hostile_names_and_sizes() {
        assert_eq!(
            parse(&format!(
                r#"{{"event":"pusher:subscribe","data":{{"channel":"{}"}}}}"#,
                "a".repeat(201)
            )),
            Err(FrameError::Channel(ChannelError::TooLong))
        );
        assert_eq!(
            parse(r#"{"event":"pusher:subscribe","data":{"channel":"a b"}}"#),
            Err(FrameError::Channel(ChannelError::InvalidChars))
        );
        let long_event = format!(
            r#"{{"event":"client-{}","channel":"private-a"}}"#,
            "e".repeat(200)
        );
        assert_eq!(parse(&long_event), Err(EventError::TooLong.into()));
        assert_eq!(
            parse(r#"{"event":"client-\u0000","channel":"private-a"}"#),
            Err(EventError::InvalidChars.into())
        );
        let big = format!(
            r#"{{"event":"client-a","channel":"private-a","data":"{}"}}"#,
            "x".repeat(EVENT_DATA_MAX + 1)
        );
        assert!(matches!(parse(&big), Err(FrameError::DataTooLarge { .. })));
        let at_max = format!(
            r#"{{"event":"client-a","channel":"private-a","data":"{}"}}"#,
            "x".repeat(EVENT_DATA_MAX)
        );
        assert!(parse(&at_max).is_ok());
        assert_eq!(
            parse(r#"{"event":"client-a","data":"x"}"#),
            Err(FrameError::BadField("channel is not a string"))
        );
    }

    #[test]
    fn presence_and_signin_data_are_checked() {
        let sub = |cd: &str| {
            parse(&format!(
                r#"{{"event":"pusher:subscribe","data":{{"channel":"presence-a","auth":"k:s","channel_data":{}}}}}"#,
                serde_json::to_string(cd).unwrap()
            ))
        };
        assert!(sub(r#"{"user_id":"1"}"#).is_ok());
        assert!(matches!(
            parse(r#"{"event":"pusher:subscribe","data":{"channel":"presence-a","auth":"k:s"}}"#),
            Err(FrameError::ChannelData(_))
        ));
        for bad in [
            "nope",
            "{}",
            r#"{"user_id":""}"#,
            r#"{"user_id":1.5}"#,
            r#"{"user_id":["1"]}"#,
        ] {
            assert!(matches!(sub(bad), Err(FrameError::ChannelData(_))), "{bad}");
        }
        let long_id = format!(r#"{{"user_id":"{}"}}"#, "u".repeat(129));
        assert!(matches!(sub(&long_id), Err(FrameError::ChannelData(_))));
        let big_info = format!(
            r#"{{"user_id":"1","user_info":{{"n":"{}"}}}}"#,
            "x".repeat(USER_INFO_MAX)
        );
        assert!(matches!(sub(&big_info), Err(FrameError::ChannelData(_))));

        let signin = |ud: &str| {
            parse(&format!(
                r#"{{"event":"pusher:signin","data":{{"auth":"k:s","user_data":{}}}}}"#,
                serde_json::to_string(ud).unwrap()
            ))
        };
        assert!(signin(r#"{"id":"1"}"#).is_ok());
        for bad in ["x", "{}", r#"{"id":1}"#, r#"{"id":""}"#] {
            assert!(matches!(signin(bad), Err(FrameError::UserData(_))), "{bad}");
        }
        assert_eq!(
            parse(r#"{"event":"pusher:signin","data":{"user_data":"{}"}}"#),
            Err(FrameError::BadField("auth is not a string"))
        );
    }

    #[test]
    fn event_names_for_the_http_api() {
        assert!(check_event_name("order.shipped").is_ok());
        assert!(check_event_name("App\\Events\\OrderShipped").is_ok());
        assert_eq!(check_event_name(""), Err(EventError::Empty));
        assert_eq!(check_event_name(&"e".repeat(201)), Err(EventError::TooLong));
        assert!(check_event_name(&"é".repeat(200)).is_ok());
        assert_eq!(check_event_name("a\nb"), Err(EventError::InvalidChars));
        assert_eq!(check_event_name("pusher:x"), Err(EventError::Reserved));
        assert_eq!(
            check_event_name("pusher_internal:member_added"),
            Err(EventError::Reserved)
        );
    }
}
