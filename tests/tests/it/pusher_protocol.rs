//! The Pusher protocol's refusals and limits, byte by byte: signed HTTP API requests made here with the
//! protocol floor's own signer (the real libraries' signing is checked by `pusher_clients`), and raw
//! WebSocket frames. Wrong signatures and stale timestamps get 401, unknown apps 404, Pusher's limits
//! 400/413; malformed frames `pusher:error`; one tenant's keys never open another's channels.

use std::time::Duration;

use serde_json::{json, Value};

use halley::pusher::api_auth::{sign, ApiRequest};
use halley::pusher::sign::channel_auth;
use halley::pusher::SocketId;
use halley_tests::dashboard::send;
use halley_tests::pusher_raw::{api, api_at, connect, data, event, next, now, send_json, LOCAL};
use halley_tests::wait::WAIT;
use halley_tests::ws::{upgrade_status, WsClient};
use halley_tests::{on_both_backends, Backend, TestServer};

async fn api_refusals(backend: Backend) {
    let server = TestServer::start(backend).await;
    let a = server.tenant("a@example.com").await;
    let b = server.tenant("b@example.com").await;
    let one = event(&["news".into()], "x");

    let ok = api(&server, &a, "POST", "/events", &one).await;
    assert_eq!((ok.status, ok.body.as_str()), (200, "{}"));

    // Unknown apps: 404 before any signature is looked at.
    for app in ["999999", "nope", "0"] {
        let r = api_at(
            &server,
            "POST",
            app,
            "/events",
            &one,
            &a.app_key,
            &a.key,
            now(),
        )
        .await;
        assert_eq!(r.status, 404, "{app}: {}", r.body);
    }
    // A wrong secret, a stale or future timestamp, another app's key: 401.
    let id = a.dev_id.to_string();
    let wrong = api_at(
        &server,
        "POST",
        &id,
        "/events",
        &one,
        &a.app_key,
        "not-the-secret",
        now(),
    )
    .await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    for skew in [-700, 700] {
        let r = api_at(
            &server,
            "POST",
            &id,
            "/events",
            &one,
            &a.app_key,
            &a.key,
            now() + skew,
        )
        .await;
        assert_eq!(r.status, 401, "{skew}: {}", r.body);
        assert!(r.body.contains("Timestamp"), "{}", r.body);
    }
    // Tenant B's credentials on A's app, whichever way they are mixed.
    for (key, secret) in [
        (&b.app_key, &b.key),
        (&a.app_key, &b.key),
        (&b.app_key, &a.key),
    ] {
        let r = api_at(&server, "POST", &id, "/events", &one, key, secret, now()).await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    // A body that is not the one signed.
    let req = ApiRequest {
        method: "POST",
        path: &format!("/apps/{id}/events"),
        query: "",
        body: one.as_bytes(),
    };
    let query = sign(&req, &a.app_key, &a.key, now(), &[]);
    let tampered = event(&["news".into()], "y");
    let r = send(
        server.http_addr(),
        LOCAL,
        "POST",
        &format!("/apps/{id}/events?{query}"),
        &[],
        Some(&tampered),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);

    // Pusher's limits: 100 channels, 10 KB of data, 10 events per batch.
    let hundred: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
    let r = api(&server, &a, "POST", "/events", &event(&hundred, "x")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let more: Vec<String> = (0..101).map(|i| format!("c{i}")).collect();
    let r = api(&server, &a, "POST", "/events", &event(&more, "x")).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = api(
        &server,
        &a,
        "POST",
        "/events",
        &event(&["n".into()], &"x".repeat(10 * 1024)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api(
        &server,
        &a,
        "POST",
        "/events",
        &event(&["n".into()], &"x".repeat(10 * 1024 + 1)),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.body);
    let item = json!({"name": "e", "channel": "n", "data": "x"});
    let batch = |n: usize| json!({"batch": vec![item.clone(); n]}).to_string();
    let r = api(&server, &a, "POST", "/batch_events", &batch(10)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["batch"].as_array().unwrap().len(), 10);
    let r = api(&server, &a, "POST", "/batch_events", &batch(11)).await;
    assert_eq!(r.status, 400, "{}", r.body);
    for bad in [
        json!({"name": "e", "channels": ["a b"], "data": "x"}),
        json!({"name": "pusher:x", "channels": ["a"], "data": "x"}),
        json!({"channels": ["a"], "data": "x"}),
        json!({"name": "e", "data": "x"}),
        json!({"name": "e", "channels": ["a"], "data": "x", "socket_id": "nope"}),
    ] {
        let r = api(&server, &a, "POST", "/events", &bad.to_string()).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    let r = api(&server, &a, "POST", "/events", "not json").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = api(&server, &a, "GET", "/channels?info=user_count", "").await;
    assert_eq!(
        r.status, 400,
        "user_count needs the presence- prefix: {}",
        r.body
    );
    let r = api(&server, &a, "GET", "/channels/news/users", "").await;
    assert_eq!(r.status, 400, "users of a public channel: {}", r.body);

    // The same channel name in two tenants: A's events stay A's.
    let (mut b_news, _) = connect(&server, &b.app_key).await;
    send_json(
        &mut b_news,
        json!({"event": "pusher:subscribe", "data": {"channel": "news"}}),
    )
    .await;
    assert_eq!(
        next(&mut b_news).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    let r = api(&server, &a, "POST", "/events", &one).await;
    assert_eq!(r.status, 200);
    b_news
        .expect_silence(Duration::from_millis(300))
        .await
        .unwrap();
    let r = api(&server, &b, "GET", "/channels", "").await;
    assert_eq!(r.json(), json!({"channels": {"news": {}}}));
    server.stop().await;
}

/// The tenant's publish budget is CometQL's: past it the API answers 429.
async fn api_shares_the_publish_budget(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.publishes_per_sec = 1;
        c.limits.publish_burst = 3;
    })
    .await;
    let a = server.tenant("a@example.com").await;
    let three: Vec<String> = (0..3).map(|i| format!("c{i}")).collect();
    let r = api(&server, &a, "POST", "/events", &event(&three, "x")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api(&server, &a, "POST", "/events", &event(&["c".into()], "x")).await;
    assert_eq!(r.status, 429, "{}", r.body);
    server.stop().await;
}

async fn connect_refusals(backend: Backend) {
    let server = TestServer::start(backend).await;
    let a = server.tenant("a@example.com").await;
    let addr = server.http_addr();
    for (url, code) in [
        (
            format!("ws://{addr}/app/0123456789abcdef0123?protocol=7"),
            4001,
        ),
        (format!("ws://{addr}/app/not-a-key?protocol=7"), 4001),
        (format!("ws://{addr}/app/{}", a.app_key), 4008),
        (format!("ws://{addr}/app/{}?protocol=4", a.app_key), 4007),
        (format!("ws://{addr}/app/{}?protocol=x", a.app_key), 4006),
    ] {
        let mut ws = WsClient::connect(&url).await.unwrap();
        let err = next(&mut ws).await;
        assert_eq!(err["event"], "pusher:error", "{url}: {err}");
        assert_eq!(err["data"]["code"], code, "{url}: {err}");
        let closed = ws.expect_closed(WAIT).await.unwrap();
        assert_eq!(closed.map(|c| c.0), Some(code), "{url}");
    }
    // Allowed origins apply as on the comet URL.
    server
        .ctx()
        .tenants
        .set_allowed_origins(
            halley::ids::DevId(a.dev_id),
            &["https://shop.example".into()],
        )
        .await
        .unwrap();
    let url = format!("ws://{addr}/app/{}?protocol=7", a.app_key);
    assert_eq!(
        upgrade_status(&url, &[("Origin", "https://evil.example")])
            .await
            .unwrap(),
        403
    );
    assert_eq!(
        upgrade_status(&url, &[("Origin", "https://shop.example")])
            .await
            .unwrap(),
        101
    );
    server.stop().await;
}

async fn frame_refusals(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.pusher.presence_max_members = 1;
        c.pusher.channels_per_connection = 5;
    })
    .await;
    let a = server.tenant("a@example.com").await;
    let b = server.tenant("b@example.com").await;
    let (mut ws, socket_id) = connect(&server, &a.app_key).await;

    ws.send_text("nope").await.unwrap();
    let e = next(&mut ws).await;
    assert_eq!(
        (e["event"].as_str(), e["data"]["code"].as_u64()),
        (Some("pusher:error"), Some(4200))
    );
    send_json(&mut ws, json!({"event": "pusher:hello"})).await;
    let e = next(&mut ws).await;
    assert_eq!(e["data"]["code"], Value::Null, "{e}");
    send_json(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "a b"}}),
    )
    .await;
    assert_eq!(next(&mut ws).await["event"], "pusher:error");

    // Private channels: no auth, a wrong one, tenant B's secret: refused; A's secret: subscribed.
    let sid = SocketId::parse(&socket_id).unwrap();
    for auth in [
        None,
        Some(format!("{}:deadbeef", a.app_key)),
        Some(channel_auth(&b.app_key, &b.key, &sid, "private-x", None)),
        Some(channel_auth(&a.app_key, &b.key, &sid, "private-x", None)),
    ] {
        send_json(
            &mut ws,
            json!({"event": "pusher:subscribe", "data": {"channel": "private-x", "auth": auth}}),
        )
        .await;
        let e = next(&mut ws).await;
        assert_eq!(e["event"], "pusher:error", "{auth:?}: {e}");
    }
    let auth = channel_auth(&a.app_key, &a.key, &sid, "private-x", None);
    send_json(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "private-x", "auth": auth}}),
    )
    .await;
    assert_eq!(
        next(&mut ws).await["event"],
        "pusher_internal:subscription_succeeded"
    );

    // Client events are off until the tenant turns them on; never on public channels.
    send_json(
        &mut ws,
        json!({"event": "client-x", "channel": "private-x", "data": {}}),
    )
    .await;
    let e = next(&mut ws).await;
    assert!(
        e["data"]["message"]
            .as_str()
            .unwrap()
            .contains("client events"),
        "{e}"
    );
    server
        .ctx()
        .tenants
        .set_client_events(halley::ids::DevId(a.dev_id), true, &server.ctx().limits)
        .await
        .unwrap();
    send_json(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "pub"}}),
    )
    .await;
    next(&mut ws).await;
    send_json(
        &mut ws,
        json!({"event": "client-x", "channel": "pub", "data": {}}),
    )
    .await;
    let e = next(&mut ws).await;
    assert!(
        e["data"]["message"]
            .as_str()
            .unwrap()
            .contains("private and presence"),
        "{e}"
    );
    // Past 10 a second: 4301, and the connection stays.
    let mut limited = 0;
    for _ in 0..12 {
        send_json(
            &mut ws,
            json!({"event": "client-x", "channel": "private-x", "data": {}}),
        )
        .await;
    }
    send_json(&mut ws, json!({"event": "pusher:ping", "data": {}})).await;
    loop {
        let e = next(&mut ws).await;
        if e["event"] == "pusher:pong" {
            break;
        }
        if e["data"]["code"] == 4301 {
            limited += 1;
        }
    }
    assert!(limited >= 2, "{limited} refused");

    // The same channel twice, and past `channels_per_connection` (5: private-x, pub and three more; one
    // is left again to make room for presence-r below).
    send_json(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "pub"}}),
    )
    .await;
    let e = next(&mut ws).await;
    assert!(
        e["data"]["message"]
            .as_str()
            .unwrap()
            .contains("Existing subscription"),
        "{e}"
    );
    for name in ["c1", "c2", "c3"] {
        send_json(
            &mut ws,
            json!({"event": "pusher:subscribe", "data": {"channel": name}}),
        )
        .await;
        assert_eq!(
            next(&mut ws).await["event"],
            "pusher_internal:subscription_succeeded"
        );
    }
    send_json(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "c4"}}),
    )
    .await;
    let e = next(&mut ws).await;
    assert!(
        e["data"]["message"].as_str().unwrap().contains("at most 5"),
        "{e}"
    );
    send_json(
        &mut ws,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "c3"}}),
    )
    .await;

    // A presence channel of one member: a second user is refused.
    let cd = json!({"user_id": "1"}).to_string();
    let auth = channel_auth(&a.app_key, &a.key, &sid, "presence-r", Some(&cd));
    send_json(&mut ws, json!({"event": "pusher:subscribe", "data": {"channel": "presence-r", "auth": auth, "channel_data": cd}})).await;
    let ok = next(&mut ws).await;
    assert_eq!(data(&ok)["presence"]["count"], 1, "{ok}");
    let (mut other, other_id) = connect(&server, &a.app_key).await;
    let osid = SocketId::parse(&other_id).unwrap();
    let cd2 = json!({"user_id": "2"}).to_string();
    let auth = channel_auth(&a.app_key, &a.key, &osid, "presence-r", Some(&cd2));
    send_json(&mut other, json!({"event": "pusher:subscribe", "data": {"channel": "presence-r", "auth": auth, "channel_data": cd2}})).await;
    let e = next(&mut other).await;
    assert!(
        e["data"]["message"].as_str().unwrap().contains("full"),
        "{e}"
    );

    // A user channel is only for the connection signed in as that user.
    send_json(
        &mut other,
        json!({"event": "pusher:subscribe", "data": {"channel": "#server-to-user-1"}}),
    )
    .await;
    assert_eq!(next(&mut other).await["event"], "pusher:error");
    // A frame past 32 KiB: 4200, and the connection ends.
    let (mut big, _) = connect(&server, &a.app_key).await;
    let huge = json!({"event": "client-x", "channel": "private-x", "data": "x".repeat(40 * 1024)});
    send_json(&mut big, huge).await;
    let e = next(&mut big).await;
    assert_eq!(e["data"]["code"], 4200, "{e}");
    assert_eq!(
        big.expect_closed(WAIT).await.unwrap().map(|c| c.0),
        Some(4200)
    );
    // A bad sign-in closes with 4009.
    send_json(&mut other, json!({"event": "pusher:signin", "data": {"auth": format!("{}:00", a.app_key), "user_data": "{\"id\":\"1\"}"}})).await;
    let e = next(&mut other).await;
    assert_eq!(e["data"]["code"], 4009, "{e}");
    assert_eq!(
        other.expect_closed(WAIT).await.unwrap().map(|c| c.0),
        Some(4009)
    );
    server.stop().await;
}

