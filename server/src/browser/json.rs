//! The small JSON writer behind every server frame.
//!
//! Our own rather than serde_json's `Map`: key order must be byte order (the reference uses
//! nlohmann's sorted objects and clients compare frames), and serde_json's `Map` stops sorting
//! as soon as any crate in the build enables its `preserve_order` feature. Writing is
//! infallible, and strings are escaped exactly as nlohmann does: `"`, `\` and control characters
//! only, non-ASCII raw.

use bytes::{BufMut, BytesMut};

/// A JSON value as frames need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    UInt(u64),
    Str(String),
    Arr(Vec<Value>),
    Obj(Object),
}

impl Value {
    pub fn str(s: impl Into<String>) -> Self {
        Self::Str(s.into())
    }

    /// Objects and arrays: what the pre-4.0 transform turns into JSON text.
    pub fn is_container(&self) -> bool {
        matches!(self, Self::Arr(_) | Self::Obj(_))
    }
}

/// An object whose keys are kept unique and in byte order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Object(Vec<(&'static str, Value)>);

impl Object {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces `key`, keeping the order.
    pub fn with(mut self, key: &'static str, value: Value) -> Self {
        self.insert(key, value);
        self
    }

    pub fn insert(&mut self, key: &'static str, value: Value) {
        match self
            .0
            .binary_search_by(|(k, _)| k.as_bytes().cmp(key.as_bytes()))
        {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Value)> {
        self.0.iter().map(|(k, v)| (*k, v))
    }

    /// Rough payload size, to allocate once.
    pub fn size_hint(&self) -> usize {
        self.iter()
            .map(|(k, v)| k.len() + 4 + v.size_hint())
            .sum::<usize>()
            + 2
    }
}

impl Value {
    fn size_hint(&self) -> usize {
        match self {
            Self::Bool(_) | Self::Int(_) | Self::UInt(_) => 20,
            // Escapes rarely more than add a little.
            Self::Str(s) => s.len() + s.len() / 8 + 2,
            Self::Arr(items) => items.iter().map(|v| v.size_hint() + 1).sum::<usize>() + 2,
            Self::Obj(o) => o.size_hint(),
        }
    }
}

/// A value's JSON text (for a protocol that carries it as a string).
pub(crate) fn to_text(value: &Value) -> String {
    let mut out = BytesMut::with_capacity(value.size_hint());
    write_value(&mut out, value);
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn write_value(out: &mut BytesMut, value: &Value) {
    match value {
        Value::Bool(b) => out.put_slice(if *b { b"true" } else { b"false" }),
        Value::Int(n) => {
            if *n < 0 {
                out.put_u8(b'-');
            }
            write_u64(out, n.unsigned_abs());
        }
        Value::UInt(n) => write_u64(out, *n),
        Value::Str(s) => write_str(out, s),
        Value::Arr(items) => {
            out.put_u8(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.put_u8(b',');
                }
                write_value(out, item);
            }
            out.put_u8(b']');
        }
        Value::Obj(object) => write_object(out, object.iter()),
    }
}

/// Writes key/value pairs as an object; the caller yields them in byte order.
pub(super) fn write_object<'k, 'v>(
    out: &mut BytesMut,
    fields: impl Iterator<Item = (&'k str, &'v Value)>,
) {
    out.put_u8(b'{');
    for (i, (key, value)) in fields.enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        write_str(out, key);
        out.put_u8(b':');
        write_value(out, value);
    }
    out.put_u8(b'}');
}

pub(super) fn write_str(out: &mut BytesMut, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.put_u8(b'"');
    let bytes = s.as_bytes();
    let mut clean_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0C => b"\\f",
            0x00..=0x1F => &[],
            _ => continue,
        };
        out.put_slice(&bytes[clean_from..i]);
        if escape.is_empty() {
            out.put_slice(b"\\u00");
            out.put_u8(HEX[usize::from(b >> 4)]);
            out.put_u8(HEX[usize::from(b & 0xF)]);
        } else {
            out.put_slice(escape);
        }
        clean_from = i + 1;
    }
    out.put_slice(&bytes[clean_from..]);
    out.put_u8(b'"');
}

fn write_u64(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &Value) -> String {
        let mut out = BytesMut::new();
        write_value(&mut out, v);
        String::from_utf8(out.to_vec()).expect("writer emits UTF-8")
    }

    #[test]
    fn scalars() {
        assert_eq!(text(&Value::Bool(true)), "true");
        assert_eq!(text(&Value::Bool(false)), "false");
        assert_eq!(text(&Value::Int(0)), "0");
        assert_eq!(text(&Value::Int(-1)), "-1");
        assert_eq!(text(&Value::Int(i64::MIN)), "-9223372036854775808");
        assert_eq!(text(&Value::UInt(u64::MAX)), "18446744073709551615");
    }

    #[test]
    fn strings_are_escaped_like_nlohmann() {
        assert_eq!(text(&Value::str("")), r#""""#);
        assert_eq!(text(&Value::str(r#"{"a":1}"#)), r#""{\"a\":1}""#);
        assert_eq!(text(&Value::str("a\\b/c")), r#""a\\b/c""#);
        assert_eq!(text(&Value::str("\n\r\t\u{8}\u{c}")), r#""\n\r\t\b\f""#);
        assert_eq!(
            text(&Value::str("\u{0}\u{1f}\u{7f}")),
            "\"\\u0000\\u001f\u{7f}\""
        );
        assert_eq!(text(&Value::str("é😀 it's")), "\"é😀 it's\"");
    }

    #[test]
    fn objects_sort_keys_by_bytes() {
        let o = Object::new()
            .with("uuid", Value::str("u"))
            .with("user_id", Value::UInt(1))
            .with("_info", Value::str("i"))
            .with("Z", Value::Int(0))
            .with("user_id", Value::UInt(2));
        assert_eq!(
            text(&Value::Obj(o)),
            r#"{"Z":0,"_info":"i","user_id":2,"uuid":"u"}"#
        );
        let arr = Value::Arr(vec![
            Value::Int(1),
            Value::Arr(vec![]),
            Value::Obj(Object::new()),
        ]);
        assert_eq!(text(&arr), "[1,[],{}]");
    }

    #[test]
    fn output_parses_back() {
        let mut s = String::new();
        for c in 0u32..0x300 {
            s.extend(char::from_u32(c));
        }
        let v = Value::Obj(Object::new().with("k", Value::str(s.clone())));
        let parsed: serde_json::Value = serde_json::from_str(&text(&v)).expect("valid JSON");
        assert_eq!(parsed["k"], serde_json::Value::String(s));
    }
}
