//! docs/compatibility.md §3, tenant isolation in the browser protocol: a connection of tenant B, using the same pipe
//! names and user ids as tenant A, receives nothing of A's (pipe messages, web_pipe2 relays, presence on
//! `track_` and `user_status_<id>` pipes, private messages queued or live) and its commands (pipe_log,
//! pipe_count, track_pipe_users, user_status, user_data) answer from B's data only; A's credentials
//! (users_auth hash, JWT) authorize nobody at B.
//!
//! "Nothing arrived" is proved without waiting for silence: after A's event, B publishes a marker of its
//! own to B's connection; frames reach a connection in the order they were queued, so B's next frame
//! being the marker shows A's event was never queued for it.

use halley_tests::browser::{anonymous, jwt, subscribe};
use halley_tests::cometql::insert_sql;
use halley_tests::frames::{next_json, next_message};
use halley_tests::mysql_raw::RawMysql;
use halley_tests::server::world;
use halley_tests::wait::WAIT;
use halley_tests::ws::WsClient;
use halley_tests::{on_both_backends, Backend, TestServer};
use serde_json::Value;

fn url(server: &TestServer, dev_id: u64, user_id: u64, key: &str, uuid: &str) -> String {
    format!(
        "ws://{}/ws/sesion={key}&myid={user_id}&devid={dev_id}&v=4.08&uuid={uuid:0<32}&api=js",
        server.http_addr()
    )
}

/// A browser with its own uuid (padded to 32 characters); returns it and its serverInfo.
async fn connect(
    server: &TestServer,
    dev_id: u64,
    user_id: u64,
    key: &str,
    uuid: &str,
) -> (WsClient, Value) {
    let mut ws = WsClient::connect(&url(server, dev_id, user_id, key, uuid))
        .await
        .expect("WebSocket connect");
    let hello = ws.recv_json(WAIT).await.expect("serverInfo");
    assert_eq!(hello["event"], "serverInfo", "{hello}");
    (ws, hello)
}

/// B publishes `marker` on `pipe`; `ws` (B's) must receive it as its very next frame.
async fn expect_only_marker(qb: &mut RawMysql, ws: &mut WsClient, pipe: &str, marker: &str) {
    qb.query(&insert_sql(pipe, "marker", marker))
        .await
        .assert_ok();
    let v = next_json(ws).await;
    assert_eq!(
        (v["pipe"].as_str(), v["data"].as_str()),
        (Some(pipe), Some(marker)),
        "B's connection got something else first: {v}"
    );
}

async fn subscriptions_and_web_pipe2(backend: Backend) {
    let (server, a, b, mut qa, mut qb) = world(backend).await;
    let pipes = ["chat", "web_chat"];
    let mut a_watcher = anonymous(&server, a.dev_id).await;
    subscribe(&server, &mut a_watcher, a.dev_id, &pipes, &[0, 0]).await;
    let mut b_watcher = anonymous(&server, b.dev_id).await;
    subscribe(&server, &mut b_watcher, b.dev_id, &pipes, &[0, 0]).await;

    // A CometQL publish of A reaches A's subscriber only.
    qa.query(&insert_sql("chat", "ev", "from A"))
        .await
        .assert_ok();
    assert_eq!(next_message(&mut a_watcher, "chat").await, "from A");
    expect_only_marker(&mut qb, &mut b_watcher, "chat", "b-1").await;

    // A browser's web_pipe2 of A: relayed to A's subscriber only, and the report counts A's only.
    let mut a_sender = anonymous(&server, a.dev_id).await;
    a_sender
        .send_text("web_pipe2\nweb_chat\nev\n*\nfrom A's browser")
        .await
        .expect("send");
    let report = next_json(&mut a_sender).await;
    assert_eq!(report["pipe"], "_answer_to_web_chat", "{report}");
    assert_eq!(report["data"]["number_messages"], 1, "{report}");
    assert_eq!(
        next_message(&mut a_watcher, "web_chat").await,
        "from A's browser"
    );
    expect_only_marker(&mut qb, &mut b_watcher, "web_chat", "b-2").await;

    // And the other way round: B's publishes never reach A.
    let mut b_sender = anonymous(&server, b.dev_id).await;
    b_sender
        .send_text("web_pipe2\nweb_chat\nev\n*\nfrom B's browser")
        .await
        .expect("send");
    assert_eq!(next_json(&mut b_sender).await["data"]["number_messages"], 1);
    assert_eq!(
        next_message(&mut b_watcher, "web_chat").await,
        "from B's browser"
    );
    expect_only_marker(&mut qa, &mut a_watcher, "chat", "a-marker").await;
    server.stop().await;
}

/// Frames of `ws` up to and including the first one `last` accepts.
async fn frames_until(ws: &mut WsClient, last: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let v = next_json(ws).await;
        let done = last(&v);
        out.push(v);
        if done {
            return out;
        }
    }
}

