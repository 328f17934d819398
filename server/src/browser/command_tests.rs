use super::*;
use crate::browser::frames::ApiEra;

fn p(text: &str) -> Result<Command<'_>, CommandError> {
    parse_command(text)
}

fn subs(text: &str) -> Subscription<'_> {
    match parse_command(text) {
        Ok(Command::Subscription(s)) => s,
        other => panic!("{text:?}: {other:?}"),
    }
}

#[test]
fn subscription_lists() {
    assert_eq!(subs("subscription\nweb_a\nweb_b").pipes, ["web_a", "web_b"]);
    assert_eq!(
        subs("subscription\nweb_a\nweb_b\n").pipes,
        ["web_a", "web_b"]
    );
    assert!(subs("subscription").pipes.is_empty());
    assert!(subs("subscription\n").pipes.is_empty());
    assert_eq!(subs("subscription\nweb_a").notice, None);
}

#[test]
fn any_other_character_separates_names() {
    assert_eq!(
        subs("subscription\nweb_x.ev\ntrack_y").pipes,
        ["web_x", "ev", "track_y"]
    );
    assert_eq!(
        subs("subscription\nweb_a\n\n. web_b").pipes,
        ["web_a", "web_b"]
    );
    assert_eq!(subs("subscription\nweb_aéweb_b").pipes, ["web_a", "web_b"]);
    assert_eq!(
        subs("subscription\nweb_a\nweb_a\nab").pipes,
        ["web_a", "ab"]
    );
}

#[test]
fn a_one_character_name_ends_the_list() {
    assert_eq!(subs("subscription\nweb_a\nx\nweb_b").pipes, ["web_a"]);
    assert_eq!(subs("subscription\nweb_a.x\nweb_b").pipes, ["web_a"]);
}

#[test]
fn name_length_limit() {
    let ok = format!("subscription\nweb_a\n{}", "p".repeat(63));
    assert_eq!(subs(&ok).pipes.len(), 2);
    let long = format!("subscription\nweb_a\n{}", "p".repeat(64));
    assert_eq!(parse_command(&long), Err(CommandError::ChannelNameTooLong));
    assert!(CommandError::ChannelNameTooLong.closes_connection());
}

#[test]
fn at_most_32_pipes() {
    let names: Vec<String> = (0..40).map(|i| format!("web_{i}")).collect();
    let text = format!("subscription\n{}", names.join("\n"));
    let s = subs(&text);
    assert_eq!(s.pipes.len(), 32);
    assert_eq!(s.pipes[31], "web_31");
    assert_eq!(s.notice, Some(CommandError::TooManyLetters));
    assert!(!CommandError::TooManyLetters.closes_connection());
    let text = format!("subscription\n{}", names[..32].join("\n"));
    let s = subs(&text);
    assert_eq!((s.pipes.len(), s.notice), (32, None));
}

#[test]
fn tenant_subscription_limit() {
    let limits = CommandLimits {
        max_subscriptions: 2,
    };
    let cmd = parse_command_with("subscription\nweb_a\nweb_b\nweb_c", limits);
    let Ok(Command::Subscription(s)) = cmd else {
        panic!("{cmd:?}");
    };
    assert_eq!(s.pipes, ["web_a", "web_b"]);
    assert_eq!(s.notice, Some(CommandError::TooManyLetters));
    let text = format!("subscription\n{}", "x".repeat(2 * 68 + 1));
    assert_eq!(
        parse_command_with(&text, limits),
        Err(CommandError::TooManyLetters)
    );
}

#[test]
fn subscription_text_limit() {
    let at_limit = format!("subscription\n{}", "ab\n".repeat(724) + "abcd");
    assert_eq!(
        at_limit.len() - "subscription\n".len(),
        MAX_SUBSCRIPTION_TEXT
    );
    assert_eq!(subs(&at_limit).pipes, ["ab", "abcd"]);
    let over = format!("{at_limit}c");
    assert_eq!(parse_command(&over), Err(CommandError::TooManyLetters));
}

