//! docs/compatibility.md §2, tenant isolation over CometQL: tenant B, using the same pipe names and user ids as
//! tenant A, can neither read nor change anything of A's through any table (pipes_messages and its history,
//! pipes_settings, pipes, users_in_pipes, users_auth, users_time, users_messages, users_data, revoked_tokens), nor
//! see A's figures in SHOW STATUS, nor switch to A's database (`USE db_<A>`, a `db_<A>` login, the
//! `cometqlcluster_v1` prefix), nor log in as A with its own key.

use halley_tests::browser::{anonymous, browser, jwt, subscribe};
use halley_tests::clients::{mariadb_query, Login};
use halley_tests::cometql::{insert_sql, quote};
use halley_tests::frames::{next_json, next_message};
use halley_tests::mysql_raw::{RawMysql, Reply};
use halley_tests::server::{two_tenants, world};
use halley_tests::{on_both_backends, Backend};

fn rows(reply: &Reply) -> Vec<Vec<&str>> {
    reply
        .rows()
        .iter()
        .map(|r| r.iter().map(String::as_str).collect())
        .collect()
}

async fn history_and_pipes_settings(backend: Backend) {
    let (server, a, _, mut qa, mut qb) = world(backend).await;
    qa.query("INSERT INTO pipes_settings (name, length) VALUES ('chat', 10)")
        .await
        .assert_ok();
    for m in ["a1", "a2", "a3"] {
        qa.query(&insert_sql("chat", "ev", m)).await.assert_ok();
    }
    let a_ids = qa
        .query("SELECT id FROM pipes_messages WHERE name = 'chat'")
        .await;
    assert_eq!(a_ids.rows().len(), 3);

    // B reads nothing of A's.
    let b_settings = qb
        .query("SELECT * FROM pipes_settings WHERE name = 'chat'")
        .await;
    assert!(b_settings.rows().is_empty(), "{b_settings:?}");
    let b_history = qb
        .query("SELECT * FROM pipes_messages WHERE name = 'chat'")
        .await;
    assert!(b_history.rows().is_empty(), "{b_history:?}");

    // B's deletes, by pipe name and by A's very entry ids, touch nothing of A's.
    for id in a_ids.rows() {
        qb.query(&format!(
            "DELETE FROM pipes_messages WHERE id = {}",
            quote(&id[0])
        ))
        .await
        .assert_ok();
    }
    qb.query("DELETE FROM pipes_messages WHERE name = 'chat'")
        .await
        .assert_ok();
    qb.query("DELETE FROM pipes_settings WHERE name = 'chat'")
        .await
        .assert_ok();
    // B's own settings and publishes on the same name stay B's.
    qb.query("INSERT INTO pipes_settings (name, length) VALUES ('chat', 2)")
        .await
        .assert_ok();
    let mut a_watcher = anonymous(&server, a.dev_id).await;
    subscribe(&server, &mut a_watcher, a.dev_id, &["chat"], &[0]).await;
    qb.query(&insert_sql("chat", "ev", "b1")).await.assert_ok();
    qa.query(&insert_sql("chat", "ev", "a4")).await.assert_ok();
    assert_eq!(
        next_message(&mut a_watcher, "chat").await,
        "a4",
        "B's publish did not reach A's subscriber"
    );

    assert_eq!(
        rows(
            &qa.query("SELECT name, length FROM pipes_settings WHERE name = 'chat'")
                .await
        ),
        [["chat", "10"]]
    );
    assert_eq!(
        rows(
            &qa.query("SELECT message FROM pipes_messages WHERE name = 'chat'")
                .await
        ),
        [["a1"], ["a2"], ["a3"], ["a4"]]
    );
    assert_eq!(
        rows(
            &qb.query("SELECT name, length FROM pipes_settings WHERE name = 'chat'")
                .await
        ),
        [["chat", "2"]]
    );
    assert_eq!(
        rows(
            &qb.query("SELECT message FROM pipes_messages WHERE name = 'chat'")
                .await
        ),
        [["b1"]]
    );
    server.stop().await;
}