async fn commands_answer_from_own_tenant(backend: Backend) {
    let (server, a, b, mut qa, mut qb) = world(backend).await;
    for q in [&mut qa, &mut qb] {
        q.query("INSERT INTO pipes_settings (name, length) VALUES ('chat', 10)")
            .await
            .assert_ok();
    }
    qa.query(&insert_sql("chat", "ev", "a-history"))
        .await
        .assert_ok();
    qb.query(&insert_sql("chat", "ev", "b-history"))
        .await
        .assert_ok();
    qa.query("INSERT INTO users_auth (id, hash) VALUES (7, 'hashA')")
        .await
        .assert_ok();
    qa.query("INSERT INTO users_data (id, data) VALUES (7, 'dataA')")
        .await
        .assert_ok();

    // A: user 7 online on web_chat and track_room, plus an anonymous one; B: one anonymous connection.
    let (mut a7, hello) = connect(&server, a.dev_id, 7, "hashA", "a7").await;
    assert_eq!(hello["authorized"], true, "{hello}");
    subscribe(
        &server,
        &mut a7,
        a.dev_id,
        &["web_chat", "track_room"],
        &[0, 0],
    )
    .await;
    let (mut a0, _) = connect(&server, a.dev_id, 0, "", "a0").await;
    subscribe(
        &server,
        &mut a0,
        a.dev_id,
        &["web_chat", "track_room"],
        &[1, 1],
    )
    .await;
    let (mut bw, _) = connect(&server, b.dev_id, 0, "", "b0").await;
    subscribe(
        &server,
        &mut bw,
        b.dev_id,
        &["web_chat", "track_room"],
        &[0, 0],
    )
    .await;
    // A's track_ subscription event for a0 reached a7; drain it so a7's next frames are answers.
    let joined = next_json(&mut a7).await;
    assert_eq!(joined["event"], "subscription", "{joined}");

    // pipe_log: B's history only (the user_status answer closes the list).
    bw.send_text("pipe_log\nchat\nm1").await.expect("send");
    bw.send_text("user_status\n424242").await.expect("send");
    let frames = frames_until(&mut bw, |v| v["pipe"] == "_answer_user_status").await;
    let history: Vec<&Value> = frames[..frames.len() - 1].iter().collect();
    assert_eq!(history.len(), 1, "{frames:?}");
    assert_eq!(history[0]["data"], "b-history", "{frames:?}");

    // pipe_count: B's subscribers only.
    bw.send_text("pipe_count\nweb_chat\nm2")
        .await
        .expect("send");
    let count = next_json(&mut bw).await;
    assert_eq!(count["data"]["user_in_pipe"], 1, "{count}");
    a0.send_text("pipe_count\nweb_chat\nm2")
        .await
        .expect("send");
    assert_eq!(next_json(&mut a0).await["data"]["user_in_pipe"], 2);

    // track_pipe_users: B's connection only.
    bw.send_text("track_pipe_users\ntrack_room\nm3")
        .await
        .expect("send");
    let users = next_json(&mut bw).await;
    let list = users["data"].as_array().expect("a list").clone();
    assert_eq!(list.len(), 1, "{users}");
    assert_eq!(list[0]["user_id"], 0, "{users}");
    assert!(
        list[0]["uuid"]
            .as_str()
            .is_some_and(|u| u.starts_with("b0")),
        "{users}"
    );

    // user_status: A's user 7 is online, B's user 7 was never seen.
    bw.send_text("user_status\n7").await.expect("send");
    let status = next_json(&mut bw).await;
    assert_eq!(status["data"]["last_online_time"], -1, "{status}");
    a0.send_text("user_status\n7").await.expect("send");
    assert_eq!(next_json(&mut a0).await["data"]["last_online_time"], 0);

    // user_data: A's value stays A's.
    bw.send_text("user_data\nm4\n7").await.expect("send");
    let data = next_json(&mut bw).await;
    assert_eq!(data["data"]["user_data"], "", "{data}");
    a0.send_text("user_data\nm4\n7").await.expect("send");
    assert_eq!(next_json(&mut a0).await["data"]["user_data"], "dataA");
    server.stop().await;
}