#[test]
fn web_pipe2_forms() {
    let cmd = parse_command("web_pipe2\nweb_chat\nsay\n*\n{\"a\":1}");
    assert_eq!(
        cmd,
        Ok(Command::WebPipe2 {
            pipe: "web_chat",
            anonymous: false,
            event: "say",
            auth_type: '*',
            message: "{\"a\":1}",
        })
    );
    let multi = parse_command("web_pipe2\nweb_chat\n\n*\nline1\nline2\n\n");
    assert!(matches!(
        multi,
        Ok(Command::WebPipe2 {
            event: "",
            message: "line1\nline2\n\n",
            ..
        })
    ));
    let empty = parse_command("web_pipe2\nweb_chat\nev\n*\n");
    assert!(matches!(empty, Ok(Command::WebPipe2 { message: "", .. })));
    let anon = parse_command("web_pipe2\n@web_chat\nev\n*\nm");
    assert!(matches!(
        anon,
        Ok(Command::WebPipe2 {
            pipe: "web_chat",
            anonymous: true,
            ..
        })
    ));
    let auth = parse_command("web_pipe2\nwebauth_room\nev\n*\nm");
    assert!(matches!(
        auth,
        Ok(Command::WebPipe2 {
            pipe: "webauth_room",
            anonymous: false,
            ..
        })
    ));
    let newline_auth = parse_command("web_pipe2\nweb_a\nev\n\n\nm");
    assert!(matches!(
        newline_auth,
        Ok(Command::WebPipe2 {
            auth_type: '\n',
            message: "m",
            ..
        })
    ));
}

#[test]
fn web_pipe2_errors_in_order() {
    assert_eq!(
        p("web_pipe2\nchat\nev\n*\nm").err(),
        Some(CommandError::NotWebPipe)
    );
    assert_eq!(
        p("web_pipe2\n@webauth_x\nev\n*\nm").err(),
        Some(CommandError::NotWebPipe)
    );
    assert_eq!(
        p("web_pipe2\n\nev\n*\nm").err(),
        Some(CommandError::NotWebPipe)
    );
    assert_eq!(p("web_pipe2").err(), Some(CommandError::NotWebPipe));
    assert_eq!(
        p("web_pipe2\nweb_a.b\nev\n*\nm").err(),
        Some(CommandError::PipeNameChars)
    );
    let long = format!("web_pipe2\nweb_{}\nev\n*\nm", "a".repeat(61));
    assert_eq!(p(&long).err(), Some(CommandError::PipeNameLength));
    let fits = format!("web_pipe2\nweb_{}\nev\n*\nm", "a".repeat(60));
    assert_eq!(p(&fits).err(), None);
    assert_eq!(
        p("web_pipe2\nweb_a\ne v\n*\nm").err(),
        Some(CommandError::EventNameChars)
    );
    let long_event = format!("web_pipe2\nweb_a\n{}\n*\nm", "e".repeat(65));
    assert_eq!(p(&long_event).err(), Some(CommandError::EventNameLength));
    assert_eq!(
        p("web_pipe2\nweb_a\nev\n**\nm").err(),
        Some(CommandError::AuthType)
    );
    assert_eq!(
        p("web_pipe2\nweb_a\nev\n*").err(),
        Some(CommandError::AuthType)
    );
    assert_eq!(
        p("web_pipe2\nweb_a\nev").err(),
        Some(CommandError::AuthType)
    );
    assert_eq!(p("web_pipe2\nweb_a").err(), Some(CommandError::AuthType));
    assert_eq!(
        p("web_pipe2\nweb_a\nev\né\nm").err(),
        Some(CommandError::AuthType)
    );
}

#[test]
fn pipe_log() {
    assert_eq!(
        p("pipe_log\nweb_a\nm1\n"),
        Ok(Command::PipeLog {
            pipe: "web_a",
            marker: "m1"
        })
    );
    assert_eq!(
        p("pipe_log\nweb_a"),
        Ok(Command::PipeLog {
            pipe: "web_a",
            marker: ""
        })
    );
    assert_eq!(p("pipe_log\n\nm"), Err(CommandError::InvalidChannelName));
    assert_eq!(
        p("pipe_log\nweb a\nm"),
        Err(CommandError::InvalidChannelName)
    );
    assert_eq!(
        p("pipe_log\nweb_a\nm.1"),
        Err(CommandError::InvalidMarkerValue)
    );
}

#[test]
fn pipe_count() {
    assert_eq!(
        p("pipe_count\nweb_a\nm\n"),
        Ok(Command::PipeCount {
            pipe: "web_a",
            marker: "m"
        })
    );
    assert_eq!(
        p("pipe_count\ntrack_a\nm"),
        Ok(Command::PipeCount {
            pipe: "track_a",
            marker: "m"
        })
    );
    assert_eq!(
        p("pipe_count\nprivate_a\nm"),
        Err(CommandError::PipeCountNotWeb)
    );
    assert!(!CommandError::PipeCountNotWeb.closes_connection());
    assert_eq!(
        p("pipe_count\nweb_a!\nm"),
        Err(CommandError::InvalidPipeName)
    );
    assert_eq!(
        p("pipe_count\nweb_a\nm m"),
        Err(CommandError::InvalidMarkerValue)
    );
}

