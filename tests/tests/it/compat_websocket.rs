//! Every browser command and frame shape of comet-server (issue 3), with a real WebSocket client on the
//! comet-server URL. Frames are compared as whole JSON texts (keys in alphabetical order, as the reference
//! sends them) after pinning `message_send_time` to `T`.

use halley_tests::browser::{unix_now, url, uuid_of, Browser};
use halley_tests::cometql::{insert_sql, rows, strs, Cql};
use halley_tests::deploy::{Deployment, Target};
use halley_tests::frames::{self, js, json, pin};
use halley_tests::on_every_target;
use halley_tests::wait::WAIT;
use halley_tests::ws::WsClient;

const SERVER_NAME_KEYS: &str = r#""pipe":"sys","server":""#;

/// The first frame: the authentication result, anonymous or authorized (data = the user's hash).
async fn server_info(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("hello@example.com").await;
    Cql::new(d.cql(), &t)
        .run(["INSERT INTO users_auth (id, hash) VALUES (3, 'hash3')"])
        .await;
    let anon = Browser::connect(d.ws(0), t.dev_id, 0, "", "anon").await;
    assert_eq!(pin(&anon.hello), frames::server_info(false, ""));
    assert!(anon.hello.contains(SERVER_NAME_KEYS));
    let user = Browser::connect(d.ws(1), t.dev_id, 3, "hash3", "user").await;
    assert_eq!(pin(&user.hello), frames::server_info(true, "hash3"));
    // `undefined` (what the JS API sends without a key) is an empty key.
    let undef = Browser::connect(d.ws(2), t.dev_id, 3, "undefined", "undef").await;
    assert_eq!(pin(&undef.hello), frames::server_info(false, ""));
    // The other URL forms of the reference.
    for prefix in ["//ws", "/comet-server/ws"] {
        let u = format!(
            "ws://{}{prefix}/sesion=hash3&myid=3&devid={}&v=4.08&uuid={}&api=js",
            d.ws(3).http_addr(),
            t.dev_id,
            uuid_of("form")
        );
        let mut ws = WsClient::connect(&u).await.unwrap();
        let hello = ws.recv_text(WAIT).await.unwrap();
        assert_eq!(pin(&hello), frames::server_info(true, "hash3"), "{prefix}");
        ws.close().await.unwrap();
    }
    // A dev_id that is no tenant: one error frame, then the connection is closed.
    let mut ws = WsClient::connect(&url(d.ws(4), 999_999, 0, "", "4.08", &uuid_of("x")))
        .await
        .unwrap();
    let frame = ws.recv_text(WAIT).await.unwrap();
    assert_eq!(
        pin(&frame),
        r#"{"data":{"error":"Unknown dev_id: no such tenant"},"event":"error","message_send_time":T,"pipe":"sys"}"#
    );
    assert_eq!(
        ws.expect_closed(WAIT).await.unwrap(),
        Some((1008, "unknown dev_id".to_string()))
    );
    for b in [anon, user, undef] {
        b.close().await;
    }
    d.stop().await;
}