async fn live_tables_and_show_status(backend: Backend) {
    let (server, a, b, mut qa, mut qb) = world(backend).await;
    qa.query("INSERT INTO users_auth (id, hash) VALUES (7, 'hashA')")
        .await
        .assert_ok();
    let (mut user7, hello) = browser(&server, a.dev_id, 7, "hashA").await;
    assert_eq!(hello["authorized"], true, "{hello}");
    subscribe(&server, &mut user7, a.dev_id, &["chat"], &[0]).await;
    let mut anon = anonymous(&server, a.dev_id).await;
    subscribe(&server, &mut anon, a.dev_id, &["chat"], &[1]).await;
    qa.query(&insert_sql("chat", "ev", "counted for A"))
        .await
        .assert_ok();

    assert_eq!(
        rows(
            &qb.query("SELECT name, users FROM pipes WHERE name = 'chat'")
                .await
        ),
        [["chat", "0"]]
    );
    assert_eq!(
        rows(
            &qa.query("SELECT name, users FROM pipes WHERE name = 'chat'")
                .await
        ),
        [["chat", "2"]]
    );
    let b_members = qb
        .query("SELECT * FROM users_in_pipes WHERE name = 'chat'")
        .await;
    assert!(b_members.rows().is_empty(), "{b_members:?}");
    assert_eq!(
        rows(
            &qa.query("SELECT user_id FROM users_in_pipes WHERE name = 'chat'")
                .await
        ),
        [["7"], ["0"]]
    );
    assert_eq!(
        rows(
            &qb.query("SELECT id, time FROM users_time WHERE id = 7")
                .await
        ),
        [["7", "-1"]],
        "B's user 7 was never seen: A's user 7 being online is not B's"
    );
    assert_eq!(
        rows(
            &qa.query("SELECT id, time FROM users_time WHERE id = 7")
                .await
        ),
        [["7", "0"]]
    );

    // SHOW STATUS in every scope: B's own figures only.
    for sql in ["SHOW STATUS", "SHOW SESSION STATUS", "SHOW GLOBAL STATUS"] {
        let status = qb.query(sql).await;
        let get = |name: &str| {
            status
                .rows()
                .iter()
                .find(|r| r[0] == name)
                .unwrap_or_else(|| panic!("{sql}: no {name} in {status:?}"))[1]
                .clone()
        };
        assert_eq!(get("id"), b.dev_id.to_string(), "{sql}");
        assert_eq!(get("user_online"), "0", "{sql}: A's WebSockets are not B's");
        assert_eq!(get("server_online"), "1", "{sql}: B's own session only");
        assert_eq!(get("messages"), "0", "{sql}: A's publishes are not B's");
    }
    let status = qa.query("SHOW STATUS").await;
    let find = |name: &str| {
        status
            .rows()
            .iter()
            .find(|r| r[0] == name)
            .map(|r| r[1].clone())
    };
    assert_eq!(find("id"), Some(a.dev_id.to_string()));
    assert_eq!(find("user_online").as_deref(), Some("2"));
    // A's publish (and the presence event of its user 7) are A's.
    assert!(find("messages").is_some_and(|n| n != "0"), "{status:?}");
    server.stop().await;
}

