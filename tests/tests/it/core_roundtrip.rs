//! The string round trip of docs/compatibility.md §2: a corpus of messages (quotes, backslashes, a trailing
//! backslash, json_encode output, multi-byte UTF-8, emoji, 60 KiB) published from PHP mysqli, once
//! escaped with mysqli_real_escape_string (the driver's template step) and once written the way a PHP
//! developer writes a literal by hand, must reach a WebSocket subscriber byte for byte.

use halley_tests::browser::subscriber;
use halley_tests::clients::{self, Client};
use halley_tests::cometql::{insert_literal_sql, login, quote};
use halley_tests::frames::check_pipe_frame;
use halley_tests::wait::WAIT;
use halley_tests::{on_both_backends, Backend, TestServer};

const PIPE: &str = "corpus";

/// What `json_encode(["text" => "say \"hi\" café /path \\ end", "n" => 1, "list" => ["a", "b"]])`
/// prints in PHP (escaped quotes, `\u00e9`, `\/`, `\\`): a PHP developer embeds it in SQL as is.
const JSON_ENCODED: &str =
    r#"{"text":"say \"hi\" caf\u00e9 \/path \\ end","n":1,"list":["a","b"]}"#;

fn big_message() -> String {
    // 60 KiB: ASCII, two- and three-byte UTF-8, four-byte emoji, a few quotes and backslashes.
    let unit = "Lorem ipsum 'q' \"dq\" back\\slash, Привет мир, 日本語, 😀🎉 end.\n";
    let mut s = String::with_capacity(61_440 + unit.len());
    while s.len() + unit.len() <= 61_440 {
        s.push_str(unit);
    }
    while s.len() < 61_440 {
        s.push('x');
    }
    assert_eq!(s.len(), 61_440);
    s
}

/// `(description, message)`.
fn corpus() -> Vec<(&'static str, String)> {
    vec![
        ("single quote", "it's".into()),
        ("double quotes", r#"say "hi" to "them""#.into()),
        ("both quotes", r#"it's "q" and 'single' again"#.into()),
        ("backslashes", r"C:\path\to\file and a\\b".into()),
        ("trailing backslash", r"ends with a backslash \".into()),
        ("backslash before a quote", r"it\'s already escaped".into()),
        (
            "backslash-n text",
            r"not a newline: \n, not a tab: \t".into(),
        ),
        ("json_encode output", JSON_ENCODED.into()),
        ("real newline and tab", "line 1\nline 2\tcolumn".into()),
        (
            "multi-byte UTF-8",
            "Привет, мир — ça va? 日本語のテキスト".into(),
        ),
        ("emoji", "😀🎉 family 👨‍👩‍👧 flag 🇫🇷".into()),
        (
            "SQL-looking text",
            "'); DELETE FROM pipes_messages; --".into(),
        ),
        ("quote, comma, quote", r"x\', 'y".into()),
        ("backslash and quote pairs", r"\\''\\''\".into()),
        ("only quotes", "''''".into()),
        ("only a backslash", r"\".into()),
        ("60 KiB", big_message()),
    ]
}

/// The literal a PHP developer writes by hand: single quotes, quotes doubled (json_encode output,
/// which has no apostrophe, is therefore embedded unchanged).
fn by_hand(message: &str) -> String {
    quote(message)
}

async fn php_round_trip_corpus(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.tenant("corpus@example.com").await;
    let mut ws = subscriber(&server, tenant.dev_id, PIPE, 0).await;
    let corpus = corpus();
    assert!(!by_hand(JSON_ENCODED).contains("''"));

    let template = format!(
        "INSERT INTO pipes_messages (name, event, message) VALUES ('{PIPE}', 'escaped', '%s')"
    );
    let mut req = login(&server, &tenant).request();
    for (_, message) in &corpus {
        req = req
            .template(template.clone(), message.clone())
            .sql(insert_literal_sql(PIPE, "by_hand", &by_hand(message)));
    }
    // README style: double-quoted literals, for messages without a double quote.
    let double_quoted = ["it's fine", r"trailing \", "Привет 😀", r"{\/json\u00e9}"];
    for message in double_quoted {
        req = req.sql(format!(
            "INSERT INTO pipes_messages (name, event, message) VALUES (\"{PIPE}\", \"dq\", \"{message}\")"
        ));
    }
    let resp = clients::run(Client::Php, &req)
        .await
        .expect("php driver ran");

    for (i, (what, message)) in corpus.iter().enumerate() {
        let escaped = resp.step(2 * i).unwrap();
        assert_eq!(
            escaped
                .ok()
                .unwrap_or_else(|e| panic!("{what}, escaped: {e}")),
            (0, 0)
        );
        // mysqli follows the server's NO_BACKSLASH_ESCAPES flag: quotes doubled, backslashes kept.
        assert_eq!(
            escaped.escaped.as_deref(),
            Some(message.replace('\'', "''").as_str()),
            "{what}: mysqli_real_escape_string output"
        );
        let hand = resp.step(2 * i + 1).unwrap();
        assert_eq!(
            hand.ok().unwrap_or_else(|e| panic!("{what}, by hand: {e}")),
            (0, 0)
        );
    }
    for (j, message) in double_quoted.iter().enumerate() {
        let step = resp.step(2 * corpus.len() + j).unwrap();
        assert_eq!(
            step.ok().unwrap_or_else(|e| panic!("{message:?}: {e}")),
            (0, 0)
        );
    }

    // Frames arrive in publish order, each message byte for byte.
    for (what, message) in &corpus {
        let text = ws.recv_text(WAIT).await.unwrap();
        assert!(text.len() <= 64 * 1024, "{what}: frame of {}", text.len());
        eprintln!("checking {what} (escaped)");
        check_pipe_frame(&text, PIPE, "escaped", message);
        eprintln!("checking {what} (by hand)");
        let text = ws.recv_text(WAIT).await.unwrap();
        check_pipe_frame(&text, PIPE, "by_hand", message);
    }
    for message in double_quoted {
        let text = ws.recv_text(WAIT).await.unwrap();
        check_pipe_frame(&text, PIPE, "dq", message);
    }
    server.stop().await;
}

on_both_backends!(php_round_trip_corpus);
