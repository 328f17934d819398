//! Durable positions (issue 14; docs/websocket.md "subscription2"): a pipe that keeps history numbers its
//! messages in the database, so a page recovers across a server restart from the history; its epoch
//! changes only when the history is made anew, and positioned pages are told `gap` when the numbering
//! changes under them. `pipe_log` entries carry offsets for positioned connections only. Real server, real
//! sockets, publishes over CometQL.

use halley_tests::browser::{wait_subscribers, Browser};
use halley_tests::cometql::insert_sql;
use halley_tests::frames::{json, pin};
use halley_tests::mysql_raw::RawMysql;
use halley_tests::{on_both_backends, Backend, Tenant, TestServer};
use serde_json::Value;

const KEPT: &str = "web_kept";
const PLAIN: &str = "web_plain";

async fn server(backend: Backend) -> TestServer {
    TestServer::start_unthrottled(backend).await
}

async fn sql(q: &mut RawMysql, statement: &str) {
    q.query(statement).await.assert_ok();
}

async fn keep_history(q: &mut RawMysql, pipe: &str, length: u64) {
    sql(
        q,
        &format!("INSERT INTO pipes_settings (name, length) VALUES ('{pipe}', {length})"),
    )
    .await;
}

async fn publish(q: &mut RawMysql, pipe: &str, text: &str) {
    sql(q, &insert_sql(pipe, "e", text)).await;
}