async fn user_tables(backend: Backend) {
    let (server, a, b, mut qa, mut qb) = world(backend).await;
    qa.query("INSERT INTO users_auth (id, hash) VALUES (7, 'hashA')")
        .await
        .assert_ok();
    qa.query("INSERT INTO users_data (id, data) VALUES (7, 'dataA')")
        .await
        .assert_ok();
    let (mut user7, hello) = browser(&server, a.dev_id, 7, "hashA").await;
    assert_eq!(hello["authorized"], true, "{hello}");

    // users_auth and users_data: B sees none of A's rows, and its writes to user 7 are its own.
    assert!(qb
        .query("SELECT * FROM users_auth WHERE id = 7")
        .await
        .rows()
        .is_empty());
    assert!(qb
        .query("SELECT * FROM users_data WHERE id = 7")
        .await
        .rows()
        .is_empty());
    qb.query("INSERT INTO users_auth (id, hash) VALUES (7, 'hashB')")
        .await
        .assert_ok();
    qb.query("INSERT INTO users_data (id, data) VALUES (7, 'dataB')")
        .await
        .assert_ok();
    let (_, hello) = browser(&server, a.dev_id, 7, "hashB").await;
    assert_eq!(
        hello["authorized"], false,
        "B's hash opens nothing of A's: {hello}"
    );
    let (_, hello) = browser(&server, b.dev_id, 7, "hashA").await;
    assert_eq!(
        hello["authorized"], false,
        "A's hash opens nothing of B's: {hello}"
    );
    qb.query("DELETE FROM users_auth WHERE id = 7")
        .await
        .assert_ok();
    qb.query("DELETE FROM users_data WHERE id = 7")
        .await
        .assert_ok();
    assert_eq!(
        rows(
            &qa.query("SELECT id, hash FROM users_auth WHERE id = 7")
                .await
        ),
        [["7", "hashA"]]
    );
    assert_eq!(
        rows(
            &qa.query("SELECT id, data FROM users_data WHERE id = 7")
                .await
        ),
        [["7", "dataA"]]
    );

    // users_messages: A's queue for its offline user 8 is invisible to B and survives B's DELETE; B's
    // private message to "user 7" never reaches A's user 7.
    qa.query("INSERT INTO users_messages (id, event, message) VALUES (8, 'ev', 'forA8')")
        .await
        .assert_ok();
    assert!(qb
        .query("SELECT * FROM users_messages WHERE id = 8")
        .await
        .rows()
        .is_empty());
    qb.query("DELETE FROM users_messages WHERE id = 8")
        .await
        .assert_ok();
    assert_eq!(
        rows(
            &qa.query("SELECT id, event, message FROM users_messages WHERE id = 8")
                .await
        ),
        [["8", "ev", "forA8"]]
    );
    qb.query("INSERT INTO users_messages (id, event, message) VALUES (7, 'ev', 'fromB')")
        .await
        .assert_ok();
    qa.query("INSERT INTO users_messages (id, event, message) VALUES (7, 'ev', 'fromA')")
        .await
        .assert_ok();
    let v = next_json(&mut user7).await;
    assert_eq!(v["pipe"], "msg", "{v}");
    assert_eq!(
        v["data"], "fromA",
        "B's private message reached A's user: {v}"
    );

    // revoked_tokens: A's list is A's; B revoking A's valid token changes nothing for A.
    let token9 = jwt(&a, 9);
    qa.query(&format!(
        "INSERT INTO revoked_tokens (token) VALUES ({})",
        quote(&token9)
    ))
    .await
    .assert_ok();
    assert!(qb
        .query("SELECT * FROM revoked_tokens")
        .await
        .rows()
        .is_empty());
    qb.query(&format!(
        "DELETE FROM revoked_tokens WHERE token = {}",
        quote(&token9)
    ))
    .await
    .assert_ok();
    assert_eq!(
        rows(&qa.query("SELECT token FROM revoked_tokens").await),
        [[token9.as_str()]]
    );
    let (_, hello) = browser(&server, a.dev_id, 9, &token9).await;
    assert_eq!(hello["authorized"], false, "still revoked for A: {hello}");

    let token7 = jwt(&a, 7);
    qb.query(&format!(
        "INSERT INTO revoked_tokens (token) VALUES ({})",
        quote(&token7)
    ))
    .await
    .assert_ok();
    // A's user 7 is neither kicked nor stripped of its hash, and A's token still logs it in.
    qa.query("INSERT INTO users_messages (id, event, message) VALUES (7, 'ev', 'still here')")
        .await
        .assert_ok();
    assert_eq!(next_json(&mut user7).await["data"], "still here");
    let (_, hello) = browser(&server, a.dev_id, 7, &token7).await;
    assert_eq!(hello["authorized"], true, "{hello}");
    assert_eq!(hello["data"], "hashA", "{hello}");
    // And A's token means nothing to B.
    let (_, hello) = browser(&server, b.dev_id, 7, &token7).await;
    assert_eq!(hello["authorized"], false, "{hello}");
    server.stop().await;
}

