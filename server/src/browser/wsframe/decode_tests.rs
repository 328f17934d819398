use super::*;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame: `b0` is FIN/RSV/opcode, the payload is masked with `KEY`.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&KEY);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    out
}

fn decode_all(dec: &mut FrameDecoder, bytes: &[u8]) -> Result<Vec<Incoming>, WsError> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(msg) = dec.decode(&mut buf)? {
        out.push(msg);
    }
    Ok(out)
}

fn text(s: &str) -> Incoming {
    Incoming::Text(s.to_owned())
}

#[test]
fn rfc_masked_hello() {
    let bytes = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let mut buf = BytesMut::from(&bytes[..]);
    let mut dec = FrameDecoder::default();
    assert_eq!(dec.decode(&mut buf), Ok(Some(text("Hello"))));
    assert!(buf.is_empty());
    assert_eq!(dec.decode(&mut buf), Ok(None));
    assert_eq!(client_frame(0x81, b"Hello"), bytes);
}

#[test]
fn rfc_unmasked_hello_is_a_protocol_error() {
    let bytes = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let err = FrameDecoder::default().decode(&mut BytesMut::from(&bytes[..]));
    assert_eq!(err, Err(WsError::Unmasked));
    assert_eq!(WsError::Unmasked.close_code(), 1002);
}

#[test]
fn split_across_reads_byte_by_byte() {
    let bytes = client_frame(0x81, b"subscription\nweb_chat");
    let mut dec = FrameDecoder::default();
    let mut buf = BytesMut::new();
    for (i, b) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[*b]);
        let got = dec.decode(&mut buf).expect("valid frame");
        if i + 1 < bytes.len() {
            assert_eq!(got, None, "after {} bytes", i + 1);
        } else {
            assert_eq!(got, Some(text("subscription\nweb_chat")));
        }
    }
    assert!(buf.is_empty());
}

#[test]
fn several_frames_in_one_read() {
    let mut bytes = client_frame(0x81, b"one");
    bytes.extend(client_frame(0x82, b"two"));
    bytes.extend(client_frame(0x8A, b""));
    bytes.extend(client_frame(0x81, b"thr")); // and half of a fourth
    bytes.truncate(bytes.len() - 2);
    let mut dec = FrameDecoder::default();
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(dec.decode(&mut buf), Ok(Some(text("one"))));
    assert_eq!(
        dec.decode(&mut buf),
        Ok(Some(Incoming::Binary(Bytes::from_static(b"two"))))
    );
    assert_eq!(dec.decode(&mut buf), Ok(Some(Incoming::Pong)));
    assert_eq!(dec.decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), 7);
}

#[test]
fn sixteen_bit_length() {
    let payload = vec![b'a'; 256];
    let bytes = client_frame(0x81, &payload);
    assert_eq!(&bytes[..4], &[0x81, 0xFE, 0x01, 0x00]);
    let got = decode_all(&mut FrameDecoder::default(), &bytes);
    assert_eq!(got, Ok(vec![text(&"a".repeat(256))]));
}

#[test]
fn sixty_four_bit_length_under_the_limit() {
    let payload = vec![b'b'; 70_000];
    let bytes = client_frame(0x82, &payload);
    assert_eq!(bytes[1], 0xFF);
    let got = decode_all(&mut FrameDecoder::new(100_000), &bytes);
    assert_eq!(got, Ok(vec![Incoming::Binary(Bytes::from(payload))]));
}

#[test]
fn sixty_four_bit_length_over_the_limit_is_refused_from_the_header() {
    // 65537 bytes announced; only the header has arrived.
    let header = [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 1];
    let mut dec = FrameDecoder::default();
    let got = dec.decode(&mut BytesMut::from(&header[..]));
    assert_eq!(got, Err(WsError::TooBig { limit: 65536 }));
    // Exactly the limit is fine.
    let header = [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
    assert_eq!(
        FrameDecoder::default().decode(&mut BytesMut::from(&header[..])),
        Ok(None)
    );
    let header = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1];
    assert_eq!(
        FrameDecoder::default().decode(&mut BytesMut::from(&header[..])),
        Err(WsError::BadLength)
    );
}

