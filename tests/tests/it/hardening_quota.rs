//! Issue 11, item 10: storage quotas per tenant. History (bytes and rows), queued private messages (per user
//! and per tenant), users_data rows and revoked_tokens rows are bounded; the write that would pass a quota
//! gets `ERROR 1114 Quota exceeded: <which> (limit N)` and changes nothing (a multi-row INSERT included);
//! deletes, trims and expiry free room; a per-tenant override (stored by `halley tenant limits`) raises one
//! tenant's quota; another tenant is unaffected; the totals are right after a restart; the dashboard's
//! usage shows what is in use (`hardening_quota/operator.rs`, with the command line). Every test runs on
//! SQLite and PostgreSQL.
//!
//! On main none of these writes is refused, so each test fails there at its first expected refusal.

use halley::ids::{DevId, UserId};
use halley::storage::{QuotaRow, StoredUsage};
use halley_tests::browser::{anonymous, browser, subscriber};
use halley_tests::clients::{self, Client, Login};
use halley_tests::cometql::{history, insert_sql, queued};
use halley_tests::frames::next_json;
use halley_tests::limits::{assert_quota, counted_in_tables, no_override, set_quotas};
use halley_tests::mysql_raw::{RawMysql, Reply};
use halley_tests::wait::{eventually, WAIT};
use halley_tests::{on_both_backends, Backend, TestServer};

mod net;
mod operator;

/// A publish on `pipe` with the event every quota test uses.
fn insert(pipe: &str, message: &str) -> String {
    insert_sql(pipe, "ev", message)
}

/// A 100-byte message whose first characters tell it apart.
fn msg100(tag: &str) -> String {
    format!("{tag:-<100}")
}

const HISTORY_BYTES: &str = "Quota exceeded: history bytes per tenant (limit 1000)";

