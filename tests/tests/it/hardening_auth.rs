//! Issue 11, hardening of authentication: argon2 bounded and every password check throttled (item 5), a
//! users_auth hash minted by a JWT login expires with the token (6), keys per tenant capped (14), logout ends
//! the dashboard session on the server (15), JWT `nbf` honoured (16), usage counters survive SIGKILL within
//! the flush interval (17). Memory is measured on the real `halley` binary in its own process.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use halley::ids::DevId;
use halley_tests::browser::{hs256, unix_now};
use halley_tests::cometql::{ok, rows, Cql};
use halley_tests::dashboard::{self, send, Resp};
use halley_tests::frames::{json, pin, server_info};
use halley_tests::mysql_raw::RawMysql;
use halley_tests::process::ServerProcess;
use halley_tests::wait::{eventually, WAIT};
use halley_tests::{on_both_backends, Backend, TestServer};
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";
/// Concurrent requests of each attack, each from its own loopback address (127.0.0.2...).
const ATTACKERS: u8 = 64;
/// The `argon2` crate's default memory cost (m = 19456 KiB): what one running hash holds.
const ARGON2_KIB: u64 = 19 * 1024;
/// Besides the hashes: thread stacks, allocator arenas, request buffers of 3 x 64 requests.
const SLACK_KIB: u64 = 40 * 1024;

fn attacker(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i))
}

/// One dashboard API request from `from` with a JSON body, as a script would send it.
async fn post(
    addr: SocketAddr,
    from: IpAddr,
    path: &str,
    body: &Value,
    extra: &[(&str, &str)],
) -> Resp {
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend_from_slice(extra);
    send(
        addr,
        from,
        "POST",
        &format!("/api/dashboard/v1{path}"),
        &headers,
        Some(&body.to_string()),
    )
    .await
}

