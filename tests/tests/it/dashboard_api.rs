//! The dashboard API's keys, allowed origins, usage and test message (`/api/dashboard/v1`) on the real
//! server, against SQLite and PostgreSQL, with real CometQL logins, WebSocket upgrades and subscribers, and
//! the pages' security headers. Accounts and sessions: dashboard_sessions.rs.

use std::net::SocketAddr;

use halley_tests::browser::subscriber;
use halley_tests::dashboard::{send, Browser};
use halley_tests::mysql_raw::{RawMysql, Reply};
use halley_tests::wait::WAIT;
use halley_tests::ws::{upgrade_status, WsClient};
use halley_tests::{on_both_backends, Backend, TestServer};

use serde_json::json;

const PASSWORD: &str = "correct horse battery";

/// Logs in to CometQL as `user` with `key` (no database named); Err(error code) when refused.
async fn cometql_login(addr: SocketAddr, user: &str, key: &str) -> Result<RawMysql, u16> {
    RawMysql::connect_from(addr, None)
        .await
        .expect("greeting")
        .handshake(user, key, None)
        .await
        .expect("login answer")
        .map_err(|(code, _)| code)
}

/// The HTTP status of a WebSocket upgrade for `dev_id` (with `origin` when given): 101 when accepted.
async fn upgrade(server: &TestServer, dev_id: u64, origin: Option<&str>) -> u16 {
    let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
    upgrade_status(&server.ws_url(dev_id, 0, ""), &headers)
        .await
        .expect("upgrade answer in time")
}

/// The next JSON frame that carries `pipe`.
async fn next_on_pipe(ws: &mut WsClient, pipe: &str) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let text = ws.recv_text(left).await.expect("a frame in time");
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            if v["pipe"] == pipe && v.get("data").is_some() {
                return v;
            }
        }
    }
}

on_both_backends!(
    keys_create_reveal_revoke,
    another_tenants_key_is_not_found,
    allowed_origins_guard_websocket_upgrades,
    test_message_and_usage,
    pages_and_security_headers,
);

async fn keys_create_reveal_revoke(backend: Backend) {
    let server = TestServer::start(backend).await;
    let cometql = server.cometql_addr();
    let (mut b, dev_id, first_id, first_key) =
        Browser::new_tenant(server.http_addr(), "k@example.com").await;
    let user = dev_id.to_string();
    assert_eq!(first_key.len(), 64);
    assert!(first_key.bytes().all(|c| c.is_ascii_alphanumeric()));

    let listed = b.call("GET", "/keys", None).await.json();
    let k0 = &listed["keys"][0];
    assert_eq!(
        (k0["name"].as_str(), k0["last_used_at"].is_null()),
        (Some("default"), true)
    );
    assert!(
        !listed.to_string().contains(&first_key),
        "a list never shows key values"
    );

    let r = b.call("POST", "/keys", Some(json!({"name": ""}))).await;
    assert_eq!((r.status, r.code()), (400, "invalid_key_name".into()));
    let r = b
        .call("POST", "/keys", Some(json!({"name": " production "})))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let created = r.json();
    assert_eq!(created["name"], "production");
    let second_id = created["id"].as_i64().unwrap();
    let second_key = created["key"].as_str().unwrap().to_owned();
    let revealed = b
        .call("GET", &format!("/keys/{second_id}/secret"), None)
        .await
        .json();
    assert_eq!(revealed["key"], second_key.as_str());

    // Both keys log in; a login is recorded as the key's last use.
    let mut live = cometql_login(cometql, &user, &first_key)
        .await
        .expect("first key logs in");
    let published = live
        .query("INSERT INTO pipes_messages (name, event, message) VALUES ('chat', 'msg', 'x')")
        .await;
    assert!(
        !matches!(published, Reply::Err { .. }),
        "publishes: {published:?}"
    );
    cometql_login(cometql, &user, &second_key)
        .await
        .expect("second key logs in");
    let listed = b.call("GET", "/keys", None).await.json();
    assert!(listed["keys"][0]["last_used_at"].as_i64().unwrap() > 0);

    // Revoking closes the live session that used the key, and the key no longer logs in.
    let r = b.call("DELETE", &format!("/keys/{first_id}"), None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(
        live.expect_closed(WAIT).await.is_ok(),
        "the revoked key's session is closed"
    );
    assert_eq!(
        cometql_login(cometql, &user, &first_key).await.err(),
        Some(16)
    );
    let r = b
        .call("GET", &format!("/keys/{first_id}/secret"), None)
        .await;
    assert_eq!((r.status, r.code()), (404, "no_such_key".into()));
    assert_eq!(
        b.call("DELETE", &format!("/keys/{first_id}"), None)
            .await
            .status,
        404
    );

    // The last key stays unless the owner insists.
    let r = b.call("DELETE", &format!("/keys/{second_id}"), None).await;
    assert_eq!((r.status, r.code()), (409, "last_key".into()));
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("confirm_last"));
    cometql_login(cometql, &user, &second_key)
        .await
        .expect("still works");
    let r = b
        .call(
            "DELETE",
            &format!("/keys/{second_id}"),
            Some(json!({"confirm_last": true})),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        cometql_login(cometql, &user, &second_key).await.err(),
        Some(16)
    );
    let listed = b.call("GET", "/keys", None).await.json();
    assert_eq!(listed["keys"].as_array().unwrap().len(), 0);
    server.stop().await;
}

