//! The Pusher door's per-connection command budget (a flood of frames gets one `pusher:error`, then 4100),
//! the `info` attributes an HTTP API publish answers with, and cache channels and the activity check.

use std::time::Duration;

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use halley::pusher::sign::channel_auth;
use halley::pusher::SocketId;
use halley_tests::pusher_raw::{api, connect, data, event, next, send_json};
use halley_tests::wait::WAIT;
use halley_tests::{on_both_backends, Backend, TestServer};

/// Frames past the command budget are not acted on: the first refused one gets a `pusher:error` naming
/// the budget, and a client that keeps sending through a burst's worth of refusals is closed with 4100.
async fn frame_budget(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.websocket.commands_per_sec = 1;
        c.websocket.command_burst = 5;
    })
    .await;
    let a = server.tenant("a@example.com").await;
    let (mut ws, _) = connect(&server, &a.app_key).await;
    for _ in 0..5 {
        send_json(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
        assert_eq!(next(&mut ws).await["event"], "pusher:pong");
    }
    for _ in 0..30 {
        send_json(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
    }
    // A token may come back while the flood is sent (1 a second): its pong may come first.
    let mut frames = Vec::new();
    let closed = loop {
        match ws.recv_message(WAIT).await.unwrap() {
            Message::Text(t) => frames.push(serde_json::from_str::<Value>(t.as_str()).unwrap()),
            Message::Close(frame) => break frame.map(|f| u16::from(f.code)),
            _ => {}
        }
    };
    let errors: Vec<&Value> = frames
        .iter()
        .filter(|f| f["event"] == "pusher:error")
        .collect();
    assert!(errors.len() >= 2, "{frames:?}");
    let first = &errors[0]["data"];
    assert_eq!(first["code"], Value::Null, "{first}");
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .starts_with("Rate limit exceeded: commands per connection (retry in "),
        "{first}"
    );
    let last = &errors[errors.len() - 1]["data"];
    assert_eq!(last["code"], 4100, "{last}");
    assert!(
        frames
            .iter()
            .filter(|f| f["event"] == "pusher:pong")
            .count()
            < 30,
        "the flood was answered: {frames:?}"
    );
    assert_eq!(closed, Some(4100));
    server.stop().await;
}

/// `info` on a publish: the asked attributes of every channel the event went to, counted after it was
/// published (user_count for presence channels only); in a batch, one object per event.
async fn publish_answers_info(backend: Backend) {
    let server = TestServer::start(backend).await;
    let a = server.tenant("a@example.com").await;
    let (mut one, sid) = connect(&server, &a.app_key).await;
    let (mut two, _) = connect(&server, &a.app_key).await;
    for ws in [&mut one, &mut two] {
        send_json(
            ws,
            json!({"event": "pusher:subscribe", "data": {"channel": "news"}}),
        )
        .await;
        assert_eq!(
            next(ws).await["event"],
            "pusher_internal:subscription_succeeded"
        );
    }
    let cd = json!({"user_id": "7"}).to_string();
    let sid = SocketId::parse(&sid).unwrap();
    let auth = channel_auth(&a.app_key, &a.key, &sid, "presence-room", Some(&cd));
    send_json(&mut one, json!({"event": "pusher:subscribe", "data": {"channel": "presence-room", "auth": auth, "channel_data": cd}})).await;
    let ok = next(&mut one).await;
    assert_eq!(data(&ok)["presence"]["count"], 1, "{ok}");

    let body = json!({"name": "e", "channels": ["news", "presence-room", "empty"], "data": "x",
        "info": "subscription_count,user_count"});
    let r = api(&server, &a, "POST", "/events", &body.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap(),
        json!({"channels": {
            "news": {"subscription_count": 2},
            "presence-room": {"subscription_count": 1, "user_count": 1},
            "empty": {"subscription_count": 0},
        }})
    );
    // Without `info`, the answer stays `{}`.
    let r = api(
        &server,
        &a,
        "POST",
        "/events",
        &event(&["news".into()], "y"),
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "{}"));

    let batch = json!({"batch": [
        {"name": "e", "channel": "presence-room", "data": "z", "info": "user_count"},
        {"name": "e", "channel": "news", "data": "z"},
    ]});
    let r = api(&server, &a, "POST", "/batch_events", &batch.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        serde_json::from_str::<Value>(&r.body).unwrap(),
        json!({"batch": [{"user_count": 1}, {}]})
    );
    server.stop().await;
}

/// A cache channel replays its last event to a new subscriber, `cache_miss` before there is one; and a
/// connection that stops answering pings is closed with 4201.
async fn cache_and_activity(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.pusher.activity_timeout_secs = 1;
        c.pusher.pong_timeout_secs = 1;
    })
    .await;
    let a = server.tenant("a@example.com").await;
    let (mut ws, _) = connect(&server, &a.app_key).await;
    send_json(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "cache-score"}}),
    )
    .await;
    assert_eq!(
        next(&mut ws).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(next(&mut ws).await["event"], "pusher:cache_miss");
    let r = api(
        &server,
        &a,
        "POST",
        "/events",
        &event(&["cache-score".into()], "3-1"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(next(&mut ws).await["data"], "3-1");

    let (mut late, _) = connect(&server, &a.app_key).await;
    send_json(
        &mut late,
        json!({"event": "pusher:subscribe", "data": {"channel": "cache-score"}}),
    )
    .await;
    assert_eq!(
        next(&mut late).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let cached = next(&mut late).await;
    assert_eq!(
        (cached["event"].as_str(), cached["data"].as_str()),
        (Some("e"), Some("3-1"))
    );

    // `late` says nothing more: pinged, then closed with 4201.
    let ping = late.recv_json(Duration::from_secs(5)).await.unwrap();
    assert_eq!(ping["event"], "pusher:ping");
    let closed = late.expect_closed(Duration::from_secs(5)).await.unwrap();
    assert_eq!(closed.map(|c| c.0), Some(4201));
    server.stop().await;
}

on_both_backends!(frame_budget, publish_answers_info, cache_and_activity);