async fn history_bytes_quota(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.history_bytes_per_tenant = 1000;
        c.limits.history_rows_per_tenant = 1000;
    })
    .await;
    let a = server.tenant("a@example.com").await;
    let b = server.tenant("b@example.com").await;
    let mut qa = RawMysql::login(&server, &a).await;
    for (pipe, length) in [("hist", 100), ("short", 2), ("web_hist", 100)] {
        qa.query(&format!(
            "INSERT INTO pipes_settings (name, length) VALUES ('{pipe}', {length})"
        ))
        .await
        .assert_ok();
    }

    // A pipe that keeps two entries holds at most 200 bytes however much goes through it: trims free room.
    for i in 0..20 {
        qa.query(&insert("short", &msg100(&format!("s{i}"))))
            .await
            .assert_ok();
    }
    // Up to the quota exactly: 200 + 8 x 100 bytes.
    for i in 0..8 {
        qa.query(&insert("hist", &msg100(&format!("h{i}"))))
            .await
            .assert_ok();
    }

    // The next write is refused, as the users' real client sees it.
    let login = Login::new(server.cometql_port(), a.dev_id.to_string(), a.key.clone());
    let resp = clients::run(
        Client::Php,
        &login.request().sql(insert("hist", &msg100("over"))),
    )
    .await
    .expect("php driver");
    let e = resp.connected().expect("php logs in")[0]
        .error()
        .expect("refused")
        .clone();
    assert_eq!((e.code, e.message.as_str()), (1114, HISTORY_BYTES));
    assert_eq!(history(&mut qa, "hist").await.len(), 8, "nothing stored");
    // An empty message adds no bytes: it still fits (the rows quota bounds those).
    qa.query(&insert("hist", "")).await.assert_ok();
    assert_eq!(history(&mut qa, "hist").await.len(), 9);
    // A browser's web_pipe2 into a pipe that keeps history is refused with an error frame naming the
    // quota, and its connection stays open.
    let mut sender = anonymous(&server, a.dev_id).await;
    sender
        .send_text("web_pipe2\nweb_hist\nev\n*\nfrom a browser")
        .await
        .unwrap();
    let frame = next_json(&mut sender).await;
    assert_eq!(frame["event"], "error", "{frame}");
    assert_eq!(frame["data"]["error"], HISTORY_BYTES, "{frame}");
    assert_eq!(history(&mut qa, "web_hist").await.len(), 0);
    sender.send_text("pipe_count\nweb_hist\nm1").await.unwrap();
    let count = next_json(&mut sender).await;
    assert_eq!(
        count["data"]["user_in_pipe"], 0,
        "the connection still answers: {count}"
    );
    // A pipe without history only delivers: no quota applies.
    let mut live = subscriber(&server, a.dev_id, "live", 0).await;
    qa.query(&insert("live", "still delivered"))
        .await
        .assert_ok();
    assert_eq!(next_json(&mut live).await["data"], "still delivered");

    // Deleting one entry frees room for one: a two-row INSERT is refused whole, then one row passes.
    let ids = qa
        .query("SELECT id FROM pipes_messages WHERE name = 'hist'")
        .await;
    let first = ids.rows()[0][0].clone();
    qa.query(&format!("DELETE FROM pipes_messages WHERE id = '{first}'"))
        .await
        .assert_ok();
    let mut watcher = subscriber(&server, a.dev_id, "hist", 0).await;
    let two = format!(
        "INSERT INTO pipes_messages (name, event, message) VALUES ('hist', 'ev', '{}'), ('hist', 'ev', '{}')",
        msg100("two-a"),
        msg100("two-b")
    );
    assert_quota(&qa.query(&two).await, HISTORY_BYTES);
    assert_eq!(
        history(&mut qa, "hist").await.len(),
        8,
        "no row of the statement stored"
    );
    qa.query(&insert("hist", &msg100("fits"))).await.assert_ok();
    let got = next_json(&mut watcher).await;
    assert!(
        got["data"].as_str().unwrap().starts_with("fits"),
        "no row of the refused statement was published before: {got}"
    );

    // Another tenant has its own quota, whole.
    let mut qb = RawMysql::login(&server, &b).await;
    qb.query("INSERT INTO pipes_settings (name, length) VALUES ('hist', 100)")
        .await
        .assert_ok();
    for i in 0..10 {
        qb.query(&insert("hist", &msg100(&format!("b{i}"))))
            .await
            .assert_ok();
    }
    assert_quota(&qb.query(&insert("hist", "x")).await, HISTORY_BYTES);

    // A's override raises A's quota only.
    set_quotas(
        &server,
        QuotaRow {
            history_bytes: Some(1500),
            ..no_override(a.dev_id)
        },
    )
    .await;
    for i in 0..5 {
        qa.query(&insert("hist", &msg100(&format!("more{i}"))))
            .await
            .assert_ok();
    }
    assert_quota(
        &qa.query(&insert("hist", "x")).await,
        "Quota exceeded: history bytes per tenant (limit 1500)",
    );
    assert_quota(&qb.query(&insert("hist", "x")).await, HISTORY_BYTES);

    // Clearing a pipe, and deleting a pipe's settings (which clears its history), free their room.
    qa.query("DELETE FROM pipes_messages WHERE name = 'hist'")
        .await
        .assert_ok();
    qa.query("DELETE FROM pipes_settings WHERE name = 'short'")
        .await
        .assert_ok();
    for i in 0..15 {
        qa.query(&insert("hist", &msg100(&format!("again{i}"))))
            .await
            .assert_ok();
    }
    assert_eq!(history(&mut qa, "hist").await.len(), 15);
    server.stop().await;
}

