//! A stalled database does not stop the hub (issue 17: "a stall of the database never blocks the WebSocket
//! accept path"). Another connection holds the database for 5 s: on SQLite a write transaction on the
//! server's own file (`BEGIN IMMEDIATE` plus a write), on PostgreSQL a transaction holding `pipe_history`,
//! `user_messages` and `users_time` in ACCESS EXCLUSIVE mode. While it holds, anonymous and authorized
//! WebSocket connects, subscriptions and the delivery of CometQL publishes to a pipe without history all
//! complete (the test releases the lock only after 5 s, and checks they were done before); publishes to a
//! history pipe made during the stall are acknowledged after the release and are in the history.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use halley_tests::browser::{wait_subscribers, Browser};
use halley_tests::cometql::{history, insert_sql};
use halley_tests::frames::json;
use halley_tests::mysql_raw::{RawMysql, Reply};
use halley_tests::wait::WAIT;
use halley_tests::{on_both_backends, Backend, Tenant, TestServer};
use sqlx::{Connection, Executor};
use tokio::time::Instant;

const STALL: Duration = Duration::from_secs(5);
const PLAIN: &str = "stall_plain";
const KEPT: &str = "stall_kept";
const USER: u64 = 42;
const HASH: &str = "h42";
const KEPT_DURING: usize = 3;

async fn server(backend: Backend) -> TestServer {
    TestServer::start_unthrottled(backend).await
}