async fn another_tenants_key_is_not_found(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut ann, _, ann_key_id, _) =
        Browser::new_tenant(server.http_addr(), "ann@example.com").await;
    let (mut bob, bob_dev, _, bob_key) =
        Browser::new_tenant(server.http_addr(), "bob@example.com").await;
    let r = bob
        .call("GET", &format!("/keys/{ann_key_id}/secret"), None)
        .await;
    assert_eq!((r.status, r.code()), (404, "no_such_key".into()));
    let r = bob
        .call(
            "DELETE",
            &format!("/keys/{ann_key_id}"),
            Some(json!({"confirm_last": true})),
        )
        .await;
    assert_eq!((r.status, r.code()), (404, "no_such_key".into()));
    // Ann's key is untouched; Bob's own list shows only his key.
    assert_eq!(
        ann.call("GET", &format!("/keys/{ann_key_id}/secret"), None)
            .await
            .status,
        200
    );
    let bobs = bob.call("GET", "/keys", None).await.json();
    assert_eq!(bobs["keys"].as_array().unwrap().len(), 1);
    assert_ne!(bobs["keys"][0]["id"].as_i64(), Some(ann_key_id));
    cometql_login(server.cometql_addr(), &bob_dev.to_string(), &bob_key)
        .await
        .expect("bob's key works");
    server.stop().await;
}

