//! The user tables (users_auth, users_time, users_messages, users_data), verb by verb, through PHP mysqli
//! (issue 3): what comet-server users' backends
//! send, with the reference's columns, OK values, error codes and texts (docs/reference-cppcomet.md 1.6-1.7),
//! and where Halley differs on purpose (docs/compatibility.md §2), that difference.

use halley_tests::browser::{unix_now, Browser};
use halley_tests::cometql::{assert_err, columns, ok, rows, strs, Cql};
use halley_tests::deploy::{Deployment, Target};
use halley_tests::frames::{pin, server_info};
use halley_tests::on_every_target;
use halley_tests::wait::WAIT;

const NAME_CHARS: &str = "The channel name can contain only the characters A-Za-z0-9_-";

async fn users_auth(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("auth@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    let r = cql
        .run([
            "INSERT INTO users_auth (id, hash) VALUES (5, 'first')".to_string(),
            // Upsert.
            "INSERT INTO users_auth (id, hash) VALUES (5, 'aB3+/=_x')".into(),
            "INSERT INTO users_auth VALUES (6, 'six')".into(),
            format!(
                "INSERT INTO users_auth (id, hash) VALUES (7, '{}')",
                "h".repeat(32)
            ),
            "INSERT INTO users_auth (id, hash) VALUES (0, 'zero')".into(),
            "INSERT INTO users_auth (id, hash) VALUES (-3, 'neg')".into(),
            "INSERT INTO users_auth (id, hash) VALUES ('abc', 'x')".into(),
            "INSERT INTO users_auth (id, hash) VALUES (8, 'bad hash')".into(),
            "INSERT INTO users_auth (id, hash) VALUES (8, 'caf\u{e9}')".into(),
            format!(
                "INSERT INTO users_auth (id, hash) VALUES (8, '{}')",
                "h".repeat(33)
            ),
            // Characters are checked before the length (reference order).
            format!(
                "INSERT INTO users_auth (id, hash) VALUES (8, '{}!')",
                "h".repeat(40)
            ),
            "INSERT INTO users_auth (id) VALUES (8)".into(),
            "INSERT INTO users_auth (hash) VALUES ('x')".into(),
            // An empty hash is stored but never authorizes anyone (the reference let it in).
            "INSERT INTO users_auth (id, hash) VALUES (9, '')".into(),
            "SELECT * FROM users_auth WHERE id IN (5, 6, 7, 8, 9, -1, 0, 'x')".into(),
            "SELECT hash FROM users_auth WHERE id = 6".into(),
            "SELECT * FROM users_auth".into(),
        ])
        .await;
    assert_eq!(ok(&r[0]), (1, 5), "the reference answers OK(1, id)");
    assert_eq!(ok(&r[1]), (1, 5));
    assert_eq!(ok(&r[2]), (1, 6));
    assert_eq!(ok(&r[3]), (1, 7));
    let id_error = "The id field must be non-negative";
    assert_err(&r[4], 12, id_error);
    assert_err(&r[5], 12, id_error);
    assert_err(&r[6], 12, id_error);
    let chars = "Contains an invalid characters in the string hash";
    assert_err(&r[7], 12, chars);
    assert_err(&r[8], 12, chars);
    assert_err(&r[9], 11, "Hash string is too long");
    assert_err(&r[10], 12, chars);
    assert_err(&r[11], 12, "field `hash` is required");
    assert_err(&r[12], 12, "field `id` is required");
    assert_eq!(ok(&r[13]), (1, 9));
    assert_eq!(columns(&r[14]), ["id", "hash"]);
    let h32 = "h".repeat(32);
    assert_eq!(
        strs(&rows(&r[14])),
        [
            vec!["5", "aB3+/=_x"],
            vec!["6", "six"],
            vec!["7", h32.as_str()],
            vec!["9", ""]
        ],
        "rows only for users with a hash; invalid ids skipped"
    );
    assert_eq!(strs(&rows(&r[15])), [["six"]]);
    assert_err(
        &r[16],
        13,
        "Selection without transferring the requested values of the primary key is not supported",
    );

    // The hash logs the browser in; a wrong one or the empty hash does not.
    let good = Browser::connect(d.ws(0), t.dev_id, 5, "aB3+/=_x", "good").await;
    assert_eq!(pin(&good.hello), server_info(true, "aB3+/=_x"));
    let wrong = Browser::connect(d.ws(1), t.dev_id, 5, "first", "wrong").await;
    assert_eq!(pin(&wrong.hello), server_info(false, ""));
    let empty = Browser::connect(d.ws(2), t.dev_id, 9, "", "empty").await;
    assert_eq!(pin(&empty.hello), server_info(false, ""));

    // DELETE removes the hash and closes every connection of that user, and only theirs.
    let mut second = Browser::connect(d.ws(3), t.dev_id, 5, "aB3+/=_x", "second").await;
    assert!(second.authorized());
    let mut six = Browser::connect(d.ws(4), t.dev_id, 6, "six", "six").await;
    let mut good = good;
    let r = cql
        .run([
            "DELETE FROM users_auth WHERE id = 5",
            "SELECT * FROM users_auth WHERE id = 5",
            "DELETE FROM users_auth",
        ])
        .await;
    assert_eq!(ok(&r[0]), (0, 0));
    assert!(rows(&r[1]).is_empty());
    assert_err(
        &r[2],
        13,
        "Deleting without transferring the requested values of the primary key is not supported",
    );
    for b in [&mut good, &mut second] {
        let closed = b.ws.expect_closed(WAIT).await.unwrap();
        assert_eq!(closed, Some((1008, "closed by the server".to_string())));
    }
    six.expect_nothing().await;
    let again = Browser::connect(d.ws(5), t.dev_id, 5, "aB3+/=_x", "again").await;
    assert!(!again.authorized(), "the deleted hash no longer logs in");
    for b in [wrong, empty, six, again] {
        b.close().await;
    }
    d.stop().await;
}

async fn users_time(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("time@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    cql.run(["INSERT INTO users_auth (id, hash) VALUES (41, 'h41')"])
        .await;
    let r = cql
        .one("SELECT * FROM users_time WHERE id IN (41, 42)")
        .await;
    assert_eq!(columns(&r), ["id", "time"]);
    assert_eq!(
        strs(&rows(&r)),
        [["41", "-1"], ["42", "-1"]],
        "-1: never seen"
    );

    let user = Browser::connect(d.ws(0), t.dev_id, 41, "h41", "u41").await;
    assert!(user.authorized());
    // Anonymous connections claiming an id do not make that user online.
    let claimed = Browser::connect(d.ws(1), t.dev_id, 42, "wrong", "u42").await;
    let r = cql
        .one("SELECT * FROM users_time WHERE id IN (41, 42)")
        .await;
    assert_eq!(
        strs(&rows(&r)),
        [["41", "0"], ["42", "-1"]],
        "0 while online"
    );

    let before = unix_now();
    user.close().await;
    d.wait_ws_connections(t.dev_id, 1).await;
    let after = unix_now();
    let r = cql
        .run([
            "SELECT time FROM users_time WHERE id = 41",
            "SELECT * FROM users_time",
            "INSERT INTO users_time (id, time) VALUES (41, 5)",
            "DELETE FROM users_time WHERE id = 41",
        ])
        .await;
    let time: i64 = rows(&r[0])[0][0].parse().unwrap();
    assert!(
        (before..=after).contains(&time),
        "last disconnect time {time} in {before}..={after}"
    );
    assert_err(
        &r[1],
        13,
        "Selection without transferring the requested values of the primary key is not supported",
    );
    assert_err(&r[2], 10, "Table `users_time` is read only");
    assert_err(&r[3], 10, "Table `users_time` is read only");
    claimed.close().await;
    d.stop().await;
}

async fn users_messages(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("umsg@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    cql.run([
        "INSERT INTO users_auth (id, hash) VALUES (51, 'h51')",
        "INSERT INTO users_auth (id, hash) VALUES (52, 'h52')",
    ])
    .await;
    let mut tab1 = Browser::connect(d.ws(0), t.dev_id, 51, "h51", "tab1").await;
    let mut tab2 = Browser::connect(d.ws(1), t.dev_id, 51, "h51", "tab2").await;
    // Someone claiming to be 51 without the key is anonymous and gets nothing.
    let mut impostor = Browser::connect(d.ws(2), t.dev_id, 51, "nope", "impostor").await;
    assert!(tab1.authorized() && tab2.authorized() && !impostor.authorized());

    let r = cql
        .run([
            "INSERT INTO users_messages (id, event, message) VALUES (51, 'ev', 'live \"text\"')"
                .to_string(),
            // 52 is offline: queued.
            "INSERT INTO users_messages (id, event, message) VALUES (52, 'e1', 'queued one')"
                .into(),
            "INSERT INTO users_messages VALUES (52, '', 'e2', 'queued two')".into(),
            // id 0 is allowed (nobody can be online as 0: it is queued and expires).
            "INSERT INTO users_messages (id, event, message) VALUES (0, 'e', 'x')".into(),
            "INSERT INTO users_messages (id, event, message) VALUES (-1, 'e', 'x')".into(),
            "INSERT INTO users_messages (id, event, message) VALUES (52, 'e v', 'x')".into(),
            format!(
                "INSERT INTO users_messages (id, event, message) VALUES (52, '{}', 'x')",
                "e".repeat(65)
            ),
            "INSERT INTO users_messages (id, event) VALUES (52, 'e')".into(),
            "SELECT * FROM users_messages WHERE id IN (51, 52)".into(),
            "SELECT message FROM users_messages WHERE id = 52 LIMIT 1".into(),
            "SELECT * FROM users_messages".into(),
        ])
        .await;
    assert_eq!(ok(&r[0]), (0, 51), "the reference answers OK(0, id)");
    assert_eq!(ok(&r[1]), (0, 52));
    assert_eq!(ok(&r[2]), (0, 52));
    assert_eq!(ok(&r[3]), (0, 0));
    assert_err(&r[4], 12, "The id field must be non-negative");
    assert_err(&r[5], 12, NAME_CHARS);
    assert_err(&r[6], 11, "Channel event_name is too long");
    assert_err(&r[7], 12, "field `message` is required");
    assert_eq!(columns(&r[8]), ["id", "index", "event", "message"]);
    let queued = rows(&r[8]);
    assert_eq!(
        queued.len(),
        2,
        "the live message was not queued: {queued:?}"
    );
    for (row, (event, message)) in queued
        .iter()
        .zip([("e1", "queued one"), ("e2", "queued two")])
    {
        assert_eq!(row[0], "52");
        assert_eq!(row[1].len(), 36, "index is the message's UUID: {row:?}");
        assert_eq!((row[2].as_str(), row[3].as_str()), (event, message));
    }
    assert_eq!(strs(&rows(&r[9])), [["queued one"]]);
    assert_err(
        &r[10],
        13,
        "Selection without transferring the requested values of the primary key is not supported",
    );

    // Live delivery to every connection of the user, without message_send_time.
    let frame = r#"{"data":"live \"text\"","event":"ev","pipe":"msg"}"#;
    assert_eq!(tab1.recv().await, frame);
    assert_eq!(tab2.recv().await, frame);
    impostor.expect_nothing().await;

    let r = cql
        .run([
            "DELETE FROM users_messages WHERE id = 52",
            "SELECT * FROM users_messages WHERE id = 52",
            "DELETE FROM users_messages",
        ])
        .await;
    assert_eq!(ok(&r[0]), (0, 0));
    assert!(
        rows(&r[1]).is_empty(),
        "DELETE removes every queued message of the user"
    );
    assert_err(
        &r[2],
        13,
        "Deleting without transferring the requested values of the primary key is not supported",
    );
    let mut u52 = Browser::connect(d.ws(3), t.dev_id, 52, "h52", "u52").await;
    u52.expect_nothing().await;
    for b in [tab1, tab2, impostor, u52] {
        b.close().await;
    }
    d.stop().await;
}

async fn users_data(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("udata@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    let r = cql
        .run([
            "INSERT INTO users_data (id, data) VALUES (61, 'first')",
            "INSERT INTO users_data (id, data) VALUES (61, '{\"name\":\"Zoë\",\"q\":\"it''s\"}')",
            "INSERT INTO users_data VALUES (62, 'sixty-two')",
            "INSERT INTO users_data (id, data) VALUES (0, 'x')",
            "INSERT INTO users_data (id) VALUES (63)",
            "SELECT * FROM users_data WHERE id IN (61, 62, 63)",
            "SELECT data FROM users_data WHERE id = 62",
            "SELECT * FROM users_data",
        ])
        .await;
    assert_eq!(ok(&r[0]), (1, 61));
    assert_eq!(ok(&r[1]), (1, 61));
    assert_eq!(ok(&r[2]), (1, 62));
    assert_err(&r[3], 12, "The id field must be non-negative");
    assert_err(&r[4], 12, "field `data` is required");
    assert_eq!(columns(&r[5]), ["id", "data"]);
    assert_eq!(
        strs(&rows(&r[5])),
        [["61", r#"{"name":"Zoë","q":"it's"}"#], ["62", "sixty-two"]]
    );
    assert_eq!(strs(&rows(&r[6])), [["sixty-two"]]);
    assert_err(
        &r[7],
        13,
        "Selection without transferring the requested values of the primary key is not supported",
    );

    // Browsers read it with the user_data command.
    let mut b = Browser::connect(d.ws(0), t.dev_id, 0, "", "reader").await;
    b.send("user_data\nmk1\n61").await;
    b.expect(r#"{"data":{"user_data":"{\"name\":\"Zoë\",\"q\":\"it's\"}","user_id":61},"event":"answer","marker":"mk1","message_send_time":T,"pipe":"_answer"}"#)
        .await;

    let r = cql
        .run([
            "DELETE FROM users_data WHERE id = 61",
            "SELECT * FROM users_data WHERE id IN (61, 62)",
            "DELETE FROM users_data",
        ])
        .await;
    assert_eq!(ok(&r[0]), (0, 0));
    assert_eq!(strs(&rows(&r[1])), [["62", "sixty-two"]]);
    assert_err(
        &r[2],
        13,
        "Deleting without transferring the requested values of the primary key is not supported",
    );
    b.send("user_data\nmk2\n61").await;
    b.expect(r#"{"data":{"user_data":"","user_id":61},"event":"answer","marker":"mk2","message_send_time":T,"pipe":"_answer"}"#)
        .await;
    b.close().await;
    d.stop().await;
}

on_every_target!(users_auth, users_time, users_messages, users_data);
