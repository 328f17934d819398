//! Server → client frames: one JSON object per text frame, keys in byte order, UTF-8 raw.
//!
//! A [`Frame`] is built once and encoded per [`ApiEra`]: 4.x clients get it as is; pre-4.0
//! clients get the reference's transform. A publish wraps its frame in a [`SharedFrame`] so that
//! each era is encoded at most once, the legacy one only if some subscriber needs it.

mod shapes;

pub use shapes::*;

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};

use super::json::{self, Object, Value};
use super::names::MSG_PIPE;
use super::wsframe::encode_text_with;

/// Marker value the reference adds to every frame for pre-4.0 clients.
pub const LEGACY_API_DATA: &str = "for major_version < 4";

/// Which frame format a connection reads, from the major version in its connect URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiEra {
    /// Major version < 4: extra `api_data` and `event_name` keys, object/array `data` as text.
    Legacy,
    Modern,
}

impl ApiEra {
    pub fn from_version((major, _minor): (u32, u32)) -> Self {
        if major < 4 {
            Self::Legacy
        } else {
            Self::Modern
        }
    }
}

/// One server → client message, independent of the client's era.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    fields: Object,
}

impl Frame {
    /// A frame with the three keys every frame has.
    pub fn new(pipe: impl Into<String>, event: impl Into<String>, data: Value) -> Self {
        let fields = Object::new()
            .with("data", data)
            .with("event", Value::Str(event.into()))
            .with("pipe", Value::Str(pipe.into()));
        Self { fields }
    }

    /// Adds (or replaces) a top-level key.
    pub fn with(mut self, key: &'static str, value: Value) -> Self {
        self.fields.insert(key, value);
        self
    }

    /// Sets `offset`, the message's place in its pipe (for connections that asked for positions).
    pub fn with_offset(self, offset: u64) -> Self {
        self.with("offset", Value::UInt(offset))
    }

    /// Sets `message_send_time` (unix seconds).
    pub fn at(self, unix_time: i64) -> Self {
        self.with("message_send_time", Value::Int(unix_time))
    }

    pub fn pipe(&self) -> &str {
        self.text("pipe")
    }

    pub fn event(&self) -> &str {
        self.text("event")
    }

    /// About the bytes of its encoding, without encoding it.
    pub fn size_hint(&self) -> usize {
        self.fields.size_hint()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }

    fn text(&self, key: &str) -> &str {
        match self.fields.get(key) {
            Some(Value::Str(s)) => s,
            _ => "",
        }
    }

    /// The complete WebSocket text frame for clients of `era`.
    pub fn encode(&self, era: ApiEra) -> Bytes {
        encode_text_with(self.fields.size_hint() + 64, |out| self.write(out, era))
    }

    /// The JSON text alone (for logs, tests, or a transport that frames it itself).
    pub fn json(&self, era: ApiEra) -> String {
        let mut out = BytesMut::with_capacity(self.fields.size_hint() + 64);
        self.write(&mut out, era);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn write(&self, out: &mut BytesMut, era: ApiEra) {
        if era == ApiEra::Modern {
            json::write_object(out, self.fields.iter());
            return;
        }
        let api_data = Value::str(LEGACY_API_DATA);
        let event_name = Value::str(self.event());
        let data_text = match self.fields.get("data") {
            Some(data) if data.is_container() && self.pipe() != MSG_PIPE => {
                let mut text = BytesMut::with_capacity(data_size(data));
                json::write_value(&mut text, data);
                Some(Value::Str(String::from_utf8_lossy(&text).into_owned()))
            }
            _ => None,
        };
        let mut fields: Vec<(&str, &Value)> = self
            .fields
            .iter()
            .map(|(k, v)| match (&data_text, k) {
                (Some(text), "data") => (k, text),
                _ => (k, v),
            })
            .collect();
        fields.push(("api_data", &api_data));
        fields.push(("event_name", &event_name));
        fields.sort_by(|a, b| a.0.cmp(b.0));
        json::write_object(out, fields.into_iter());
    }
}

fn data_size(data: &Value) -> usize {
    match data {
        Value::Obj(o) => o.size_hint(),
        _ => 64,
    }
}

/// A frame being fanned out: each era's bytes are encoded once, on first use, and then shared
/// (cloning `Bytes` is a reference-count bump). Share it with `Arc` across tasks.
#[derive(Debug)]
pub struct SharedFrame {
    frame: Frame,
    modern: OnceLock<Bytes>,
    legacy: OnceLock<Bytes>,
}

impl SharedFrame {
    pub fn new(frame: Frame) -> Self {
        Self {
            frame,
            modern: OnceLock::new(),
            legacy: OnceLock::new(),
        }
    }

