//! An OK means stored (issue 17): the real binary, several CometQL connections publishing at once to pipes
//! that keep history and queueing private messages for offline users, SIGKILLed the moment the last OK
//! arrived (no clean shutdown, nothing flushed). Started again on the same database, it has every
//! acknowledged publish in the history, in each publisher's order and numbered without holes, and delivers
//! every acknowledged queued message to its user exactly once. Both backends.

use std::net::SocketAddr;

use halley_tests::browser::Browser;
use halley_tests::cometql::{history, insert_sql, quote};
use halley_tests::frames::json;
use halley_tests::mysql_raw::RawMysql;
use halley_tests::process::ServerProcess;
use halley_tests::{on_both_backends, Backend, Tenant};

const PUBLISHERS: usize = 4;
const EACH: usize = 300;
/// Each publisher spreads its messages over pipes of its own, and every 16th also goes to the one they
/// share: every pipe ends with at most 99 entries, all of them visible to `SELECT ... FROM pipes_messages`
/// and `pipe_log` (which list the 99 newest).
const OWN_PIPES: usize = 4;
const SHARED: &str = "kill_shared";
const SHARED_EVERY: usize = 16;
/// The first offline user; publisher `p` queues for user `FIRST_USER + p`.
const FIRST_USER: u64 = 500;

fn own_pipe(p: usize, i: usize) -> String {
    format!("kill_own{p}_{}", i % OWN_PIPES)
}

/// What publisher `p` sends as its `i`-th message (to a pipe) and its `i`-th private message.
fn text(p: usize, i: usize) -> String {
    format!("p{p}-{i}")
}

fn user_of(p: usize) -> u64 {
    FIRST_USER + p as u64
}

fn hash_of(user: u64) -> String {
    format!("h{user}")
}

/// Limits lifted out of the way: the burst is about the write path, not the budgets.
const CONFIG: &str = "[limits]\npublishes_per_sec = 1000000\npublish_burst = 1000000\n\
    new_connections_per_ip_per_sec = 10000\nnew_connections_per_ip_burst = 10000\n\
    queued_messages_per_user = 1000000\nqueued_messages_per_tenant = 1000000\n\
    [messages]\nqueue_ttl_secs = 3600\n";

async fn login(addr: SocketAddr, tenant: &Tenant) -> RawMysql {
    RawMysql::login_at(addr, &tenant.dev_id.to_string(), &tenant.key).await
}

/// One publisher's burst: message `i` to one of its own pipes (and every 16th to the shared pipe too),
/// and a private message `i` to its offline user. Returns once every statement was acknowledged (any
/// refusal fails the test: nothing unacknowledged may be counted as lost).
async fn burst(mut q: RawMysql, p: usize) {
    let user = user_of(p);
    for i in 0..EACH {
        let t = text(p, i);
        q.query(&insert_sql(&own_pipe(p, i), "e", &t))
            .await
            .assert_ok();
        if i % SHARED_EVERY == 0 {
            q.query(&insert_sql(SHARED, "e", &t)).await.assert_ok();
        }
        q.query(&format!(
            "INSERT INTO users_messages (id, event, message) VALUES ({user}, 'pm', {})",
            quote(&t)
        ))
        .await
        .assert_ok();
    }
}

/// Per pipe, what must be in the history after the kill: every acknowledged publish.
fn expected() -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for p in 0..PUBLISHERS {
        for k in 0..OWN_PIPES {
            let sent = (k..EACH).step_by(OWN_PIPES).map(|i| text(p, i)).collect();
            out.push((own_pipe(p, k), sent));
        }
    }
    let shared = (0..PUBLISHERS)
        .flat_map(|p| (0..EACH).step_by(SHARED_EVERY).map(move |i| text(p, i)))
        .collect();
    out.push((SHARED.to_string(), shared));
    out
}

