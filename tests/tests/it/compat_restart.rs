//! Durability (issue 3; docs/compatibility.md §6): history, pipes_settings, users_auth, users_data, users_time,
//! queued private messages and revoked tokens survive a clean restart, on SQLite and on PostgreSQL.
//! Unlike the other compat suites it does not run on a cluster: a cluster is never restarted as a whole
//! (its nodes are, one at a time, and what survives a node's death is `cluster_kill`'s subject), and what
//! this suite checks lives in the database the nodes share.

use halley_tests::browser::{wait_ws_connections, Browser};
use halley_tests::cometql::{insert_sql, rows, strs, Cql};
use halley_tests::frames::{pin, server_info};
use halley_tests::{on_both_backends, Backend, TestServer};

async fn state_survives_restart(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let t = server.tenant("durable@example.com").await;
    let cql = Cql::new(&server, &t);
    let r = cql
        .run([
            "INSERT INTO pipes_settings (name, length) VALUES ('web_keep', 3)".to_string(),
            insert_sql("web_keep", "e", "m1"),
            insert_sql("web_keep", "e", "m2"),
            insert_sql("web_keep", "", "m3"),
            insert_sql("web_keep", "e", "m4"),
            "INSERT INTO users_auth (id, hash) VALUES (80, 'h80')".into(),
            "INSERT INTO users_auth (id, hash) VALUES (81, 'h81')".into(),
            "INSERT INTO users_data (id, data) VALUES (80, 'data of 80')".into(),
            "INSERT INTO users_messages (id, event, message) VALUES (80, 'pm', 'waiting for you')"
                .into(),
            "INSERT INTO revoked_tokens (token) VALUES ('rv-token')".into(),
            "SELECT id, message FROM pipes_messages WHERE name = 'web_keep'".into(),
        ])
        .await;
    let history = rows(&r[10]);
    assert_eq!(
        history.iter().map(|r| r[1].as_str()).collect::<Vec<_>>(),
        ["m2", "m3", "m4"]
    );
    let u = Browser::connect(&server, t.dev_id, 81, "h81", "u81").await;
    assert!(u.authorized());
    u.close().await;
    wait_ws_connections(&server, t.dev_id, 0).await;
    let seen: i64 = rows(&cql.one("SELECT time FROM users_time WHERE id = 81").await)[0][0]
        .parse()
        .unwrap();
    assert!(seen > 0);

    server.restart().await;
    let cql = Cql::new(&server, &t);
    let r = cql
        .run([
            "SELECT * FROM pipes_settings WHERE name = 'web_keep'",
            "SELECT id, message, event FROM pipes_messages WHERE name = 'web_keep'",
            "SELECT * FROM users_auth WHERE id IN (80, 81)",
            "SELECT * FROM users_data WHERE id = 80",
            "SELECT * FROM users_time WHERE id IN (80, 81)",
            "SELECT event, message FROM users_messages WHERE id = 80",
            "SELECT * FROM revoked_tokens",
        ])
        .await;
    assert_eq!(strs(&rows(&r[0])), [["web_keep", "3"]]);
    let after = rows(&r[1]);
    assert_eq!(
        after
            .iter()
            .map(|r| (r[0].as_str(), r[1].as_str(), r[2].as_str()))
            .collect::<Vec<_>>(),
        [
            (history[0][0].as_str(), "m2", "e"),
            (history[1][0].as_str(), "m3", "undefined"),
            (history[2][0].as_str(), "m4", "e"),
        ],
        "the same entries, ids included"
    );
    assert_eq!(strs(&rows(&r[2])), [["80", "h80"], ["81", "h81"]]);
    assert_eq!(strs(&rows(&r[3])), [["80", "data of 80"]]);
    let seen_text = seen.to_string();
    assert_eq!(
        strs(&rows(&r[4])),
        [["80", "-1"], ["81", seen_text.as_str()]]
    );
    assert_eq!(strs(&rows(&r[5])), [["pm", "waiting for you"]]);
    assert_eq!(strs(&rows(&r[6])), [["rv-token"]]);

    // The restarted server still trims to the stored length.
    let r = cql
        .run([
            insert_sql("web_keep", "e", "m5"),
            "SELECT message FROM pipes_messages WHERE name = 'web_keep'".into(),
        ])
        .await;
    assert_eq!(strs(&rows(&r[1])), [["m3"], ["m4"], ["m5"]]);

    // And the browser side sees the same: login by hash, the queued message, history, data, status.
    let mut b = Browser::connect(&server, t.dev_id, 80, "h80", "u80").await;
    assert_eq!(pin(&b.hello), server_info(true, "h80"));
    b.expect(r#"{"data":"waiting for you","event":"pm","fromQueue":true,"message_send_time":T,"pipe":"msg"}"#)
        .await;
    b.send("pipe_log\nweb_keep\nm\n").await;
    for (event, text) in [("undefined", "m3"), ("e", "m4"), ("e", "m5")] {
        b.expect(&format!(
            r#"{{"data":"{text}","event":"{event}","fromQueue":true,"message_send_time":T,"pipe":"web_keep","user_id":0}}"#
        ))
        .await;
    }
    b.send("user_data\nm\n80").await;
    b.expect(r#"{"data":{"user_data":"data of 80","user_id":80},"event":"answer","marker":"m","message_send_time":T,"pipe":"_answer"}"#)
        .await;
    b.send("user_status\n81").await;
    b.expect(&format!(
        r#"{{"data":{{"data":{seen},"last_online_time":{seen}}},"event":"user_status_81","message_send_time":T,"pipe":"_answer_user_status"}}"#
    ))
    .await;
    b.expect_nothing().await;
    b.close().await;
    server.stop().await;
}

on_both_backends!(state_survives_restart);
