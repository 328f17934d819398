//! Shared by the targets: the JSON inside one server → client WebSocket frame (unmasked, FIN, text).

/// Parses the frame's header, checks it describes exactly the bytes given, and parses the payload as
/// JSON. Panics (a finding) when the frame or its JSON is malformed.
pub fn parse(frame: &[u8]) -> serde_json::Value {
    assert!(frame.len() >= 2, "short frame");
    assert_eq!(frame[0], 0x81, "not a final text frame");
    assert_eq!(frame[1] & 0x80, 0, "server frames are not masked");
    let (len, at) = match frame[1] & 0x7F {
        126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
        127 => {
            let mut be = [0u8; 8];
            be.copy_from_slice(&frame[2..10]);
            (usize::try_from(u64::from_be_bytes(be)).unwrap(), 10)
        }
        n => (usize::from(n), 2),
    };
    assert_eq!(
        frame.len(),
        at + len,
        "frame length does not match its header"
    );
    serde_json::from_slice(&frame[at..]).unwrap_or_else(|e| {
        panic!(
            "invalid JSON ({e}): {:?}",
            String::from_utf8_lossy(&frame[at..])
        )
    })
}