#[test]
fn track_pipe_users() {
    assert_eq!(
        p("track_pipe_users\ntrack_a\nm"),
        Ok(Command::TrackPipeUsers {
            pipe: "track_a",
            marker: "m"
        })
    );
    assert_eq!(
        p("track_pipe_users\nweb_a\nm"),
        Err(CommandError::NotTrackPipe)
    );
    assert_eq!(
        p("track_pipe_users\ntrack_a!\nm"),
        Err(CommandError::InvalidPipeName)
    );
    assert_eq!(
        p("track_pipe_users\ntrack_a\nm!"),
        Err(CommandError::InvalidMarkerValue)
    );
}

#[test]
fn user_status_and_user_data() {
    assert_eq!(
        p("user_status\n42"),
        Ok(Command::UserStatus { user_id: 42 })
    );
    assert_eq!(
        p("user_status\n 42 \nx"),
        Ok(Command::UserStatus { user_id: 42 })
    );
    for bad in [
        "user_status",
        "user_status\n",
        "user_status\nabc",
        "user_status\n-1",
    ] {
        assert_eq!(p(bad), Err(CommandError::InvalidUserId), "{bad:?}");
    }
    assert_eq!(
        p("user_data\nmk\n9"),
        Ok(Command::UserData {
            marker: "mk",
            user_id: 9
        })
    );
    assert_eq!(p("user_data\nm k\n9"), Err(CommandError::InvalidMarkerName));
    assert_eq!(p("user_data\nmk\nx"), Err(CommandError::InvalidUserId));
    assert_eq!(p("user_data\nmk"), Err(CommandError::InvalidUserId));
}

#[test]
fn ignored_and_unknown_commands() {
    assert_eq!(p("statistics\n{\"url\":\"x\"}"), Ok(Command::Statistics));
    assert_eq!(p("cgi_call\nanything"), Ok(Command::Noop));
    assert_eq!(p("CometQL_call"), Ok(Command::Noop));
    assert_eq!(p("hello\nx"), Ok(Command::Unknown("hello")));
    assert_eq!(p("web_pipe\nweb_a"), Ok(Command::Unknown("web_pipe")));
    assert_eq!(p(""), Ok(Command::Unknown("")));
    let long = "é".repeat(40);
    assert!(matches!(p(&long), Ok(Command::Unknown(w)) if w.len() == 64));
}

#[test]
fn error_texts_are_the_reference_ones() {
    use CommandError::*;
    let texts = [
        (TooManyLetters, "Too many letters"),
        (ChannelNameTooLong, "Channel name is too long"),
        (PipeNameChars, "The channel name can only contain characters A-Za-z0-9_-"),
        (PipeNameLength, "Invalid pipe name length"),
        (EventNameChars, "The event name can only contain characters A-Za-z0-9_-"),
        (EventNameLength, "Invalid event name length"),
        (NotWebPipe, "[pipe_msg2] Invalid channel name. The channel should begin with web_"),
        (
            WebauthAnonymous,
            "[webauth_pipe_msg2] Invalid user auth. In to channel with name like webauth_* can not send messages anonim users",
        ),
        (AuthType, "Invalid value auth_type"),
        (InvalidChannelName, "Invalid channel name."),
        (InvalidMarkerValue, "Invalid marker value."),
        (PipeCountNotWeb, "[pipe_count] Invalid channel name. The channel should start with web_"),
        (InvalidPipeName, "Invalid pipe name."),
        (
            NotTrackPipe,
            "[track_pipe_users] Invalid channel name. The channel should start with track_",
        ),
        (InvalidMarkerName, "Invalid marker name."),
        (InvalidUserId, "Invalid user id"),
        (MessageTooLong, "Data is too long"),
        (
            PrivateAnonymous,
            "[pipe_log] Invalid user auth. Anonymous users can not read channels named private_*",
        ),
    ];
    for (err, text) in texts {
        assert_eq!(err.to_string(), text);
    }
    let open = [
        TooManyLetters,
        WebauthAnonymous,
        PipeCountNotWeb,
        InvalidUserId,
        MessageTooLong,
        PrivateAnonymous,
    ];
    for (err, _) in texts {
        assert_eq!(err.closes_connection(), !open.contains(&err), "{err:?}");
    }
}

#[test]
fn error_frames_by_kind() {
    let json = |e: CommandError| e.frame(5).json(ApiEra::Modern);
    assert_eq!(
        json(CommandError::TooManyLetters),
        r#"{"data":{"code":"403","error":"Too many letters"},"event":"error","message_send_time":5,"pipe":"sys"}"#
    );
    assert_eq!(
        json(CommandError::EventNameChars),
        r#"{"data":{"error":"The event name can only contain characters A-Za-z0-9_-"},"event":"error","message_send_time":5,"pipe":"sys"}"#
    );
    assert_eq!(
        json(CommandError::InvalidMarkerValue),
        r#"{"data":{"error":"Invalid marker value.","number_messages":-1},"event":"error","message_send_time":5,"pipe":"sys"}"#
    );
}

