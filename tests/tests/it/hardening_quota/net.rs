//! Quotas count what a write changes, and a refusal costs nothing else: a publish to a pipe already at its
//! length trims as much as it adds, so a tenant at its history quota keeps publishing to a full ring pipe
//! (but not to a pipe that grows); a statement refused by a quota spends none of the publish budget and
//! counts no message; messages to a user who is still draining their queue are queued, so a statement
//! reserves their room before its first row.
//!
//! On main every publish to a history pipe took room for a new row, so the first test fails at its first
//! ring publish; the budget was spent before the quota check, so the second fails when the statement within
//! budget is refused; a draining user's rows took room one at a time, so the third finds two of them queued.

use halley::hub::{ConnInfo, Era, Outbox};
use halley::ids::{ConnId, DevId, UserId};
use halley::storage::QuotaRow;
use halley_tests::browser::{anonymous, subscriber};
use halley_tests::clients::{self, Client, Login};
use halley_tests::cometql::{history, queued};
use halley_tests::frames::next_json;
use halley_tests::limits::{assert_quota, counted_in_tables, no_override, set_quotas};
use halley_tests::mysql_raw::RawMysql;
use halley_tests::{on_both_backends, Backend, Tenant, TestServer};
use serde_json::json;

use super::{insert, msg100};
use halley_tests::dashboard::Browser;

const ROWS: &str = "Quota exceeded: history rows per tenant (limit 5)";

async fn a_full_ring_pipe_keeps_working_at_the_quota(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.history_rows_per_tenant = 5;
        c.limits.history_bytes_per_tenant = 10_000;
    })
    .await;
    let (mut owner, dev_id, _, key) =
        Browser::new_tenant(server.http_addr(), "o@example.com").await;
    let tenant = Tenant {
        dev_id,
        key: key.clone(),
        app_key: String::new(),
    };
    let mut q = RawMysql::login(&server, &tenant).await;
    for (pipe, length) in [("web_ring", 2), ("grow", 100), ("fresh", 100)] {
        q.query(&format!(
            "INSERT INTO pipes_settings (name, length) VALUES ('{pipe}', {length})"
        ))
        .await
        .assert_ok();
    }
    for (pipe, tag) in [
        ("web_ring", "r0"),
        ("web_ring", "r1"),
        ("grow", "g0"),
        ("grow", "g1"),
        ("grow", "g2"),
    ] {
        q.query(&insert(pipe, &msg100(tag))).await.assert_ok();
    }

    // At the rows quota: a pipe that would grow, or a new one, is refused.
    assert_quota(&q.query(&insert("grow", "x")).await, ROWS);
    assert_quota(&q.query(&insert("fresh", "x")).await, ROWS);

    // The full ring pipe keeps working: through the users' real client, ...
    let mut watcher = subscriber(&server, dev_id, "web_ring", 0).await;
    let login = Login::new(server.cometql_port(), dev_id.to_string(), key.clone());
    let resp = clients::run(
        Client::Php,
        &login.request().sql(insert("web_ring", &msg100("r2"))),
    )
    .await
    .expect("php driver");
    resp.connected().expect("php logs in")[0]
        .ok()
        .expect("a write to a full ring pipe adds no row: it fits");
    let got = next_json(&mut watcher).await;
    assert!(got["data"].as_str().unwrap().starts_with("r2"), "{got}");
    // ... a multi-row INSERT (it trims its own first rows too), ...
    q.query(&format!(
        "INSERT INTO pipes_messages (name, event, message) VALUES ('web_ring', 'ev', '{}'), ('web_ring', 'ev', '{}'), ('web_ring', 'ev', '{}')",
        msg100("r3"), msg100("r4"), msg100("r5")
    ))
    .await
    .assert_ok();
    for tag in ["r3", "r4", "r5"] {
        let got = next_json(&mut watcher).await;
        assert!(got["data"].as_str().unwrap().starts_with(tag), "{got}");
    }
    // ... a browser's web_pipe2 ...
    let mut sender = anonymous(&server, dev_id).await;
    sender
        .send_text("web_pipe2\nweb_ring\nev\n*\nfrom a browser")
        .await
        .unwrap();
    assert_eq!(next_json(&mut watcher).await["data"], "from a browser");
    // ... and the dashboard's test message; the dashboard still refuses a message to a growing pipe.
    let test_message =
        |pipe: &str, message: &str| Some(json!({"pipe": pipe, "event": "ev", "message": message}));
    let r = owner
        .call(
            "POST",
            "/test-message",
            test_message("web_ring", "from the dashboard"),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(next_json(&mut watcher).await["data"], "from the dashboard");
    let r = owner
        .call("POST", "/test-message", test_message("grow", "x"))
        .await;
    assert_eq!((r.status, r.code()), (507, "quota_exceeded".into()));
    assert_eq!(
        history(&mut q, "web_ring").await,
        ["from a browser", "from the dashboard"]
    );
    assert_eq!(history(&mut q, "grow").await.len(), 3);

    // At the bytes quota, a ring write may replace an entry by a smaller one, not by a larger one.
    let used = counted_in_tables(&server, dev_id).await;
    assert_eq!(used.history_rows, 5);
    set_quotas(
        &server,
        QuotaRow {
            history_bytes: Some(used.history_bytes),
            ..no_override(dev_id)
        },
    )
    .await;
    let bytes = format!(
        "Quota exceeded: history bytes per tenant (limit {})",
        used.history_bytes
    );
    assert_quota(&q.query(&insert("web_ring", &msg100("big"))).await, &bytes);
    assert_eq!(
        history(&mut q, "web_ring").await,
        ["from a browser", "from the dashboard"],
        "the refused write was rolled back with its trim"
    );
    q.query(&insert("web_ring", "tiny")).await.assert_ok();
    assert_eq!(
        history(&mut q, "web_ring").await,
        ["from the dashboard", "tiny"]
    );
    assert_eq!(next_json(&mut watcher).await["data"], "tiny");
    assert_eq!(
        server.ctx().storage.totals().stored(DevId(dev_id)),
        counted_in_tables(&server, dev_id).await,
        "the running totals are what the tables hold"
    );
    server.stop().await;
}

