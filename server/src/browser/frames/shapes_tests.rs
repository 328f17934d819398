use super::*;

const T: i64 = 1_700_000_000;

fn modern(f: &Frame) -> String {
    f.json(ApiEra::Modern)
}

#[test]
fn server_info_frames() {
    let f = server_info(true, "hash123", "Halley 0.1", T);
    assert_eq!(
        modern(&f),
        r#"{"authorized":true,"data":"hash123","event":"serverInfo","message_send_time":1700000000,"pipe":"sys","server":"Halley 0.1"}"#
    );
    let f = server_info(false, "", "Halley 0.1", T);
    assert_eq!(
        f.json(ApiEra::Legacy),
        r#"{"api_data":"for major_version < 4","authorized":false,"data":"","event":"serverInfo","event_name":"serverInfo","message_send_time":1700000000,"pipe":"sys","server":"Halley 0.1"}"#
    );
}

#[test]
fn pipe_message_from_cometql() {
    let f = pipe_message("web_chat", "msg", r#"{"a":1,"t":"é\"\\"}"#, T);
    assert_eq!(
        modern(&f),
        r#"{"data":"{\"a\":1,\"t\":\"é\\\"\\\\\"}","event":"msg","message_send_time":1700000000,"pipe":"web_chat"}"#
    );
    let f = pipe_message("web_chat", "", "plain", T);
    assert_eq!(
        modern(&f),
        r#"{"data":"plain","event":"","message_send_time":1700000000,"pipe":"web_chat"}"#
    );
}

#[test]
fn web_pipe2_relay_and_answer() {
    // Relayed verbatim, not mysql-escaped.
    let f = web_pipe_relay("web_chat", "say", r#"{"text":"it's"}"#, 7, T);
    assert_eq!(
        modern(&f),
        r#"{"data":"{\"text\":\"it's\"}","event":"say","message_send_time":1700000000,"pipe":"web_chat","user_id":7}"#
    );
    let f = web_pipe_answer("web_chat", r#"{"text":"hi"}"#, 3, T);
    assert_eq!(
        modern(&f),
        r#"{"data":{"message":"{\"text\":\"hi\"}","number_messages":3},"event":"answer","message_send_time":1700000000,"pipe":"_answer_to_web_chat"}"#
    );
}

#[test]
fn private_messages() {
    assert_eq!(
        modern(&private_message("alert", "hello")),
        r#"{"data":"hello","event":"alert","pipe":"msg"}"#
    );
    assert_eq!(
        modern(&queued_private_message("alert", "hello", 1_600_000_000)),
        r#"{"data":"hello","event":"alert","fromQueue":true,"message_send_time":1600000000,"pipe":"msg"}"#
    );
    assert_eq!(
        modern(&msg_recovery_failed()),
        r#"{"data":{"recovered":false},"event":"msg_recovery","pipe":"msg"}"#
    );
}

#[test]
fn history_entries() {
    assert_eq!(
        modern(&history_entry("web_chat", "say", "m1", 1_600_000_000, 5)),
        r#"{"data":"m1","event":"say","fromQueue":true,"message_send_time":1600000000,"pipe":"web_chat","user_id":5}"#
    );
    assert_eq!(
        modern(&history_entry("trust_x", "", "m2", 1, 0)),
        r#"{"data":"m2","event":"undefined","fromQueue":true,"message_send_time":1,"pipe":"trust_x","user_id":0}"#
    );
}

#[test]
fn user_status_events() {
    assert_eq!(
        modern(&user_online(42)),
        r#"{"data":"online","event":"online","pipe":"user_status_42"}"#
    );
    assert_eq!(
        modern(&user_offline(42)),
        r#"{"data":"offline","event":"offline","pipe":"user_status_42"}"#
    );
}

#[test]
fn track_presence() {
    let uuid = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        modern(&track_event(
            "track_room",
            TrackEvent::Subscription,
            5,
            uuid,
            T
        )),
        r#"{"data":{"user_id":5,"uuid":"0123456789abcdef0123456789abcdef"},"event":"subscription","message_send_time":1700000000,"pipe":"track_room"}"#
    );
    assert_eq!(
        modern(&track_event(
            "track_room",
            TrackEvent::Unsubscription,
            0,
            "u",
            T
        )),
        r#"{"data":{"user_id":0,"uuid":"u"},"event":"unsubscription","message_send_time":1700000000,"pipe":"track_room"}"#
    );
}

#[test]
fn pipe_count_answers() {
    assert_eq!(
        modern(&pipe_count_answer("m1", 12, T)),
        r#"{"data":{"user_in_pipe":12},"event":"user_in_pipe","marker":"m1","message_send_time":1700000000,"pipe":"_answer_pipe_count"}"#
    );
    // A 123-byte answer is what the reference corrupted; 123..=125 must stay whole frames here.
    for (marker, len) in [("01", 123u8), ("012", 124), ("0123", 125)] {
        let f = pipe_count_answer(marker, 1, T);
        let json = modern(&f);
        assert_eq!(json.len(), usize::from(len));
        let bytes = f.encode(ApiEra::Modern);
        assert_eq!(&bytes[..2], &[0x81, len]);
        assert_eq!(&bytes[2..], json.as_bytes());
        assert!(serde_json::from_slice::<serde_json::Value>(&bytes[2..]).is_ok());
    }
}

#[test]
fn track_pipe_users_answers() {
    let f = track_pipe_users_answer("mk", [(5, "aa"), (0, "bb")], T);
    assert_eq!(
        modern(&f),
        r#"{"_info":"answer for track_pipe_users","data":[{"user_id":5,"uuid":"aa"},{"user_id":0,"uuid":"bb"}],"event":"answer","marker":"mk","message_send_time":1700000000,"pipe":"_answer"}"#
    );
    let f = track_pipe_users_answer("mk", std::iter::empty(), T);
    assert!(modern(&f).contains(r#""data":[]"#));
}

#[test]
fn user_data_answers() {
    assert_eq!(
        modern(&user_data_answer("mk", 9, r#"{"name":"Ann"}"#, T)),
        r#"{"data":{"user_data":"{\"name\":\"Ann\"}","user_id":9},"event":"answer","marker":"mk","message_send_time":1700000000,"pipe":"_answer"}"#
    );
    assert!(modern(&user_data_answer("", 9, "", T)).contains(r#""user_data":"""#));
}

#[test]
fn user_status_answers() {
    assert_eq!(
        modern(&user_status_answer(42, 0, T)),
        r#"{"data":{"data":0,"last_online_time":0},"event":"user_status_42","message_send_time":1700000000,"pipe":"_answer_user_status"}"#
    );
    assert!(modern(&user_status_answer(42, -1, T)).contains(r#"{"data":-1,"last_online_time":-1}"#));
    assert!(modern(&user_status_answer(1, 1_650_000_000, T)).contains(r#""data":1650000000,"#));
}

#[test]
fn error_frames() {
    assert_eq!(
        modern(&error("Invalid pipe name length", T)),
        r#"{"data":{"error":"Invalid pipe name length"},"event":"error","message_send_time":1700000000,"pipe":"sys"}"#
    );
    assert_eq!(
        modern(&subscription_error("Too many letters", T)),
        r#"{"data":{"code":"403","error":"Too many letters"},"event":"error","message_send_time":1700000000,"pipe":"sys"}"#
    );
    assert_eq!(
        modern(&command_error("Invalid channel name.", T)),
        r#"{"data":{"error":"Invalid channel name.","number_messages":-1},"event":"error","message_send_time":1700000000,"pipe":"sys"}"#
    );
}

#[test]
fn url_error_frame_is_pre_4_0_formatted() {
    let bytes = url_error(UrlError::NoSession, T);
    let expected = r#"{"api_data":"for major_version < 4","data":"{\"error\":\"Error code 401(Invalid request, session ID not found)\",\"error_code\":401,\"info\":\"Closed due to error. See last message.\"}","event":"error","event_name":"error","message_send_time":1700000000,"pipe":"sys"}"#;
    assert_eq!(&bytes[..2], &[0x81, 126]);
    assert_eq!(&bytes[4..], expected.as_bytes());
    let bytes = url_error(UrlError::NoApiVersion, T);
    let text = std::str::from_utf8(&bytes[4..]).expect("utf-8");
    assert!(text.contains(
        r#"Error code 418(Invalid request Not assigned client api version)\",\"error_code\":418"#
    ));
}

#[test]
fn legacy_error_frames_carry_data_as_text() {
    assert_eq!(
        subscription_error("Too many letters", T).json(ApiEra::Legacy),
        r#"{"api_data":"for major_version < 4","data":"{\"code\":\"403\",\"error\":\"Too many letters\"}","event":"error","event_name":"error","message_send_time":1700000000,"pipe":"sys"}"#
    );
}

#[test]
fn every_shape_is_valid_json_in_both_eras() {
    let frames = [
        server_info(true, "k", "s", T),
        pipe_message("p", "e", "\u{0}\"\\é😀", T),
        web_pipe_relay("web_p", "e", "m", 1, T),
        web_pipe_answer("web_p", "m", 0, T),
        private_message("e", "m"),
        queued_private_message("e", "m", T),
        history_entry("p", "", "m", T, 0),
        user_online(1),
        user_offline(1),
        track_event("track_p", TrackEvent::Subscription, 1, "u", T),
        pipe_count_answer("m", 1, T),
        track_pipe_users_answer("m", [(1, "u")], T),
        user_data_answer("m", 1, "d", T),
        user_status_answer(1, -1, T),
        error("x", T),
        subscription_error("x", T),
        command_error("x", T),
    ];
    for f in &frames {
        for era in [ApiEra::Modern, ApiEra::Legacy] {
            let json = f.json(era);
            let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
            assert_eq!(v["pipe"], serde_json::Value::String(f.pipe().into()));
            assert_eq!(v["event"], serde_json::Value::String(f.event().into()));
            // serde_json's map sorts its keys; the raw text must show them in that order too.
            let positions: Vec<usize> = v
                .as_object()
                .expect("object")
                .keys()
                .map(|k| json.find(&format!("\"{k}\":")).expect("key present"))
                .collect();
            assert!(positions.windows(2).all(|w| w[0] < w[1]), "{json}");
            if era == ApiEra::Legacy {
                assert_eq!(v["event_name"], v["event"]);
                assert!(f.pipe() == "msg" || !v["data"].is_object() && !v["data"].is_array());
            }
        }
    }
}

#[test]
fn subscribed_and_offset_frames() {
    assert_eq!(
        subscribed("web_a", "00ff", 12, true).json(ApiEra::Modern),
        r#"{"data":{"epoch":"00ff","offset":12,"recovered":true},"event":"subscribed","pipe":"web_a"}"#
    );
    assert_eq!(
        subscribed("web_a", "00ff", 0, false).json(ApiEra::Modern),
        r#"{"data":{"epoch":"00ff","offset":0,"recovered":false},"event":"subscribed","pipe":"web_a"}"#
    );
    // `offset` takes its alphabetical place, between `message_send_time` and `pipe`.
    assert_eq!(
        pipe_message("web_a", "ev", "m", 5)
            .with_offset(3)
            .json(ApiEra::Modern),
        r#"{"data":"m","event":"ev","message_send_time":5,"offset":3,"pipe":"web_a"}"#
    );
    assert_eq!(
        web_pipe_relay("web_a", "ev", "m", 9, 5)
            .with_offset(4)
            .json(ApiEra::Modern),
        r#"{"data":"m","event":"ev","message_send_time":5,"offset":4,"pipe":"web_a","user_id":9}"#
    );
}

#[test]
fn gap_frame_and_history_offsets() {
    assert_eq!(
        gap("web_a").json(ApiEra::Modern),
        r#"{"data":{"pipe":"web_a"},"event":"gap","pipe":"web_a"}"#
    );
    assert_eq!(
        history_entry("web_a", "ev", "m", 5, 0)
            .with_offset(7)
            .json(ApiEra::Modern),
        r#"{"data":"m","event":"ev","fromQueue":true,"message_send_time":5,"offset":7,"pipe":"web_a","user_id":0}"#
    );
}