/// Several sessions of one tenant send multi-row INSERTs at once near the quota: each statement is stored
/// whole or not at all, and together they never pass the quota (each reserves room for all its rows
/// before its first is stored, and its rows take their room from that reservation).
async fn concurrent_statements_stay_within_the_quota(backend: Backend) {
    const SESSIONS: usize = 8;
    let server = TestServer::start_with(backend, |c| c.limits.history_rows_per_tenant = 10).await;
    let a = server.tenant("a@example.com").await;
    let mut setup = RawMysql::login(&server, &a).await;
    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        setup
            .query(&format!(
                "INSERT INTO pipes_settings (name, length) VALUES ('pipe{i}', 100)"
            ))
            .await
            .assert_ok();
        sessions.push(RawMysql::login(&server, &a).await);
    }
    let replies =
        futures_util::future::join_all(sessions.iter_mut().enumerate().map(|(i, q)| async move {
            q.query(&format!(
                "INSERT INTO pipes_messages (name, event, message) VALUES \
                 ('pipe{i}', 'e', '1'), ('pipe{i}', 'e', '2'), ('pipe{i}', 'e', '3')"
            ))
            .await
        }))
        .await;
    let mut accepted = 0;
    for (i, reply) in replies.iter().enumerate() {
        let stored = history(&mut setup, &format!("pipe{i}")).await.len();
        if matches!(reply, Reply::Ok { .. }) {
            accepted += 1;
            assert_eq!(
                stored, 3,
                "statement {i} was accepted: all its rows are stored"
            );
        } else {
            assert_quota(reply, "Quota exceeded: history rows per tenant (limit 10)");
            assert_eq!(
                stored, 0,
                "statement {i} was refused: none of its rows is stored"
            );
        }
    }
    assert_eq!(
        accepted, 3,
        "three statements of three rows fit in ten rows"
    );
    server.stop().await;
}

/// The red team's attack (many history pipes filled with 60 KB messages) stops at the quota; after a mix
/// of writes, trims, deletes and purges the server's running totals equal what the tables hold, and they
/// are the same after a restart.
async fn the_attack_stops_at_the_quota_and_totals_match_the_tables(backend: Backend) {
    const QUOTA: i64 = 1024 * 1024;
    let mut server =
        TestServer::start_with(backend, |c| c.limits.history_bytes_per_tenant = QUOTA).await;
    let a = server.tenant("a@example.com").await;
    let mut qa = RawMysql::login(&server, &a).await;
    let settings: Vec<String> = (0..20).map(|i| format!("('pipe{i}', 1000)")).collect();
    qa.query(&format!(
        "INSERT INTO pipes_settings (name, length) VALUES {}",
        settings.join(", ")
    ))
    .await
    .assert_ok();
    let big = "x".repeat(60_000);
    let mut accepted = 0;
    for i in 0..40 {
        match qa.query(&insert(&format!("pipe{}", i % 20), &big)).await {
            Reply::Ok { .. } => {
                assert_eq!(accepted, i, "nothing passes after the first refusal");
                accepted += 1;
            }
            refused => assert_quota(
                &refused,
                "Quota exceeded: history bytes per tenant (limit 1048576)",
            ),
        }
    }
    assert_eq!(accepted, 17, "17 x 60,000 bytes fit in 1 MiB, 18 do not");
    let stored = counted_in_tables(&server, a.dev_id).await;
    assert_eq!(
        (stored.history_rows, stored.history_bytes),
        (17, 17 * 60_000)
    );

    // A mix of everything that adds or removes rows.
    let ids = qa
        .query("SELECT id FROM pipes_messages WHERE name = 'pipe1'")
        .await;
    let one = ids.rows()[0][0].clone();
    for sql in [
        format!("DELETE FROM pipes_messages WHERE id = '{one}'"),
        "INSERT INTO pipes_settings (name, length) VALUES ('pipe0', 1)".into(),
        insert("pipe0", "trims pipe0 to this one"),
        "DELETE FROM pipes_settings WHERE name = 'pipe3'".into(),
        insert("trust_room", "kept for a while"),
        "INSERT INTO users_messages (id, event, message) VALUES (1, 'e', 'a'), (1, 'e', 'b'), (2, 'e', 'c')"
            .into(),
        "DELETE FROM users_messages WHERE id = 2".into(),
        "INSERT INTO users_data (id, data) VALUES (1, 'a'), (2, 'b'), (1, 'again')".into(),
        "DELETE FROM users_data WHERE id = 2".into(),
        "INSERT INTO revoked_tokens (token) VALUES ('t1'), ('t2'), ('t1')".into(),
        "DELETE FROM revoked_tokens WHERE token = 't2'".into(),
    ] {
        qa.query(&sql).await.assert_ok();
    }
    let later = halley::tenant::unix_now() + 3600;
    server
        .ctx()
        .storage
        .purge_trust_history(later)
        .await
        .unwrap();
    let in_tables = counted_in_tables(&server, a.dev_id).await;
    assert_eq!(
        in_tables,
        StoredUsage {
            history_rows: 15,
            history_bytes: 14 * 60_000 + "trims pipe0 to this one".len() as i64,
            queued_messages: 2,
            users_data: 1,
            revoked_tokens: 1,
        }
    );
    let totals = || server.ctx().storage.totals().stored(DevId(a.dev_id));
    assert_eq!(
        totals(),
        in_tables,
        "the running totals are what the tables hold"
    );
    drop(qa);
    server.restart().await;
    let totals = server.ctx().storage.totals().stored(DevId(a.dev_id));
    assert_eq!(totals, in_tables, "counted again at start: the same");
    server.stop().await;
}

