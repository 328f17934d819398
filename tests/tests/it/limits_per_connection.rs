//! docs/compatibility.md §5, limits of one connection, one user and one message: 32 pipes per connection (the 33rd
//! is not subscribed, error frame `Too many letters`), 16 connections linked to one user (the 17th stays anonymous),
//! and the 64 KiB message size (CometQL `ERROR 11 Data is too long`, also for a query over the 64 KiB query limit;
//! web_pipe2 `Data is too long` error frame, the connection staying open; a frame far past the limit closes with
//! 1009).

use anyhow::anyhow;
use halley_tests::browser::{anonymous, browser, subscribe, subscribers, wait_subscribers};
use halley_tests::cometql::{insert_sql, quote};
use halley_tests::frames::{error_text, next_json, next_message};
use halley_tests::mysql_raw::RawMysql;
use halley_tests::wait::{eventually, WAIT};
use halley_tests::{on_both_backends, Backend, TestServer};

const KIB64: usize = 64 * 1024;

async fn pipes_per_connection(backend: Backend) {
    let server = TestServer::start(backend).await;
    let t = server.tenant("a@example.com").await;
    let names: Vec<String> = (1..=33).map(|i| format!("p{i:02}")).collect();
    let mut ws = anonymous(&server, t.dev_id).await;
    ws.send_text(&format!("subscription\n{}", names.join("\n")))
        .await
        .expect("send subscription");
    let notice = next_json(&mut ws).await;
    assert_eq!(error_text(&notice), "Too many letters", "{notice}");
    assert_eq!(notice["data"]["code"], "403", "{notice}");
    for name in &names[..32] {
        wait_subscribers(&server, t.dev_id, name, 1).await;
    }
    assert_eq!(
        subscribers(&server, t.dev_id, "p33"),
        0,
        "the 33rd pipe is not subscribed"
    );
    // The CometQL view agrees, and only the first 32 deliver.
    let mut cql = RawMysql::login(&server, &t).await;
    let rows = cql
        .query("SELECT name, users FROM pipes WHERE name IN ('p01', 'p32', 'p33')")
        .await;
    assert_eq!(
        rows.rows(),
        [["p01", "1"], ["p32", "1"], ["p33", "0"]].map(|r| r.map(String::from).to_vec())
    );
    cql.query(&insert_sql("p33", "ev", "not for you"))
        .await
        .assert_ok();
    cql.query(&insert_sql("p32", "ev", "for you"))
        .await
        .assert_ok();
    assert_eq!(next_message(&mut ws, "p32").await, "for you");
    // The connection stays usable: a new set of 32 replaces the old one without a notice.
    ws.send_text(&format!("subscription\n{}", names[1..].join("\n")))
        .await
        .expect("send subscription");
    wait_subscribers(&server, t.dev_id, "p33", 1).await;
    wait_subscribers(&server, t.dev_id, "p01", 0).await;
    cql.query(&insert_sql("p33", "ev", "now yes"))
        .await
        .assert_ok();
    assert_eq!(next_message(&mut ws, "p33").await, "now yes");
    server.stop().await;
}

async fn connections_per_user(backend: Backend) {
    let server = TestServer::start(backend).await;
    let t = server.tenant("a@example.com").await;
    let mut cql = RawMysql::login(&server, &t).await;
    cql.query("INSERT INTO users_auth (id, hash) VALUES (7, 'hash7')")
        .await
        .assert_ok();
    let mut linked = Vec::new();
    for i in 0..16 {
        let (ws, hello) = browser(&server, t.dev_id, 7, "hash7").await;
        assert_eq!(hello["authorized"], true, "connection {i}: {hello}");
        assert_eq!(hello["data"], "hash7", "{hello}");
        linked.push(ws);
    }
    let (mut extra, hello) = browser(&server, t.dev_id, 7, "hash7").await;
    assert_eq!(
        hello["authorized"], false,
        "the 17th stays anonymous: {hello}"
    );
    assert_eq!(hello["data"], "", "{hello}");
    // Anonymous for everything: users_in_pipes shows user 0, private messages do not reach it.
    subscribe(&server, &mut extra, t.dev_id, &["room"], &[0]).await;
    let rows = cql
        .query("SELECT user_id FROM users_in_pipes WHERE name = 'room'")
        .await;
    assert_eq!(rows.rows(), [vec!["0".to_string()]]);
    cql.query("INSERT INTO users_messages (id, event, message) VALUES (7, 'ev', 'private')")
        .await
        .assert_ok();
    for ws in &mut linked {
        let v = next_json(ws).await;
        assert_eq!(
            (v["pipe"].as_str(), v["data"].as_str()),
            (Some("msg"), Some("private")),
            "{v}"
        );
    }
    cql.query(&insert_sql("room", "ev", "sync"))
        .await
        .assert_ok();
    assert_eq!(
        next_message(&mut extra, "room").await,
        "sync",
        "the private message did not reach the anonymous 17th"
    );
    // Once one linked connection is gone, a new one with the hash is linked again.
    linked.pop().expect("one").close().await.expect("close");
    let (ws, hello) = eventually(WAIT, || async {
        let (ws, hello) = browser(&server, t.dev_id, 7, "hash7").await;
        if hello["authorized"] == true {
            Ok((ws, hello))
        } else {
            ws.close().await.ok();
            Err(anyhow!("still anonymous: {hello}"))
        }
    })
    .await
    .expect("a slot for the user frees up");
    assert_eq!(hello["data"], "hash7");
    linked.push(ws);
    server.stop().await;
}

