//! The users' real MySQL clients against Halley (issue 2): PHP mysqli, the `mariadb` CLI, PyMySQL and
//! Node mysql2 log in, publish, and a WebSocket subscriber on the comet-server URL receives the exact
//! frame; every kind of bad credentials is the same clean `ERROR 16 Authentication failure`; and the SQL
//! that drivers and tools send on their own (init statements, SHOW ..., COM_PING, prepare) is answered.

use futures_util::future::join_all;
use halley_tests::browser::subscriber;
use halley_tests::clients::{self, mariadb_query, Client, Login, Outcome, Response};
use halley_tests::cometql::{insert_literal_sql, login};
use halley_tests::frames::check_pipe_frame;
use halley_tests::wait::WAIT;
use halley_tests::{on_both_backends, Backend, TestServer};

/// A server where failed logins from 127.0.0.1 are not rate limited: this file fails on purpose a lot.
async fn server(backend: Backend) -> TestServer {
    TestServer::start_with(backend, |c| {
        c.limits.failed_logins_per_ip_per_min = 10_000;
    })
    .await
}

const AUTH_FAILURE: &str = "Authentication failure";

/// The comet-server frame for `hi` published to `pipe`, byte for byte.
fn expect_hi_frame(text: &str, pipe: &str) {
    let t = check_pipe_frame(text, pipe, "msg", "hi");
    assert_eq!(
        text,
        format!(r#"{{"data":"hi","event":"msg","message_send_time":{t},"pipe":"{pipe}"}}"#)
    );
}

async fn run(client: Client, req: &clients::Request) -> Response {
    clients::run(client, req)
        .await
        .unwrap_or_else(|e| panic!("{client} driver: {e:#}"))
}

async fn clients_publish_and_a_subscriber_receives(backend: Backend) {
    let server = server(backend).await;
    let tenant = server.tenant("pub@example.com").await;
    let login = login(&server, &tenant);

    for client in Client::ALL {
        let pipe = format!("chat_{}", client.name().replace('-', "_"));
        let mut ws = subscriber(&server, tenant.dev_id, &pipe, 0).await;
        let resp = run(
            client,
            &login
                .request()
                .sql(insert_literal_sql(&pipe, "msg", "'hi'")),
        )
        .await;
        let version = resp
            .connect
            .as_ref()
            .expect("logged in")
            .server_version
            .clone();
        assert!(
            version
                .as_deref()
                .is_some_and(|v| v.starts_with("5.7.99-Halley")),
            "{client}: server version {version:?}"
        );
        // The reference answers OK(0, 0) to a publish: the number of receivers is not returned.
        assert_eq!(resp.step(0).unwrap().ok().unwrap(), (0, 0), "{client}");
        let text = ws.recv_text(WAIT).await.expect("the published frame");
        expect_hi_frame(&text, &pipe);
        ws.close().await.unwrap();
    }

    let pipe = "chat_mariadb_cli";
    let mut ws = subscriber(&server, tenant.dev_id, pipe, 0).await;
    let out = mariadb_query(&login, &insert_literal_sql(pipe, "msg", "'hi'"))
        .await
        .unwrap();
    assert!(out.success(), "mariadb CLI: {out:?}");
    assert_eq!(out.stdout, "", "an INSERT prints nothing");
    expect_hi_frame(&ws.recv_text(WAIT).await.unwrap(), pipe);
    server.stop().await;
}

/// The four bad logins of docs/compatibility.md §2: wrong key, unknown dev_id, non-numeric user, empty password.
fn bad_logins(server: &TestServer, dev_id: u64, key: &str) -> Vec<(&'static str, Login)> {
    let port = server.cometql_port();
    let wrong_key: String = key
        .chars()
        .map(|c| if c == 'a' { 'b' } else { 'a' })
        .collect();
    vec![
        ("wrong key", Login::new(port, dev_id.to_string(), wrong_key)),
        ("unknown dev_id", Login::new(port, "999999", key)),
        ("non-numeric user", Login::new(port, "root", key)),
        ("empty password", Login::new(port, dev_id.to_string(), "")),
    ]
}

async fn every_bad_login_is_error_16(backend: Backend) {
    let server = server(backend).await;
    let tenant = server.tenant("auth@example.com").await;
    // A second tenant whose key must not open the first tenant's account either.
    let other = server.tenant("other@example.com").await;
    let required = bad_logins(&server, tenant.dev_id, &tenant.key);
    let mut extra = required.clone();
    extra.push((
        "another tenant's key",
        Login::new(server.cometql_port(), tenant.dev_id.to_string(), &other.key),
    ));
    extra.push((
        "non-numeric user abc",
        Login::new(server.cometql_port(), "abc", &tenant.key),
    ));

    // Every attempt at once; each reports (who, what, the error it got).
    type Attempt<'a> =
        std::pin::Pin<Box<dyn std::future::Future<Output = (String, (i64, String))> + Send + 'a>>;
    let mut attempts: Vec<Attempt<'_>> = Vec::new();
    for client in Client::ALL {
        // The two extra cases with PHP and the CLI only: the drivers do not differ there.
        let cases = if client == Client::Php {
            &extra
        } else {
            &required
        };
        for (why, login) in cases {
            attempts.push(Box::pin(async move {
                let resp = run(client, &login.request().sql("SHOW TABLES")).await;
                let label = format!("{client}, {why}");
                let err = resp
                    .connect_error()
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
                assert!(resp.results.is_empty(), "{label}");
                (label, (err.code, err.message.clone()))
            }));
        }
    }
    for (why, login) in &extra {
        attempts.push(Box::pin(async move {
            let out = mariadb_query(login, "SHOW TABLES").await.unwrap();
            let label = format!("mariadb CLI, {why}");
            assert_eq!(out.status, Some(1), "{label}: {out:?}");
            assert_eq!(out.stdout, "", "{label}");
            let (code, message) = out
                .error()
                .unwrap_or_else(|| panic!("{label}: no ERROR line: {out:?}"));
            (label, (i64::from(code), message))
        }));
    }
    for (label, got) in join_all(attempts).await {
        assert_eq!(got, (16, AUTH_FAILURE.to_owned()), "{label}");
    }

    // After all that, the right key still works.
    let good = login(&server, &tenant).request().sql("SELECT DATABASE()");
    let resp = run(Client::Php, &good).await;
    assert_eq!(resp.step(0).unwrap().scalar().unwrap(), Some("CometQL_v1"));
    let out = mariadb_query(&login(&server, &tenant), "SELECT DATABASE()")
        .await
        .unwrap();
    assert_eq!(out.rows(), [["CometQL_v1"]], "{out:?}");
    server.stop().await;
}

const TABLES: [&str; 7] = [
    "users_auth",
    "users_time",
    "users_messages",
    "pipes_messages",
    "users_in_pipes",
    "pipes",
    "pipes_settings",
];

fn one_column(step: &clients::StepResult) -> Vec<String> {
    step.rows()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r.len(), 1, "{r:?}");
            r[0].clone().expect("values are never NULL")
        })
        .collect()
}

