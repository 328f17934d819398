//! Tenant isolation (docs/compatibility.md §2 and §3): a CometQL session can only ever see and change its own tenant
//! — `USE db_<other>` / COM_INIT_DB, connecting with database `db_<other>` and the reference's
//! `cometqlcluster_v1 set dev_id=` prefix are all refused — and a publish reaches only the publishing
//! tenant's WebSocket subscribers, even on a pipe with the same name.

use halley_tests::browser::{subscriber, subscribers};
use halley_tests::clients::{self, mariadb_query, Client, Outcome};
use halley_tests::cometql::{insert_literal_sql, login};
use halley_tests::frames::{check_pipe_frame, expect_pipe_frame};
use halley_tests::wait::WAIT;
use halley_tests::{on_both_backends, Backend, Tenant, TestServer};

/// Refused logins here are on purpose: keep the per-IP failed-login limit out of the way.
async fn server(backend: Backend) -> TestServer {
    TestServer::start_with(backend, |c| c.limits.failed_logins_per_ip_per_min = 10_000).await
}

const SELECT_DB_FAILURE: (i64, &str) = (15, "Select database failure");

fn err(step: &clients::StepResult) -> (i64, &str) {
    let e = step.error().unwrap();
    (e.code, e.message.as_str())
}

async fn cometql_sessions_stay_in_their_tenant(backend: Backend) {
    let server = server(backend).await;
    let one = server.tenant("one@example.com").await;
    let two = server.tenant("two@example.com").await;
    assert_ne!(one.dev_id, two.dev_id);
    let own_db = format!("db_{}", one.dev_id);
    let other_db = format!("db_{}", two.dev_id);

    // Both tenants have a browser on pipe `chat`.
    let mut ws_one = subscriber(&server, one.dev_id, "chat", 0).await;
    let mut ws_two = subscriber(&server, two.dev_id, "chat", 0).await;

    let login_one = login(&server, &one);
    // `SELECT DATABASE()` as tenant one, logging in with the database `db`.
    let select_database_in = |db: &str| {
        login_one
            .clone()
            .database(Some(db))
            .request()
            .sql("SELECT DATABASE()")
    };
    for client in Client::ALL {
        // Connecting with another tenant's database is refused at login.
        let resp = clients::run(client, &select_database_in(&other_db))
            .await
            .unwrap();
        let e = resp.connect_error().unwrap();
        assert_eq!((e.code, e.message.as_str()), SELECT_DB_FAILURE, "{client}");

        // The own db_<N> is accepted, and still reads as CometQL_v1.
        let resp = clients::run(client, &select_database_in(&own_db))
            .await
            .unwrap();
        assert_eq!(
            resp.step(0).unwrap().scalar().unwrap(),
            Some("CometQL_v1"),
            "{client}"
        );

        // COM_INIT_DB (mysql2: COM_CHANGE_USER with the database) to the other tenant is refused; the
        // own one is accepted.
        let req = login_one
            .request()
            .init_db(other_db.clone())
            .sql(format!(
                "INSERT INTO pipes_messages (name, event, message) VALUES ('chat', 'msg', 'after init_db from {client}')"
            ))
            .sql(format!("cometqlcluster_v1 set dev_id={}; INSERT INTO pipes_messages (name, event, message) VALUES ('chat', 'msg', 'cluster')", two.dev_id))
            .sql(format!("  COMETQLCLUSTER_V1 SET DEV_ID={};SELECT * FROM pipes WHERE name = 'chat'", two.dev_id))
            .sql("SELECT * FROM pipes WHERE name = 'chat'");
        let resp = clients::run(client, &req).await.unwrap();
        assert_eq!(err(resp.step(0).unwrap()), SELECT_DB_FAILURE, "{client}");
        if client == Client::Node {
            // mysql2's changeUser is a re-login: a refused one ends the connection.
            for i in 1..=4 {
                assert!(
                    matches!(resp.step(i).unwrap().outcome, Outcome::Error(_)),
                    "{client}: step {i} after a failed changeUser: {:?}",
                    resp.step(i).unwrap()
                );
            }
        } else {
            // The session survives the refusal, still on its own tenant.
            assert_eq!(resp.step(1).unwrap().ok().unwrap(), (0, 0), "{client}");
            let text = ws_one.recv_text(WAIT).await.unwrap();
            check_pipe_frame(
                &text,
                "chat",
                "msg",
                &format!("after init_db from {client}"),
            );
            for i in [2, 3] {
                assert_eq!(
                    err(resp.step(i).unwrap()),
                    (16, "Invalid dev_id value"),
                    "{client}: cluster prefix, step {i}"
                );
            }
            // The pipes table counts this tenant's subscribers only (one each).
            let rows = resp.step(4).unwrap().rows().unwrap();
            assert_eq!(
                rows,
                [vec![Some("chat".to_owned()), Some("1".to_owned())]],
                "{client}"
            );
        }
    }

    // The mariadb CLI: `USE` is COM_INIT_DB, `-D` is CONNECT_WITH_DB.
    let out = mariadb_query(&login_one, &format!("USE {other_db}"))
        .await
        .unwrap();
    assert_eq!(out.status, Some(1), "{out:?}");
    assert_eq!(
        out.error(),
        Some((15, SELECT_DB_FAILURE.1.to_owned())),
        "{out:?}"
    );
    let out = mariadb_query(&login_one, &format!("USE {own_db}; SELECT DATABASE()"))
        .await
        .unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.rows(), [["CometQL_v1"]]);
    let out = mariadb_query(
        &login_one.clone().database(Some(&other_db)),
        "SELECT DATABASE()",
    )
    .await
    .unwrap();
    assert_eq!(out.status, Some(1), "{out:?}");
    assert_eq!(
        out.error(),
        Some((15, SELECT_DB_FAILURE.1.to_owned())),
        "{out:?}"
    );
    let out = mariadb_query(
        &login_one,
        &format!(
            "cometqlcluster_v1 set dev_id={}; INSERT INTO pipes_messages (name, event, message) VALUES ('chat', 'msg', 'cli cluster')",
            two.dev_id
        ),
    )
    .await
    .unwrap();
    assert_eq!(
        out.error(),
        Some((16, "Invalid dev_id value".to_owned())),
        "{out:?}"
    );

    // Nothing of all that reached tenant two: its next frame is its own publish. (Delivery happens
    // before the OK, so anything misrouted would have been queued ahead of this one.)
    let out = mariadb_query(
        &login(&server, &two),
        &insert_literal_sql("chat", "msg", "'for tenant two'"),
    )
    .await
    .unwrap();
    assert!(out.success(), "{out:?}");
    expect_pipe_frame(&mut ws_two, "chat", "msg", "for tenant two").await;
    // And tenant two's publish did not reach tenant one.
    let out = mariadb_query(
        &login_one,
        &insert_literal_sql("chat", "msg", "'for tenant one'"),
    )
    .await
    .unwrap();
    assert!(out.success(), "{out:?}");
    expect_pipe_frame(&mut ws_one, "chat", "msg", "for tenant one").await;

    server.stop().await;
}