async fn allowed_origins_guard_websocket_upgrades(backend: Backend) {
    let server = TestServer::start(backend).await;
    let addr = server.http_addr();
    let (mut b, dev_id, _, _) = Browser::new_tenant(addr, "o@example.com").await;
    let (_, other_dev, _, _) = Browser::new_tenant(addr, "o2@example.com").await;
    assert_eq!(
        b.call("GET", "/origins", None).await.json()["origins"],
        json!([])
    );
    assert!(
        upgrade(&server, dev_id, Some("https://anything.example")).await == 101,
        "empty = any"
    );

    let r = b
        .call(
            "PUT",
            "/origins",
            Some(json!({"origins": ["app.example.com"]})),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_origin".into()));
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("https://app.example.com"));
    let r = b
        .call(
            "PUT",
            "/origins",
            Some(json!({"origins": ["https://App.Example.com/", "http://localhost:3000", ""]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let expected = json!(["http://localhost:3000", "https://app.example.com"]);
    assert_eq!(r.json()["origins"], expected);
    assert_eq!(
        b.call("GET", "/origins", None).await.json()["origins"],
        expected
    );

    assert!(upgrade(&server, dev_id, Some("https://app.example.com")).await == 101);
    assert!(upgrade(&server, dev_id, Some("http://localhost:3000")).await == 101);
    assert_eq!(
        upgrade(&server, dev_id, Some("https://evil.example")).await,
        403
    );
    assert!(
        upgrade(&server, dev_id, None).await == 101,
        "no Origin: not a browser page"
    );
    assert!(
        upgrade(&server, other_dev, Some("https://evil.example")).await == 101,
        "per tenant"
    );

    let r = b
        .call("PUT", "/origins", Some(json!({"origins": []})))
        .await;
    assert_eq!(r.json()["origins"], json!([]));
    assert!(upgrade(&server, dev_id, Some("https://evil.example")).await == 101);
    server.stop().await;
}

async fn test_message_and_usage(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let (mut b, dev_id, _, key) = Browser::new_tenant(server.http_addr(), "u@example.com").await;
    let usage = b.call("GET", "/usage", None).await.json();
    assert_eq!(
        usage,
        json!({"websocket_connections": 0, "cometql_sessions": 0, "messages_today": 0,
               "messages_this_month": 0, "rate_limited": 0,
               "storage": {"history_bytes": {"used": 0, "limit": 104_857_600},
                           "history_rows": {"used": 0, "limit": 100_000},
                           "queued_messages": {"used": 0, "limit": 100_000},
                           "queued_messages_per_user_limit": 10_000,
                           "users_data": {"used": 0, "limit": 100_000},
                           "revoked_tokens": {"used": 0, "limit": 100_000}}})
    );

    let mut ws = subscriber(&server, dev_id, "chat", 0).await;
    let _session = cometql_login(server.cometql_addr(), &dev_id.to_string(), &key)
        .await
        .unwrap();
    let r = b
        .call(
            "POST",
            "/test-message",
            Some(json!({"pipe": "chat", "event": "msg", "message": "hi there"})),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["receivers"].as_u64()),
        (200, Some(1)),
        "{}",
        r.body
    );
    let frame = next_on_pipe(&mut ws, "chat").await;
    assert_eq!(
        (frame["event"].as_str(), frame["data"].as_str()),
        (Some("msg"), Some("hi there"))
    );

    let r = b
        .call(
            "POST",
            "/test-message",
            Some(json!({"pipe": "bad pipe!", "event": "msg", "message": "x"})),
        )
        .await;
    assert_eq!((r.status, r.code()), (400, "invalid_message".into()));

    let usage = b.call("GET", "/usage", None).await.json();
    assert_eq!(usage["websocket_connections"], 1);
    assert_eq!(usage["cometql_sessions"], 1);
    assert_eq!(usage["messages_today"], 1);
    assert_eq!(usage["messages_this_month"], 1);
    drop(ws);

    // Message counts are stored: they survive a restart (the shutdown flushes the in-memory counter).
    server.restart().await;
    let mut b = Browser::new(server.http_addr());
    assert_eq!(b.log_in("u@example.com", PASSWORD).await.status, 200);
    let usage = b.call("GET", "/usage", None).await.json();
    assert_eq!(
        (
            usage["messages_today"].as_u64(),
            usage["messages_this_month"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(usage["websocket_connections"], 0);
    server.stop().await;
}

async fn pages_and_security_headers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let get = |path: &'static str| {
        send(
            server.http_addr(),
            "127.0.0.1".parse().unwrap(),
            "GET",
            path,
            &[],
            None,
        )
    };
    let home = get("/").await;
    assert_eq!(home.status, 200);
    assert!(home
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(home.body.contains("/dashboard/js/main.js"));
    let csp = home.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(home.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(home.header("x-frame-options"), Some("DENY"));
    assert!(home.header("referrer-policy").is_some());

    let js = get("/dashboard/js/main.js").await;
    assert_eq!(js.status, 200);
    assert!(js
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
    assert!(get("/dashboard/app.css")
        .await
        .header("content-type")
        .unwrap()
        .starts_with("text/css"));
    assert_eq!(get("/dashboard/nope.js").await.status, 404);
    assert_eq!(get("/dashboard/../Cargo.toml").await.status, 404);

    let api = get("/api/dashboard/v1/me").await;
    assert_eq!(api.header("cache-control"), Some("no-store"));
    assert!(api.header("content-security-policy").is_some());
    // The comet-server routes are still there.
    assert_eq!(get("/info").await.status, 200);
    server.stop().await;
}