async fn history_rows_quota_survives_a_restart(backend: Backend) {
    let mut server =
        TestServer::start_with(backend, |c| c.limits.history_rows_per_tenant = 5).await;
    let a = server.tenant("a@example.com").await;
    let mut qa = RawMysql::login(&server, &a).await;
    qa.query("INSERT INTO pipes_settings (name, length) VALUES ('rows', 100)")
        .await
        .assert_ok();
    qa.query(
        "INSERT INTO pipes_messages (name, event, message) VALUES ('rows', 'e', '1'), ('rows', 'e', '2'), ('rows', 'e', '3')",
    )
    .await
    .assert_ok();
    // A `trust_` pipe keeps history without settings: it counts too.
    qa.query(&insert("trust_room", "4")).await.assert_ok();
    qa.query(&insert("rows", "5")).await.assert_ok();
    let rows = "Quota exceeded: history rows per tenant (limit 5)";
    assert_quota(&qa.query(&insert("rows", "6")).await, rows);

    // The totals are counted again from the tables at start: still full after a restart.
    drop(qa);
    server.restart().await;
    let mut qa = RawMysql::login(&server, &a).await;
    assert_quota(&qa.query(&insert("trust_room", "6")).await, rows);
    qa.query("DELETE FROM pipes_messages WHERE name = 'trust_room'")
        .await
        .assert_ok();
    qa.query(&insert("rows", "6")).await.assert_ok();
    assert_quota(&qa.query(&insert("rows", "7")).await, rows);
    server.stop().await;
}