/// The dashboard's setting turns client events on and off, at once.
async fn dashboard_turns_client_events_on(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut owner, dev_id, _, key) =
        halley_tests::dashboard::Browser::new_tenant(server.http_addr(), "o@example.com").await;
    let app_key = owner.call("GET", "/me", None).await.json()["app_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        owner.call("GET", "/pusher", None).await.json(),
        json!({"client_events": false})
    );
    let on = owner
        .call("PUT", "/pusher", Some(json!({"client_events": true})))
        .await;
    assert_eq!(
        (on.status, on.json()),
        (200, json!({"client_events": true}))
    );
    let mut conns = Vec::new();
    for _ in 0..2 {
        let (mut ws, socket_id) = connect(&server, &app_key).await;
        let sid = SocketId::parse(&socket_id).unwrap();
        let auth = channel_auth(&app_key, &key, &sid, "private-c", None);
        send_json(
            &mut ws,
            json!({"event": "pusher:subscribe", "data": {"channel": "private-c", "auth": auth}}),
        )
        .await;
        assert_eq!(
            next(&mut ws).await["event"],
            "pusher_internal:subscription_succeeded"
        );
        conns.push(ws);
    }
    send_json(
        &mut conns[0],
        json!({"event": "client-hi", "channel": "private-c", "data": {"n": 1}}),
    )
    .await;
    let got = next(&mut conns[1]).await;
    assert_eq!(
        (got["event"].as_str(), data(&got)),
        (Some("client-hi"), json!({"n": 1}))
    );
    let off = owner
        .call("PUT", "/pusher", Some(json!({"client_events": false})))
        .await;
    assert_eq!(off.status, 200);
    send_json(
        &mut conns[0],
        json!({"event": "client-hi", "channel": "private-c", "data": {}}),
    )
    .await;
    assert_eq!(next(&mut conns[0]).await["event"], "pusher:error");
    let _ = dev_id;
    server.stop().await;
}

