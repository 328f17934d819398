//! The dashboard API (`/api/dashboard/v1`), endpoint by endpoint, on the real server against SQLite and
//! PostgreSQL: accounts and sessions, CSRF, login throttling, keys (with real CometQL logins), allowed
//! origins (with real WebSocket upgrades), usage and the test message (with a real subscriber).

mod dashboard;

use dashboard::cometql::MySql;
use dashboard::{next_on_pipe, send, subscribe, ws_connect, Backend, Browser, TestServer};
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

on_both_backends!(
    sign_up_log_in_log_out,
    protected_endpoints_need_a_session,
    expired_and_forged_sessions,
    change_password_ends_other_sessions,
    csrf_attempts_are_refused,
    login_is_throttled_per_ip_and_per_email,
    keys_create_reveal_revoke,
    another_tenants_key_is_not_found,
    allowed_origins_guard_websocket_upgrades,
    test_message_and_usage,
    pages_and_security_headers,
);

async fn sign_up_log_in_log_out(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut b = Browser::new(server.http_addr());

    let r = b.sign_up("not-an-email", PASSWORD).await;
    assert_eq!((r.status, r.code()), (400, "invalid_email".into()));
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("valid email"));
    let r = b.sign_up("ann@example.com", "short").await;
    assert_eq!((r.status, r.code()), (400, "weak_password".into()));
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("at least 10"));

    let r = b.sign_up("Ann@Example.com", PASSWORD).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let me = r.json();
    assert!(me["dev_id"].as_u64().unwrap() >= 1);
    assert_eq!(
        me["email"], "ann@example.com",
        "emails are stored lowercase"
    );
    assert_eq!(me["cometql_port"], server.cometql_addr().port());
    let cookie = r.header("set-cookie").unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        cookie.contains("Max-Age=43200") && !cookie.contains("Secure"),
        "{cookie}"
    );
    let r = b.call("GET", "/me", None).await;
    assert_eq!(
        (r.status, r.json()["dev_id"].clone()),
        (200, me["dev_id"].clone())
    );

    let mut other = Browser::new(server.http_addr());
    let r = other.sign_up("ann@example.com", PASSWORD).await;
    assert_eq!((r.status, r.code()), (409, "email_taken".into()));
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("already exists"));

    let r = b.call("POST", "/logout", None).await;
    assert_eq!(r.status, 204);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert!(b.cookie.is_none());
    let r = b.call("GET", "/me", None).await;
    assert_eq!((r.status, r.code()), (401, "not_logged_in".into()));

    let r = b.log_in("ann@example.com", "wrong password!").await;
    assert_eq!((r.status, r.code()), (401, "wrong_password".into()));
    let r = b.log_in("nobody@example.com", PASSWORD).await;
    assert_eq!(
        (r.status, r.code()),
        (401, "wrong_password".into()),
        "same answer for an unknown email"
    );
    let r = b.log_in(" ANN@example.com ", PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["dev_id"], me["dev_id"]);
    assert_eq!(b.call("GET", "/me", None).await.status, 200);
    server.stop().await;
}

async fn protected_endpoints_need_a_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut anon = Browser::new(server.http_addr());
    anon.csrf = Some("x".into());
    let endpoints = [
        ("GET", "/me", None),
        (
            "POST",
            "/password",
            Some(json!({"current_password": "a", "new_password": "b"})),
        ),
        ("GET", "/keys", None),
        ("POST", "/keys", Some(json!({"name": "k"}))),
        ("GET", "/keys/1/secret", None),
        ("DELETE", "/keys/1", None),
        ("GET", "/origins", None),
        ("PUT", "/origins", Some(json!({"origins": []}))),
        ("GET", "/usage", None),
        (
            "POST",
            "/test-message",
            Some(json!({"pipe": "a", "event": "b", "message": "c"})),
        ),
    ];
    for (method, path, body) in endpoints {
        let r = anon.call(method, path, body).await;
        assert_eq!(r.status, 401, "{method} {path}: {}", r.body);
        assert_eq!(r.code(), "not_logged_in", "{method} {path}");
    }
    let r = anon.call("GET", "/nope", None).await;
    assert_eq!((r.status, r.code()), (404, "not_found".into()));
    server.stop().await;
}

