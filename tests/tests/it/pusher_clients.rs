//! The Pusher protocol with its real clients (tests/clients/pusher/agent.mjs): pusher-js (Node build) and
//! laravel-echo against `/app/{key}`, the npm `pusher` server library against `/apps/{id}/...`, and an auth
//! endpoint made with that library (the signing Laravel's PHP library does). And the bridge both ways:
//! PHP mysqli's INSERT reaches an Echo listener, `pusher.trigger` reaches a comet-protocol page.

use serde_json::{json, Value};

use halley_tests::browser::Browser;
use halley_tests::clients::{self, Client};
use halley_tests::cometql::{insert_literal_sql, login};
use halley_tests::pusher::Agent;
use halley_tests::{on_both_backends, Backend, TestServer};

fn ev<'a>(id: &'a str, kind: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |e| e["id"] == id && e["ev"] == kind
}

/// Public channels: an Echo listener gets `pusher.trigger`'s event (Laravel's event name and JSON data),
/// a CometQL INSERT from PHP mysqli (event = the CometQL event, data = the message), and a comet page on
/// the same pipe gets the trigger.
async fn public_channels_and_the_bridge(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.tenant("p@example.com").await;
    let mut agent = Agent::start(&server, &tenant).await.unwrap();
    agent.connect("a", "1").await.unwrap();
    agent
        .send(json!({"op": "echo", "id": "a", "kind": "channel", "channel": "orders", "event": ".order.shipped"}))
        .await
        .unwrap();
    agent.expect(ev("a", "echo_subscribed")).await.unwrap();
    let mut page = Browser::connect(&server, tenant.dev_id, 0, "", "page").await;
    page.subscribe(&["orders"]).await;

    agent
        .trigger(&["orders"], "order.shipped", json!({"id": 7}))
        .await
        .unwrap();
    let got = agent.expect(ev("a", "echo_event")).await.unwrap();
    assert_eq!(got["data"], json!({"id": 7}));
    let frame = page.recv().await;
    assert!(
        frame.contains(r#""event":"order.shipped""#) && frame.contains(r#""pipe":"orders""#),
        "{frame}"
    );
    assert!(frame.contains(r#""data":"{\"id\":7}""#), "{frame}");

    // CometQL, from PHP mysqli, to the Echo listener (Echo's `.name` is the event as published).
    agent
        .send(json!({"op": "echo", "id": "a", "kind": "channel", "channel": "orders", "event": ".order"}))
        .await
        .unwrap();
    let req = login(&server, &tenant).request().sql(insert_literal_sql(
        "orders",
        "order",
        r#"'{"id":8}'"#,
    ));
    let resp = clients::run(Client::Php, &req).await.unwrap();
    assert_eq!(resp.step(0).unwrap().ok().unwrap(), (0, 0));
    let got = agent
        .expect(|e| e["ev"] == "echo_event" && e["event"] == ".order")
        .await
        .unwrap();
    assert_eq!(got["data"], json!({"id": 8}));
    server.stop().await;
}

/// Private and presence channels signed by the npm library's auth endpoint: `here` lists the members,
/// `joining` tells of a new user once however many connections they open, `leaving` when their last
/// one goes; a failed authorization never subscribes.
async fn private_and_presence(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.tenant("p@example.com").await;
    let mut agent = Agent::start(&server, &tenant).await.unwrap();
    agent.connect("a", "1").await.unwrap();
    agent.connect("b1", "2").await.unwrap();
    agent.connect("b2", "2").await.unwrap();

    agent
        .send(json!({"op": "echo", "id": "a", "kind": "private", "channel": "orders.1", "event": ".paid"}))
        .await
        .unwrap();
    agent.expect(ev("a", "echo_subscribed")).await.unwrap();
    agent
        .trigger(&["private-orders.1"], "paid", json!({"total": 3}))
        .await
        .unwrap();
    let got = agent.expect(ev("a", "echo_event")).await.unwrap();
    assert_eq!(got["data"], json!({"total": 3}));

    agent
        .send(json!({"op": "echo", "id": "a", "kind": "join", "channel": "room", "event": ".ping"}))
        .await
        .unwrap();
    let here = agent.expect(ev("a", "here")).await.unwrap();
    assert_eq!(here["users"], json!(["User 1"]));
    agent
        .send(json!({"op": "echo", "id": "b1", "kind": "join", "channel": "room"}))
        .await
        .unwrap();
    let here = agent.expect(ev("b1", "here")).await.unwrap();
    assert_eq!(here["users"], json!(["User 1", "User 2"]));
    let joining = agent.expect(ev("a", "joining")).await.unwrap();
    assert_eq!(joining["user"], "User 2");
    // The same user's second connection: a member already, nobody is told.
    agent
        .send(json!({"op": "echo", "id": "b2", "kind": "join", "channel": "room"}))
        .await
        .unwrap();
    agent.expect(ev("b2", "here")).await.unwrap();
    agent
        .send(json!({"op": "disconnect", "id": "b1"}))
        .await
        .unwrap();
    // Still a member through b2: a trigger after the disconnect arrives before any `leaving` would.
    agent
        .trigger(&["presence-room"], "ping", json!({}))
        .await
        .unwrap();
    agent
        .expect(|e| e["id"] == "a" && e["ev"] == "echo_event" && e["event"] == ".ping")
        .await
        .unwrap();
    assert!(!agent.seen(|e| e["id"] == "a" && e["ev"] == "leaving"));
    agent
        .send(json!({"op": "disconnect", "id": "b2"}))
        .await
        .unwrap();
    let leaving = agent.expect(ev("a", "leaving")).await.unwrap();
    assert_eq!(leaving["user"], "User 2");
    assert!(!agent.seen(|e| e["id"] == "a" && e["ev"] == "joining" && e["user"] == "User 2"));

    // The channel's state through the HTTP API.
    let (status, body) = agent
        .http(json!({"op": "get", "path": "/channels/presence-room/users"}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let users: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(users, json!({"users": [{"id": "1"}]}));
    server.stop().await;
}

/// Whispers (client events) once the tenant turns them on, with the sender's user id on presence; and
/// `toOthers()`: a trigger with the sender's socket id reaches everybody else.
async fn whisper_and_to_others(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.tenant("p@example.com").await;
    server
        .ctx()
        .tenants
        .set_client_events(
            halley::ids::DevId(tenant.dev_id),
            true,
            &server.ctx().limits,
        )
        .await
        .unwrap();
    let mut agent = Agent::start(&server, &tenant).await.unwrap();
    let socket_a = agent.connect("a", "1").await.unwrap();
    agent.connect("b", "2").await.unwrap();
    for id in ["a", "b"] {
        agent
            .send(json!({"op": "echo", "id": id, "kind": "join", "channel": "chat", "whisper": "typing", "event": ".said"}))
            .await
            .unwrap();
        agent.expect(ev(id, "here")).await.unwrap();
    }
    agent
        .send(json!({"op": "whisper", "id": "a", "kind": "join", "channel": "chat", "event": "typing", "data": {"who": "a"}}))
        .await
        .unwrap();
    let w = agent.expect(ev("b", "whisper")).await.unwrap();
    assert_eq!(w["data"], json!({"who": "a"}));

    let (status, body) = agent
        .http(json!({"op": "trigger", "channels": ["presence-chat"], "event": "said", "data": {"n": 1}, "socket_id": socket_a}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    agent
        .trigger(&["presence-chat"], "said", json!({"n": 2}))
        .await
        .unwrap();
    let first_b = agent.expect(ev("b", "echo_event")).await.unwrap();
    assert_eq!(first_b["data"], json!({"n": 1}));
    let first_a = agent.expect(ev("a", "echo_event")).await.unwrap();
    assert_eq!(first_a["data"], json!({"n": 2}), "a was left out of n=1");
    assert!(!agent.seen(|e| e["id"] == "a" && e["ev"] == "whisper"));
    server.stop().await;
}

/// `pusher.signin()` and `sendToUser`, then `terminateUserConnections`.
async fn signin_send_to_user_and_terminate(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.tenant("p@example.com").await;
    let mut agent = Agent::start(&server, &tenant).await.unwrap();
    agent.connect("a", "42").await.unwrap();
    agent.connect("other", "43").await.unwrap();
    for id in ["a", "other"] {
        agent.send(json!({"op": "signin", "id": id})).await.unwrap();
        agent.expect(ev(id, "signed_in")).await.unwrap();
    }
    let (status, body) = agent
        .http(json!({"op": "send_to_user", "user": "42", "event": "note", "data": {"hi": 1}}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let got = agent.expect(ev("a", "user_event")).await.unwrap();
    assert_eq!(
        (got["event"].clone(), got["data"].clone()),
        (json!("note"), json!({"hi": 1}))
    );

    let (status, body) = agent
        .http(json!({"op": "terminate", "user": "42"}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    agent
        .expect(|e| e["id"] == "a" && e["ev"] == "state" && e["state"] == "disconnected")
        .await
        .unwrap();
    assert!(
        !agent.seen(|e| e["id"] == "other" && e["ev"] == "state" && e["state"] == "disconnected")
    );
    server.stop().await;
}

/// Channel info, batches and an encrypted channel's round trip (the npm library encrypts with the
/// master key; pusher-js decrypts with the shared secret its auth endpoint hands out).
async fn info_batch_and_encryption(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.tenant("p@example.com").await;
    let master = "dGhpcyBpcyBhIDMyIGJ5dGUgbWFzdGVyIGtleSEhISE=";
    let mut agent = Agent::start_with(&server, &tenant, Some(master))
        .await
        .unwrap();
    agent.connect("a", "1").await.unwrap();
    agent.subscribe("a", "news").await.unwrap();
    agent.subscribe("a", "presence-lobby").await.unwrap();
    agent
        .subscribe("a", "private-encrypted-vault")
        .await
        .unwrap();

    let (status, body) = agent
        .http(json!({"op": "get", "path": "/channels", "params": {"filter_by_prefix": "presence-", "info": "user_count"}}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        json!({"channels": {"presence-lobby": {"user_count": 1}}})
    );
    let (status, body) = agent
        .http(json!({"op": "get", "path": "/channels/news", "params": {"info": "subscription_count"}}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, json!({"occupied": true, "subscription_count": 1}));

    let (status, body) = agent
        .http(json!({"op": "batch", "batch": [
            {"channel": "news", "name": "one", "data": {"n": 1}},
            {"channel": "news", "name": "two", "data": {"n": 2}}
        ]}))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    for name in ["one", "two"] {
        let e = agent
            .expect(|e| e["ev"] == "event" && e["event"] == name)
            .await
            .unwrap();
        assert_eq!(e["channel"], "news");
    }

    agent
        .trigger(
            &["private-encrypted-vault"],
            "secret",
            json!({"code": "s3"}),
        )
        .await
        .unwrap();
    let e = agent
        .expect(|e| e["ev"] == "event" && e["event"] == "secret")
        .await
        .unwrap();
    assert_eq!(e["data"], json!({"code": "s3"}));
    server.stop().await;
}

on_both_backends!(
    public_channels_and_the_bridge,
    private_and_presence,
    whisper_and_to_others,
    signin_send_to_user_and_terminate,
    info_batch_and_encryption,
);