fn strings(rows: &[Vec<Option<String>>]) -> Vec<Vec<&str>> {
    rows.iter()
        .map(|r| {
            r.iter()
                .map(|v| v.as_deref().expect("never NULL"))
                .collect()
        })
        .collect()
}

async fn drivers_sql_surface(backend: Backend) {
    let server = server(backend).await;
    let tenant = server.tenant("sql@example.com").await;
    // One browser subscribed to `abc1`, and one to the two-letter pipe `a1`.
    let _sub = subscriber(&server, tenant.dev_id, "abc1", 0).await;
    let _short = subscriber(&server, tenant.dev_id, "a1", 0).await;
    let long_query = format!(
        "INSERT INTO pipes_messages (name, event, message) VALUES ('abc1', 'e', '{}')",
        "x".repeat(64 * 1024)
    );
    let req = login(&server, &tenant)
        .request()
        .sql("SHOW DATABASES") // 0
        .sql("SHOW TABLES") // 1
        .sql("SELECT @@version_comment LIMIT 1") // 2
        .sql("SELECT DATABASE()") // 3
        .sql("SET NAMES utf8mb4") // 4
        .sql("SET autocommit=1") // 5
        .sql("SET AUTOCOMMIT = 0") // 6
        .sql("SHOW VARIABLES LIKE 'sql_mode'") // 7
        .ping() // 8
        .prepare("SELECT * FROM pipes WHERE name = 'abc1'") // 9
        .sql("SELECT * FROM no_such_table WHERE name = 'abc1'") // 10
        .sql("SELEKT name FROM pipes") // 11
        .sql("SELECT * FROM pipes WHERE name IN ('abc1','bcd2')") // 12
        .sql("SELECT * FROM pipes WHERE name IN ('a1','b2')") // 13
        .sql(long_query) // 14
        .sql("SELECT name, users FROM pipes WHERE name = 'abc1'"); // 15: still in sync

    for client in Client::ALL {
        let resp = run(client, &req).await;
        let step = |i| resp.step(i).unwrap();

        assert_eq!(step(0).columns().unwrap(), ["Database"], "{client}");
        assert_eq!(one_column(step(0)), ["CometQL_v1"], "{client}");

        assert_eq!(step(1).columns().unwrap(), ["Tables"], "{client}");
        assert_eq!(one_column(step(1)), TABLES, "{client}");

        assert_eq!(
            step(2).columns().unwrap(),
            ["@@version_comment"],
            "{client}"
        );
        let comment = one_column(step(2));
        assert_eq!(comment.len(), 1, "{client}");
        assert!(comment[0].starts_with("Halley"), "{client}: {comment:?}");

        assert_eq!(step(3).columns().unwrap(), ["DATABASE()"], "{client}");
        assert_eq!(one_column(step(3)), ["CometQL_v1"], "{client}");

        for i in 4..=6 {
            assert_eq!(step(i).ok().unwrap(), (0, 0), "{client}, step {i}");
        }

        assert_eq!(
            step(7).columns().unwrap(),
            ["Variable_name", "Value"],
            "{client}"
        );
        assert_eq!(
            strings(step(7).rows().unwrap()),
            [["sql_mode", "NO_BACKSLASH_ESCAPES"]],
            "{client}"
        );

        assert_eq!(step(8).ok().unwrap(), (0, 0), "{client}: COM_PING");

        match (&step(9).outcome, client) {
            (Outcome::Unsupported(_), Client::Python) => {} // PyMySQL has no server-side prepare.
            (Outcome::Error(e), _) => {
                assert_eq!(e.code, 2, "{client}: prepare: {e:?}");
                assert!(
                    e.message.contains("Prepared statements")
                        && e.message.contains("not supported"),
                    "{client}: prepare: {e:?}"
                );
            }
            (other, _) => panic!("{client}: COM_STMT_PREPARE answered {other:?}"),
        }

        let e = step(10).error().unwrap();
        assert_eq!(
            (e.code, e.message.as_str()),
            (15, "Table doesn't exist"),
            "{client}"
        );

        let e = step(11).error().unwrap();
        assert_eq!(
            (e.code, e.message.as_str()),
            (3, "Syntax error in query"),
            "{client}"
        );

        assert_eq!(step(12).columns().unwrap(), ["name", "users"], "{client}");
        assert_eq!(
            strings(step(12).rows().unwrap()),
            [["abc1", "1"], ["bcd2", "0"]],
            "{client}"
        );
        // As in the reference, CometQL skips names shorter than 3 characters (a browser may subscribe
        // to two-letter pipes, CometQL can neither publish to nor count them).
        assert_eq!(step(13).columns().unwrap(), ["name", "users"], "{client}");
        assert_eq!(step(13).rows().unwrap().len(), 0, "{client}");

        let e = step(14).error().unwrap();
        assert_eq!(
            (e.code, e.message.as_str()),
            (11, "Data is too long"),
            "{client}"
        );

        assert_eq!(
            strings(step(15).rows().unwrap()),
            [["abc1", "1"]],
            "{client}: the session is usable after every error"
        );
    }

    // The mariadb CLI, as people type it: its init queries, then a few statements in one -e.
    let out = mariadb_query(
        &login(&server, &tenant),
        "SHOW DATABASES; SHOW TABLES; SELECT @@version_comment LIMIT 1; SELECT DATABASE(); \
         SET NAMES utf8mb4; SET autocommit=1; SET AUTOCOMMIT = 0; SHOW VARIABLES LIKE 'sql_mode'",
    )
    .await
    .unwrap();
    assert!(out.success(), "{out:?}");
    let mut rows = out.rows();
    assert_eq!(rows.len(), 11, "{out:?}");
    let comment = rows.remove(8);
    assert!(
        comment.len() == 1 && comment[0].starts_with("Halley"),
        "{out:?}"
    );
    let mut expected: Vec<Vec<String>> = vec![vec!["CometQL_v1".into()]];
    expected.extend(TABLES.iter().map(|t| vec![t.to_string()]));
    expected.push(vec!["CometQL_v1".into()]);
    expected.push(vec!["sql_mode".into(), "NO_BACKSLASH_ESCAPES".into()]);
    assert_eq!(rows, expected, "{out:?}");

    server.stop().await;
}

on_both_backends!(
    clients_publish_and_a_subscriber_receives,
    every_bad_login_is_error_16,
    drivers_sql_surface,
);