/// Publishes each message literal on `chat` (event `msg`) as `tenant`, in one PHP mysqli session; the
/// last INSERT must be answered with OK (0 rows, insert id 0).
async fn php_publish(server: &TestServer, tenant: &Tenant, literals: &[&str]) {
    let mut req = login(server, tenant).request();
    for literal in literals {
        req = req.sql(insert_literal_sql("chat", "msg", literal));
    }
    let resp = clients::run(Client::Php, &req).await.unwrap();
    let last = resp.step(literals.len() - 1).unwrap();
    assert_eq!(last.ok().unwrap(), (0, 0));
}

/// Two tenants, two browsers each on pipe `chat`: every publish reaches exactly its own tenant's two.
async fn websocket_delivery_stays_in_its_tenant(backend: Backend) {
    let server = server(backend).await;
    let one = server.tenant("one@example.com").await;
    let two = server.tenant("two@example.com").await;
    let mut ones = vec![
        subscriber(&server, one.dev_id, "chat", 0).await,
        subscriber(&server, one.dev_id, "chat", 1).await,
    ];
    let mut twos = vec![
        subscriber(&server, two.dev_id, "chat", 0).await,
        subscriber(&server, two.dev_id, "chat", 1).await,
    ];

    php_publish(&server, &one, &["'one-1'", "'one-2'"]).await;
    php_publish(&server, &two, &["'two-1'"]).await;

    for ws in &mut ones {
        expect_pipe_frame(ws, "chat", "msg", "one-1").await;
        expect_pipe_frame(ws, "chat", "msg", "one-2").await;
    }
    for ws in &mut twos {
        // The first frame tenant two's browsers see is tenant two's message.
        expect_pipe_frame(ws, "chat", "msg", "two-1").await;
    }
    // Tenant two's publish is not behind in tenant one's browsers either: their next frame is the
    // next message of tenant one.
    php_publish(&server, &one, &["'one-3'"]).await;
    for ws in &mut ones {
        expect_pipe_frame(ws, "chat", "msg", "one-3").await;
    }
    assert_eq!(subscribers(&server, one.dev_id, "chat"), 2);
    assert_eq!(subscribers(&server, two.dev_id, "chat"), 2);
    server.stop().await;
}

on_both_backends!(
    cometql_sessions_stay_in_their_tenant,
    websocket_delivery_stays_in_its_tenant,
);