/// The exact frame of a message published by `publish`, `message_send_time` pinned.
fn message(pipe: &str, text: &str, offset: Option<u64>) -> String {
    let offset = offset.map_or(String::new(), |o| format!(r#""offset":{o},"#));
    format!(r#"{{"data":"{text}","event":"e","message_send_time":T,{offset}"pipe":"{pipe}"}}"#)
}

fn gap(pipe: &str) -> String {
    format!(r#"{{"data":{{"pipe":"{pipe}"}},"event":"gap","pipe":"{pipe}"}}"#)
}

/// Sends `subscription2` with `lines` and reads until a `subscribed` frame for each pipe: per pipe, the
/// frames before its `subscribed` (its replay) and that frame's data.
async fn subscribe2(
    b: &mut Browser,
    lines: &[(&str, Option<(&str, u64)>)],
) -> Vec<(Vec<String>, Value)> {
    let text: Vec<String> = lines
        .iter()
        .map(|(pipe, position)| match position {
            None => pipe.to_string(),
            Some((epoch, offset)) => format!("{pipe}\t{epoch}\t{offset}"),
        })
        .collect();
    b.send(&format!("subscription2\n{}", text.join("\n"))).await;
    let mut out = Vec::new();
    for (pipe, _) in lines {
        let mut before = Vec::new();
        loop {
            let frame = b.recv().await;
            let v = json(&frame);
            if v["event"] == "subscribed" {
                assert_eq!(v["pipe"], *pipe, "{frame}");
                out.push((before, v["data"].clone()));
                break;
            }
            before.push(pin(&frame));
        }
    }
    out
}

fn epoch_of(data: &Value) -> String {
    data["epoch"].as_str().expect("an epoch string").to_string()
}

async fn connect(server: &TestServer, tenant: &Tenant, tag: &str) -> Browser {
    Browser::connect(server, tenant.dev_id, 0, "", tag).await
}

async fn a_durable_pipe_recovers_across_a_restart(backend: Backend) {
    let mut server = server(backend).await;
    let tenant = server.tenant("durable@example.com").await;
    let mut q = RawMysql::login(&server, &tenant).await;
    keep_history(&mut q, KEPT, 50).await;

    let mut b = connect(&server, &tenant, "durable").await;
    let got = subscribe2(&mut b, &[(KEPT, None), (PLAIN, None)]).await;
    let epoch = epoch_of(&got[0].1);
    let plain_epoch = epoch_of(&got[1].1);
    assert_eq!(
        (got[0].1["offset"].as_u64(), got[0].1["recovered"].as_bool()),
        (Some(0), Some(false))
    );
    for i in 1..=5 {
        publish(&mut q, KEPT, &format!("m{i}")).await;
        b.expect(&message(KEPT, &format!("m{i}"), Some(i))).await;
    }
    publish(&mut q, PLAIN, "p1").await;
    b.expect(&message(PLAIN, "p1", Some(1))).await;
    // pipe_log on a positioned connection: the entries carry their offsets.
    b.send(&format!("pipe_log\n{KEPT}\nm\n")).await;
    for i in 1..=5 {
        b.expect(&format!(
            r#"{{"data":"m{i}","event":"e","fromQueue":true,"message_send_time":T,"offset":{i},"pipe":"{KEPT}","user_id":0}}"#
        ))
        .await;
    }
    b.expect_nothing().await;
    b.close().await;
    wait_subscribers(&server, tenant.dev_id, KEPT, 0).await;
    publish(&mut q, KEPT, "m6").await;
    drop(q);

    server.restart().await;
    let mut q = RawMysql::login(&server, &tenant).await;
    for i in 7..=8 {
        publish(&mut q, KEPT, &format!("m{i}")).await;
    }
    // A legacy connection: pipe_log frames as always, no offset.
    let mut legacy = connect(&server, &tenant, "legacy").await;
    legacy.send(&format!("pipe_log\n{KEPT}\nm\n")).await;
    for i in 1..=8 {
        legacy
            .expect(&format!(
                r#"{{"data":"m{i}","event":"e","fromQueue":true,"message_send_time":T,"pipe":"{KEPT}","user_id":0}}"#
            ))
            .await;
    }
    legacy.expect_nothing().await;

    // A web_pipe2 relay (no subscriber to tell): stored with its sender, replayed with `user_id` as sent live.
    let mut sender = connect(&server, &tenant, "sender").await;
    sender.send(&format!("web_pipe2\n{KEPT}\ne\n*\nm9")).await;
    sender
        .expect(&format!(
            r#"{{"data":{{"message":"m9","number_messages":0}},"event":"answer","message_send_time":T,"pipe":"_answer_to_{KEPT}"}}"#
        ))
        .await;
    let relay = format!(
        r#"{{"data":"m9","event":"e","message_send_time":T,"offset":9,"pipe":"{KEPT}","user_id":0}}"#
    );

    let mut b = connect(&server, &tenant, "durable").await;
    let got = subscribe2(
        &mut b,
        &[(KEPT, Some((&epoch, 5))), (PLAIN, Some((&plain_epoch, 1)))],
    )
    .await;
    let mut want: Vec<String> = (6..=8)
        .map(|i| message(KEPT, &format!("m{i}"), Some(i)))
        .collect();
    want.push(relay);
    assert_eq!(got[0].0, want, "6..9 replayed from the history, in order");
    assert_eq!(
        epoch_of(&got[0].1),
        epoch,
        "the same epoch across the restart"
    );
    assert_eq!(
        (got[0].1["offset"].as_u64(), got[0].1["recovered"].as_bool()),
        (Some(9), Some(true))
    );
    // A pipe without history lived in memory: not recovered.
    assert!(got[1].0.is_empty(), "{:?}", got[1].0);
    assert_eq!(got[1].1["recovered"], false);
    assert_ne!(epoch_of(&got[1].1), plain_epoch);
    publish(&mut q, KEPT, "m10").await;
    b.expect(&message(KEPT, "m10", Some(10))).await;
    // The history cache (read by the legacy pipe_log above) took m9 and m10 with their offsets.
    b.send(&format!("pipe_log\n{KEPT}\nm\n")).await;
    for i in 1..=10 {
        b.expect(&format!(
            r#"{{"data":"m{i}","event":"e","fromQueue":true,"message_send_time":T,"offset":{i},"pipe":"{KEPT}","user_id":0}}"#
        ))
        .await;
    }
    b.expect_nothing().await;
    sender.expect_nothing().await;
    server.stop().await;
}

async fn deleted_history_and_new_settings(backend: Backend) {
    let mut server = server(backend).await;
    let tenant = server.tenant("deleted@example.com").await;
    let mut q = RawMysql::login(&server, &tenant).await;
    keep_history(&mut q, KEPT, 50).await;
    for i in 1..=3 {
        publish(&mut q, KEPT, &format!("m{i}")).await;
    }
    let mut b = connect(&server, &tenant, "deleted").await;
    let got = subscribe2(&mut b, &[(KEPT, None)]).await;
    let epoch = epoch_of(&got[0].1);
    assert_eq!(
        got[0].1["offset"], 3,
        "the numbering began with the first stored message"
    );
    b.close().await;
    sql(
        &mut q,
        &format!("DELETE FROM pipes_messages WHERE name = '{KEPT}'"),
    )
    .await;
    drop(q);
    server.restart().await;
    let mut q = RawMysql::login(&server, &tenant).await;

    // The history is gone: nothing to replay from, and never a partial replay.
    let mut b = connect(&server, &tenant, "deleted").await;
    let got = subscribe2(&mut b, &[(KEPT, Some((&epoch, 1)))]).await;
    assert!(got[0].0.is_empty(), "{:?}", got[0].0);
    assert_eq!(epoch_of(&got[0].1), epoch);
    assert_eq!(
        (got[0].1["offset"].as_u64(), got[0].1["recovered"].as_bool()),
        (Some(3), Some(false))
    );
    publish(&mut q, KEPT, "m4").await;
    b.expect(&message(KEPT, "m4", Some(4))).await;

    // History switched off and on: a new epoch, and the positioned page is told `gap` instead of the frame.
    sql(
        &mut q,
        &format!("DELETE FROM pipes_settings WHERE name = '{KEPT}'"),
    )
    .await;
    keep_history(&mut q, KEPT, 50).await;
    publish(&mut q, KEPT, "n1").await;
    b.expect(&gap(KEPT)).await;
    let got = subscribe2(&mut b, &[(KEPT, Some((&epoch, 4)))]).await;
    assert!(got[0].0.is_empty(), "{:?}", got[0].0);
    let second = epoch_of(&got[0].1);
    assert_ne!(second, epoch, "history made anew: a new epoch");
    assert_eq!(
        (got[0].1["offset"].as_u64(), got[0].1["recovered"].as_bool()),
        (Some(1), Some(false))
    );
    publish(&mut q, KEPT, "n2").await;
    b.expect(&message(KEPT, "n2", Some(2))).await;

    // Length 0 (off) then on again: messages meanwhile were not numbered, so the epoch changes too.
    keep_history(&mut q, KEPT, 0).await;
    publish(&mut q, KEPT, "x").await;
    b.expect(&gap(KEPT)).await;
    keep_history(&mut q, KEPT, 50).await;
    publish(&mut q, KEPT, "n3").await;
    b.expect(&gap(KEPT)).await;
    let got = subscribe2(&mut b, &[(KEPT, Some((&second, 2)))]).await;
    assert_eq!(got[0].1["recovered"], false);
    let third = epoch_of(&got[0].1);
    assert!(third != second && third != epoch);
    b.expect_nothing().await;
    server.stop().await;
}

/// Several CometQL connections publish to one durable pipe at once: the offsets the database gave are
/// contiguous and the live order is theirs (a replay from the history, in offset order, is the same list).
async fn concurrent_publishers_keep_one_order(backend: Backend) {
    const PUBLISHERS: usize = 4;
    const EACH: usize = 40;
    let server = server(backend).await;
    let tenant = server.tenant("order@example.com").await;
    let mut q = RawMysql::login(&server, &tenant).await;
    keep_history(&mut q, KEPT, 500).await;
    let mut b = connect(&server, &tenant, "order").await;
    let got = subscribe2(&mut b, &[(KEPT, None)]).await;
    let epoch = epoch_of(&got[0].1);
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let mut q = RawMysql::login(&server, &tenant).await;
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                publish(&mut q, KEPT, &format!("p{p}-{i}")).await;
            }
        }));
    }
    let total = PUBLISHERS * EACH;
    let mut live = Vec::new();
    for n in 1..=total as u64 {
        let v = json(&b.recv().await);
        assert_eq!(v["offset"].as_u64(), Some(n), "contiguous, in order: {v}");
        live.push(v["data"].as_str().unwrap().to_string());
    }
    for t in tasks {
        t.await.unwrap();
    }
    for p in 0..PUBLISHERS {
        let mine: Vec<&String> = live
            .iter()
            .filter(|t| t.starts_with(&format!("p{p}-")))
            .collect();
        let want: Vec<String> = (0..EACH).map(|i| format!("p{p}-{i}")).collect();
        assert_eq!(
            mine,
            want.iter().collect::<Vec<_>>(),
            "each publisher's own order"
        );
    }
    // The history holds the same order: a fresh connection at offset 0 replays it (beyond the window).
    let mut c = connect(&server, &tenant, "order2").await;
    let got = subscribe2(&mut c, &[(KEPT, Some((&epoch, 0)))]).await;
    assert_eq!(got[0].1["recovered"], true);
    let replayed: Vec<String> = got[0]
        .0
        .iter()
        .map(|f| {
            json(&f.replace("\"message_send_time\":T", "\"message_send_time\":0"))["data"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(replayed, live);
    b.expect_nothing().await;
    server.stop().await;
}

on_both_backends!(
    a_durable_pipe_recovers_across_a_restart,
    deleted_history_and_new_settings,
    concurrent_publishers_keep_one_order,
);
