//! Literal inputs for `wire.rs`.

use super::*;

fn header(except: Option<u64>) -> Header {
    Header {
        kind: Kind::Message,
        origin: "node-a".into(),
        except: except.map(ConnId),
        dev_id: DevId(15),
        pipe: PipeName::parse_command("web_chat").unwrap(),
    }
}

fn message_body(sender: Option<u64>, event: &str, text: &str) -> Body {
    Body {
        sent_at: 1_700_000_000,
        sender: sender.map(UserId),
        event: EventName::parse(event).unwrap(),
        text: text.into(),
        socket: None,
    }
}

#[test]
fn encodes_to_the_documented_bytes() {
    let h = head(&header(Some(42)));
    assert_eq!(h, "H1 m node-a 42 15 web_chat ");
    let b = body(&message_body(Some(9), "ev", "héllo\nworld"));
    let bytes = assemble(&h, "00ab", 7, &b);
    assert_eq!(
        bytes,
        b"H1 m node-a 42 15 web_chat 00ab 7\n1700000000 9 ev\nh\xc3\xa9llo\nworld".to_vec()
    );
    let plain = assemble(
        &head(&header(None)),
        "e",
        1,
        &body(&message_body(None, "", "")),
    );
    assert_eq!(
        plain,
        b"H1 m node-a - 15 web_chat e 1\n1700000000 - \n".to_vec()
    );
}

#[test]
fn decodes_what_it_encodes() {
    let b = message_body(Some(9), "ev", "a b\nc");
    let bytes = assemble(&head(&header(Some(42))), "00ab", 7, &body(&b));
    let w = decode(&bytes).unwrap();
    assert_eq!(w.header, header(Some(42)));
    assert_eq!((w.epoch.as_str(), w.offset), ("00ab", 7));
    assert_eq!(w.body, b);
    let w = decode(b"H1 m n - 1 p e 18446744073709551615\n-5 - \n").unwrap();
    assert_eq!(w.offset, u64::MAX);
    assert_eq!(w.body.sent_at, -5);
    assert_eq!(w.body.sender, None);
    assert_eq!(w.body.event.as_str(), "");
}

#[test]
fn a_join_marker_carries_its_id_and_the_top_it_read() {
    let h = Header {
        kind: Kind::Marker,
        ..header(None)
    };
    let bytes = assemble(&head(&h), "ep", 41, &marker_body(7));
    assert_eq!(bytes, b"H1 j node-a - 15 web_chat ep 41\n0 - \n7".to_vec());
    let w = decode(&bytes).unwrap();
    assert_eq!(w.header.kind, Kind::Marker);
    assert_eq!((w.epoch.as_str(), w.offset), ("ep", 41));
    assert_eq!(marker_id(&w), Some(7));
    let not_an_id = decode(b"H1 j n - 1 p e 1\n0 - \nx").unwrap();
    assert_eq!(marker_id(&not_an_id), None);
    let message = decode(b"H1 m n - 1 p e 1\n0 - \n7").unwrap();
    assert_eq!(marker_id(&message), None);
}

#[test]
fn private_messages_encode_to_the_documented_bytes_and_back() {
    let p = Private {
        origin: "node-a".into(),
        dev_id: DevId(15),
        user: UserId(7),
        id: "0190-ab".into(),
        event: EventName::parse("ev").unwrap(),
        text: "h\u{e9}\nllo".into(),
    };
    let bytes = encode_private(&p);
    assert_eq!(
        bytes,
        b"H1 u node-a 15 7 0190-ab\nev\nh\xc3\xa9\nllo".to_vec()
    );
    assert_eq!(decode_private(&bytes), Ok(p));
    for (bad, want) in [
        (&b"H1 m a 1 2 x e\n"[..], WireError::Kind("not u".into())),
        (b"H1 u a 1 x id\ne\n", WireError::Field("user")),
        (b"H1 u a 1 2 i.d\ne\n", WireError::Field("id")),
        (b"H1 u a 1 2 id\n", WireError::Field("event")),
        (b"H1 u a 1 2 id x\ne\n", WireError::Extra),
        (b"H1 u a 1 2 id\ne\n\xff", WireError::Utf8),
    ] {
        assert_eq!(decode_private(bad), Err(want), "{bad:?}");
    }
}

#[test]
fn presence_announcements_decode_with_their_placeholder_position() {
    let w = decode(b"H1 p node-b 5 1 track_a p 0\n17 - unsubscription\n42\nu\n\n\n\n").unwrap();
    assert_eq!(w.header.kind, Kind::Presence);
    assert_eq!(w.header.except, Some(ConnId(5)));
    assert_eq!((w.epoch.as_str(), w.offset), ("p", 0));
    assert_eq!(w.body.event.as_str(), "unsubscription");
    assert_eq!(w.body.text, "42\nu\n\n\n\n");
    let h = Header {
        kind: Kind::Presence,
        ..header(None)
    };
    assert_eq!(head(&h), "H1 p node-a - 15 web_chat ");
}