#[test]
fn seven_and_sixteen_bit_lengths_over_a_small_limit() {
    let mut dec = FrameDecoder::new(100);
    let got = dec.decode(&mut BytesMut::from(&[0x81, 0x80 | 101][..]));
    assert_eq!(got, Err(WsError::TooBig { limit: 100 }));
    let mut dec = FrameDecoder::new(100);
    assert_eq!(
        decode_all(&mut dec, &client_frame(0x81, &[b'x'; 100])),
        Ok(vec![text(&"x".repeat(100))])
    );
    let got = FrameDecoder::new(200).decode(&mut BytesMut::from(&[0x81, 0xFE, 0x00, 0xC9][..]));
    assert_eq!(got, Err(WsError::TooBig { limit: 200 }));
}

#[test]
fn fragments_with_an_interleaved_ping() {
    // RFC 6455 5.6: "Hel" + "lo", here masked, with a ping between the fragments.
    let mut bytes = client_frame(0x01, b"Hel");
    bytes.extend(client_frame(0x89, b"Hello"));
    bytes.extend(client_frame(0x80, b"lo"));
    let got = decode_all(&mut FrameDecoder::default(), &bytes);
    assert_eq!(
        got,
        Ok(vec![
            Incoming::Ping(Bytes::from_static(b"Hello")),
            text("Hello")
        ])
    );
}

#[test]
fn three_fragments_split_across_reads() {
    let mut bytes = client_frame(0x02, b"ab");
    bytes.extend(client_frame(0x00, b"cdefghij"));
    bytes.extend(client_frame(0x80, b"k"));
    let mut dec = FrameDecoder::default();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for chunk in bytes.chunks(3) {
        buf.extend_from_slice(chunk);
        while let Some(m) = dec.decode(&mut buf).expect("valid") {
            got.push(m);
        }
    }
    assert_eq!(
        got,
        vec![Incoming::Binary(Bytes::from_static(b"abcdefghijk"))]
    );
}

#[test]
fn utf8_split_between_fragments_is_valid() {
    let e = "é".as_bytes();
    let mut bytes = client_frame(0x01, &e[..1]);
    bytes.extend(client_frame(0x80, &e[1..]));
    assert_eq!(
        decode_all(&mut FrameDecoder::default(), &bytes),
        Ok(vec![text("é")])
    );
}

#[test]
fn assembled_message_over_the_limit() {
    let mut dec = FrameDecoder::new(10);
    let mut bytes = client_frame(0x01, b"123456");
    bytes.extend(client_frame(0x80, b"12345"));
    assert_eq!(
        decode_all(&mut dec, &bytes),
        Err(WsError::TooBig { limit: 10 })
    );
    let mut dec = FrameDecoder::new(10);
    let mut bytes = client_frame(0x01, b"123456");
    bytes.extend(client_frame(0x80, b"1234"));
    assert_eq!(decode_all(&mut dec, &bytes), Ok(vec![text("1234561234")]));
}

#[test]
fn continuation_rules() {
    let got = decode_all(&mut FrameDecoder::default(), &client_frame(0x80, b"x"));
    assert_eq!(got, Err(WsError::UnexpectedContinuation));
    let mut bytes = client_frame(0x01, b"a");
    bytes.extend(client_frame(0x81, b"b"));
    let got = decode_all(&mut FrameDecoder::default(), &bytes);
    assert_eq!(got, Err(WsError::ExpectedContinuation));
}

#[test]
fn control_frame_rules() {
    let got = decode_all(&mut FrameDecoder::default(), &client_frame(0x89, &[0; 126]));
    assert_eq!(got, Err(WsError::BadControlFrame));
    let got = decode_all(&mut FrameDecoder::default(), &client_frame(0x09, b"x"));
    assert_eq!(got, Err(WsError::BadControlFrame));
    let got = decode_all(&mut FrameDecoder::default(), &client_frame(0x89, &[7; 125]));
    assert_eq!(got, Ok(vec![Incoming::Ping(Bytes::from(vec![7; 125]))]));
}