/// Sends `ATTACKERS` requests at once (request i from attacker i) and returns every answer.
async fn flood<F>(addr: SocketAddr, path: &'static str, request: F) -> Vec<Resp>
where
    F: Fn(u8) -> (Value, Vec<(String, String)>),
{
    let mut tasks = Vec::new();
    for i in 0..ATTACKERS {
        let (body, headers) = request(i);
        tasks.push(tokio::spawn(async move {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            post(addr, attacker(i), path, &body, &h).await
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("request task"));
    }
    answers
}

/// Every answer is one of `allowed` (status, code); a 429 or 503 says when to come back.
fn check_answers(what: &str, answers: &[Resp], allowed: &[(u16, &str)]) -> Vec<u16> {
    for r in answers {
        assert!(
            allowed.contains(&(r.status, r.code().as_str())),
            "{what}: unexpected answer {} {}",
            r.status,
            r.body
        );
        if r.status == 429 || r.status == 503 {
            let secs: u64 = r
                .header("retry-after")
                .unwrap_or_else(|| panic!("{what}: {} without Retry-After", r.status))
                .parse()
                .unwrap();
            assert!(secs >= 1, "{what}: Retry-After {secs}");
        }
    }
    answers.iter().map(|r| r.status).collect()
}

/// Item 5: 64 concurrent wrong passwords at /password (one stolen session), /login (64 addresses, 64
/// emails) and /signup (64 addresses) with the default configuration. Every password check is throttled
/// (/password: 5 per account, the rest 429), and at most `argon2_concurrency` (2) hashes run at once, the
/// others waiting in a bounded queue or refused with 503: the server's peak memory grows by at most two
/// hashes' worth plus slack (without the gate: one hash per request, 64 x 19 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argon2_is_bounded_and_password_checks_are_throttled() {
    let server = ServerProcess::start(Backend::Sqlite, "").await.unwrap();
    let addr = server.http_addr();
    let (owner, _, _, _) = dashboard::Browser::new_tenant(addr, "victim@example.com").await;
    let cookie = format!("halley_session={}", owner.cookie.clone().unwrap());
    let csrf = owner.csrf.clone().unwrap();
    // Warm-up: one wrong login (the dummy hash for unknown emails is computed once, then one check).
    let r = post(
        addr,
        "127.0.0.1".parse().unwrap(),
        "/login",
        &json!({"email": "warmup@example.com", "password": "not the password"}),
        &[],
    )
    .await;
    assert_eq!((r.status, r.code()), (401, "wrong_password".into()));
    let before = server.memory();

    // A stolen session guessing the current password from 64 addresses: 5 guesses, then 429.
    let answers = flood(addr, "/password", |i| {
        (
            json!({"current_password": format!("guess number {i}"), "new_password": "whatever it is"}),
            vec![
                ("Cookie".into(), cookie.clone()),
                ("X-Halley-CSRF".into(), csrf.clone()),
            ],
        )
    })
    .await;
    let statuses = check_answers(
        "/password",
        &answers,
        &[
            (403, "wrong_password"),
            (429, "too_many_attempts"),
            (503, "busy"),
        ],
    );
    let guessed = statuses.iter().filter(|&&s| s != 429).count();
    assert!(
        guessed <= 5,
        "{guessed} password guesses got through in a minute"
    );
    let after_password = server.memory();

    // 64 addresses, 64 unknown emails: the throttle lets each one through, the gate bounds the hashing.
    let answers = flood(addr, "/login", |i| {
        (
            json!({"email": format!("nobody{i}@example.com"), "password": "not the password"}),
            vec![],
        )
    })
    .await;
    let statuses = check_answers(
        "/login",
        &answers,
        &[(401, "wrong_password"), (503, "busy")],
    );
    let refused = statuses.iter().filter(|&&s| s == 503).count();
    let after_login = server.memory();

    let answers = flood(addr, "/signup", |i| {
        (
            json!({"email": format!("new{i}@example.com"), "password": PASSWORD}),
            vec![],
        )
    })
    .await;
    check_answers("/signup", &answers, &[(201, ""), (503, "busy")]);
    let after = server.memory();
    let mut server = server;
    assert!(server.alive());

    let growth = after.hwm_kib.saturating_sub(before.hwm_kib);
    let bound = 2 * ARGON2_KIB + SLACK_KIB;
    eprintln!(
        "VmHWM KiB: before {} after /password {} after /login {} ({refused} answered 503) after /signup {}; \
         growth {growth} (bound {bound}); VmRSS now {}",
        before.hwm_kib, after_password.hwm_kib, after_login.hwm_kib, after.hwm_kib, after.rss_kib
    );
    assert!(
        growth <= bound,
        "argon2 under attack grew the server's peak memory by {growth} KiB (bound {bound} KiB)"
    );
    // The owner is not locked out by the flood: a right password from their own address still works.
    let mut again = dashboard::Browser::new(addr);
    again.from = "127.0.0.1".parse().unwrap();
    assert_eq!(
        again.log_in("victim@example.com", PASSWORD).await.status,
        200
    );
    server.stop().await;
}

/// Waits (polling the clock, bounded) until the unix time is past `t`.
async fn until_past(t: i64) {
    eventually(WAIT, || async {
        anyhow::ensure!(unix_now() > t, "not yet past {t}");
        Ok(())
    })
    .await
    .unwrap();
}

type WsBrowser = halley_tests::browser::Browser;

/// Item 6: the hash minted by a JWT login authorizes only until the token's `exp`; a later token with a
/// longer life keeps it valid that long; a hash the backend stored never expires.
async fn minted_hash_expires_with_the_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let t = server.tenant("minted@example.com").await;
    let cql = Cql::new(&server, &t);
    let secret = format!("{}{}", t.key, t.dev_id);
    let exp = unix_now() + 3;
    let short = hs256(&secret, json!({"user_id": 5, "exp": exp}));
    let b = WsBrowser::connect(&server, t.dev_id, 5, &short, "short").await;
    assert!(b.authorized(), "{}", b.hello);
    let hash = json(&b.hello)["data"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 32);
    let by_hash = WsBrowser::connect(&server, t.dev_id, 5, &hash, "byhash").await;
    assert!(
        by_hash.authorized(),
        "the minted hash logs in while the token is valid"
    );

    // User 6: a short token, then a long one; the hash lives as long as the long one.
    let six = hs256(&secret, json!({"user_id": 6, "exp": exp}));
    let b6 = WsBrowser::connect(&server, t.dev_id, 6, &six, "six").await;
    let hash6 = json(&b6.hello)["data"].as_str().unwrap().to_owned();
    let long6 = hs256(&secret, json!({"user_id": 6, "exp": unix_now() + 3600}));
    let b6b = WsBrowser::connect(&server, t.dev_id, 6, &long6, "six-long").await;
    assert_eq!(pin(&b6b.hello), server_info(true, &hash6), "same hash");

    // User 7 has a hash the backend chose: a JWT login returns it, and it outlives the token.
    ok(&cql
        .one("INSERT INTO users_auth (id, hash) VALUES (7, 'preset7')")
        .await);
    let seven = hs256(&secret, json!({"user_id": 7, "exp": exp}));
    let b7 = WsBrowser::connect(&server, t.dev_id, 7, &seven, "seven").await;
    assert_eq!(pin(&b7.hello), server_info(true, "preset7"));

    until_past(exp).await;
    let late = WsBrowser::connect(&server, t.dev_id, 5, &hash, "late").await;
    assert_eq!(
        pin(&late.hello),
        server_info(false, ""),
        "a hash minted for an expired token must not authorize"
    );
    let late_jwt = WsBrowser::connect(&server, t.dev_id, 5, &short, "late-jwt").await;
    assert!(!late_jwt.authorized());
    let six_late = WsBrowser::connect(&server, t.dev_id, 6, &hash6, "six-late").await;
    assert!(six_late.authorized(), "extended by the longer token");
    let seven_late = WsBrowser::connect(&server, t.dev_id, 7, "preset7", "seven-late").await;
    assert!(
        seven_late.authorized(),
        "the backend's hash does not expire"
    );
    // A new valid token mints a new hash (the expired one is gone for good).
    let fresh = hs256(&secret, json!({"user_id": 5, "exp": unix_now() + 3600}));
    let b2 = WsBrowser::connect(&server, t.dev_id, 5, &fresh, "fresh").await;
    let hash2 = json(&b2.hello)["data"].as_str().unwrap().to_owned();
    assert!(b2.authorized() && hash2.len() == 32 && hash2 != hash);
    // The backend storing a hash for the user makes it permanent.
    ok(&cql
        .one(format!(
            "INSERT INTO users_auth (id, hash) VALUES (5, '{hash2}')"
        ))
        .await);
    let stored = rows(&cql.one("SELECT hash FROM users_auth WHERE id = 5").await);
    assert_eq!(stored, [[hash2.clone()]]);

    for b in [
        b, by_hash, b6, b6b, b7, late, late_jwt, six_late, seven_late, b2,
    ] {
        b.close().await;
    }
    server.stop().await;
}

/// Item 16: `nbf` is honoured with the same leeway as `exp` (none), and must be a number.
async fn jwt_nbf_is_honoured(backend: Backend) {
    let server = TestServer::start(backend).await;
    let t = server.tenant("nbf@example.com").await;
    let secret = format!("{}{}", t.key, t.dev_id);
    let later = unix_now() + 3600;
    let cases = [
        ("nbf in the past", json!(unix_now() - 10), true),
        ("nbf in an hour", json!(unix_now() + 3600), false),
        (
            "nbf as a string",
            json!((unix_now() - 10).to_string()),
            false,
        ),
    ];
    for (what, nbf, authorized) in cases {
        let token = hs256(&secret, json!({"user_id": 5, "exp": later, "nbf": nbf}));
        let b = WsBrowser::connect(&server, t.dev_id, 5, &token, "nbf").await;
        assert_eq!(b.authorized(), authorized, "{what}: {}", b.hello);
        b.close().await;
    }
    // A token valid from a few seconds on: refused before, accepted after.
    let nbf = unix_now() + 2;
    let soon = hs256(&secret, json!({"user_id": 8, "exp": later, "nbf": nbf}));
    let early = WsBrowser::connect(&server, t.dev_id, 8, &soon, "early").await;
    assert_eq!(pin(&early.hello), server_info(false, ""), "before nbf");
    early.close().await;
    until_past(nbf).await;
    let on_time = WsBrowser::connect(&server, t.dev_id, 8, &soon, "on-time").await;
    assert!(on_time.authorized(), "after nbf: {}", on_time.hello);
    on_time.close().await;
    server.stop().await;
}

/// Item 14: at most `[limits] keys_per_tenant` (20) active keys; the 21st is refused with a clear error,
/// through the dashboard API and the library call behind `halley tenant create`; revoking makes room.
async fn keys_per_tenant_are_capped(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (mut b, dev_id, first_key, _) =
        dashboard::Browser::new_tenant(server.http_addr(), "keys@example.com").await;
    for i in 2..=15 {
        let r = b
            .call("POST", "/keys", Some(json!({"name": format!("key {i}")})))
            .await;
        assert_eq!(r.status, 201, "key {i}: {}", r.body);
    }
    // Ten creations at once for the last five places: the count and the insert are one step.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let mut tab = b.clone();
            tokio::spawn(async move {
                let body = json!({"name": format!("racing {i}")});
                tab.call("POST", "/keys", Some(body)).await.status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [201, 201, 201, 201, 201, 409, 409, 409, 409, 409]);
    let r = b
        .call("POST", "/keys", Some(json!({"name": "one too many"})))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (409, "too_many_keys".into()),
        "{}",
        r.body
    );
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("20 active keys") && message.contains("Revoke"),
        "{message}"
    );
    let keys = b.call("GET", "/keys", None).await.json();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 20);
    let err = server
        .ctx()
        .tenants
        .add_key(DevId(dev_id), "from the library")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("at most 20 active keys"), "{err}");

    assert_eq!(
        b.call("DELETE", &format!("/keys/{first_key}"), None)
            .await
            .status,
        204
    );
    let r = b
        .call("POST", "/keys", Some(json!({"name": "after a revoke"})))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    server.stop().await;
}