#[test]
fn pusher_named_messages_encode_to_the_documented_bytes_and_back() {
    let h = Header {
        kind: Kind::Named,
        pipe: PipeName::pusher_only("private-orders.1"),
        ..header(Some(4))
    };
    let b = Body {
        sent_at: 1_700_000_000,
        sender: None,
        event: EventName::pusher("App\\Events\\Order Shipped").unwrap(),
        text: "{\"id\":7}".into(),
        socket: Some("12.345".into()),
    };
    assert_eq!(kind_of(&b), Kind::Named);
    let bytes = assemble(&head(&h), "ep", 3, &body(&b));
    assert_eq!(
        bytes,
        b"H1 n node-a 4 15 pusher:private-orders.1 ep 3\n1700000000 - 12.345\nApp\\Events\\Order Shipped\n{\"id\":7}".to_vec()
    );
    let w = decode(&bytes).unwrap();
    assert_eq!((w.header, w.body), (h, b));
    // A comet event name with a socket id travels as `n` too; without one, as `m`.
    let mut plain = message_body(None, "shipped", "x");
    assert_eq!(kind_of(&plain), Kind::Message);
    plain.socket = Some("1.2".into());
    assert_eq!(kind_of(&plain), Kind::Named);
    let w = decode(b"H1 n a - 1 orders e 1\n5 - -\n.order.shipped\n").unwrap();
    assert_eq!(w.header.pipe.as_str(), "orders");
    assert_eq!(
        (w.body.event.as_str(), w.body.socket),
        (".order.shipped", None)
    );
    for (bad, want) in [
        (
            &b"H1 n a - 1 p e 1\n5 - 1x2\nev\n"[..],
            WireError::Field("socket"),
        ),
        (b"H1 n a - 1 p e 1\n5 - - x\nev\n", WireError::Extra),
        (b"H1 n a - 1 p e 1\n5 - -\nev", WireError::Field("event")),
        (
            b"H1 n a - 1 p e 1\n5 - -\npusher:ev\n",
            WireError::Field("event"),
        ),
        (
            b"H1 n a - 1 p e 1\n5 - -\n\xff\n",
            WireError::Field("event"),
        ),
        (
            b"H1 n a - 1 pusher:bad{ e 1\n5 - -\nev\n",
            WireError::Field("pipe"),
        ),
        (b"H1 n a - 1 p e 1\n5 - -\nev\n\xff", WireError::Utf8),
    ] {
        assert_eq!(decode(bad), Err(want), "{bad:?}");
    }
}

#[test]
fn pusher_frames_travel_as_they_are() {
    let h = Header {
        kind: Kind::Pusher,
        pipe: PipeName::pusher_only("presence-room"),
        ..header(Some(9))
    };
    let json = r#"{"event":"client-typing","channel":"presence-room","data":"{}","user_id":"1"}"#;
    let bytes = assemble(&head(&h), "p", 0, &pusher_body(json));
    assert_eq!(
        bytes,
        format!("H1 x node-a 9 15 pusher:presence-room p 0\n0 - \n{json}").into_bytes()
    );
    let w = decode(&bytes).unwrap();
    assert_eq!(w.header, h);
    assert_eq!(w.body.text, json);
    assert_eq!(
        pipe_name("pusher:#server-to-user-42").unwrap().as_str(),
        "pusher:#server-to-user-42"
    );
    assert_eq!(pipe_name("pusher:"), None);
    assert_eq!(pipe_name("pusher:a b"), None);
}

#[test]
fn garbage_is_a_typed_error() {
    let cases: &[(&[u8], WireError)] = &[
        (b"", WireError::NoHeader),
        (b"H1 m n - 1 p e 1", WireError::NoHeader),
        (b"H2 m n - 1 p e 1\n0 - \n", WireError::Version),
        (b"H1 z n - 1 p e 1\n0 - \n", WireError::Kind("z".into())),
        (b"H1 m n/1 - 1 p e 1\n0 - \n", WireError::Field("origin")),
        (b"H1 m n -1 1 p e 1\n0 - \n", WireError::Field("except")),
        (b"H1 m n - +1 p e 1\n0 - \n", WireError::Field("dev_id")),
        (b"H1 m n - 1 p{x} e 1\n0 - \n", WireError::Field("pipe")),
        (b"H1 m n - 1 p e.1 1\n0 - \n", WireError::Field("epoch")),
        (
            b"H1 m n - 1 p e 18446744073709551616\n0 - \n",
            WireError::Field("offset"),
        ),
        (b"H1 m n - 1 p e 1 x\n0 - \n", WireError::Extra),
        (b"H1 m n - 1 p e 1\n", WireError::Field("body")),
        (b"H1 m n - 1 p e 1\nx - \n", WireError::Field("sent_at")),
        (b"H1 m n - 1 p e 1\n0 u \n", WireError::Field("sender")),
        (b"H1 m n - 1 p e 1\n0 - a\"b\n", WireError::Field("event")),
        (b"H1 m n - 1 p e 1\n0 - e\n\xff", WireError::Utf8),
        (b"H1 m n - 1 p e 1 \xc3\xa9\n0 - \n", WireError::NoHeader),
    ];
    for (bytes, want) in cases {
        assert_eq!(decode(bytes).as_ref().err(), Some(want), "{bytes:?}");
    }
    let long_header = format!("H1 m n - 1 p {} 1\n0 - \n", "e".repeat(600));
    assert_eq!(decode(long_header.as_bytes()), Err(WireError::NoHeader));
    let huge = vec![b'a'; MAX_WIRE_BYTES + 1];
    assert_eq!(decode(&huge), Err(WireError::TooLong(MAX_WIRE_BYTES + 1)));
}

#[test]
fn no_input_panics() {
    // Every prefix and every single-byte change of a valid message decodes or errs, never panics.
    let good = assemble(
        &head(&header(Some(3))),
        "ep",
        12,
        &body(&message_body(Some(1), "e", "t\u{e9}xt")),
    );
    for n in 0..=good.len() {
        let _ = decode(&good[..n]);
    }
    for i in 0..good.len() {
        for b in [0u8, b' ', b'\n', 0xff, b'9', b'-'] {
            let mut bad = good.clone();
            bad[i] = b;
            let _ = decode(&bad);
        }
    }
}
