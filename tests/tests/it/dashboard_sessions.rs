//! The dashboard API's accounts and sessions (`/api/dashboard/v1`) on the real server, against SQLite and
//! PostgreSQL: sign-up, log-in, log-out, password change, 401s without a session, expired and forged
//! sessions, CSRF attempts and login throttling. Keys, origins and usage: dashboard_api.rs.

use halley_tests::dashboard::{send, Browser};
use halley_tests::{on_both_backends, Backend, TestServer};

use serde_json::json;

const PASSWORD: &str = "correct horse battery";

on_both_backends!(
    sign_up_log_in_log_out,
    protected_endpoints_need_a_session,
    expired_and_forged_sessions,
    change_password_ends_other_sessions,
    csrf_attempts_are_refused,
    login_is_throttled_per_ip_and_per_email,
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
    // The public Pusher app key: 20 lowercase hex characters, the same on every answer.
    let app_key = r.json()["app_key"].as_str().unwrap_or_default().to_owned();
    assert!(
        app_key.len() == 20
            && app_key
                .bytes()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
        "{app_key:?}"
    );
    assert_eq!(me["app_key"].as_str(), Some(app_key.as_str()));

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
    use halley::front::http::dashboard::SESSION_SECRET_LABEL;
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
    let secret = halley::tenant::KeyBox::load_or_create(&server.config().master_key_path())
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