async fn no_way_into_another_database(backend: Backend) {
    let (server, a, b) = two_tenants(backend).await;
    let db_a = format!("db_{}", a.dev_id);
    let db_b = format!("db_{}", b.dev_id);
    let (user_a, user_b) = (a.dev_id.to_string(), b.dev_id.to_string());

    // Logging in to A's database, or as A with B's key.
    let refused = RawMysql::connect(&server)
        .await
        .expect("connect")
        .handshake(&user_b, &b.key, Some(&db_a))
        .await
        .expect("reply")
        .err();
    assert_eq!(refused, Some((15, "Select database failure".into())));
    let refused = RawMysql::connect(&server)
        .await
        .expect("connect")
        .handshake(&user_a, &b.key, Some("CometQL_v1"))
        .await
        .expect("reply")
        .err();
    assert_eq!(refused, Some((16, "Authentication failure".into())));
    let mut qb = RawMysql::connect(&server)
        .await
        .expect("connect")
        .handshake(&user_b, &b.key, Some(&db_b))
        .await
        .expect("reply")
        .expect("B's own db_<N> is B's");

    // USE (COM_INIT_DB) to A's database; the cluster prefix that switched tenants in the reference.
    assert_eq!(
        qb.init_db(&db_a).await.err(),
        (15, "Select database failure")
    );
    qb.init_db(&db_b).await.assert_ok();
    qb.init_db("CometQL_v1").await.assert_ok();
    for sql in [
        format!("cometqlcluster_v1 set dev_id={}; SHOW STATUS", a.dev_id),
        format!(
            "cometqlcluster_v1 set dev_id={}; SELECT * FROM users_auth WHERE id = 1",
            a.dev_id
        ),
    ] {
        assert_eq!(qb.query(&sql).await.err().0, 16, "{sql}");
    }
    let status = qb.query("SHOW STATUS").await;
    assert!(
        status
            .rows()
            .contains(&vec!["id".to_string(), user_b.clone()]),
        "still B: {status:?}"
    );

    // The same with the mariadb command-line client: `USE db_<A>` and `-D db_<A>`.
    let login = Login::new(server.cometql_port(), user_b.clone(), b.key.clone());
    let out = mariadb_query(&login, &format!("USE {db_a}; SHOW STATUS"))
        .await
        .expect("mariadb runs");
    assert!(!out.success(), "{out:?}");
    assert_eq!(
        out.error(),
        Some((15, "Select database failure".into())),
        "{out:?}"
    );
    assert!(
        !out.stdout.contains(&user_a),
        "nothing of A's printed: {out:?}"
    );
    let out = mariadb_query(&login.clone().database(Some(&db_a)), "SHOW STATUS")
        .await
        .expect("mariadb runs");
    assert_eq!(
        out.error(),
        Some((15, "Select database failure".into())),
        "{out:?}"
    );
    let out = mariadb_query(&login.database(Some(&db_b)), "SHOW STATUS")
        .await
        .expect("mariadb runs");
    assert!(out.success(), "{out:?}");
    assert!(
        out.rows().contains(&vec!["id".to_string(), user_b.clone()]),
        "{out:?}"
    );
    server.stop().await;
}

on_both_backends!(
    history_and_pipes_settings,
    live_tables_and_show_status,
    user_tables,
    no_way_into_another_database,
);