/// Another client of the server's database, holding it.
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
                // The write makes it a real writer, not just a reserved lock taken early.
                for sql in [
                    "BEGIN IMMEDIATE",
                    "CREATE TABLE stall_probe (x INTEGER)",
                    "INSERT INTO stall_probe VALUES (1)",
                ] {
                    c.execute(sql).await.expect(sql);
                }
                Holder::Sqlite(c)
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&server.config().database_url())
                    .await
                    .expect("open the server's PostgreSQL database");
                for sql in [
                    "BEGIN",
                    "LOCK TABLE pipe_history, user_messages, users_time IN ACCESS EXCLUSIVE MODE",
                ] {
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

/// The steps that must not wait for the database, each noted when done.
async fn hub_work(server: Arc<TestServer>, tenant: Tenant, mut plain: RawMysql, done: Steps) {
    let mut anon = Browser::connect(&server, tenant.dev_id, 0, "", "stallanon").await;
    done.note("anonymous connect (serverInfo)");
    let mut user = Browser::connect(&server, tenant.dev_id, USER, HASH, "stalluser").await;
    assert!(user.authorized(), "{}", user.hello);
    done.note("authorized connect (serverInfo, authorized)");
    anon.send(&format!("subscription\n{PLAIN}")).await;
    user.send(&format!("subscription\n{PLAIN}")).await;
    wait_subscribers(&server, tenant.dev_id, PLAIN, 2).await;
    done.note("both subscribed");
    plain
        .query(&insert_sql(PLAIN, "e", "during the stall"))
        .await
        .assert_ok();
    done.note("CometQL publish to a pipe without history acknowledged");
    for b in [&mut anon, &mut user] {
        let v = json(&b.recv().await);
        assert_eq!(
            (v["pipe"].as_str(), v["data"].as_str()),
            (Some(PLAIN), Some("during the stall")),
            "{v}"
        );
    }
    done.note("delivered to both connections");
    anon.close().await;
    user.close().await;
}

#[derive(Clone, Default)]
struct Steps(Arc<Mutex<Vec<&'static str>>>);

impl Steps {
    fn note(&self, step: &'static str) {
        self.0.lock().unwrap().push(step);
    }
    fn list(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().clone()
    }
}

const ALL_STEPS: usize = 5;

async fn a_stalled_database_does_not_stop_the_hub(backend: Backend) {
    let server = Arc::new(server(backend).await);
    let tenant = server.tenant("stall@example.com").await;
    let mut q = RawMysql::login(&server, &tenant).await;
    for sql in [
        format!("INSERT INTO users_auth (id, hash) VALUES ({USER}, '{HASH}')"),
        format!("INSERT INTO pipes_settings (name, length) VALUES ('{KEPT}', 100)"),
        insert_sql(KEPT, "e", "before"),
        insert_sql(PLAIN, "e", "before"),
    ] {
        q.query(&sql).await.assert_ok();
    }
    // A tenant in use: one connect of each kind before the stall, as a live site has.
    Browser::connect(&server, tenant.dev_id, 0, "", "warmanon")
        .await
        .close()
        .await;
    Browser::connect(&server, tenant.dev_id, USER, HASH, "warmuser")
        .await
        .close()
        .await;
    let plain = RawMysql::login(&server, &tenant).await;
    let mut kept = RawMysql::login(&server, &tenant).await;

    let holder = Holder::hold(&server, backend).await;
    let locked_at = Instant::now();
    let kept_task = tokio::spawn(async move {
        let mut replies = Vec::new();
        for i in 0..KEPT_DURING {
            replies.push(kept.query(&insert_sql(KEPT, "e", &format!("s{i}"))).await);
        }
        (replies, Instant::now())
    });
    let steps = Steps::default();
    let mut hub = tokio::spawn(hub_work(
        server.clone(),
        tenant.clone(),
        plain,
        steps.clone(),
    ));
    let hub_before_release = tokio::select! {
        r = &mut hub => Some(r),
        _ = tokio::time::sleep_until(locked_at + STALL) => None,
    };
    let done_while_held = steps.list();
    tokio::time::sleep_until(locked_at + STALL).await;
    let kept_before_release = kept_task.is_finished();
    // Taken before the ROLLBACK: the database frees the lock as it runs it, and a writer waiting on the
    // lock may commit before the ROLLBACK's answer (and the close) come back.
    let released_at = Instant::now();
    holder.release().await;

    let mut failures = Vec::new();
    match hub_before_release {
        Some(Ok(())) => {}
        Some(Err(e)) => failures.push(format!("the hub work failed while the lock was held: {e}")),
        None => {
            failures.push(format!(
                "not done while the database was held ({} of {ALL_STEPS} steps done: {done_while_held:?})",
                done_while_held.len()
            ));
            match tokio::time::timeout(WAIT, hub).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("after the release, the hub work failed: {e}")),
                Err(_) => failures.push("not done either within 10 s after the release".into()),
            }
        }
    }

    let (replies, acked_at) = tokio::time::timeout(WAIT, kept_task)
        .await
        .expect("the history publishes are answered after the release")
        .expect("the history publisher");
    for (i, r) in replies.iter().enumerate() {
        if !matches!(r, Reply::Ok { .. }) {
            failures.push(format!("history publish s{i} during the stall: {r:?}"));
        }
    }
    // An OK means stored, and nothing could be written to the history while it was held.
    let all_ok = replies.iter().all(|r| matches!(r, Reply::Ok { .. }));
    if all_ok && (kept_before_release || acked_at < released_at) {
        failures.push("the history publishes were acknowledged while the database was held".into());
    }
    let stored = history(&mut q, KEPT).await;
    let want: Vec<String> = std::iter::once("before".to_string())
        .chain((0..KEPT_DURING).map(|i| format!("s{i}")))
        .collect();
    let acked: Vec<&String> = want
        .iter()
        .enumerate()
        .filter(|(i, _)| *i == 0 || matches!(replies[i - 1], Reply::Ok { .. }))
        .map(|(_, w)| w)
        .collect();
    if stored.iter().collect::<Vec<_>>() != acked {
        failures.push(format!(
            "history of {KEPT} after the release: {stored:?}, want every acknowledged publish {acked:?}"
        ));
    }
    assert!(
        failures.is_empty(),
        "{backend:?}, database held for {STALL:?}:\n- {}",
        failures.join("\n- ")
    );
    drop(q);
    Arc::into_inner(server)
        .expect("the only handle left")
        .stop()
        .await;
}

on_both_backends!(a_stalled_database_does_not_stop_the_hub);