/// A shorter pipes_settings length trims the pipe at once: its room is free before the next publish.
async fn a_shorter_length_trims_at_once(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.limits.history_rows_per_tenant = 5).await;
    let a = server.tenant("a@example.com").await;
    let mut q = RawMysql::login(&server, &a).await;
    q.query("INSERT INTO pipes_settings (name, length) VALUES ('long', 10), ('other', 10)")
        .await
        .assert_ok();
    for i in 0..5 {
        q.query(&insert("long", &format!("m{i}"))).await.assert_ok();
    }
    assert_quota(&q.query(&insert("other", "x")).await, ROWS);
    q.query("INSERT INTO pipes_settings (name, length) VALUES ('long', 2)")
        .await
        .assert_ok();
    assert_eq!(history(&mut q, "long").await, ["m3", "m4"]);
    assert_eq!(counted_in_tables(&server, a.dev_id).await.history_rows, 2);
    for i in 0..3 {
        q.query(&insert("other", &format!("o{i}")))
            .await
            .assert_ok();
    }
    assert_quota(&q.query(&insert("other", "x")).await, ROWS);
    assert_eq!(
        server.ctx().storage.totals().stored(DevId(a.dev_id)),
        counted_in_tables(&server, a.dev_id).await
    );
    server.stop().await;
}