    pub fn frame(&self) -> &Frame {
        &self.frame
    }

    /// The wire frame for a client of `era`.
    pub fn bytes(&self, era: ApiEra) -> Bytes {
        let cell = match era {
            ApiEra::Modern => &self.modern,
            ApiEra::Legacy => &self.legacy,
        };
        cell.get_or_init(|| self.frame.encode(era)).clone()
    }
}

impl From<Frame> for SharedFrame {
    fn from(frame: Frame) -> Self {
        Self::new(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn era_from_version() {
        assert_eq!(ApiEra::from_version((3, 99)), ApiEra::Legacy);
        assert_eq!(ApiEra::from_version((0, 0)), ApiEra::Legacy);
        assert_eq!(ApiEra::from_version((4, 0)), ApiEra::Modern);
        assert_eq!(ApiEra::from_version((4, 8)), ApiEra::Modern);
    }

    #[test]
    fn encode_wraps_the_json_in_one_text_frame() {
        let f = Frame::new("web_a", "ev", Value::str("x")).at(1);
        let json = f.json(ApiEra::Modern);
        assert_eq!(
            json,
            r#"{"data":"x","event":"ev","message_send_time":1,"pipe":"web_a"}"#
        );
        let bytes = f.encode(ApiEra::Modern);
        assert_eq!(bytes[0], 0x81);
        assert_eq!(usize::from(bytes[1]), json.len());
        assert_eq!(&bytes[2..], json.as_bytes());
    }

    #[test]
    fn legacy_adds_keys_in_order() {
        let f = Frame::new("web_a", "ev", Value::str("x")).at(1);
        assert_eq!(
            f.json(ApiEra::Legacy),
            r#"{"api_data":"for major_version < 4","data":"x","event":"ev","event_name":"ev","message_send_time":1,"pipe":"web_a"}"#
        );
    }

    #[test]
    fn legacy_turns_container_data_into_text_except_on_msg() {
        let data = || {
            Value::Obj(
                Object::new()
                    .with("b", Value::Int(2))
                    .with("a", Value::str("é")),
            )
        };
        let f = Frame::new("sys", "error", data());
        assert_eq!(
            f.json(ApiEra::Legacy),
            r#"{"api_data":"for major_version < 4","data":"{\"a\":\"é\",\"b\":2}","event":"error","event_name":"error","pipe":"sys"}"#
        );
        let f = Frame::new("x", "e", Value::Arr(vec![Value::Int(1)]));
        assert!(f.json(ApiEra::Legacy).contains(r#""data":"[1]""#));
        let f = Frame::new("msg", "e", data());
        assert!(f.json(ApiEra::Legacy).contains(r#""data":{"a":"é","b":2}"#));
    }

    #[test]
    fn shared_frame_encodes_each_era_once() {
        let shared = SharedFrame::from(Frame::new("web_a", "", Value::str("m")));
        let a = shared.bytes(ApiEra::Modern);
        let b = shared.bytes(ApiEra::Modern);
        assert_eq!(a.as_ptr(), b.as_ptr(), "same allocation, not a re-encode");
        assert!(shared.legacy.get().is_none(), "legacy only when asked");
        let l = shared.bytes(ApiEra::Legacy);
        assert_ne!(a, l);
        assert_eq!(shared.bytes(ApiEra::Legacy).as_ptr(), l.as_ptr());
        assert_eq!(shared.frame().pipe(), "web_a");
    }
}
