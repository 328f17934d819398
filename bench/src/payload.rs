//! The payload every benchmark message carries: a marker, the message's sequence number and the time it was
//! published (unix microseconds), padded to a fixed size. Subscribers find it inside whatever frame the
//! server wraps it in (Halley's JSON object, Nchan's raw body) and compute publish-to-delivery latency.

use std::time::{SystemTime, UNIX_EPOCH};

const MARK: &[u8] = b"bench:";

/// Wall-clock microseconds: the same clock in every process on the machine.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// `bench:<seq>:<sent_us>:` padded with `x` to `size` bytes. Only `[a-z0-9:]`: safe unquoted in SQL strings,
/// JSON strings and URLs.
pub fn encode(seq: u64, sent_us: u64, size: usize) -> String {
    let mut s = format!("bench:{seq}:{sent_us}:");
    if s.len() < size {
        s.extend(std::iter::repeat_n('x', size - s.len()));
    }
    s
}

/// The sequence number and send time found in a received frame, if it carries a benchmark payload.
pub fn parse(frame: &[u8]) -> Option<(u64, u64)> {
    let at = frame.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let (seq, rest) = number(&frame[at..])?;
    let (sent, rest) = number(rest.strip_prefix(b":")?)?;
    rest.starts_with(b":").then_some((seq, sent))
}

fn number(b: &[u8]) -> Option<(u64, &[u8])> {
    let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 || n > 19 {
        return None;
    }
    let v = std::str::from_utf8(&b[..n]).ok()?.parse().ok()?;
    Some((v, &b[n..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_inside_json_and_raw() {
        let p = encode(42, 1_795_000_000_123_456, 64);
        assert_eq!(p.len(), 64);
        assert_eq!(parse(p.as_bytes()), Some((42, 1_795_000_000_123_456)));
        let json = format!(r#"{{"data":"{p}","event":"ev","message_send_time":1,"pipe":"p"}}"#);
        assert_eq!(parse(json.as_bytes()), Some((42, 1_795_000_000_123_456)));
    }

    #[test]
    fn short_size_is_not_truncated() {
        let p = encode(7, 9, 4);
        assert_eq!(p, "bench:7:9:");
        assert_eq!(parse(p.as_bytes()), Some((7, 9)));
    }

    #[test]
    fn other_frames_are_not_payloads() {
        assert_eq!(parse(br#"{"event":"serverInfo","pipe":"sys"}"#), None);
        assert_eq!(parse(b"bench:12"), None);
        assert_eq!(parse(b"bench::1:"), None);
    }
}