async fn a_refused_statement_spends_no_budget(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.history_rows_per_tenant = 1;
        c.limits.queued_messages_per_user = 1;
        c.limits.publishes_per_sec = 1;
        c.limits.publish_burst = 10;
    })
    .await;
    let (mut owner, dev_id, _, key) =
        Browser::new_tenant(server.http_addr(), "o@example.com").await;
    let mut q = RawMysql::login(
        &server,
        &Tenant {
            dev_id,
            key,
            app_key: String::new(),
        },
    )
    .await;
    q.query("INSERT INTO pipes_settings (name, length) VALUES ('web_hist', 10)")
        .await
        .assert_ok();
    q.query(&insert("web_hist", "one")).await.assert_ok();
    q.query("INSERT INTO users_messages (id, event, message) VALUES (1, 'ev', 'queued')")
        .await
        .assert_ok();
    let usage = |u: serde_json::Value| (u["messages_today"].clone(), u["rate_limited"].clone());
    let before = usage(owner.call("GET", "/usage", None).await.json());
    assert_eq!(before.0, 2);

    // Eight publishes of the budget are left. Every door is refused by a quota, eleven messages in all.
    let five: Vec<String> = (0..5)
        .map(|i| format!("('web_hist', 'ev', 'h{i}')"))
        .collect();
    assert_quota(
        &q.query(&format!(
            "INSERT INTO pipes_messages (name, event, message) VALUES {}",
            five.join(", ")
        ))
        .await,
        "Quota exceeded: history rows per tenant (limit 1)",
    );
    assert_quota(
        &q.query(
            "INSERT INTO users_messages (id, event, message) VALUES (1, 'ev', 'a'), (1, 'ev', 'b'), (1, 'ev', 'c'), (1, 'ev', 'd')",
        )
        .await,
        "Quota exceeded: queued messages per user (limit 1)",
    );
    let mut sender = anonymous(&server, dev_id).await;
    sender
        .send_text("web_pipe2\nweb_hist\nev\n*\nfrom a browser")
        .await
        .unwrap();
    let frame = next_json(&mut sender).await;
    assert_eq!(
        frame["data"]["error"], "Quota exceeded: history rows per tenant (limit 1)",
        "{frame}"
    );
    let r = owner
        .call(
            "POST",
            "/test-message",
            Some(json!({"pipe": "web_hist", "event": "ev", "message": "x"})),
        )
        .await;
    assert_eq!((r.status, r.code()), (507, "quota_exceeded".into()));
    assert_eq!(
        usage(owner.call("GET", "/usage", None).await.json()),
        before,
        "refused messages are neither counted nor rate limited"
    );

    // The whole budget is still there: eight publishes in one statement pass.
    let eight: Vec<String> = (0..8).map(|i| format!("('live', 'ev', 'l{i}')")).collect();
    q.query(&format!(
        "INSERT INTO pipes_messages (name, event, message) VALUES {}",
        eight.join(", ")
    ))
    .await
    .assert_ok();
    let after = usage(owner.call("GET", "/usage", None).await.json());
    assert_eq!((after.0, after.1), (json!(10), before.1));
    server.stop().await;
}

/// A connection of the user that is still writing out their queue, as the registry sees it between
/// `link_user` and `drained` (the socket's side is not needed: nothing is delivered to it).
fn draining_connection(server: &TestServer, dev_id: u64, user: u64) -> halley::hub::OutboxRx {
    let (outbox, rx) = Outbox::new(
        ConnInfo {
            conn: ConnId(u64::MAX - 1),
            era: Era::Modern,
            user_id: UserId(user),
            uuid: String::new(),
            ip: "127.0.0.1".into(),
            user_agent: String::new(),
            origin: String::new(),
            language: String::new(),
            msg_ids: false,
        },
        16,
    );
    server
        .ctx()
        .hub
        .registry()
        .link_user(DevId(dev_id), UserId(user), outbox, || ())
        .expect("link");
    rx
}

async fn a_draining_users_messages_take_statement_room(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.limits.queued_messages_per_user = 2).await;
    let a = server.tenant("a@example.com").await;
    let mut q = RawMysql::login(&server, &a).await;
    let _rx = draining_connection(&server, a.dev_id, 7);
    let registry = server.ctx().hub.registry();
    assert!(registry.user_online(DevId(a.dev_id), UserId(7)));
    assert!(!registry.user_ready(DevId(a.dev_id), UserId(7)));
    assert_quota(
        &q.query(
            "INSERT INTO users_messages (id, event, message) VALUES (7, 'ev', 'a'), (7, 'ev', 'b'), (7, 'ev', 'c')",
        )
        .await,
        "Quota exceeded: queued messages per user (limit 2)",
    );
    assert_eq!(queued(&mut q, 7).await, 0, "no row of the statement queued");
    q.query(
        "INSERT INTO users_messages (id, event, message) VALUES (7, 'ev', 'a'), (7, 'ev', 'b')",
    )
    .await
    .assert_ok();
    assert_eq!(queued(&mut q, 7).await, 2);
    registry.unlink_user(DevId(a.dev_id), UserId(7), ConnId(u64::MAX - 1), || ());
    server.stop().await;
}

on_both_backends!(
    a_full_ring_pipe_keeps_working_at_the_quota,
    a_shorter_length_trims_at_once,
    a_refused_statement_spends_no_budget,
    a_draining_users_messages_take_statement_room,
);
