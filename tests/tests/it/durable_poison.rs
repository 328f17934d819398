//! One tenant's write that the database refuses does not fail the other writes committed with it
//! (issue 17: the storage writer commits many tenants' history writes in one transaction). PostgreSQL
//! refuses a NUL byte in text, which a CometQL literal may hold: tenant A publishes such messages to
//! a pipe that keeps history while tenant B publishes ordinary ones, on several connections at once, so
//! that their writes share batches. Every one of B's publishes is acknowledged and stored. (SQLite
//! stores the NUL: there both tenants' writes succeed.)

use halley_tests::cometql::{history, insert_literal_sql, insert_sql};
use halley_tests::mysql_raw::{RawMysql, Reply};
use halley_tests::{on_both_backends, Backend, Tenant, TestServer};

const CONNS: usize = 4;
const EACH: usize = 60;

async fn server(backend: Backend) -> TestServer {
    TestServer::start_unthrottled(backend).await
}

async fn keep_history(server: &TestServer, t: &Tenant, pipe: &str) {
    let mut q = RawMysql::login(server, t).await;
    q.query(&format!(
        "INSERT INTO pipes_settings (name, length) VALUES ('{pipe}', 1000)"
    ))
    .await
    .assert_ok();
}

async fn a_refused_write_fails_alone(backend: Backend) {
    let server = server(backend).await;
    let a = server.tenant("a@example.com").await;
    let b = server.tenant("b@example.com").await;
    keep_history(&server, &a, "web_h").await;
    keep_history(&server, &b, "web_h").await;
    let mut tasks = Vec::new();
    for c in 0..CONNS {
        let mut qa = RawMysql::login(&server, &a).await;
        let mut qb = RawMysql::login(&server, &b).await;
        tasks.push(tokio::spawn(async move {
            let mut refused = 0;
            for i in 0..EACH {
                let bad = insert_literal_sql("web_h", "e", &format!("'nul\u{0}{c}-{i}'"));
                let good = insert_sql("web_h", "e", &format!("b{c}-{i}"));
                let (poisoned, fine) = tokio::join!(qa.query(&bad), qb.query(&good));
                fine.assert_ok();
                match poisoned {
                    Reply::Ok { .. } => {}
                    Reply::Err { .. } => refused += 1,
                    other => panic!("tenant A got {other:?}"),
                }
            }
            refused
        }));
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await.unwrap();
    }
    let mut qb = RawMysql::login(&server, &b).await;
    let stored = history(&mut qb, "web_h").await;
    // The newest 99 are listed: B's, every one of them acknowledged and stored.
    assert_eq!(stored.len(), 99, "{stored:?}");
    assert!(stored.iter().all(|m| m.starts_with('b')), "{stored:?}");
    let total: i64 = server
        .ctx()
        .storage
        .totals()
        .stored(halley::ids::DevId(b.dev_id))
        .history_rows;
    assert_eq!(
        total,
        (CONNS * EACH) as i64,
        "all of B's publishes are stored"
    );
    match backend {
        Backend::Postgres => assert_eq!(refused, CONNS * EACH, "PostgreSQL refuses every NUL"),
        Backend::Sqlite => assert_eq!(refused, 0, "SQLite stores the NUL"),
    }
}

on_both_backends!(a_refused_write_fails_alone);
