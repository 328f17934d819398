//! Regression tests for two races between a user's connections and the server's other paths: presence
//! announcements out of order when one connection closes as another opens, and a private message queued
//! while its user was connecting left in the queue although the user is online.

use halley::ids::{DevId, UserId};
use halley::tenant::unix_now;
use halley_tests::browser::{wait_ws_connections, Browser};
use halley_tests::cometql::Cql;
use halley_tests::{on_both_backends, Backend, TestServer};

const ROUNDS: usize = 40;

async fn presence_keeps_its_order(backend: Backend) {
    let server = TestServer::start(backend).await;
    let t = server.tenant("race@example.com").await;
    Cql::new(&server, &t)
        .run(["INSERT INTO users_auth (id, hash) VALUES (73, 'h73')"])
        .await;
    let mut watcher = Browser::connect(&server, t.dev_id, 0, "", "watcher").await;
    watcher.subscribe(&["user_status_73"]).await;
    let mut user = Browser::connect(&server, t.dev_id, 73, "h73", "u").await;
    assert!(watcher.recv().await.contains("\"online\""));
    for round in 0..ROUNDS {
        // One connection closes while the next one opens: the user ends up online.
        let (_, next) = tokio::join!(
            user.close(),
            Browser::connect(&server, t.dev_id, 73, "h73", "n")
        );
        user = next;
        wait_ws_connections(&server, t.dev_id, 2).await;
        let frames = watcher.sync().await;
        if let Some(last) = frames.last() {
            assert!(
                last.contains("\"online\""),
                "round {round}: the user is online but the last announcement was {frames:?}"
            );
        }
    }
    server.stop().await;
}

async fn a_message_queued_while_connecting_is_delivered(backend: Backend) {
    let server = TestServer::start(backend).await;
    let t = server.tenant("race@example.com").await;
    Cql::new(&server, &t)
        .run(["INSERT INTO users_auth (id, hash) VALUES (90, 'h90')"])
        .await;
    let (dev, user) = (DevId(t.dev_id), UserId(90));
    for round in 0..ROUNDS {
        let ctx = server.ctx().clone();
        let text = format!("m{round}");
        let sender = tokio::spawn(async move {
            halley::commands::users_messages::send(&ctx, dev, user, "e", &text).await
        });
        let mut browser = Browser::connect(&server, t.dev_id, 90, "h90", "u").await;
        sender.await.expect("sender task").expect("send");
        let frames = browser.sync().await;
        let got: Vec<_> = frames
            .iter()
            .filter(|f| f.contains(&format!("\"m{round}\"")))
            .collect();
        assert_eq!(
            got.len(),
            1,
            "round {round}: delivered exactly once, got {frames:?}"
        );
        let queued = server
            .ctx()
            .storage
            .queued_messages(dev, user, unix_now(), 10)
            .await
            .expect("queue");
        assert!(
            queued.is_empty(),
            "round {round}: left in the queue: {queued:?}"
        );
        browser.close().await;
        wait_ws_connections(&server, t.dev_id, 0).await;
    }
    server.stop().await;
}

on_both_backends!(
    presence_keeps_its_order,
    a_message_queued_while_connecting_is_delivered
);
