//! The pipe tables (pipes_messages, pipes_settings, pipes, users_in_pipes), verb by verb, through PHP mysqli
//! (issue 3): what comet-server users' backends
//! send, with the reference's columns, OK values, error codes and texts (docs/reference-cppcomet.md 1.6-1.7),
//! and where Halley differs on purpose (docs/compatibility.md §2), that difference.

use halley_tests::browser::{unix_now, Browser};
use halley_tests::cometql::{assert_err, columns, insert_sql, ok, rows, strs, Cql};
use halley_tests::deploy::{Deployment, Target};
use halley_tests::on_every_target;

const NAME_CHARS: &str = "The channel name can contain only the characters A-Za-z0-9_-";

async fn pipes_messages_insert(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("pm-insert@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    let mut b = Browser::connect(d.ws(0), t.dev_id, 0, "", "pmins").await;
    b.subscribe(&["web_pm"]).await;

    let long = "a".repeat(65);
    let r = cql
        .run([
            insert_sql("web_pm", "ev", "hello"),
            // Empty event allowed; the message is verbatim.
            insert_sql("web_pm", "", r#"{"a":"it's \"q\" \\"}"#),
            // Column order is free; extra listed columns are ignored.
            "INSERT INTO pipes_messages (message, event, name, user_id) VALUES ('m3', 'e3', 'web_pm', '77')"
                .into(),
            // Without a column list, all 7 columns in the table's order.
            "INSERT INTO pipes_messages VALUES ('', '', 'web_pm', '', 'e4', 'm4', '')".into(),
            insert_sql(&long, "ev", "x"),
            insert_sql("ab", "ev", "x"),
            insert_sql("web.pm", "ev", "x"),
            insert_sql("web_pm", &long, "x"),
            insert_sql("web_pm", "e v", "x"),
            "INSERT INTO pipes_messages (name, event) VALUES ('web_pm', 'ev')".into(),
            "INSERT INTO pipes_messages (name, event, message) VALUES ('web_pm', 'ev')".into(),
            "INSERT INTO pipes_messages (name, event, nope) VALUES ('web_pm', 'ev', 'x')".into(),
            "INSERT INTO pipes_messages VALUES ('web_pm', 'ev', 'x')".into(),
        ])
        .await;
    for (i, r) in r.iter().enumerate().take(4) {
        assert_eq!(
            ok(r),
            (0, 0),
            "statement {i}: the reference answers OK(0, 0) to a publish"
        );
    }
    assert_err(&r[4], 11, "Channel name is too long");
    assert_err(&r[5], 17, "Channel name is too short");
    assert_err(&r[6], 12, NAME_CHARS);
    assert_err(&r[7], 11, "Channel event_name is too long");
    assert_err(&r[8], 12, NAME_CHARS);
    assert_err(&r[9], 12, "field `message` is required");
    assert_err(&r[10], 14, "Error in columns list");
    assert_err(&r[11], 14, "Not a specific column");
    assert_err(&r[12], 14, "Error in columns list");

    b.expect(r#"{"data":"hello","event":"ev","message_send_time":T,"pipe":"web_pm"}"#)
        .await;
    b.expect(r#"{"data":"{\"a\":\"it's \\\"q\\\" \\\\\"}","event":"","message_send_time":T,"pipe":"web_pm"}"#)
        .await;
    b.expect(r#"{"data":"m3","event":"e3","message_send_time":T,"pipe":"web_pm"}"#)
        .await;
    b.expect(r#"{"data":"m4","event":"e4","message_send_time":T,"pipe":"web_pm"}"#)
        .await;
    // The refused statements published nothing.
    b.expect_nothing().await;
    b.close().await;
    d.stop().await;
}

async fn pipes_messages_select(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("pm-select@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    let r = cql
        .run([
            "INSERT INTO pipes_settings (name, length) VALUES ('web_h1', 10)".to_string(),
            "INSERT INTO pipes_settings (name, length) VALUES ('web_h2', 10)".into(),
            insert_sql("web_h1", "e1", "first"),
            insert_sql("web_h2", "e2", "other pipe"),
            insert_sql("web_h1", "", "no event"),
            insert_sql("web_nohist", "e", "not kept"),
        ])
        .await;
    for r in &r[2..] {
        assert_eq!(ok(r), (0, 0));
    }
    // A browser's web_pipe2 is kept with its sender's id.
    ok(&cql
        .one("INSERT INTO users_auth (id, hash) VALUES (12, 'h12')")
        .await);
    let mut sender = Browser::connect(d.ws(0), t.dev_id, 12, "h12", "sender").await;
    sender
        .send("web_pipe2\nweb_h1\nfrom_js\n*\nbrowser text")
        .await;
    let answer = sender.recv().await;
    assert!(answer.contains("_answer_to_web_h1"), "{answer}");

    let r = cql
        .run([
            "SELECT * FROM pipes_messages WHERE name IN ('web_h1', 'web_h2', 'x', 'web_nohist')",
            "SELECT message, index, name FROM pipes_messages WHERE name = 'web_h1'",
            "SELECT * FROM pipes_messages",
            "SELECT nope FROM pipes_messages WHERE name = 'web_h1'",
            "SELECT * FROM pipes_messages WHERE nope = 'web_h1'",
            "SELECT * FROM pipes_messages WHERE name = 'web_h1' LIMIT 1, 2",
        ])
        .await;
    assert_eq!(
        columns(&r[0]),
        ["id", "time", "name", "index", "event", "message", "user_id"]
    );
    let all = rows(&r[0]);
    assert_eq!(all.len(), 4, "{all:?}");
    let now = unix_now();
    for row in &all {
        assert_eq!(row[0].len(), 36, "id is a 36-character UUID: {row:?}");
        let time: i64 = row[1].parse().expect("time is unix seconds");
        assert!((now - 60..=now).contains(&time), "{row:?}");
    }
    let ids: std::collections::HashSet<&str> = all.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids.len(), 4, "ids are distinct");
    // Oldest first per pipe, pipes in the order asked, `index` running over the whole result,
    // `undefined` for an empty event, user_id 0 for CometQL and the sender for web_pipe2.
    let tail: Vec<Vec<&str>> = all
        .iter()
        .map(|r| r[2..].iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        tail,
        [
            ["web_h1", "0", "e1", "first", "0"],
            ["web_h1", "1", "undefined", "no event", "0"],
            ["web_h1", "2", "from_js", "browser text", "12"],
            ["web_h2", "3", "e2", "other pipe", "0"],
        ]
    );
    assert_eq!(columns(&r[1]), ["message", "index", "name"]);
    assert_eq!(
        strs(&rows(&r[1])),
        [
            ["first", "0", "web_h1"],
            ["no event", "1", "web_h1"],
            ["browser text", "2", "web_h1"]
        ]
    );
    assert_err(
        &r[2],
        13,
        "Selection without transferring the requested values of the primary key is not supported",
    );
    assert_err(&r[3], 14, "Not a specific column");
    assert_err(&r[4], 14, "Not a specific column");
    let limited = rows(&r[5]);
    assert_eq!(
        limited.iter().map(|r| r[5].as_str()).collect::<Vec<_>>(),
        ["no event", "browser text"],
        "MySQL LIMIT offset, count"
    );
    sender.close().await;
    d.stop().await;
}

async fn pipes_messages_delete(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("pm-delete@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    cql.run([
        "INSERT INTO pipes_settings (name, length) VALUES ('web_d1', 10)".to_string(),
        "INSERT INTO pipes_settings (name, length) VALUES ('web_d2', 10)".into(),
        "INSERT INTO pipes_settings (name, length) VALUES ('web_d3', 10)".into(),
        insert_sql("web_d1", "e", "a"),
        insert_sql("web_d1", "e", "b"),
        insert_sql("web_d1", "e", "c"),
        insert_sql("web_d2", "e", "x"),
        insert_sql("web_d3", "e", "y"),
    ])
    .await;
    let before = rows(
        &cql.one("SELECT id, message FROM pipes_messages WHERE name = 'web_d1'")
            .await,
    );
    assert_eq!(
        before.iter().map(|r| r[1].as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    let b_id = &before[1][0];

    let r = cql
        .run([
            format!("DELETE FROM pipes_messages WHERE id = '{b_id}'"),
            "SELECT message FROM pipes_messages WHERE name = 'web_d1'".into(),
            "DELETE FROM pipes_messages WHERE name = 'web_d2'".into(),
            "SELECT message FROM pipes_messages WHERE name IN ('web_d2', 'web_d3')".into(),
            "DELETE FROM pipes_messages".into(),
            "DELETE FROM pipes_messages WHERE message = 'y'".into(),
            // Invalid names and ids are skipped, not errors.
            "DELETE FROM pipes_messages WHERE name IN ('x', 'web d3')".into(),
            "SELECT message FROM pipes_messages WHERE name = 'web_d3'".into(),
        ])
        .await;
    assert_eq!(ok(&r[0]), (0, 0));
    assert_eq!(strs(&rows(&r[1])), [["a"], ["c"]]);
    assert_eq!(ok(&r[2]), (0, 0));
    assert_eq!(
        strs(&rows(&r[3])),
        [["y"]],
        "web_d2 cleared, web_d3 untouched"
    );
    let no_key =
        "Deleting without transferring the requested values of the primary key is not supported";
    assert_err(&r[4], 13, no_key);
    assert_err(&r[5], 13, no_key);
    assert_eq!(ok(&r[6]), (0, 0));
    assert_eq!(strs(&rows(&r[7])), [["y"]]);
    d.stop().await;
}

async fn pipes_settings(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("settings@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    let r = cql
        .run([
            "INSERT INTO pipes_settings (name, length) VALUES ('web_s1', 5)".to_string(),
            // Upsert.
            "INSERT INTO pipes_settings (name, length) VALUES ('web_s1', 3)".into(),
            // Clamped to 0..=max_history_length (1000 by default).
            "INSERT INTO pipes_settings (name, length) VALUES ('web_s2', 5000)".into(),
            "INSERT INTO pipes_settings (name, length) VALUES ('web_s3', -4)".into(),
            // Length is optional (0).
            "INSERT INTO pipes_settings (name) VALUES ('web_s4')".into(),
            "INSERT INTO pipes_settings VALUES ('web_s5', 7)".into(),
            "INSERT INTO pipes_settings (name, length) VALUES ('ab', 5)".into(),
            "INSERT INTO pipes_settings (name, length) VALUES ('web s', 5)".into(),
            format!("INSERT INTO pipes_settings (name, length) VALUES ('{}', 5)", "a".repeat(65)),
            "INSERT INTO pipes_settings (length) VALUES (5)".into(),
            "INSERT INTO pipes_settings (name, length) VALUES ('web_s6', 'many')".into(),
            "SELECT * FROM pipes_settings WHERE name IN ('web_s1', 'web_s2', 'web_s3', 'web_s4', 'web_s5', 'web_none')".into(),
            "SELECT length FROM pipes_settings WHERE name = 'web_s1'".into(),
            "SELECT * FROM pipes_settings".into(),
        ])
        .await;
    for (i, r) in r.iter().enumerate().take(6) {
        assert_eq!(
            ok(r),
            (1, 0),
            "statement {i}: the reference answers OK(1, 0)"
        );
    }
    assert_err(&r[6], 17, "Channel name is too short");
    assert_err(&r[7], 12, NAME_CHARS);
    assert_err(&r[8], 11, "Channel name is too long");
    assert_err(&r[9], 12, "field `name` is required");
    assert_err(&r[10], 12, "The length field must be a number");
    assert_eq!(columns(&r[11]), ["name", "length"]);
    assert_eq!(
        strs(&rows(&r[11])),
        [
            ["web_s1", "3"],
            ["web_s2", "1000"],
            ["web_s3", "0"],
            ["web_s4", "0"],
            ["web_s5", "7"]
        ],
        "one row per named pipe that has settings"
    );
    assert_eq!(strs(&rows(&r[12])), [["3"]]);
    assert_err(
        &r[13],
        13,
        "Selection without transferring the requested values of the primary key is not supported",
    );

    // History keeps exactly the newest `length` messages (a per-pipe sequence, not a per-second time).
    let mut publishes: Vec<String> = (1..=5)
        .map(|i| insert_sql("web_s1", "e", &format!("m{i}")))
        .collect();
    publishes.push(insert_sql("web_s4", "e", "length 0 keeps nothing"));
    publishes.push("SELECT message FROM pipes_messages WHERE name IN ('web_s1', 'web_s4')".into());
    let r = cql.run(publishes).await;
    assert_eq!(strs(&rows(&r[6])), [["m3"], ["m4"], ["m5"]]);

    // DELETE removes the setting and clears the history; later publishes are not kept.
    let r = cql
        .run([
            "DELETE FROM pipes_settings WHERE name = 'web_s1'".to_string(),
            "SELECT * FROM pipes_settings WHERE name = 'web_s1'".into(),
            "SELECT message FROM pipes_messages WHERE name = 'web_s1'".into(),
            insert_sql("web_s1", "e", "after delete"),
            "SELECT message FROM pipes_messages WHERE name = 'web_s1'".into(),
            "DELETE FROM pipes_settings".into(),
        ])
        .await;
    assert_eq!(ok(&r[0]), (0, 0));
    assert!(rows(&r[1]).is_empty());
    assert!(rows(&r[2]).is_empty());
    assert!(rows(&r[4]).is_empty());
    assert_err(
        &r[5],
        13,
        "Deleting without transferring the requested values of the primary key is not supported",
    );
    d.stop().await;
}

async fn pipes(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("pipes@example.com").await;
    let other = d.tenant("pipes-other@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    let mut a = Browser::connect(d.ws(0), t.dev_id, 0, "", "a").await;
    let mut b = Browser::connect(d.ws(1), t.dev_id, 0, "", "b").await;
    let mut c = Browser::connect(d.ws(2), other.dev_id, 0, "", "c").await;
    a.subscribe(&["web_p1", "web_p2"]).await;
    b.subscribe(&["web_p1"]).await;
    c.subscribe(&["web_p1"]).await;

    let r = cql
        .run([
            "SELECT * FROM pipes WHERE name IN ('web_p1', 'web_p2', 'web_p3', 'ab', 'web p')",
            "SELECT users FROM pipes WHERE name = 'web_p1'",
            "SELECT * FROM pipes",
            "INSERT INTO pipes (name, users) VALUES ('web_p1', 5)",
            "DELETE FROM pipes WHERE name = 'web_p1'",
        ])
        .await;
    assert_eq!(columns(&r[0]), ["name", "users"]);
    // One row per valid name asked for, even with no subscriber; the other tenant is not counted.
    assert_eq!(
        strs(&rows(&r[0])),
        [["web_p1", "2"], ["web_p2", "1"], ["web_p3", "0"]]
    );
    assert_eq!(strs(&rows(&r[1])), [["2"]]);
    assert_err(
        &r[2],
        13,
        "Selection without transferring the requested values of the primary key is not supported",
    );
    assert_err(&r[3], 10, "Table `pipes` is read only");
    assert_err(&r[4], 10, "Table `pipes` is read only");
    for x in [a, b, c] {
        x.close().await;
    }
    d.stop().await;
}

async fn users_in_pipes(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("uip@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    ok(&cql
        .one("INSERT INTO users_auth (id, hash) VALUES (31, 'h31')")
        .await);

    let mut a = Browser::connect_full(
        d.ws(0),
        t.dev_id,
        0,
        "",
        "anon",
        "4.08",
        &[
            ("User-Agent", "Mozilla/5.0 (compat test)"),
            ("Origin", "https://shop.example"),
            ("Accept-Language", "fr-FR,fr;q=0.9"),
        ],
    )
    .await;
    a.subscribe(&["web_uip"]).await;
    let mut user = Browser::connect(d.ws(1), t.dev_id, 31, "h31", "user31").await;
    assert!(user.authorized());
    user.subscribe(&["web_uip", "web_other"]).await;

    let r = cql
        .run([
            "SELECT * FROM users_in_pipes WHERE name = 'web_uip'",
            "SELECT user_id, name FROM users_in_pipes WHERE name IN ('web_other', 'web_none')",
            "SELECT * FROM users_in_pipes",
            "INSERT INTO users_in_pipes (name) VALUES ('web_uip')",
            "DELETE FROM users_in_pipes WHERE name = 'web_uip'",
        ])
        .await;
    assert_eq!(
        columns(&r[0]),
        [
            "name",
            "user_id",
            "user_uuid",
            "user_agent",
            "ip",
            "origin",
            "language"
        ]
    );
    // One row per subscribed connection, anonymous ones included (as the reference's binary does),
    // in connection order. (A cluster lists them by node, then by connection there: `a` is on the
    // first browser node, `user` on the second, so the order is the same.)
    assert_eq!(
        strs(&rows(&r[0])),
        [
            vec![
                "web_uip",
                "0",
                a.uuid.as_str(),
                "Mozilla/5.0 (compat test)",
                "127.0.0.1",
                "https://shop.example",
                "fr-FR,fr;q=0.9"
            ],
            vec!["web_uip", "31", user.uuid.as_str(), "", "127.0.0.1", "", ""],
        ]
    );
    assert_eq!(strs(&rows(&r[1])), [["31", "web_other"]]);
    assert_err(
        &r[2],
        13,
        "Selection without transferring the requested values of the primary key is not supported",
    );
    assert_err(&r[3], 10, "Table `users_in_pipes` is read only");
    assert_err(&r[4], 10, "Table `users_in_pipes` is read only");
    a.close().await;
    user.close().await;
    d.stop().await;
}

on_every_target!(
    pipes_messages_insert,
    pipes_messages_select,
    pipes_messages_delete,
    pipes_settings,
    pipes,
    users_in_pipes,
);