#[test]
fn reserved_bits_and_opcodes() {
    for b0 in [0xC1u8, 0xA1, 0x91] {
        let got = decode_all(&mut FrameDecoder::default(), &client_frame(b0, b"x"));
        assert_eq!(got, Err(WsError::ReservedBits));
    }
    for op in [0x3u8, 0x7, 0xB, 0xF] {
        let got = decode_all(&mut FrameDecoder::default(), &client_frame(0x80 | op, b"x"));
        assert_eq!(got, Err(WsError::UnknownOpcode(op)));
    }
}

#[test]
fn invalid_utf8_text() {
    let got = decode_all(
        &mut FrameDecoder::default(),
        &client_frame(0x81, &[0xC3, 0x28]),
    );
    assert_eq!(got, Err(WsError::InvalidUtf8));
    assert_eq!(WsError::InvalidUtf8.close_code(), 1007);
    // Binary is not checked.
    let got = decode_all(
        &mut FrameDecoder::default(),
        &client_frame(0x82, &[0xC3, 0x28]),
    );
    assert_eq!(
        got,
        Ok(vec![Incoming::Binary(Bytes::from_static(&[0xC3, 0x28]))])
    );
}

#[test]
fn close_frames() {
    let dec = |b: &[u8]| decode_all(&mut FrameDecoder::default(), &client_frame(0x88, b));
    assert_eq!(dec(b""), Ok(vec![Incoming::Close(None, String::new())]));
    assert_eq!(
        dec(&[0x03, 0xE8]),
        Ok(vec![Incoming::Close(Some(1000), String::new())])
    );
    assert_eq!(
        dec(&[0x03, 0xE9, b'b', b'y', b'e']),
        Ok(vec![Incoming::Close(Some(1001), "bye".into())])
    );
    assert_eq!(
        dec(&[0x0F, 0xA0]),
        Ok(vec![Incoming::Close(Some(4000), String::new())])
    );
    assert_eq!(dec(&[0x03]), Err(WsError::BadClosePayload));
    assert_eq!(dec(&[0x03, 0xED]), Err(WsError::BadCloseCode(1005)));
    assert_eq!(dec(&[0x00, 0x00]), Err(WsError::BadCloseCode(0)));
    assert_eq!(dec(&[0x03, 0xE8, 0xFF]), Err(WsError::InvalidUtf8));
}

#[test]
fn empty_buffer_and_partial_headers() {
    let mut dec = FrameDecoder::default();
    assert_eq!(dec.decode(&mut BytesMut::new()), Ok(None));
    assert_eq!(dec.decode(&mut BytesMut::from(&[0x81][..])), Ok(None));
    assert_eq!(
        dec.decode(&mut BytesMut::from(&[0x81, 0xFE, 0x01][..])),
        Ok(None)
    );
    assert_eq!(
        dec.decode(&mut BytesMut::from(&[0x81, 0x85, 1, 2][..])),
        Ok(None)
    );
}

#[test]
fn unmask_matches_bytewise_xor() {
    for n in 0..40 {
        let data: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
        let mut fast = data.clone();
        unmask(&mut fast, KEY);
        let slow: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ KEY[i % 4])
            .collect();
        assert_eq!(fast, slow);
    }
}

#[test]
fn random_input_never_panics() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(6455);
    for _ in 0..5000 {
        let len = rng.gen_range(0..64);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        // Bias towards plausible headers so the deeper paths run too.
        if rng.gen_bool(0.5) && bytes.len() > 1 {
            bytes[1] |= 0x80;
            bytes[0] &= 0x8F;
        }
        let mut dec = FrameDecoder::new(rng.gen_range(0..200));
        let mut buf = BytesMut::new();
        for chunk in bytes.chunks(rng.gen_range(1..8)) {
            buf.extend_from_slice(chunk);
            while let Ok(Some(_)) = dec.decode(&mut buf) {}
        }
    }
}