/// An INSERT whose text is exactly `len` bytes long, publishing one message of x's to `pipe`.
fn insert_of_len(pipe: &str, len: usize) -> (String, String) {
    let empty = insert_sql(pipe, "ev", "");
    let message = "x".repeat(len - empty.len());
    let sql = insert_sql(pipe, "ev", &message);
    assert_eq!(sql.len(), len);
    (sql, message)
}

async fn cometql_message_and_query_size(backend: Backend) {
    // Default limits: 64 KiB for a query and for a message.
    let server = TestServer::start(backend).await;
    let t = server.tenant("a@example.com").await;
    let mut watcher = anonymous(&server, t.dev_id).await;
    subscribe(&server, &mut watcher, t.dev_id, &["big"], &[0]).await;
    let mut cql = RawMysql::login(&server, &t).await;
    let (sql, message) = insert_of_len("big", KIB64);
    cql.query(&sql).await.assert_ok();
    assert_eq!(
        next_message(&mut watcher, "big").await,
        message,
        "a 64 KiB query goes through"
    );
    let (sql, _) = insert_of_len("big", KIB64 + 1);
    assert_eq!(cql.query(&sql).await.err(), (11, "Data is too long"));
    // The session goes on.
    cql.query(&insert_sql("big", "ev", "small"))
        .await
        .assert_ok();
    assert_eq!(next_message(&mut watcher, "big").await, "small");
    server.stop().await;

    // Queries may be longer than messages: then the message limit itself answers.
    let server = TestServer::start_with(backend, |c| c.cometql.max_query_bytes = 4 * KIB64).await;
    let t = server.tenant("a@example.com").await;
    let mut watcher = anonymous(&server, t.dev_id).await;
    subscribe(&server, &mut watcher, t.dev_id, &["big"], &[0]).await;
    let mut cql = RawMysql::login(&server, &t).await;
    let at_limit = "y".repeat(KIB64);
    cql.query(&insert_sql("big", "ev", &at_limit))
        .await
        .assert_ok();
    assert_eq!(next_message(&mut watcher, "big").await, at_limit);
    let over = "z".repeat(KIB64 + 1);
    assert_eq!(
        cql.query(&insert_sql("big", "ev", &over)).await.err(),
        (11, "Data is too long")
    );
    assert_eq!(
        cql.query(&format!(
            "INSERT INTO users_messages (id, event, message) VALUES (7, 'ev', {})",
            quote(&over)
        ))
        .await
        .err(),
        (11, "Data is too long")
    );
    // Nothing of the refused message was published.
    cql.query(&insert_sql("big", "ev", "after"))
        .await
        .assert_ok();
    assert_eq!(next_message(&mut watcher, "big").await, "after");
    server.stop().await;
}

fn web_pipe2_text(pipe: &str, message: &str) -> String {
    format!("web_pipe2\n{pipe}\nev\n*\n{message}")
}

async fn web_pipe2_message_size(backend: Backend) {
    let server = TestServer::start(backend).await;
    let t = server.tenant("a@example.com").await;
    let mut watcher = anonymous(&server, t.dev_id).await;
    subscribe(&server, &mut watcher, t.dev_id, &["web_big"], &[0]).await;
    let mut sender = anonymous(&server, t.dev_id).await;

    // A message of exactly the limit is relayed.
    let at_limit = "a".repeat(KIB64);
    sender
        .send_text(&web_pipe2_text("web_big", &at_limit))
        .await
        .expect("send");
    let answer = next_json(&mut sender).await;
    assert_eq!(
        answer["pipe"],
        "_answer_to_web_big",
        "{}",
        cut_json(&answer)
    );
    assert_eq!(next_message(&mut watcher, "web_big").await, at_limit);

    // One byte more: an error frame, nothing relayed, the connection stays open.
    let over = "b".repeat(KIB64 + 1);
    sender
        .send_text(&web_pipe2_text("web_big", &over))
        .await
        .expect("send");
    let refused = next_json(&mut sender).await;
    assert_eq!(
        error_text(&refused),
        "Data is too long",
        "{}",
        cut_json(&refused)
    );
    sender
        .send_text(&web_pipe2_text("web_big", "small"))
        .await
        .expect("send");
    assert_eq!(next_json(&mut sender).await["pipe"], "_answer_to_web_big");
    assert_eq!(
        next_message(&mut watcher, "web_big").await,
        "small",
        "the refused one was not relayed"
    );

    // A frame far past the limit closes the connection with 1009.
    let mut huge = anonymous(&server, t.dev_id).await;
    huge.send_text(&web_pipe2_text("web_big", &"c".repeat(2 * KIB64)))
        .await
        .expect("send");
    let closed = huge.expect_closed(WAIT).await.expect("closed");
    assert_eq!(closed.as_ref().map(|c| c.0), Some(1009), "{closed:?}");
    server.stop().await;
}

fn cut_json(v: &serde_json::Value) -> String {
    v.to_string().chars().take(300).collect()
}

on_both_backends!(
    pipes_per_connection,
    connections_per_user,
    cometql_message_and_query_size,
    web_pipe2_message_size,
);