async fn queue_quotas(backend: Backend) {
    let mut server = TestServer::start_with(backend, |c| {
        c.limits.queued_messages_per_user = 3;
        c.limits.queued_messages_per_tenant = 5;
    })
    .await;
    let a = server.tenant("a@example.com").await;
    let b = server.tenant("b@example.com").await;
    let mut qa = RawMysql::login(&server, &a).await;
    let pm = |user: u64, text: &str| {
        format!("INSERT INTO users_messages (id, event, message) VALUES ({user}, 'ev', '{text}')")
    };
    for i in 0..3 {
        qa.query(&pm(1, &format!("one-{i}"))).await.assert_ok();
    }
    let per_user = "Quota exceeded: queued messages per user (limit 3)";
    assert_quota(&qa.query(&pm(1, "one-over")).await, per_user);
    qa.query(&pm(2, "two-0")).await.assert_ok();
    qa.query(&pm(2, "two-1")).await.assert_ok();
    let per_tenant = "Quota exceeded: queued messages per tenant (limit 5)";
    assert_quota(&qa.query(&pm(3, "three-0")).await, per_tenant);
    assert_eq!(queued(&mut qa, 3).await, 0);

    // Another tenant's users have their own queues.
    let mut qb = RawMysql::login(&server, &b).await;
    for i in 0..3 {
        qb.query(&pm(1, &format!("b-{i}"))).await.assert_ok();
    }

    // Still full after a restart (counted again from the table).
    drop((qa, qb));
    server.restart().await;
    let mut qa = RawMysql::login(&server, &a).await;
    assert_quota(&qa.query(&pm(1, "after-restart")).await, per_user);

    // Deleting user 1's queue frees three places; a statement that would put four in user 3's queue is
    // refused whole; three fit.
    qa.query("DELETE FROM users_messages WHERE id = 1")
        .await
        .assert_ok();
    let four = "INSERT INTO users_messages (id, event, message) VALUES \
                (3, 'ev', 'a'), (3, 'ev', 'b'), (3, 'ev', 'c'), (3, 'ev', 'd')";
    assert_quota(&qa.query(four).await, per_user);
    assert_eq!(
        queued(&mut qa, 3).await,
        0,
        "no row of the statement queued"
    );
    qa.query(
        "INSERT INTO users_messages (id, event, message) VALUES (3, 'ev', 'a'), (3, 'ev', 'b'), (3, 'ev', 'c')",
    )
    .await
    .assert_ok();
    assert_eq!(queued(&mut qa, 3).await, 3);
    assert_quota(&qa.query(&pm(4, "x")).await, per_tenant);

    // A per-tenant override raises the tenant's queue.
    set_quotas(
        &server,
        QuotaRow {
            queued_per_tenant: Some(6),
            ..no_override(a.dev_id)
        },
    )
    .await;
    qa.query(&pm(4, "x")).await.assert_ok();
    assert_quota(
        &qa.query(&pm(5, "y")).await,
        "Quota exceeded: queued messages per tenant (limit 6)",
    );
    server.stop().await;
}

/// Room also comes back without a DELETE: a queue drained by its user's connect, queued messages expiring
/// and `trust_` history expiring (the purges the server runs every minute, called here directly).
async fn delivery_and_expiry_free_room(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.queued_messages_per_user = 2;
        c.limits.history_rows_per_tenant = 2;
    })
    .await;
    let a = server.tenant("a@example.com").await;
    let mut qa = RawMysql::login(&server, &a).await;
    let pm = |user: u64, text: &str| {
        format!("INSERT INTO users_messages (id, event, message) VALUES ({user}, 'ev', '{text}')")
    };
    let per_user = "Quota exceeded: queued messages per user (limit 2)";
    qa.query("INSERT INTO users_auth (id, hash) VALUES (1, 'hash1')")
        .await
        .assert_ok();
    qa.query(&pm(1, "q1")).await.assert_ok();
    qa.query(&pm(1, "q2")).await.assert_ok();
    assert_quota(&qa.query(&pm(1, "q3")).await, per_user);

    // User 1 connects and receives the queue; once it is written out, the room is back.
    let (mut ws, _) = browser(&server, a.dev_id, 1, "hash1").await;
    for expected in ["q1", "q2"] {
        let m = next_json(&mut ws).await;
        assert_eq!(m["data"], expected, "{m}");
    }
    ws.close().await.unwrap();
    let totals = server.ctx().storage.totals().clone();
    eventually(WAIT, || {
        let left = totals.queued_for(DevId(a.dev_id), UserId(1));
        let online = server
            .ctx()
            .hub
            .registry()
            .user_online(DevId(a.dev_id), UserId(1));
        async move {
            anyhow::ensure!(
                left == 0 && !online,
                "{left} still counted, online: {online}"
            );
            Ok(())
        }
    })
    .await
    .unwrap();
    qa.query(&pm(1, "q3")).await.assert_ok();
    qa.query(&pm(1, "q4")).await.assert_ok();
    assert_quota(&qa.query(&pm(1, "q5")).await, per_user);

    // Expired messages are purged, and their room is back.
    let later = halley::tenant::unix_now() + 3600;
    server
        .ctx()
        .storage
        .purge_expired_messages(later)
        .await
        .unwrap();
    qa.query(&pm(1, "q5")).await.assert_ok();

    // trust_ history expires the same way.
    qa.query(&insert("trust_a", "1")).await.assert_ok();
    qa.query(&insert("trust_b", "2")).await.assert_ok();
    let rows = "Quota exceeded: history rows per tenant (limit 2)";
    assert_quota(&qa.query(&insert("trust_c", "3")).await, rows);
    server
        .ctx()
        .storage
        .purge_trust_history(later)
        .await
        .unwrap();
    qa.query(&insert("trust_c", "3")).await.assert_ok();
    server.stop().await;
}