async fn presence_events(backend: Backend) {
    let (server, a, b, mut qa, mut qb) = world(backend).await;
    qa.query("INSERT INTO users_auth (id, hash) VALUES (7, 'hashA')")
        .await
        .assert_ok();
    let pipes = ["user_status_7", "track_room", "chat"];
    let (mut a_watch, _) = connect(&server, a.dev_id, 0, "", "aw").await;
    subscribe(&server, &mut a_watch, a.dev_id, &pipes, &[0, 0, 0]).await;
    let (mut b_watch, _) = connect(&server, b.dev_id, 0, "", "bw").await;
    subscribe(&server, &mut b_watch, b.dev_id, &pipes, &[0, 0, 0]).await;

    // A's user 7 comes online, joins track_room, leaves it and goes offline: A's watcher sees all four.
    let (mut a7, hello) = connect(&server, a.dev_id, 7, "hashA", "a7").await;
    assert_eq!(hello["authorized"], true, "{hello}");
    let online = next_json(&mut a_watch).await;
    assert_eq!(
        (online["pipe"].as_str(), online["event"].as_str()),
        (Some("user_status_7"), Some("online")),
        "{online}"
    );
    subscribe(&server, &mut a7, a.dev_id, &["track_room"], &[1]).await;
    let joined = next_json(&mut a_watch).await;
    assert_eq!(
        (joined["pipe"].as_str(), joined["event"].as_str()),
        (Some("track_room"), Some("subscription")),
        "{joined}"
    );
    assert_eq!(joined["data"]["user_id"], 7, "{joined}");
    a7.close().await.expect("close");
    let left = next_json(&mut a_watch).await;
    assert_eq!(left["event"], "unsubscription", "{left}");
    let offline = next_json(&mut a_watch).await;
    assert_eq!(
        (offline["pipe"].as_str(), offline["event"].as_str()),
        (Some("user_status_7"), Some("offline")),
        "{offline}"
    );
    // None of it reached B's watcher on the same pipe names.
    expect_only_marker(&mut qb, &mut b_watch, "chat", "b-marker").await;

    // Nor does B's presence reach A.
    qb.query("INSERT INTO users_auth (id, hash) VALUES (7, 'hashB')")
        .await
        .assert_ok();
    let (b7, hello) = connect(&server, b.dev_id, 7, "hashB", "b7").await;
    assert_eq!(hello["authorized"], true, "{hello}");
    assert_eq!(next_json(&mut b_watch).await["event"], "online");
    b7.close().await.expect("close");
    assert_eq!(next_json(&mut b_watch).await["event"], "offline");
    expect_only_marker(&mut qa, &mut a_watch, "chat", "a-marker").await;
    server.stop().await;
}

async fn private_messages_and_credentials(backend: Backend) {
    let (server, a, b, mut qa, mut qb) = world(backend).await;
    qa.query("INSERT INTO users_auth (id, hash) VALUES (8, 'hashA8')")
        .await
        .assert_ok();
    qb.query("INSERT INTO users_auth (id, hash) VALUES (8, 'hashB8')")
        .await
        .assert_ok();
    // A queues a private message for its offline user 8.
    qa.query("INSERT INTO users_messages (id, event, message) VALUES (8, 'ev', 'queued for A8')")
        .await
        .assert_ok();

    // B's user 8 connects: nothing of A's queue; a live message of B's arrives first.
    let (mut b8, hello) = connect(&server, b.dev_id, 8, "hashB8", "b8").await;
    assert_eq!(hello["authorized"], true, "{hello}");
    // Commands are read once the queue is delivered: after this answer, messages are live (one sent
    // during the delivery would join the queue and arrive marked fromQueue).
    b8.send_text("pipe_count\nweb_sync\nsync").await.unwrap();
    assert_eq!(next_json(&mut b8).await["marker"], "sync");
    qb.query("INSERT INTO users_messages (id, event, message) VALUES (8, 'ev', 'live for B8')")
        .await
        .assert_ok();
    let v = next_json(&mut b8).await;
    assert_eq!(
        (v["pipe"].as_str(), v["data"].as_str()),
        (Some("msg"), Some("live for B8")),
        "{v}"
    );
    assert!(v.get("fromQueue").is_none(), "{v}");

    // A's credentials authorize nobody at B, and B's nobody at A.
    for key in ["hashA8".to_string(), jwt(&a, 8)] {
        let (_, hello) = connect(&server, b.dev_id, 8, &key, "x").await;
        assert_eq!(hello["authorized"], false, "A's key at B: {hello}");
    }
    for key in ["hashB8".to_string(), jwt(&b, 8)] {
        let (_, hello) = connect(&server, a.dev_id, 8, &key, "x").await;
        assert_eq!(hello["authorized"], false, "B's key at A: {hello}");
    }

    // A's user 8 gets its queued message (once), from the queue.
    let (mut a8, hello) = connect(&server, a.dev_id, 8, &jwt(&a, 8), "a8").await;
    assert_eq!(hello["authorized"], true, "{hello}");
    let v = next_json(&mut a8).await;
    assert_eq!(
        (v["pipe"].as_str(), v["data"].as_str()),
        (Some("msg"), Some("queued for A8")),
        "{v}"
    );
    assert_eq!(v["fromQueue"], true, "{v}");
    // B's user 8 still got nothing more.
    qb.query("INSERT INTO users_messages (id, event, message) VALUES (8, 'ev', 'second for B8')")
        .await
        .assert_ok();
    assert_eq!(next_json(&mut b8).await["data"], "second for B8");
    server.stop().await;
}

on_both_backends!(
    subscriptions_and_web_pipe2,
    commands_answer_from_own_tenant,
    presence_events,
    private_messages_and_credentials,
);
