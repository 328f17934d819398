//! The WebSocket frame decoder (RFC 6455, client → server) on arbitrary bytes off the socket, plus the
//! server's own frames read back through it.
//!
//! Checked beyond "no panic": what is decoded does not depend on how the bytes were chunked, the read
//! buffer never holds more than one frame within the limit, decoded messages and control payloads respect
//! their limits, and frames the server encodes (text, close, pong), once masked as a browser would,
//! decode to what was encoded.
#![no_main]

use bytes::BytesMut;
use halley::browser::wsframe::{
    encode_close, encode_pong, encode_text, FrameDecoder, Incoming, WsError, DEFAULT_MAX_MESSAGE,
    MAX_CONTROL_PAYLOAD, MAX_HEADER,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The default limit, and one small enough that short inputs reach it.
    for limit in [DEFAULT_MAX_MESSAGE, 1 + data.len() / 4] {
        let whole = decode(data, limit, |_| 16 * 1024);
        let trickle = decode(data, limit, |i| [1, 2, 3, 5, 7, 11][i % 6]);
        assert_eq!(whole, trickle, "messages depend on chunking");
    }
    round_trips(data);
});

fn decode(
    data: &[u8],
    limit: usize,
    mut chunk: impl FnMut(usize) -> usize,
) -> (Vec<Incoming>, Option<WsError>) {
    let mut decoder = FrameDecoder::new(limit);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = chunk(i).clamp(1, rest.len());
        i += 1;
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(m)) => {
                    check(&m, limit);
                    out.push(m);
                }
                // What is left is one incomplete frame, which the limit bounds.
                Ok(None) => {
                    assert!(
                        buf.len() < MAX_HEADER + limit,
                        "{} bytes buffered",
                        buf.len()
                    );
                    break;
                }
                Err(e) => {
                    let _ = e.close_code();
                    return (out, Some(e));
                }
            }
        }
    }
    (out, None)
}

fn check(m: &Incoming, limit: usize) {
    match m {
        Incoming::Text(t) => assert!(t.len() <= limit),
        Incoming::Binary(b) => assert!(b.len() <= limit),
        Incoming::Ping(p) => {
            assert!(p.len() <= MAX_CONTROL_PAYLOAD);
            assert_eq!(
                masked_round_trip(&encode_pong(p), [1, 2, 3, 4]),
                vec![Incoming::Pong]
            );
        }
        Incoming::Close(_, reason) => assert!(reason.len() <= MAX_CONTROL_PAYLOAD - 2),
        Incoming::Pong => {}
    }
}

/// Server frames, masked as a browser masks its own, decode to what was encoded.
fn round_trips(data: &[u8]) {
    let key = [
        data.first().copied().unwrap_or(0),
        data.get(1).copied().unwrap_or(0x5a),
        data.get(2).copied().unwrap_or(0xa5),
        data.get(3).copied().unwrap_or(0xff),
    ];
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(
            masked_round_trip(&encode_text(data), key),
            vec![Incoming::Text(text.to_owned())]
        );
        let code = 1000 + (data.len() % 4) as u16;
        let close = masked_round_trip(&encode_close(code, text), key);
        let [Incoming::Close(Some(c), reason)] = close.as_slice() else {
            panic!("close frame read back as {close:?}");
        };
        assert_eq!(*c, code);
        assert!(text.starts_with(reason.as_str()) && reason.len() <= MAX_CONTROL_PAYLOAD - 2);
    }
}

/// Sets the mask bit and key on an unmasked server frame, masks its payload, and decodes it.
fn masked_round_trip(frame: &[u8], key: [u8; 4]) -> Vec<Incoming> {
    let at = match frame[1] & 0x7F {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let mut masked = BytesMut::new();
    masked.extend_from_slice(&frame[..at]);
    masked[1] |= 0x80;
    masked.extend_from_slice(&key);
    masked.extend(frame[at..].iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    let mut decoder = FrameDecoder::new(frame.len().max(DEFAULT_MAX_MESSAGE));
    let mut out = Vec::new();
    while let Some(m) = decoder.decode(&mut masked).expect("a server frame decodes") {
        out.push(m);
    }
    assert!(masked.is_empty(), "bytes left after a whole frame");
    out
}
