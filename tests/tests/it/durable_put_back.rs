//! A claimed batch of queued private messages that does not reach its user goes back into the queue even
//! when the database is held at that moment (issue 17): the put-back goes through the storage writer, which
//! waits for the database (up to 60 s) as every queue write does, where it used to fail after the pool's
//! 5 s busy timeout on SQLite, and the batch, already claimed, was lost.
//!
//! The user has `QUEUED` large messages and connects on a socket that reads nothing after serverInfo: the
//! first claimed batch (100 messages, more than the socket buffers hold) blocks its write. Meanwhile another
//! connection takes the database (as in `durable_stall`) and holds it for `HOLD`, longer than the write
//! timeout and the pool's busy timeout together. The write times out and the batch is put back, which
//! commits only after the release; then every message is queued again and reaches the user's next
//! connection, in order. Both backends.

use std::time::Duration;

use halley::ids::{DevId, UserId};
use halley_tests::browser::Browser;
use halley_tests::frames::json;
use halley_tests::mysql_raw::RawMysql;
use halley_tests::wait::{eventually, WAIT};
use halley_tests::ws::WsClient;
use halley_tests::{on_both_backends, Backend, TestServer};
use sqlx::{Connection, Executor};
use tokio::net::TcpSocket;

const USER: u64 = 81;
const HASH: &str = "h81";
const QUEUED: usize = 150;
/// The drain's batch (`QUEUE_BATCH`).
const BATCH: usize = 100;
const PAD: usize = 60_000;
const WRITE_TIMEOUT_SECS: u64 = 2;
/// The write timeout, the pool's 5 s busy timeout, and a margin.
const HOLD: Duration = Duration::from_secs(WRITE_TIMEOUT_SECS + 6);

async fn server(backend: Backend) -> TestServer {
    TestServer::start_with(backend, |c| {
        c.limits.publishes_per_sec = 100_000;
        c.limits.publish_burst = 100_000;
        c.limits.queued_messages_per_user = 100_000;
        c.limits.queued_messages_per_tenant = 100_000;
        c.messages.queue_ttl_secs = 3600;
        c.cometql.max_query_bytes = 1 << 20;
        c.cometql.max_packet_bytes = 2 << 20;
        c.websocket.write_timeout_secs = WRITE_TIMEOUT_SECS;
    })
    .await
}

fn message(i: usize) -> String {
    format!("m{i:05}{}", "x".repeat(PAD))
}

/// Another client of the server's database, holding what the put-back writes.
enum Holder {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Holder {
    async fn hold(server: &TestServer, backend: Backend) -> Holder {
        match backend {
            Backend::Sqlite => {
                let file = server.config().data_dir.join("halley.db");
                let mut c =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
                        .await
                        .expect("open the server's SQLite file");
                for sql in [
                    "BEGIN IMMEDIATE",
                    "CREATE TABLE put_back_probe (x INTEGER)",
                    "INSERT INTO put_back_probe VALUES (1)",
                ] {
                    c.execute(sql).await.expect(sql);
                }
                Holder::Sqlite(c)
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&server.config().database_url())
                    .await
                    .expect("open the server's PostgreSQL database");
                for sql in ["BEGIN", "LOCK TABLE user_messages IN ACCESS EXCLUSIVE MODE"] {
                    c.execute(sql).await.expect(sql);
                }
                Holder::Postgres(c)
            }
        }
    }

    async fn release(self) {
        match self {
            Holder::Sqlite(mut c) => {
                c.execute("ROLLBACK").await.expect("ROLLBACK");
                c.close().await.expect("close");
            }
            Holder::Postgres(mut c) => {
                c.execute("ROLLBACK").await.expect("ROLLBACK");
                c.close().await.expect("close");
            }
        }
    }
}

async fn a_batch_put_back_while_the_database_is_held_is_not_lost(backend: Backend) {
    let server = server(backend).await;
    let tenant = server.tenant("putback@example.com").await;
    let (dev, user) = (DevId(tenant.dev_id), UserId(USER));
    let mut q = RawMysql::login(&server, &tenant).await;
    q.query(&format!(
        "INSERT INTO users_auth (id, hash) VALUES ({USER}, '{HASH}')"
    ))
    .await
    .assert_ok();
    for start in (0..QUEUED).step_by(10) {
        let rows: Vec<String> = (start..start + 10)
            .map(|i| format!("({USER}, 'pm', '{}')", message(i)))
            .collect();
        q.query(&format!(
            "INSERT INTO users_messages (id, event, message) VALUES {}",
            rows.join(", ")
        ))
        .await
        .assert_ok();
    }
    let queued = || server.ctx().storage.totals().queued_for(dev, user);
    assert_eq!(queued(), QUEUED as i64);

    // A small receive buffer (no autotuning), read no further than serverInfo.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.http_addr()).await.unwrap();
    let mut stalled = WsClient::over(stream, &server.ws_url(tenant.dev_id, USER, HASH))
        .await
        .unwrap();
    let hello = stalled.recv_json(WAIT).await.unwrap();
    assert_eq!(hello["authorized"], true, "{hello}");
    // The first batch is claimed (its write then blocks, for the write timeout).
    eventually(WAIT, || async {
        match queued() {
            n if n == (QUEUED - BATCH) as i64 => Ok(()),
            n => Err(anyhow::anyhow!("{n} queued")),
        }
    })
    .await
    .unwrap();

    let holder = Holder::hold(&server, backend).await;
    tokio::time::sleep(HOLD).await;
    assert_eq!(
        queued(),
        (QUEUED - BATCH) as i64,
        "nothing could be put back while the database was held"
    );
    holder.release().await;

    eventually(WAIT, || async {
        match queued() {
            n if n == QUEUED as i64 => Ok(()),
            n => Err(anyhow::anyhow!(
                "{n} queued, want all {QUEUED}: the failed batch was not put back"
            )),
        }
    })
    .await
    .unwrap();
    drop(stalled);

    let mut b = Browser::connect(&server, tenant.dev_id, USER, HASH, "putback").await;
    assert!(b.authorized(), "{}", b.hello);
    for i in 0..QUEUED {
        let v = json(&b.recv().await);
        assert_eq!(
            v["data"].as_str().map(|d| &d[..6]),
            Some(&message(i)[..6]),
            "message {i}"
        );
        assert_eq!(v["fromQueue"], true, "message {i}");
    }
    b.close().await;
    server.stop().await;
}

on_both_backends!(a_batch_put_back_while_the_database_is_held_is_not_lost);