/// `halley tenant limits --client-events true|false` stores the flag; every node loads it with its
/// once-a-minute reload of the limits, turning it off included.
async fn client_events_as_the_cli_stores_them(backend: Backend) {
    use halley::storage::TenantFlag;
    let server = TestServer::start(backend).await;
    let a = server.tenant("a@example.com").await;
    let other = server.tenant("o@example.com").await;
    let ctx = server.ctx();
    let dev = halley::ids::DevId(a.dev_id);
    assert!(!ctx.limits.client_events(dev));
    for on in [true, false] {
        ctx.storage
            .set_tenant_flag(dev, TenantFlag::ClientEvents, on)
            .await
            .unwrap();
        ctx.limits.load_overrides(&ctx.storage).await.unwrap();
        assert_eq!(ctx.limits.client_events(dev), on);
        assert_eq!(ctx.tenants.client_events(dev).await.unwrap(), on);
        assert!(!ctx.limits.client_events(halley::ids::DevId(other.dev_id)));
    }
    server.stop().await;
}

/// Any active key signs; a key revoked on this node stops signing at once.
async fn any_active_key_signs_until_revoked(backend: Backend) {
    let server = TestServer::start(backend).await;
    let a = server.tenant("a@example.com").await;
    let ctx = server.ctx();
    let dev = halley::ids::DevId(a.dev_id);
    let second = ctx.tenants.add_key(dev, "second").await.unwrap();
    let (mut ws, socket_id) = connect(&server, &a.app_key).await;
    let sid = SocketId::parse(&socket_id).unwrap();
    for (channel, secret) in [("private-1", &a.key), ("private-2", &second)] {
        let auth = channel_auth(&a.app_key, secret, &sid, channel, None);
        send_json(
            &mut ws,
            json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}),
        )
        .await;
        assert_eq!(
            next(&mut ws).await["event"],
            "pusher_internal:subscription_succeeded",
            "{channel}"
        );
    }
    let id = ctx
        .storage
        .active_keys(dev)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .max()
        .unwrap();
    ctx.tenants.revoke_key(dev, id, false).await.unwrap();
    let auth = channel_auth(&a.app_key, &second, &sid, "private-3", None);
    send_json(
        &mut ws,
        json!({"event": "pusher:subscribe", "data": {"channel": "private-3", "auth": auth}}),
    )
    .await;
    assert_eq!(next(&mut ws).await["event"], "pusher:error");
    let r = api_at(
        &server,
        "POST",
        &a.dev_id.to_string(),
        "/events",
        &event(&["n".into()], "x"),
        &a.app_key,
        &second,
        now(),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    server.stop().await;
}

on_both_backends!(
    any_active_key_signs_until_revoked,
    client_events_as_the_cli_stores_them,
    dashboard_turns_client_events_on,
    api_refusals,
    api_shares_the_publish_budget,
    connect_refusals,
    frame_refusals,
);
