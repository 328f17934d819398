//! The tables other than pipes_messages and users_messages (users_data, users_auth, users_time, pipes,
//! pipes_settings, users_in_pipes, revoked_tokens): their results are charged row by row against the
//! caps and refused at the row that crosses one, before the rest is read (review, High 3).

use std::time::Duration;

use halley_tests::process::ServerProcess;
use halley_tests::{on_both_backends, Backend, TestServer};

use super::metric;
use halley_tests::browser::subscriber;
use halley_tests::mysql_raw::RawMysql;

const USERS: usize = 4000;
const VALUE_BYTES: usize = 16 * 1024;
const CAP_BYTES: usize = 1024 * 1024;

/// User `id`'s users_data value: its id, then padding to `VALUE_BYTES`.
fn value(id: usize) -> String {
    let head = format!("u{id:04}-");
    head.clone() + &"d".repeat(VALUE_BYTES - head.len())
}

/// `IN (1, 2, ..., USERS)`.
fn every_user() -> String {
    (1..=USERS)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// 4,000 users with a 16 KiB users_data value each (64 MB). Four non-reading connections each ask three
/// times for every one of them by `IN (...)` and read only the first packet of the first reply. Before the
/// fix each query built all 4,000 rows (64 MB) before the 1 MiB byte cap refused it; now the rows are
/// charged as they are read and the query stops at the row past the cap, so the server's memory grows by
/// a few MiB at most.
async fn users_data_by_in_keeps_the_server_small(backend: Backend) {
    let server = ServerProcess::start(
        backend,
        &format!("[cometql]\nmax_result_bytes = {CAP_BYTES}\nmax_query_bytes = 1000000\n"),
    )
    .await
    .expect("halley");
    let t = server.tenant("values@example.com").await.expect("tenant");
    let addr = server.cometql_addr();
    let user = t.dev_id.to_string();
    let mut q = RawMysql::login_at(addr, &user, &t.key).await;
    for from in (1..=USERS).step_by(50) {
        let rows: Vec<String> = (from..from + 50)
            .map(|i| format!("({i}, '{}')", value(i)))
            .collect();
        q.query(&format!(
            "INSERT INTO users_data (id, data) VALUES {}",
            rows.join(",")
        ))
        .await
        .assert_ok();
    }
    let select = format!("SELECT * FROM users_data WHERE id IN ({})", every_user());
    // What a client gets: ERROR 11 past the cap, every id when the values are left out, a page by LIMIT.
    // (These also warm the allocator up for the measurement.)
    assert_eq!(
        q.query(&select).await.err(),
        (
            11,
            "Result too large: more than 1048576 bytes (select fewer keys or use LIMIT)"
        )
    );
    let ids = q
        .query(&format!(
            "SELECT id FROM users_data WHERE id IN ({})",
            every_user()
        ))
        .await;
    assert_eq!(ids.rows().len(), USERS);
    assert_eq!(ids.rows()[USERS - 1], vec![USERS.to_string()]);
    let page = q.query(&format!("{select} LIMIT 10, 3")).await;
    let want: Vec<Vec<String>> = (11..=13).map(|i| vec![i.to_string(), value(i)]).collect();
    assert_eq!(page.rows(), want.as_slice());

    let queries_before = metric(server.http_addr(), "halley_cometql_query_seconds_count")
        .await
        .expect("query count");
    let before = server.memory();
    const CONNECTIONS: usize = 4;
    let held = super::hold_unread(
        addr,
        &user,
        &t.key,
        &[select.clone(), select.clone(), select.clone()],
        CONNECTIONS,
    )
    .await;
    let want = queries_before + (3 * CONNECTIONS) as f64;
    let all_ran = super::queries_ran(server.http_addr(), want, Duration::from_secs(120)).await;
    let after = server.memory();
    let grew_kib = after.rss_kib.saturating_sub(before.rss_kib);
    let peak_kib = after.hwm_kib.saturating_sub(before.hwm_kib);
    eprintln!("{backend:?}: users_data by IN: before {before:?}, after {after:?}: RSS +{grew_kib} KiB, peak +{peak_kib} KiB");
    const BOUND_KIB: u64 = 8 * 1024;
    assert!(
        grew_kib < BOUND_KIB && peak_kib < BOUND_KIB,
        "non-reading clients grew the server by {grew_kib} KiB (peak +{peak_kib} KiB), bound {BOUND_KIB} KiB"
    );
    all_ran.expect("every query answered");
    drop(held);
    let mut fresh = RawMysql::login_at(addr, &user, &t.key).await;
    assert_eq!(
        fresh
            .query("SELECT data FROM users_data WHERE id IN (4000, 1, 4000)")
            .await
            .rows(),
        &[vec![value(4000)], vec![value(1)]]
    );
    server.stop().await;
}

/// Every small table refuses a result past the row cap with the same ERROR 11 and keeps LIMIT; revoked
/// tokens are looked up by the values asked for (each once, unknown ones skipped).
async fn small_tables_refuse_past_the_caps(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.cometql.max_result_rows = 3;
    })
    .await;
    let t = server.tenant("small@example.com").await;
    let mut q = RawMysql::login(&server, &t).await;
    let rows_refusal = (
        11,
        "Result too large: more than 3 rows (select fewer keys or use LIMIT)",
    );
    for id in 1..=4 {
        q.query(&format!(
            "INSERT INTO users_data (id, data) VALUES ({id}, 'd{id}')"
        ))
        .await
        .assert_ok();
        q.query(&format!(
            "INSERT INTO users_auth (id, hash) VALUES ({id}, 'h{id}')"
        ))
        .await
        .assert_ok();
        q.query(&format!(
            "INSERT INTO pipes_settings (name, length) VALUES ('pipe{id}', {id})"
        ))
        .await
        .assert_ok();
    }
    for (table, key) in [
        ("users_data", "id IN (1, 2, 3, 4)"),
        ("users_auth", "id IN (1, 2, 3, 4)"),
        ("users_time", "id IN (1, 2, 3, 4)"),
        ("pipes", "name IN ('pipe1', 'pipe2', 'pipe3', 'pipe4')"),
        (
            "pipes_settings",
            "name IN ('pipe1', 'pipe2', 'pipe3', 'pipe4')",
        ),
    ] {
        assert_eq!(
            q.query(&format!("SELECT * FROM {table} WHERE {key}"))
                .await
                .err(),
            rows_refusal,
            "{table}"
        );
        assert_eq!(
            q.query(&format!("SELECT * FROM {table} WHERE {key} LIMIT 1, 3"))
                .await
                .rows()
                .len(),
            3,
            "{table}"
        );
    }
    assert_eq!(
        q.query("SELECT data FROM users_data WHERE id IN (4, 2, 2, 9) LIMIT 1")
            .await
            .rows(),
        &[vec!["d4".to_string()]]
    );
    assert_eq!(
        q.query("SELECT * FROM pipes_settings WHERE name IN ('pipe3', 'pipe1') LIMIT 1, 1")
            .await
            .rows(),
        &[vec!["pipe1".to_string(), "1".into()]]
    );

    // Four browsers on one pipe: users_in_pipes has four rows.
    let mut socks = Vec::new();
    for i in 0..4 {
        socks.push(subscriber(&server, t.dev_id, "web_room", i).await);
    }
    assert_eq!(
        q.query("SELECT * FROM users_in_pipes WHERE name = 'web_room'")
            .await
            .err(),
        rows_refusal
    );
    assert_eq!(
        q.query("SELECT name FROM users_in_pipes WHERE name = 'web_room' LIMIT 2")
            .await
            .rows(),
        &[vec!["web_room".to_string()], vec!["web_room".into()]]
    );

    for token in ["tok-d", "tok-b", "tok-a", "tok-c"] {
        q.query(&format!(
            "INSERT INTO revoked_tokens (token) VALUES ('{token}')"
        ))
        .await
        .assert_ok();
    }
    assert_eq!(
        q.query("SELECT * FROM revoked_tokens").await.err(),
        rows_refusal
    );
    assert_eq!(
        q.query("SELECT * FROM revoked_tokens LIMIT 3")
            .await
            .rows()
            .len(),
        3
    );
    let got = q
        .query("SELECT token FROM revoked_tokens WHERE token IN ('tok-a', 'nope', 'tok-a', 'tok-c', 'tok-d')")
        .await;
    let mut got: Vec<String> = got.rows().iter().map(|r| r[0].clone()).collect();
    // In the order they were revoked: by second, then by text; these may span two seconds.
    got.sort();
    assert_eq!(got, ["tok-a", "tok-c", "tok-d"]);
    assert_eq!(
        q.query("SELECT * FROM revoked_tokens WHERE token IN ('tok-a', 'tok-b', 'tok-c', 'tok-d')")
            .await
            .err(),
        rows_refusal
    );
    drop(socks);
    server.stop().await;
}

on_both_backends!(
    users_data_by_in_keeps_the_server_small,
    small_tables_refuse_past_the_caps,
);