/// A configured cap applies the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_per_tenant_is_configurable() {
    let server = TestServer::start_with(Backend::Sqlite, |c| c.limits.keys_per_tenant = 2).await;
    let (mut b, _, _, _) =
        dashboard::Browser::new_tenant(server.http_addr(), "two@example.com").await;
    let r = b
        .call("POST", "/keys", Some(json!({"name": "second"})))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = b
        .call("POST", "/keys", Some(json!({"name": "third"})))
        .await;
    assert_eq!((r.status, r.code()), (409, "too_many_keys".into()));
    server.stop().await;
}

/// Item 15: after logout, a copy of the session cookie (and its CSRF token) is refused, also after a
/// restart; the owner's other sessions go on.
async fn logout_ends_the_session_on_the_server(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let (mut b, _, _, _) =
        dashboard::Browser::new_tenant(server.http_addr(), "bye@example.com").await;
    let copy = b.clone();
    let mut other = dashboard::Browser::new(server.http_addr());
    assert_eq!(other.log_in("bye@example.com", PASSWORD).await.status, 200);
    assert_eq!(copy.clone().call("GET", "/me", None).await.status, 200);

    let r = b.call("POST", "/logout", None).await;
    assert_eq!(r.status, 204);
    for (method, path, body) in [
        ("GET", "/me", None),
        ("GET", "/keys", None),
        ("POST", "/keys", Some(json!({"name": "stolen"}))),
    ] {
        let r = copy.clone().call(method, path, body).await;
        assert_eq!(
            (r.status, r.code()),
            (401, "not_logged_in".into()),
            "{method} {path} with the copied cookie: {}",
            r.body
        );
    }
    assert_eq!(other.call("GET", "/me", None).await.status, 200);
    // Logging out again with the copy changes nothing.
    assert_eq!(copy.clone().call("POST", "/logout", None).await.status, 204);

    server.restart().await;
    let mut copy = copy;
    copy.addr = server.http_addr();
    other.addr = server.http_addr();
    assert_eq!(copy.call("GET", "/me", None).await.status, 401);
    assert_eq!(other.call("GET", "/me", None).await.status, 200);
    server.stop().await;
}