#[test]
fn random_input_never_panics() {
    use rand::{Rng, SeedableRng};
    let words = [
        "subscription\n",
        "web_pipe2\n",
        "pipe_log\n",
        "pipe_count\n",
        "track_pipe_users\n",
    ];
    let more = ["user_status\n", "user_data\n", "statistics\n", ""];
    let alphabet = "\n\n@web_track_auth*.é 0123456789-_abcXYZ\u{0}".as_bytes();
    let mut rng = rand::rngs::StdRng::seed_from_u64(25);
    for _ in 0..5000 {
        let word = if rng.gen_bool(0.6) {
            words[rng.gen_range(0..words.len())]
        } else {
            more[rng.gen_range(0..more.len())]
        };
        let len = rng.gen_range(0..120);
        let bytes: Vec<u8> = if rng.gen_bool(0.7) {
            (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect()
        } else {
            (0..len).map(|_| rng.gen()).collect()
        };
        let text = format!("{word}{}", String::from_utf8_lossy(&bytes));
        if let Err(e) = parse_command(&text) {
            let _ = e.frame(0).encode(ApiEra::Legacy);
        }
    }
}

fn subs2(text: &str) -> Subscription2<'_> {
    match parse_command(text) {
        Ok(Command::Subscription2(s)) => s,
        other => panic!("{text:?}: {other:?}"),
    }
}

#[test]
fn subscription2_lines_with_and_without_positions() {
    let s = subs2("subscription2\nweb_a\nweb_b\t3f2a\t17\n");
    assert_eq!(
        s.pipes,
        [
            Positioned {
                pipe: "web_a",
                position: None
            },
            Positioned {
                pipe: "web_b",
                position: Some(("3f2a", 17))
            },
        ]
    );
    assert_eq!(s.notice, None);
    assert!(subs2("subscription2").pipes.is_empty());
    assert!(
        subs2("subscription2\n").pipes.is_empty(),
        "empty set: leave all"
    );
    // The first line of a pipe wins; CRLF is tolerated; offset 0 is a position (nothing processed yet).
    let s = subs2("subscription2\nweb_a\tE\t0\r\nweb_a\tF\t9");
    assert_eq!(
        s.pipes,
        [Positioned {
            pipe: "web_a",
            position: Some(("E", 0))
        }]
    );
}

#[test]
fn subscription2_refuses_malformed_lines_whole() {
    for bad in [
        "subscription2\nweb_a\tE",
        "subscription2\nweb_a\tE\t1\tx",
        "subscription2\nweb_a\t\t1",
        "subscription2\nweb_a\tE\t",
        "subscription2\nweb_a\tE\t-1",
        "subscription2\nweb_a\tE\t+1",
        "subscription2\nweb_a\tE\t18446744073709551616",
        "subscription2\nweb_a\té\t1",
        "subscription2\nweb.a",
        "subscription2\na",
        "subscription2\nweb_ok\nweb_a b",
    ] {
        assert_eq!(p(bad), Err(CommandError::InvalidPosition), "{bad:?}");
    }
    let long = format!("subscription2\n{}", "a".repeat(64));
    assert_eq!(p(&long), Err(CommandError::ChannelNameTooLong));
    let epoch = "e".repeat(65);
    assert_eq!(
        p(&format!("subscription2\nweb_a\t{epoch}\t1")),
        Err(CommandError::InvalidPosition)
    );
    assert!(CommandError::InvalidPosition.closes_connection());
    assert_eq!(
        CommandError::InvalidPosition.frame(7).json(ApiEra::Modern),
        r#"{"data":{"code":"403","error":"[subscription2] Invalid line. Expected <pipe> or <pipe>\\t<epoch>\\t<offset>"},"event":"error","message_send_time":7,"pipe":"sys"}"#
    );
}

#[test]
fn subscription2_is_cut_to_the_limit_with_a_notice() {
    let text: String = (0..40).map(|i| format!("\nweb_{i}\tE\t{i}")).collect();
    let text = format!("subscription2{text}");
    let s = subs2(&text);
    assert_eq!(s.pipes.len(), MAX_SUBSCRIPTIONS);
    assert_eq!(s.notice, Some(CommandError::TooManyLetters));
    let huge = format!("subscription2\n{}", "x".repeat(MAX_SUBSCRIPTIONS * 200));
    assert_eq!(p(&huge), Err(CommandError::TooManyLetters));
}