/// `subscription` replaces the whole set: after re-subscribing only the new pipes deliver.
async fn subscription(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("sub@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    let mut b = Browser::connect(d.ws(0), t.dev_id, 0, "", "sub").await;
    assert!(
        b.subscribe(&["web_s1", "web_s2"]).await.is_empty(),
        "no acknowledgement frame"
    );
    cql.run([
        insert_sql("web_s1", "e", "one"),
        insert_sql("web_s2", "e", "two"),
    ])
    .await;
    b.expect(r#"{"data":"one","event":"e","message_send_time":T,"pipe":"web_s1"}"#)
        .await;
    b.expect(r#"{"data":"two","event":"e","message_send_time":T,"pipe":"web_s2"}"#)
        .await;

    b.subscribe(&["web_s3"]).await;
    let r = cql
        .run([
            insert_sql("web_s1", "e", "old 1"),
            insert_sql("web_s2", "e", "old 2"),
            insert_sql("web_s3", "e", "three"),
            "SELECT * FROM pipes WHERE name IN ('web_s1', 'web_s2', 'web_s3')".into(),
        ])
        .await;
    assert_eq!(
        strs(&rows(&r[3])),
        [["web_s1", "0"], ["web_s2", "0"], ["web_s3", "1"]]
    );
    b.expect(r#"{"data":"three","event":"e","message_send_time":T,"pipe":"web_s3"}"#)
        .await;
    b.expect_nothing().await;

    // Any character outside [A-Za-z0-9_-] separates names (the JS `pipe.event` form included).
    b.send("subscription\nweb_a.evt web_b").await;
    b.sync().await;
    let r = cql
        .one("SELECT * FROM pipes WHERE name IN ('web_a', 'evt', 'web_b', 'web_s3')")
        .await;
    assert_eq!(
        strs(&rows(&r)),
        [
            ["web_a", "1"],
            ["evt", "1"],
            ["web_b", "1"],
            ["web_s3", "0"]
        ]
    );

    // More than 32 pipes: the first 32 are kept, with the reference's error frame.
    let many: Vec<String> = (0..33).map(|i| format!("web_m{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let frames = b.subscribe(&many).await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(
        pin(&frames[0]),
        r#"{"data":{"code":"403","error":"Too many letters"},"event":"error","message_send_time":T,"pipe":"sys"}"#
    );
    let r = cql
        .one("SELECT users FROM pipes WHERE name IN ('web_m31', 'web_m32')")
        .await;
    assert_eq!(strs(&rows(&r)), [["1"], ["0"]]);

    // A name of 64 characters or more: error frame, then the connection is closed (reference).
    b.send(&format!("subscription\n{}", "a".repeat(64))).await;
    b.expect(r#"{"data":{"code":"403","error":"Channel name is too long"},"event":"error","message_send_time":T,"pipe":"sys"}"#)
        .await;
    b.ws.expect_closed(WAIT).await.unwrap();
    d.stop().await;
}

/// `web_pipe2`: relayed to the other subscribers with the sender's id, exactly as sent; answered to the
/// sender on `_answer_to_<pipe>`; never echoed; `@web_` hides the sender; `webauth_` needs a login.
async fn web_pipe2(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("webpipe@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    cql.run(["INSERT INTO users_auth (id, hash) VALUES (5, 'h5')"])
        .await;
    let mut s = Browser::connect(d.ws(0), t.dev_id, 5, "h5", "sender").await;
    let mut r1 = Browser::connect(d.ws(1), t.dev_id, 0, "", "r1").await;
    let mut r2 = Browser::connect(d.ws(2), t.dev_id, 0, "", "r2").await;
    for b in [&mut s, &mut r1, &mut r2] {
        b.subscribe(&["web_chat", "webauth_room"]).await;
    }

    // `number_messages`: the subscribers the message reached, the sender left out. A cluster node knows
    // only its own, and the receivers are on other nodes: 0 there (docs/production.md, "Not
    // cluster-wide yet").
    let n = if d.is_cluster() { 0 } else { 2 };
    // Apostrophes, quotes, backslashes (a `\'` too), a newline, JSON and multi-byte text, exactly.
    let text = "{\"t\":\"it's \\\"q\\\" \\\\ \\' done\"}\nline 2 é 🎉";
    s.send(&format!("web_pipe2\nweb_chat\nev\n*\n{text}")).await;
    let relay = format!(
        r#"{{"data":{},"event":"ev","message_send_time":T,"pipe":"web_chat","user_id":5}}"#,
        js(text)
    );
    s.expect(&format!(
        r#"{{"data":{{"message":{},"number_messages":{n}}},"event":"answer","message_send_time":T,"pipe":"_answer_to_web_chat"}}"#,
        js(text)
    ))
    .await;
    for r in [&mut r1, &mut r2] {
        let got = r.recv().await;
        assert_eq!(pin(&got), relay);
        assert_eq!(json(&got)["data"], text, "relayed byte for byte");
    }
    s.expect_nothing().await;

    // `@web_`: the sender's id is hidden (0); the answer names the real pipe.
    s.send("web_pipe2\n@web_chat\nev2\n*\nanonymous send").await;
    s.expect(&format!(r#"{{"data":{{"message":"anonymous send","number_messages":{n}}},"event":"answer","message_send_time":T,"pipe":"_answer_to_web_chat"}}"#))
        .await;
    for r in [&mut r1, &mut r2] {
        r.expect(r#"{"data":"anonymous send","event":"ev2","message_send_time":T,"pipe":"web_chat","user_id":0}"#)
            .await;
    }

    // An anonymous sender is user 0; an empty event is allowed.
    r1.send("web_pipe2\nweb_chat\n\n*\nfrom r1").await;
    r1.expect(&format!(r#"{{"data":{{"message":"from r1","number_messages":{n}}},"event":"answer","message_send_time":T,"pipe":"_answer_to_web_chat"}}"#))
        .await;
    for r in [&mut s, &mut r2] {
        r.expect(
            r#"{"data":"from r1","event":"","message_send_time":T,"pipe":"web_chat","user_id":0}"#,
        )
        .await;
    }

    // `webauth_`: refused to anonymous senders with the reference's text (the connection stays open) ...
    r1.send("web_pipe2\nwebauth_room\nev\n*\nsneaky").await;
    r1.expect(r#"{"data":{"error":"[webauth_pipe_msg2] Invalid user auth. In to channel with name like webauth_* can not send messages anonim users","number_messages":-1},"event":"error","message_send_time":T,"pipe":"sys"}"#)
        .await;
    r1.expect_nothing().await;
    // ... and relayed for authorized ones.
    s.send("web_pipe2\nwebauth_room\nev\n*\nsigned").await;
    s.expect(&format!(r#"{{"data":{{"message":"signed","number_messages":{n}}},"event":"answer","message_send_time":T,"pipe":"_answer_to_webauth_room"}}"#))
        .await;
    for r in [&mut r1, &mut r2] {
        r.expect(r#"{"data":"signed","event":"ev","message_send_time":T,"pipe":"webauth_room","user_id":5}"#)
            .await;
    }
    r2.expect_nothing().await;

    // A pipe that is neither web_ nor webauth_: error frame, then closed (a malformed command).
    r2.send("web_pipe2\nchat\nev\n*\nx").await;
    r2.expect(r#"{"data":{"error":"[pipe_msg2] Invalid channel name. The channel should begin with web_","number_messages":-1},"event":"error","message_send_time":T,"pipe":"sys"}"#)
        .await;
    r2.ws.expect_closed(WAIT).await.unwrap();
    s.close().await;
    r1.close().await;
    d.stop().await;
}

/// `pipe_log`: the stored history as ordinary pipe frames with `fromQueue` and the sender's id.
async fn pipe_log(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("log@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    cql.run([
        "INSERT INTO users_auth (id, hash) VALUES (8, 'h8')".to_string(),
        "INSERT INTO pipes_settings (name, length) VALUES ('web_log', 10)".into(),
        insert_sql("web_log", "e1", "first"),
        insert_sql("web_log", "", "no event"),
    ])
    .await;
    let mut u = Browser::connect(d.ws(0), t.dev_id, 8, "h8", "u8").await;
    u.send("web_pipe2\nweb_log\njs\n*\nit's from js").await;
    u.recv().await;
    let mut b = Browser::connect(d.ws(1), t.dev_id, 0, "", "reader").await;
    b.send("pipe_log\nweb_log\nmk1\n").await;
    b.expect(r#"{"data":"first","event":"e1","fromQueue":true,"message_send_time":T,"pipe":"web_log","user_id":0}"#)
        .await;
    b.expect(r#"{"data":"no event","event":"undefined","fromQueue":true,"message_send_time":T,"pipe":"web_log","user_id":0}"#)
        .await;
    b.expect(r#"{"data":"it's from js","event":"js","fromQueue":true,"message_send_time":T,"pipe":"web_log","user_id":8}"#)
        .await;
    b.expect_nothing().await;
    // A pipe without history: nothing.
    b.send("pipe_log\nweb_empty\nmk2\n").await;
    b.expect_nothing().await;
    // `trust_` pipes keep their messages without any pipes_settings.
    Cql::new(d.cql(), &t)
        .run([insert_sql("trust_log", "t", "kept anyway")])
        .await;
    b.send("pipe_log\ntrust_log\nmk3\n").await;
    b.expect(r#"{"data":"kept anyway","event":"t","fromQueue":true,"message_send_time":T,"pipe":"trust_log","user_id":0}"#)
        .await;
    b.expect_nothing().await;
    u.close().await;
    b.close().await;
    d.stop().await;
}

/// `pipe_count`: `{"user_in_pipe": n}` (documented shape; the reference sent an array), web_ and track_ only.
async fn pipe_count(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("count@example.com").await;
    let mut a = Browser::connect(d.ws(0), t.dev_id, 0, "", "a").await;
    let mut b = Browser::connect(d.ws(1), t.dev_id, 0, "", "b").await;
    a.subscribe(&["web_cnt", "track_cnt"]).await;
    b.subscribe(&["web_cnt"]).await;
    a.send("pipe_count\nweb_cnt\nm1\n").await;
    a.expect(r#"{"data":{"user_in_pipe":2},"event":"user_in_pipe","marker":"m1","message_send_time":T,"pipe":"_answer_pipe_count"}"#)
        .await;
    a.send("pipe_count\ntrack_cnt\nm2").await;
    a.expect(r#"{"data":{"user_in_pipe":1},"event":"user_in_pipe","marker":"m2","message_send_time":T,"pipe":"_answer_pipe_count"}"#)
        .await;
    a.send("pipe_count\nweb_nobody\nm3").await;
    a.expect(r#"{"data":{"user_in_pipe":0},"event":"user_in_pipe","marker":"m3","message_send_time":T,"pipe":"_answer_pipe_count"}"#)
        .await;
    // Other pipes are refused; the connection stays open.
    a.send("pipe_count\nchat\nm4").await;
    a.expect(r#"{"data":{"error":"[pipe_count] Invalid channel name. The channel should start with web_","number_messages":-1},"event":"error","message_send_time":T,"pipe":"sys"}"#)
        .await;
    a.expect_nothing().await;
    a.close().await;
    b.close().await;
    d.stop().await;
}

/// `track_pipe_users`: `{user_id, uuid}` of every subscriber of a track_ pipe, anonymous ones included.
async fn track_pipe_users(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("track@example.com").await;
    Cql::new(d.cql(), &t)
        .run(["INSERT INTO users_auth (id, hash) VALUES (21, 'h21')"])
        .await;
    let mut anon = Browser::connect(d.ws(0), t.dev_id, 0, "", "anon").await;
    let mut user = Browser::connect(d.ws(1), t.dev_id, 21, "h21", "user21").await;
    anon.subscribe(&["track_room"]).await;
    user.subscribe(&["track_room"]).await;
    // (anon saw user's arrival: a track_ presence event, covered in compat_queue_presence.)
    anon.recv().await;
    // Subscribers in connection order (a cluster: by node, then connection; `anon` is on the first
    // browser node, `user` on the second, so the same order).
    anon.send("track_pipe_users\ntrack_room\nmk").await;
    anon.expect(&format!(
        r#"{{"_info":"answer for track_pipe_users","data":[{{"user_id":0,"uuid":"{}"}},{{"user_id":21,"uuid":"{}"}}],"event":"answer","marker":"mk","message_send_time":T,"pipe":"_answer"}}"#,
        anon.uuid, user.uuid
    ))
    .await;
    anon.send("track_pipe_users\ntrack_empty\nmk2").await;
    anon.expect(r#"{"_info":"answer for track_pipe_users","data":[],"event":"answer","marker":"mk2","message_send_time":T,"pipe":"_answer"}"#)
        .await;
    anon.send("track_pipe_users\nweb_room\nmk3").await;
    anon.expect(r#"{"data":{"error":"[track_pipe_users] Invalid channel name. The channel should start with track_","number_messages":-1},"event":"error","message_send_time":T,"pipe":"sys"}"#)
        .await;
    user.close().await;
    d.stop().await;
}

/// `user_status`: 0 while online, the real last-online time after, -1 when unknown.
async fn user_status(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("status@example.com").await;
    Cql::new(d.cql(), &t)
        .run(["INSERT INTO users_auth (id, hash) VALUES (30, 'h30')"])
        .await;
    let mut b = Browser::connect(d.ws(0), t.dev_id, 0, "", "asker").await;
    let u = Browser::connect(d.ws(1), t.dev_id, 30, "h30", "u30").await;
    b.send("user_status\n30").await;
    b.expect(r#"{"data":{"data":0,"last_online_time":0},"event":"user_status_30","message_send_time":T,"pipe":"_answer_user_status"}"#)
        .await;
    b.send("user_status\n31").await;
    b.expect(r#"{"data":{"data":-1,"last_online_time":-1},"event":"user_status_31","message_send_time":T,"pipe":"_answer_user_status"}"#)
        .await;
    let before = unix_now();
    u.close().await;
    d.wait_ws_connections(t.dev_id, 1).await;
    let after = unix_now();
    b.send("user_status\n30").await;
    let v = json(&b.recv().await);
    let last = v["data"]["last_online_time"].as_i64().unwrap();
    assert!((before..=after).contains(&last), "{v}");
    assert_eq!(v["data"]["data"], last, "{v}");
    assert_eq!(v["pipe"], "_answer_user_status");
    b.close().await;
    d.stop().await;
}

/// `user_data` answers from users_data; `statistics` is ignored; an unknown command closes.
async fn user_data_statistics_unknown(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("misc@example.com").await;
    Cql::new(d.cql(), &t)
        .run(["INSERT INTO users_data (id, data) VALUES (40, 'profile \"40\"')"])
        .await;
    let mut b = Browser::connect(d.ws(0), t.dev_id, 0, "", "misc").await;
    b.send("user_data\nmk\n40").await;
    b.expect(r#"{"data":{"user_data":"profile \"40\"","user_id":40},"event":"answer","marker":"mk","message_send_time":T,"pipe":"_answer"}"#)
        .await;
    b.send("user_data\nmk2\n41").await;
    b.expect(r#"{"data":{"user_data":"","user_id":41},"event":"answer","marker":"mk2","message_send_time":T,"pipe":"_answer"}"#)
        .await;
    b.send("statistics\n{\"url\":\"https://shop.example/\",\"dev_id\":1}")
        .await;
    b.expect_nothing().await;
    b.send("no_such_command\nx").await;
    assert_eq!(
        b.ws.expect_closed(WAIT).await.unwrap(),
        Some((1008, "invalid command".to_string()))
    );
    d.stop().await;
}

/// `private_` pipes: anonymous connections cannot subscribe (silently skipped, nothing delivered).
async fn private_pipes(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("private@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    cql.run(["INSERT INTO users_auth (id, hash) VALUES (9, 'h9')"])
        .await;
    let mut anon = Browser::connect(d.ws(0), t.dev_id, 9, "wrong", "anon").await;
    let mut user = Browser::connect(d.ws(1), t.dev_id, 9, "h9", "user").await;
    assert!(!anon.authorized() && user.authorized());
    assert!(
        anon.subscribe(&["private_p", "web_pub"]).await.is_empty(),
        "silently skipped"
    );
    user.subscribe(&["private_p"]).await;
    let r = cql
        .run([
            insert_sql("private_p", "e", "secret"),
            insert_sql("web_pub", "e", "public"),
            "SELECT * FROM pipes WHERE name IN ('private_p', 'web_pub')".into(),
        ])
        .await;
    assert_eq!(strs(&rows(&r[2])), [["private_p", "1"], ["web_pub", "1"]]);
    anon.expect(r#"{"data":"public","event":"e","message_send_time":T,"pipe":"web_pub"}"#)
        .await;
    anon.expect_nothing().await;
    user.expect(r#"{"data":"secret","event":"e","message_send_time":T,"pipe":"private_p"}"#)
        .await;
    anon.close().await;
    user.close().await;
    d.stop().await;
}

/// `v=3.24` in the URL: every frame gets `api_data` and `event_name`, object data is sent as JSON text
/// (except on the `msg` pipe).
async fn legacy_transform(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("legacy@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    cql.run(["INSERT INTO users_auth (id, hash) VALUES (4, 'h4')"])
        .await;
    let mut old = Browser::connect_version(d.ws(0), t.dev_id, 4, "h4", "old", "3.24").await;
    assert_eq!(
        pin(&old.hello),
        format!(
            r#"{{"api_data":"for major_version < 4","authorized":true,"data":"h4","event":"serverInfo","event_name":"serverInfo","message_send_time":T,"pipe":"sys","server":"{}"}}"#,
            halley::commands::server_version()
        )
    );
    old.subscribe(&["web_old"]).await;
    cql.run([
        insert_sql("web_old", "ev", "hi"),
        "INSERT INTO users_messages (id, event, message) VALUES (4, 'pm', 'private')".into(),
    ])
    .await;
    old.expect(r#"{"api_data":"for major_version < 4","data":"hi","event":"ev","event_name":"ev","message_send_time":T,"pipe":"web_old"}"#)
        .await;
    old.expect(r#"{"api_data":"for major_version < 4","data":"private","event":"pm","event_name":"pm","pipe":"msg"}"#)
        .await;
    old.send("pipe_count\nweb_old\nm").await;
    old.expect(r#"{"api_data":"for major_version < 4","data":"{\"user_in_pipe\":1}","event":"user_in_pipe","event_name":"user_in_pipe","marker":"m","message_send_time":T,"pipe":"_answer_pipe_count"}"#)
        .await;
    // A 4.x client on the same pipe gets the modern shape of the same publish.
    let mut new = Browser::connect(d.ws(1), t.dev_id, 0, "", "new").await;
    new.subscribe(&["web_old"]).await;
    cql.run([insert_sql("web_old", "ev", "both")]).await;
    new.expect(r#"{"data":"both","event":"ev","message_send_time":T,"pipe":"web_old"}"#)
        .await;
    old.expect(r#"{"api_data":"for major_version < 4","data":"both","event":"ev","event_name":"ev","message_send_time":T,"pipe":"web_old"}"#)
        .await;
    old.close().await;
    new.close().await;
    d.stop().await;
}

on_every_target!(
    server_info,
    subscription,
    web_pipe2,
    pipe_log,
    pipe_count,
    track_pipe_users,
    user_status,
    user_data_statistics_unknown,
    private_pipes,
    legacy_transform,
);
