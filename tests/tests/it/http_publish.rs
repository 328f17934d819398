//! The native HTTP publish API (docs/http-api.md), driven by the real `curl` against the real server: a
//! publish reaches a WebSocket subscriber, a batch, a history pipe's position, private messages to an
//! online and an offline user, every refusal with its status (401, 400, 413, 429 with Retry-After, 404,
//! 405), isolation between tenants, and the documentation's curl examples run as written.

use halley::ids::DevId;
use halley_tests::browser::{subscriber, Browser};
use halley_tests::cometql::{rows, strs, Cql};
use halley_tests::curl::{curl, post_as, publish, to_users, url, WAIT};
use halley_tests::frames::{next_json, next_message};
use halley_tests::{on_both_backends, Backend, TestServer};
use serde_json::{json, Value};

async fn publish_reaches_subscribers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let t = server.tenant("http-pub@example.com").await;
    let mut chat = subscriber(&server, t.dev_id, "chat", 0).await;
    let mut news = subscriber(&server, t.dev_id, "news", 0).await;

    let a = publish(
        &server,
        &t,
        &json!({"pipe": "chat", "event": "msg", "message": "hi \"there\""}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({"delivered": 1}));
    assert!(a
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let frame = next_json(&mut chat).await;
    assert_eq!(
        (&frame["pipe"], &frame["event"], &frame["data"]),
        (&json!("chat"), &json!("msg"), &json!("hi \"there\"")),
        "{frame}"
    );

    // Any JSON value is carried as its text; a batch is answered message by message.
    let a = publish(
        &server,
        &t,
        &json!({"messages": [
            {"pipe": "chat", "event": "e1", "message": {"n": 1}},
            {"pipe": "news", "event": "e2", "message": "two"},
            {"pipe": "nobody_here", "event": "", "message": "three"},
        ]}),
    )
    .await;
    assert_eq!(
        a.body,
        json!({"messages": [{"delivered": 1}, {"delivered": 1}, {"delivered": 0}]})
    );
    assert_eq!(next_message(&mut chat, "chat").await, r#"{"n":1}"#);
    assert_eq!(next_message(&mut news, "news").await, "two");

    // A pipe that keeps history numbers its messages: the answer says where each went.
    let cql = Cql::new(&server, &t);
    cql.run(["INSERT INTO pipes_settings (name, length) VALUES ('hist', 10)"])
        .await;
    let first = publish(
        &server,
        &t,
        &json!({"pipe": "hist", "event": "e", "message": "1"}),
    )
    .await;
    let second = publish(
        &server,
        &t,
        &json!({"messages": [
            {"pipe": "hist", "event": "e", "message": "2"},
            {"pipe": "hist", "event": "e", "message": "3"},
        ]}),
    )
    .await;
    let epoch = first.body["position"]["epoch"]
        .as_str()
        .expect("an epoch")
        .to_owned();
    assert!(!epoch.is_empty());
    assert_eq!(
        first.body,
        json!({"delivered": 0, "position": {"epoch": epoch, "offset": 1}})
    );
    assert_eq!(
        second.body,
        json!({"messages": [
            {"delivered": 0, "position": {"epoch": epoch, "offset": 2}},
            {"delivered": 0, "position": {"epoch": epoch, "offset": 3}},
        ]})
    );
    // What was published over HTTP is the pipe's history, as CometQL reads it.
    let r = cql
        .run(["SELECT message FROM pipes_messages WHERE name = 'hist'"])
        .await;
    assert_eq!(strs(&rows(&r[0])), [["1"], ["2"], ["3"]]);
    server.stop().await;
}

async fn users_messages_online_and_offline(backend: Backend) {
    let server = TestServer::start(backend).await;
    let t = server.tenant("http-users@example.com").await;
    let cql = Cql::new(&server, &t);
    cql.run([
        "INSERT INTO users_auth (id, hash) VALUES (61, 'h61')",
        "INSERT INTO users_auth (id, hash) VALUES (62, 'h62')",
    ])
    .await;
    let mut online = Browser::connect(&server, t.dev_id, 61, "h61", "online").await;
    assert!(online.authorized());
    // Once a command is answered the connection's queue drain is over: it is ready for live messages.
    online.sync().await;

    let a = to_users(
        &server,
        &t,
        &json!({"user_id": 61, "event": "ev", "message": "live"}),
    )
    .await;
    assert_eq!(
        a.body,
        json!({"delivered": 1, "queued": false}),
        "{}",
        a.head
    );
    assert_eq!(
        online.recv().await,
        r#"{"data":"live","event":"ev","pipe":"msg"}"#
    );

    // 62 is offline: queued, and delivered on connect. A numeric string names the user too.
    let a = to_users(
        &server,
        &t,
        &json!({"messages": [
            {"user_id": "62", "event": "e1", "message": "queued one"},
            {"user_id": 62, "event": "e2", "message": {"k": "v"}},
        ]}),
    )
    .await;
    assert_eq!(
        a.body,
        json!({"messages": [{"delivered": 0, "queued": true}, {"delivered": 0, "queued": true}]})
    );
    let mut later = Browser::connect(&server, t.dev_id, 62, "h62", "later").await;
    let first: Value = serde_json::from_str(&later.recv().await).unwrap();
    let second: Value = serde_json::from_str(&later.recv().await).unwrap();
    assert_eq!(
        (&first["event"], &first["data"]),
        (&json!("e1"), &json!("queued one"))
    );
    assert_eq!(
        (&second["event"], &second["data"]),
        (&json!("e2"), &json!(r#"{"k":"v"}"#))
    );
    online.expect_nothing().await;

    // The CometQL rules: ids are non-negative integers, events are names.
    for (bad, code) in [
        (
            json!({"user_id": -1, "event": "e", "message": "x"}),
            "invalid",
        ),
        (
            json!({"user_id": "x", "event": "e", "message": "x"}),
            "invalid",
        ),
        (
            json!({"user_id": [1], "event": "e", "message": "x"}),
            "bad_request",
        ),
        (
            json!({"user_id": 1, "event": "e v", "message": "x"}),
            "invalid",
        ),
    ] {
        to_users(&server, &t, &bad).await.error(400, code);
    }
    server.stop().await;
}

async fn keys_are_checked_and_tenants_isolated(backend: Backend) {
    let server = TestServer::start(backend).await;
    let a = server.tenant("http-a@example.com").await;
    let b = server.tenant("http-b@example.com").await;
    let mut a_chat = Browser::connect(&server, a.dev_id, 0, "", "a-chat").await;
    a_chat.subscribe(&["chat"]).await;
    let msg = json!({"pipe": "chat", "event": "e", "message": "x"});

    // No key, a wrong key, another tenant's key, an unknown tenant, no tenant: one answer.
    let url = url(&server, "/api/v1/publish");
    let body = msg.to_string();
    let no_key = curl(
        &["-X", "POST", &url, "-H", &format!("X-Dev-Id: {}", a.dev_id)],
        Some(body.as_bytes()),
    )
    .await;
    no_key.error(401, "unauthorized");
    assert_eq!(
        no_key.header("www-authenticate"),
        Some("Bearer realm=\"halley\"")
    );
    let basic = curl(
        &["-X", "POST", &url, "-u", &format!("{}:{}", a.dev_id, a.key)],
        Some(body.as_bytes()),
    )
    .await;
    basic.error(401, "unauthorized");
    let unauthorized = [
        post_as(&server, "/api/v1/publish", a.dev_id, "not-the-key", &msg).await,
        post_as(&server, "/api/v1/publish", a.dev_id, &b.key, &msg).await,
        post_as(&server, "/api/v1/publish", 999_999, &a.key, &msg).await,
        post_as(&server, "/api/v1/users_messages", a.dev_id, "", &msg).await,
        curl(
            &[
                "-X",
                "POST",
                &url,
                "-H",
                &format!("Authorization: Bearer {}", a.key),
            ],
            Some(body.as_bytes()),
        )
        .await,
    ];
    for answer in &unauthorized {
        answer.error(401, "unauthorized");
    }

    // B publishes to its own "chat": A's subscriber of "chat" never sees it.
    let answer = publish(&server, &b, &msg).await;
    assert_eq!(answer.body, json!({"delivered": 0}));
    a_chat.expect_nothing().await;

    // A second key works; once revoked it is refused, and the first still works.
    let id = DevId(a.dev_id);
    let (info, second) = server.ctx().tenants.create_key(id, "http").await.unwrap();
    let ok = post_as(&server, "/api/v1/publish", a.dev_id, &second, &msg).await;
    assert_eq!(ok.body, json!({"delivered": 1}));
    assert!(a_chat.recv().await.contains(r#""data":"x""#));
    server
        .ctx()
        .tenants
        .revoke_key(id, info.id, false)
        .await
        .unwrap();
    post_as(&server, "/api/v1/publish", a.dev_id, &second, &msg)
        .await
        .error(401, "unauthorized");
    assert_eq!(
        publish(&server, &a, &msg).await.body,
        json!({"delivered": 1})
    );
    server.stop().await;
}

async fn repeated_failures_block_the_address(backend: Backend) {
    let server =
        TestServer::start_with(backend, |c| c.limits.failed_logins_per_ip_per_min = 2).await;
    let t = server.tenant("http-block@example.com").await;
    let msg = json!({"pipe": "chat", "event": "e", "message": "x"});
    assert_eq!(publish(&server, &t, &msg).await.status, 200);
    for _ in 0..3 {
        post_as(&server, "/api/v1/publish", t.dev_id, "wrong", &msg)
            .await
            .error(401, "unauthorized");
    }
    // Past the limit even the right key is not checked: the same answer, no oracle.
    publish(&server, &t, &msg).await.error(401, "unauthorized");
    server.stop().await;
}

async fn malformed_and_oversized_requests(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.http_api.max_body_bytes = 4096;
        c.http_api.max_batch_messages = 3;
        c.websocket.max_message_bytes = 1024;
    })
    .await;
    let t = server.tenant("http-bad@example.com").await;
    let mut chat = Browser::connect(&server, t.dev_id, 0, "", "bad-chat").await;
    chat.subscribe(&["chat"]).await;
    let auth = format!("Authorization: Bearer {}", t.key);
    let dev = format!("X-Dev-Id: {}", t.dev_id);
    let publish_url = url(&server, "/api/v1/publish");
    let raw = |body: &'static str| {
        let args = [
            "-X",
            "POST",
            publish_url.as_str(),
            "-H",
            auth.as_str(),
            "-H",
            dev.as_str(),
        ];
        async move { curl(&args, Some(body.as_bytes())).await }
    };
    raw("not json").await.error(400, "bad_request");
    raw("").await.error(400, "bad_request");
    raw("[1]").await.error(400, "bad_request");
    raw(r#"{"pipe":"chat","event":"e"}"#)
        .await
        .error(400, "bad_request");
    raw(r#"{"pipe":"chat","event":"e","message":"x","extra":1}"#)
        .await
        .error(400, "bad_request");
    raw(r#"{"pipe":"chat","event":"e","message":null}"#)
        .await
        .error(400, "bad_request");
    raw(r#"{"messages":{}}"#).await.error(400, "bad_request");

    let m = |pipe: &str, event: &str, message: &str| json!({"pipe": pipe, "event": event, "message": message});
    // The CometQL name and size rules, with CometQL's words.
    let cases = [
        (
            m("a b", "e", "x"),
            "invalid",
            "The channel name can contain only the characters A-Za-z0-9_-",
        ),
        (m("ab", "e", "x"), "too_short", "Channel name is too short"),
        (
            m(&"p".repeat(65), "e", "x"),
            "too_long",
            "Channel name is too long",
        ),
        (
            m("chat", &"e".repeat(65), "x"),
            "too_long",
            "Channel event_name is too long",
        ),
        (
            m("chat", "e v", "x"),
            "invalid",
            "The channel name can contain only the characters A-Za-z0-9_-",
        ),
        (
            m("chat", "e", &"x".repeat(1025)),
            "too_long",
            "Data is too long",
        ),
    ];
    for (body, code, message) in cases {
        assert_eq!(
            publish(&server, &t, &body).await.error(400, code),
            message,
            "{body}"
        );
    }
    // A batch with one bad message publishes none of them; too many or none is refused whole.
    let one_bad = json!({"messages": [m("chat", "e", "fine"), m("a b", "e", "x")]});
    publish(&server, &t, &one_bad).await.error(400, "invalid");
    let four = json!({"messages": [m("chat", "e", "1"), m("chat", "e", "2"), m("chat", "e", "3"), m("chat", "e", "4")]});
    publish(&server, &t, &four).await.error(400, "batch_size");
    publish(&server, &t, &json!({"messages": []}))
        .await
        .error(400, "batch_size");
    chat.expect_nothing().await;

    // A body past max_body_bytes: 413, whether or not its length was announced.
    let big = json!({"pipe": "chat", "event": "e", "message": "x".repeat(5000)}).to_string();
    let args = [
        "-X",
        "POST",
        publish_url.as_str(),
        "-H",
        auth.as_str(),
        "-H",
        dev.as_str(),
    ];
    curl(&args, Some(big.as_bytes()))
        .await
        .error(413, "too_large");
    let chunked = [&args[..], &["-H", "Transfer-Encoding: chunked"]].concat();
    curl(&chunked, Some(big.as_bytes()))
        .await
        .error(413, "too_large");

    // Wrong method, unknown endpoint.
    curl(
        &[
            publish_url.as_str(),
            "-H",
            auth.as_str(),
            "-H",
            dev.as_str(),
        ],
        None,
    )
    .await
    .error(405, "method_not_allowed");
    let nowhere = url(&server, "/api/v1/nowhere");
    curl(&["-X", "POST", nowhere.as_str()], Some(b"{}"))
        .await
        .error(404, "not_found");
    // What passed is still published.
    let fine = publish(&server, &t, &m("chat", "e", "after")).await;
    assert_eq!(fine.body, json!({"delivered": 1}));
    assert!(chat.recv().await.contains(r#""data":"after""#));
    server.stop().await;
}

async fn budget_is_shared_and_refusals_say_when(backend: Backend) {
    const BURST: u32 = 3;
    let server = TestServer::start_with(backend, |c| {
        c.limits.publishes_per_sec = 1;
        c.limits.publish_burst = BURST;
    })
    .await;
    let t = server.tenant("http-budget@example.com").await;
    let m = json!({"pipe": "chat", "event": "e", "message": "x"});
    // More than the burst in one batch can never fit: refused whole, with no time to wait for.
    let too_many = json!({"messages": [m, m, m, m]});
    let a = publish(&server, &t, &too_many).await;
    a.error(429, "rate_limited");
    assert_eq!(a.header("retry-after"), None);
    // Spend the budget (one publish a second comes back: a slow machine may need a few more).
    let mut refused = None;
    for _ in 0..BURST + 5 {
        let a = publish(&server, &t, &m).await;
        if a.status != 200 {
            refused = Some(a);
            break;
        }
    }
    let a = refused.expect("the budget ran out");
    let message = a.error(429, "rate_limited");
    assert!(
        message.starts_with("Rate limit exceeded: publishes per tenant"),
        "{message}"
    );
    let secs: u64 = a
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(
        (1..=1).contains(&secs),
        "retry after {secs} s at 1 publish/s"
    );
    // The same budget: users_messages are refused too, right away.
    to_users(
        &server,
        &t,
        &json!({"user_id": 1, "event": "e", "message": "x"}),
    )
    .await
    .error(429, "rate_limited");
    server.stop().await;
}

async fn storage_quotas_answer_507(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.history_rows_per_tenant = 2;
        c.limits.queued_messages_per_user = 1;
    })
    .await;
    let t = server.tenant("http-quota@example.com").await;
    Cql::new(&server, &t)
        .run(["INSERT INTO pipes_settings (name, length) VALUES ('hist', 10)"])
        .await;
    let m = |text: &str| json!({"pipe": "hist", "event": "e", "message": text});
    assert_eq!(publish(&server, &t, &m("1")).await.status, 200);
    assert_eq!(publish(&server, &t, &m("2")).await.status, 200);
    let full = publish(&server, &t, &m("3")).await;
    assert!(
        full.error(507, "quota_exceeded")
            .starts_with("Quota exceeded"),
        "{}",
        full.body
    );
    // A batch that does not fit is refused whole.
    let other = json!({"messages": [{"pipe": "chat", "event": "e", "message": "x"}, m("4")]});
    publish(&server, &t, &other)
        .await
        .error(507, "quota_exceeded");

    let u = json!({"user_id": 5, "event": "e", "message": "x"});
    assert_eq!(
        to_users(&server, &t, &u).await.body,
        json!({"delivered": 0, "queued": true})
    );
    to_users(&server, &t, &u).await.error(507, "quota_exceeded");
    server.stop().await;
}

/// docs/http-api.md: every ```sh block runs as written (with HALLEY, DEV_ID and KEY set as the page says)
/// and prints what the ```json block after it shows (an epoch, which is random, aside).
async fn the_docs_examples_run_as_written(backend: Backend) {
    let server = TestServer::start(backend).await;
    let t = server.tenant("http-docs@example.com").await;
    let cql = Cql::new(&server, &t);
    cql.run(["INSERT INTO pipes_settings (name, length) VALUES ('orders', 100)"])
        .await;
    let mut chat = subscriber(&server, t.dev_id, "chat", 0).await;
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/http-api.md"))
        .expect("docs/http-api.md");
    let examples = examples(&doc);
    assert!(examples.len() >= 5, "the page shows its examples");
    for (script, expected) in examples {
        let out = tokio::process::Command::new("sh")
            .args(["-c", &script])
            .env("HALLEY", format!("http://{}", server.http_addr()))
            .env("DEV_ID", t.dev_id.to_string())
            .env("KEY", &t.key)
            .output();
        let out = tokio::time::timeout(WAIT, out).await.unwrap().unwrap();
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut got: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!("{script} printed {}", String::from_utf8_lossy(&out.stdout))
        });
        let mut want: Value = serde_json::from_str(&expected).expect("the page's JSON");
        for v in [&mut got, &mut want] {
            blank_epochs(v);
        }
        assert_eq!(got, want, "{script}");
    }
    // The examples that published to "chat" reached its subscriber.
    assert!(!next_message(&mut chat, "chat").await.is_empty());
    server.stop().await;
}

/// (script, expected output) of each ```sh block followed by a ```json block.
fn examples(doc: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if let Some(lang) = line.strip_prefix("```") {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            blocks.push((lang.trim().to_owned(), body.join("\n")));
        }
    }
    blocks
        .windows(2)
        .filter(|w| w[0].0 == "sh" && w[1].0 == "json")
        .map(|w| (w[0].1.clone(), w[1].1.clone()))
        .collect()
}

fn blank_epochs(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, v) in o.iter_mut() {
                if k == "epoch" {
                    *v = json!("…");
                } else {
                    blank_epochs(v);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(blank_epochs),
        _ => {}
    }
}

on_both_backends!(
    publish_reaches_subscribers,
    users_messages_online_and_offline,
    keys_are_checked_and_tenants_isolated,
    repeated_failures_block_the_address,
    malformed_and_oversized_requests,
    budget_is_shared_and_refusals_say_when,
    storage_quotas_answer_507,
    the_docs_examples_run_as_written,
);