async fn users_data_and_revoked_tokens_quotas(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.users_data_per_tenant = 3;
        c.limits.revoked_tokens_per_tenant = 2;
    })
    .await;
    let a = server.tenant("a@example.com").await;
    let b = server.tenant("b@example.com").await;
    let mut qa = RawMysql::login(&server, &a).await;
    let data = |id: u64, v: &str| format!("INSERT INTO users_data (id, data) VALUES ({id}, '{v}')");
    qa.query("INSERT INTO users_data (id, data) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await
        .assert_ok();
    let users = "Quota exceeded: users_data rows per tenant (limit 3)";
    assert_quota(&qa.query(&data(4, "d")).await, users);
    // Replacing a value takes no room.
    qa.query(&data(2, "b2")).await.assert_ok();
    // One new user among replacements: refused whole, the replacement did not happen.
    assert_quota(
        &qa.query("INSERT INTO users_data (id, data) VALUES (2, 'b3'), (4, 'd')")
            .await,
        users,
    );
    let two = qa.query("SELECT data FROM users_data WHERE id = 2").await;
    assert_eq!(two.rows(), [vec!["b2".to_string()]]);
    qa.query("DELETE FROM users_data WHERE id = 1")
        .await
        .assert_ok();
    qa.query(&data(4, "d")).await.assert_ok();

    let revoke = |t: &str| format!("INSERT INTO revoked_tokens (token) VALUES ('{t}')");
    qa.query(&revoke("t1")).await.assert_ok();
    qa.query(&revoke("t2")).await.assert_ok();
    qa.query(&revoke("t2")).await.assert_ok();
    let tokens = "Quota exceeded: revoked_tokens rows per tenant (limit 2)";
    assert_quota(&qa.query(&revoke("t3")).await, tokens);
    let listed = qa.query("SELECT token FROM revoked_tokens").await;
    assert_eq!(listed.rows().len(), 2);
    qa.query("DELETE FROM revoked_tokens WHERE token = 't1'")
        .await
        .assert_ok();
    qa.query(&revoke("t3")).await.assert_ok();

    // The other tenant is unaffected; an override raises A only.
    let mut qb = RawMysql::login(&server, &b).await;
    qb.query("INSERT INTO users_data (id, data) VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await
        .assert_ok();
    qb.query("INSERT INTO revoked_tokens (token) VALUES ('t1'), ('t2')")
        .await
        .assert_ok();
    set_quotas(
        &server,
        QuotaRow {
            users_data: Some(4),
            revoked_tokens: Some(3),
            ..no_override(a.dev_id)
        },
    )
    .await;
    qa.query(&data(5, "e")).await.assert_ok();
    qa.query(&revoke("t4")).await.assert_ok();
    assert_quota(&qb.query(&data(4, "d")).await, users);
    server.stop().await;
}

on_both_backends!(
    history_bytes_quota,
    concurrent_statements_stay_within_the_quota,
    the_attack_stops_at_the_quota_and_totals_match_the_tables,
    history_rows_quota_survives_a_restart,
    queue_quotas,
    delivery_and_expiry_free_room,
    users_data_and_revoked_tokens_quotas,
);