/// The offsets a positioned connection sees: `subscription2` answers the pipe's top offset, and
/// `pipe_log` lists the stored entries with theirs. Returns `(top, [(offset, data)])`.
async fn positions(b: &mut Browser, pipe: &str) -> (u64, Vec<(u64, String)>) {
    b.send(&format!("subscription2\n{pipe}")).await;
    let top = loop {
        let v = json(&b.recv().await);
        if v["event"] == "subscribed" {
            assert_eq!(v["pipe"], pipe, "{v}");
            break v["data"]["offset"].as_u64().expect("an offset");
        }
    };
    b.send(&format!("pipe_log\n{pipe}\nm\n")).await;
    let mut log = Vec::new();
    for frame in b.sync().await {
        let v = json(&frame);
        if v["pipe"] == pipe && v["fromQueue"] == true {
            log.push((
                v["offset"].as_u64().unwrap_or(0),
                v["data"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    (top, log)
}

async fn a_kill_after_the_last_ok_loses_nothing(backend: Backend) {
    let mut server = ServerProcess::start(backend, CONFIG)
        .await
        .expect("server starts");
    let tenant = server.tenant("kill@example.com").await.expect("tenant");
    let mut q = login(server.cometql_addr(), &tenant).await;
    let settings: Vec<String> = expected()
        .iter()
        .map(|(pipe, sent)| {
            assert!(sent.len() <= 99, "{pipe}: all of it visible to SELECT");
            format!("({}, 1000)", quote(pipe))
        })
        .collect();
    q.query(&format!(
        "INSERT INTO pipes_settings (name, length) VALUES {}",
        settings.join(", ")
    ))
    .await
    .assert_ok();
    for p in 0..PUBLISHERS {
        let user = user_of(p);
        q.query(&format!(
            "INSERT INTO users_auth (id, hash) VALUES ({user}, '{}')",
            hash_of(user)
        ))
        .await
        .assert_ok();
    }
    drop(q);

    let mut sessions = Vec::new();
    for _ in 0..PUBLISHERS {
        sessions.push(login(server.cometql_addr(), &tenant).await);
    }
    let tasks: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(p, q)| tokio::spawn(burst(q, p)))
        .collect();
    for t in tasks {
        t.await.expect("a publisher");
    }
    // The last OK is in: SIGKILL now, before the server has any chance to flush.
    server.kill_and_restart().await.expect("restarts");

    let mut q = login(server.cometql_addr(), &tenant).await;
    for (pipe, want) in expected() {
        let got = history(&mut q, &pipe).await;
        let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).collect();
        assert!(
            missing.is_empty(),
            "{backend:?}: {} of {} acknowledged publishes to {pipe} lost after kill -9: {:?}...",
            missing.len(),
            want.len(),
            &missing[..missing.len().min(10)]
        );
        assert_eq!(got.len(), want.len(), "{pipe}: nothing else stored");
        for p in 0..PUBLISHERS {
            let prefix = format!("p{p}-");
            let mine: Vec<&String> = got.iter().filter(|t| t.starts_with(&prefix)).collect();
            let sent: Vec<&String> = want.iter().filter(|t| t.starts_with(&prefix)).collect();
            assert_eq!(mine, sent, "{pipe}: publisher {p}'s order kept");
        }
    }

    // Numbered without holes: the top offset is the count, and pipe_log lists 1..=count in the order
    // the history keeps.
    let mut b = Browser::connect_at(server.http_addr(), tenant.dev_id, 0, "", "killpos").await;
    for (pipe, want) in expected() {
        let stored = history(&mut q, &pipe).await;
        let (top, log) = positions(&mut b, &pipe).await;
        assert_eq!(
            top,
            want.len() as u64,
            "{pipe}: the top offset after restart"
        );
        let offsets: Vec<u64> = log.iter().map(|(o, _)| *o).collect();
        assert_eq!(
            offsets,
            (1..=top).collect::<Vec<_>>(),
            "{pipe}: offsets 1..=top in pipe_log, no hole"
        );
        assert_eq!(
            log.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>(),
            stored,
            "{pipe}: pipe_log and SELECT agree on the order"
        );
    }
    b.close().await;

    // Every acknowledged private message reaches its user once, in the order it was queued.
    for p in 0..PUBLISHERS {
        let user = user_of(p);
        let mut u = Browser::connect_at(
            server.http_addr(),
            tenant.dev_id,
            user,
            &hash_of(user),
            &format!("killu{user}"),
        )
        .await;
        assert!(u.authorized(), "user {user} logs in");
        let mut got = Vec::new();
        for frame in u.sync().await {
            let v = json(&frame);
            assert_eq!(
                (
                    v["pipe"].as_str(),
                    v["event"].as_str(),
                    v["fromQueue"].as_bool()
                ),
                (Some("msg"), Some("pm"), Some(true)),
                "{frame}"
            );
            got.push(v["data"].as_str().unwrap().to_string());
        }
        let want: Vec<String> = (0..EACH).map(|i| text(p, i)).collect();
        let lost = want.iter().filter(|w| !got.contains(w)).count();
        assert_eq!(
            lost, 0,
            "{backend:?}: user {user} lost {lost} of {EACH} acknowledged queued messages"
        );
        assert_eq!(got, want, "user {user}: each queued message once, in order");
        u.close().await;
        let mut again = Browser::connect_at(
            server.http_addr(),
            tenant.dev_id,
            user,
            &hash_of(user),
            "again",
        )
        .await;
        again.expect_nothing().await;
        again.close().await;
        assert_eq!(
            q.query(&format!(
                "SELECT message FROM users_messages WHERE id = {user}"
            ))
            .await
            .rows()
            .len(),
            0,
            "user {user}: the queue is empty once delivered"
        );
    }
    server.stop().await;
}

on_both_backends!(a_kill_after_the_last_ok_loses_nothing);