on_both_backends!(
    minted_hash_expires_with_the_token,
    jwt_nbf_is_honoured,
    keys_per_tenant_are_capped,
    logout_ends_the_session_on_the_server,
    usage_counters_survive_sigkill,
);

/// Item 17: counts reach the database within `[dashboard] usage_flush_secs`; once there (polled, no
/// timing), a SIGKILL loses nothing and counting goes on after the restart.
async fn usage_counters_survive_sigkill(backend: Backend) {
    let mut server = ServerProcess::start(backend, "[dashboard]\nusage_flush_secs = 1")
        .await
        .unwrap();
    let tenant = server.tenant("usage@example.com").await.unwrap();
    let dev = DevId(tenant.dev_id);
    let storage = halley::app::open_tenants(server.config())
        .await
        .unwrap()
        .storage()
        .clone();
    let stored = || {
        let storage = storage.clone();
        async move {
            let today = halley::usage::day_number(unix_now());
            Ok::<u64, anyhow::Error>(storage.usage_between(dev, today, today).await?)
        }
    };
    let publish = |addr: SocketAddr, n: usize| {
        let (user, key) = (tenant.dev_id.to_string(), tenant.key.clone());
        async move {
            let mut cql = RawMysql::login_at(addr, &user, &key).await;
            for i in 0..n {
                cql.query(&format!(
                    "INSERT INTO pipes_messages (name, event, message) VALUES ('usage', 'e', 'm{i}')"
                ))
                .await
                .assert_ok();
            }
        }
    };
    let reach = |want: u64| {
        eventually(WAIT, move || async move {
            let n = stored().await?;
            anyhow::ensure!(n == want, "usage_daily holds {n}, want {want}");
            Ok(())
        })
    };

    publish(server.cometql_addr(), 7).await;
    reach(7).await.unwrap();
    server.kill_and_restart().await.unwrap();
    assert_eq!(stored().await.unwrap(), 7, "counted before the kill");
    publish(server.cometql_addr(), 3).await;
    reach(10).await.unwrap();
    storage.close().await;
    server.stop().await;
}
