//! The browser builds of pusher-js and laravel-echo in Chromium (playwright-core), next to a Node client:
//! a public channel's event reaches the page, and presence works across the two (the page's `here` lists
//! the Node client's user, each side is told of the other joining and leaving). The page and its auth
//! endpoint come from tests/clients/pusher/agent.mjs.

use serde_json::json;

use halley_tests::pusher::Agent;
use halley_tests::{Backend, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_js_and_echo_in_chromium() {
    let server = TestServer::start(Backend::Sqlite).await;
    let tenant = server.tenant("b@example.com").await;
    let mut agent = Agent::start(&server, &tenant).await.unwrap();
    agent.connect("node", "1").await.unwrap();
    agent
        .send(json!({"op": "echo", "id": "node", "kind": "join", "channel": "lobby"}))
        .await
        .unwrap();
    agent
        .expect(|e| e["id"] == "node" && e["ev"] == "here")
        .await
        .unwrap();

    agent
        .send(json!({"op": "browser", "id": "page", "user": "9", "public": "news", "presence": "lobby"}))
        .await
        .unwrap();
    let here = agent
        .expect(|e| e["id"] == "page" && e["ev"] == "here")
        .await
        .unwrap();
    assert_eq!(here["users"], json!(["User 1", "User 9"]));
    let joining = agent
        .expect(|e| e["id"] == "node" && e["ev"] == "joining")
        .await
        .unwrap();
    assert_eq!(joining["user"], "User 9");
    agent
        .expect(|e| e["id"] == "page" && e["ev"] == "echo_subscribed")
        .await
        .unwrap();

    agent
        .trigger(&["news"], "flash", json!({"headline": "é <b>"}))
        .await
        .unwrap();
    let got = agent
        .expect(|e| e["id"] == "page" && e["ev"] == "echo_event")
        .await
        .unwrap();
    assert_eq!(got["data"], json!({"headline": "é <b>"}));

    agent
        .send(json!({"op": "close_browser", "id": "page"}))
        .await
        .unwrap();
    let leaving = agent
        .expect(|e| e["id"] == "node" && e["ev"] == "leaving")
        .await
        .unwrap();
    assert_eq!(leaving["user"], "User 9");
    assert!(!agent.seen(|e| e["ev"] == "page_error"), "the page threw");
    server.stop().await;
}

/// The bridge to a real `CometServer()` page: the comet SDK, loaded from Halley, subscribed to a pipe,
/// receives what the npm `pusher` library triggers on the channel of the same name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pusher_trigger_reaches_a_comet_server_page() {
    let server = TestServer::start(Backend::Sqlite).await;
    let tenant = server.tenant("c@example.com").await;
    let mut agent = Agent::start(&server, &tenant).await.unwrap();
    agent
        .send(json!({"op": "comet_page", "id": "comet", "listen": "orders.shipped"}))
        .await
        .unwrap();
    agent
        .expect(|e| e["id"] == "comet" && e["ev"] == "comet_ready")
        .await
        .unwrap();
    // The page's subscription is applied once the server counts it.
    halley_tests::browser::wait_subscribers(&server, tenant.dev_id, "orders", 1).await;
    agent
        .trigger(&["orders"], "shipped", json!({"id": 7}))
        .await
        .unwrap();
    let got = agent
        .expect(|e| e["id"] == "comet" && e["ev"] == "comet_event")
        .await
        .unwrap();
    // The comet SDK hands JSON text over parsed or as text, as it does for a CometQL INSERT.
    let data = match &got["data"] {
        serde_json::Value::String(s) => serde_json::from_str(s).unwrap(),
        other => other.clone(),
    };
    assert_eq!(data, json!({"id": 7}));
    assert!(!agent.seen(|e| e["ev"] == "page_error"), "the page threw");
    server.stop().await;
}