async fn expired_and_forged_sessions(backend: Backend) {
    use halley::http::dashboard::SESSION_SECRET_LABEL;
    let server = TestServer::start(backend).await;
    let (mut b, dev_id, _, _) = Browser::new_tenant(server.http_addr(), "e@example.com").await;
    let good = b.cookie.clone().unwrap();
    let claims: serde_json::Value = {
        let payload = good.split('.').nth(1).unwrap();
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    assert_eq!(claims["sub"], dev_id.to_string());

    // Signed with the server's real secret but expired a second ago.
    let secret = halley::tenant::KeyBox::load_or_create(&server.config.master_key_path())
        .unwrap()
        .derive(SESSION_SECRET_LABEL);
    let mut expired = claims.clone();
    expired["exp"] = json!(halley::tenant::unix_now() - 1);
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &expired,
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();
    b.cookie = Some(token);
    let r = b.call("GET", "/keys", None).await;
    assert_eq!((r.status, r.code()), (401, "session_expired".into()));
    assert!(r.json()["message"].as_str().unwrap().contains("expired"));

    // Claims changed to another tenant without the secret: the signature fails.
    let mut forged = good.split('.').map(str::to_owned).collect::<Vec<_>>();
    let mut other = claims.clone();
    other["sub"] = json!("999");
    use base64::Engine as _;
    forged[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(other.to_string());
    b.cookie = Some(forged.join("."));
    assert_eq!(b.call("GET", "/me", None).await.status, 401);
    // alg=none is never accepted.
    let none = format!(
        "{}.{}.",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    b.cookie = Some(none);
    assert_eq!(b.call("GET", "/me", None).await.status, 401);
    b.cookie = Some(good);
    assert_eq!(b.call("GET", "/me", None).await.status, 200);
    server.stop().await;
}

async fn change_password_ends_other_sessions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut b, _, _, _) = Browser::new_tenant(server.http_addr(), "p@example.com").await;
    let mut second = Browser::new(server.http_addr());
    assert_eq!(second.log_in("p@example.com", PASSWORD).await.status, 200);

    let change = |cur: &str, new: &str| json!({"current_password": cur, "new_password": new});
    let r = b
        .call(
            "POST",
            "/password",
            Some(change("wrong one!!", "another long one")),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "wrong_password".into()));
    let r = b
        .call("POST", "/password", Some(change(PASSWORD, "short")))
        .await;
    assert_eq!((r.status, r.code()), (400, "weak_password".into()));
    let r = b
        .call(
            "POST",
            "/password",
            Some(change(PASSWORD, "another long one")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        b.call("GET", "/keys", None).await.status,
        200,
        "this session is renewed"
    );
    let r = second.call("GET", "/keys", None).await;
    assert_eq!(
        (r.status, r.code()),
        (401, "session_expired".into()),
        "others end"
    );

    assert_eq!(second.log_in("p@example.com", PASSWORD).await.status, 401);
    assert_eq!(
        second
            .log_in("p@example.com", "another long one")
            .await
            .status,
        200
    );
    server.stop().await;
}

async fn csrf_attempts_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (b, _, _, _) = Browser::new_tenant(server.http_addr(), "c@example.com").await;
    let key = json!({"name": "attacker's"});

    // A page elsewhere cannot read the token, so its request carries the cookie but no token...
    let mut attacker = b.clone();
    attacker.csrf = None;
    let r = attacker
        .call_with(
            "POST",
            "/keys",
            Some(key.clone()),
            &[("Origin", "http://evil.example")],
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "csrf".into()));
    let r = attacker.call("POST", "/keys", Some(key.clone())).await;
    assert_eq!(
        (r.status, r.code()),
        (403, "csrf".into()),
        "no token, even from our origin"
    );
    // ...or a guessed one...
    attacker.csrf = Some("guessed-token".into());
    let r = attacker.call("POST", "/keys", Some(key.clone())).await;
    assert_eq!((r.status, r.code()), (403, "csrf".into()));
    let r = attacker.call("DELETE", "/keys/1", None).await;
    assert_eq!((r.status, r.code()), (403, "csrf".into()));
    // ...and even the right token is refused when the browser says the page is on another site.
    let mut wrong_origin = b.clone();
    let r = wrong_origin
        .call_with(
            "POST",
            "/keys",
            Some(key.clone()),
            &[("Origin", "http://evil.example")],
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "csrf".into()));
    let r = wrong_origin
        .call_with(
            "PUT",
            "/origins",
            Some(json!({"origins": []})),
            &[("Origin", "null")],
        )
        .await;
    assert_eq!(r.status, 403);

    // Login CSRF: a cross-site form post is neither JSON nor from our origin.
    let form = send(
        server.http_addr(),
        "127.0.0.1".parse().unwrap(),
        "POST",
        "/api/dashboard/v1/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some("email=c%40example.com&password=correct+horse+battery"),
    )
    .await;
    assert_eq!(form.status, 415);
    assert!(form.header("set-cookie").is_none());
    let mut login = Browser::new(server.http_addr());
    let body = json!({"email": "c@example.com", "password": PASSWORD});
    let r = login
        .call_with(
            "POST",
            "/login",
            Some(body),
            &[("Origin", "http://evil.example")],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(login.cookie.is_none());

    // Nothing was created by any of that; the real page still works.
    let mut page = b.clone();
    assert_eq!(
        page.call("GET", "/keys", None).await.json()["keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(page.call("POST", "/keys", Some(key)).await.status, 201);
    server.stop().await;
}

async fn login_is_throttled_per_ip_and_per_email(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, _, _, _) = Browser::new_tenant(server.http_addr(), "t@example.com").await;
    let mut b = Browser::new(server.http_addr());
    for _ in 0..5 {
        assert_eq!(
            b.log_in("t@example.com", "wrong password!").await.status,
            401
        );
    }
    let r = b.log_in("t@example.com", PASSWORD).await;
    assert_eq!(
        (r.status, r.code()),
        (429, "too_many_attempts".into()),
        "even the right password"
    );
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("Too many login attempts"));
    let r = b.log_in("other@example.com", PASSWORD).await;
    assert_eq!(r.status, 429, "per IP: another email from the same address");

    // Another client address: the email is still throttled, other emails are not.
    let mut elsewhere = Browser::new(server.http_addr());
    elsewhere.from = "127.0.0.2".parse().unwrap();
    assert_eq!(
        elsewhere.log_in("t@example.com", PASSWORD).await.status,
        429,
        "per email"
    );
    assert_eq!(
        elsewhere.log_in("T@Example.com", PASSWORD).await.status,
        429,
        "normalized"
    );
    assert_eq!(
        elsewhere.log_in("other@example.com", PASSWORD).await.status,
        401
    );
    server.stop().await;
}

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
    let mut live = MySql::login(cometql, &user, &first_key)
        .await
        .expect("first key logs in");
    live.query("INSERT INTO pipes_messages (name, event, message) VALUES ('chat', 'msg', 'x')")
        .await
        .expect("publishes");
    MySql::login(cometql, &user, &second_key)
        .await
        .expect("second key logs in");
    let listed = b.call("GET", "/keys", None).await.json();
    assert!(listed["keys"][0]["last_used_at"].as_i64().unwrap() > 0);

    // Revoking closes the live session that used the key, and the key no longer logs in.
    let r = b.call("DELETE", &format!("/keys/{first_id}"), None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(
        live.closed_by_server().await,
        "the revoked key's session is closed"
    );
    assert_eq!(
        MySql::login(cometql, &user, &first_key).await.err(),
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
    MySql::login(cometql, &user, &second_key)
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
        MySql::login(cometql, &user, &second_key).await.err(),
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
    MySql::login(server.cometql_addr(), &bob_dev.to_string(), &bob_key)
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
        ws_connect(addr, dev_id, Some("https://anything.example"))
            .await
            .is_ok(),
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

    assert!(ws_connect(addr, dev_id, Some("https://app.example.com"))
        .await
        .is_ok());
    assert!(ws_connect(addr, dev_id, Some("http://localhost:3000"))
        .await
        .is_ok());
    assert_eq!(
        ws_connect(addr, dev_id, Some("https://evil.example"))
            .await
            .err(),
        Some(403)
    );
    assert!(
        ws_connect(addr, dev_id, None).await.is_ok(),
        "no Origin: not a browser page"
    );
    assert!(
        ws_connect(addr, other_dev, Some("https://evil.example"))
            .await
            .is_ok(),
        "per tenant"
    );

    let r = b
        .call("PUT", "/origins", Some(json!({"origins": []})))
        .await;
    assert_eq!(r.json()["origins"], json!([]));
    assert!(ws_connect(addr, dev_id, Some("https://evil.example"))
        .await
        .is_ok());
    server.stop().await;
}

async fn test_message_and_usage(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let (mut b, dev_id, _, key) = Browser::new_tenant(server.http_addr(), "u@example.com").await;
    let usage = b.call("GET", "/usage", None).await.json();
    assert_eq!(
        usage,
        json!({"websocket_connections": 0, "cometql_sessions": 0, "messages_today": 0,
               "messages_this_month": 0, "rate_limited": 0})
    );

    let mut ws = ws_connect(server.http_addr(), dev_id, None).await.unwrap();
    subscribe(&server, &mut ws, dev_id, "chat").await;
    let _session = MySql::login(server.cometql_addr(), &dev_id.to_string(), &key)
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
