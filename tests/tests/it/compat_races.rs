//! Regression tests for two races between a user's connections and the server's other paths: presence
//! announcements out of order when one connection closes as another opens, and a private message queued
//! while its user was connecting left in the queue although the user is online.

use halley::ids::{DevId, UserId};
use halley::tenant::unix_now;
use halley_tests::browser::Browser;
use halley_tests::cometql::Cql;
use halley_tests::deploy::{Deployment, Target};
use halley_tests::on_every_target;

const ROUNDS: usize = 40;

async fn presence_keeps_its_order(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("race@example.com").await;
    Cql::new(d.cql(), &t)
        .run(["INSERT INTO users_auth (id, hash) VALUES (73, 'h73')"])
        .await;
    let mut watcher = Browser::connect(d.ws(0), t.dev_id, 0, "", "watcher").await;
    watcher.subscribe(&["user_status_73"]).await;
    let mut user = Browser::connect(d.ws(1), t.dev_id, 73, "h73", "u").await;
    assert!(watcher.recv().await.contains("\"online\""));
    for round in 0..ROUNDS {
        // One connection closes while the next one opens: the user ends up online.
        let (_, next) = tokio::join!(
            user.close(),
            Browser::connect(d.ws(round), t.dev_id, 73, "h73", "n")
        );
        user = next;
        d.wait_ws_connections(t.dev_id, 2).await;
        // On a cluster the announcements come through Redis: read up to a marker behind them.
        let frames = d
            .read_pipe_up_to_now(&mut watcher, &t, "user_status_73")
            .await;
        if let Some(last) = frames.last() {
            assert!(
                last.contains("\"online\""),
                "round {round}: the user is online but the last announcement was {frames:?}"
            );
        }
    }
    d.stop().await;
}

async fn a_message_queued_while_connecting_is_delivered(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("race@example.com").await;
    Cql::new(d.cql(), &t)
        .run(["INSERT INTO users_auth (id, hash) VALUES (90, 'h90')"])
        .await;
    let (dev, user) = (DevId(t.dev_id), UserId(90));
    for round in 0..ROUNDS {
        let ctx = d.cql().ctx().clone();
        let text = format!("m{round}");
        let sender = tokio::spawn(async move {
            halley::commands::users_messages::send(&ctx, dev, user, "e", &text).await
        });
        let mut browser = Browser::connect(d.ws(round), t.dev_id, 90, "h90", "u").await;
        sender.await.expect("sender task").expect("send");
        // A second message after it, sent once the user is surely online, and read up to: the first is
        // either drained before it or pushed before it (on a cluster a push comes through Redis, so
        // the answer to a probe could come before it).
        let mark = format!("mark{round}");
        halley::commands::users_messages::send(d.cql().ctx(), dev, user, "e", &mark)
            .await
            .expect("send the mark");
        let mut frames = Vec::new();
        while !frames.last().is_some_and(|f: &String| f.contains(&mark)) {
            frames.push(browser.recv().await);
        }
        frames.extend(browser.sync().await);
        let got: Vec<_> = frames
            .iter()
            .filter(|f| f.contains(&format!("\"m{round}\"")))
            .collect();
        assert_eq!(
            got.len(),
            1,
            "round {round}: delivered exactly once, got {frames:?}"
        );
        let queued = d
            .cql()
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
        d.wait_ws_connections(t.dev_id, 0).await;
    }
    d.stop().await;
}

on_every_target!(
    presence_keeps_its_order,
    a_message_queued_while_connecting_is_delivered
);
