//! Positions and recovery (issue 14, docs/websocket.md "Positions and recovery"): a connection that
//! subscribes with `subscription2` gets `offset` in every frame of its pipes and one `subscribed` frame per
//! pipe; reconnecting with its last position it gets the messages it missed, in order, then
//! `recovered:true`, or nothing and `recovered:false` when they cannot all be replayed. Legacy connections
//! on the same pipe keep byte-identical frames. Real server, real sockets, publishes over CometQL.

use halley_tests::browser::{wait_subscribers, Browser};
use halley_tests::cometql::insert_sql;
use halley_tests::frames::{json, pin};
use halley_tests::mysql_raw::RawMysql;
use halley_tests::{on_both_backends, Backend, Tenant, TestServer};
use serde_json::Value;

const PIPE: &str = "web_recovery";

async fn server(backend: Backend, tweak: impl FnOnce(&mut halley::config::Config)) -> TestServer {
    TestServer::start_with(backend, |c| {
        c.limits.publishes_per_sec = 100_000;
        c.limits.publish_burst = 100_000;
        c.limits.new_connections_per_ip_per_sec = 10_000;
        c.limits.new_connections_per_ip_burst = 10_000;
        tweak(c);
    })
    .await
}

async fn publish(q: &mut RawMysql, text: &str) {
    q.query(&insert_sql(PIPE, "e", text)).await.assert_ok();
}

/// The exact frame of a message published by `publish`, `message_send_time` pinned.
fn message(text: &str, offset: Option<u64>) -> String {
    let offset = offset.map_or(String::new(), |o| format!(r#""offset":{o},"#));
    format!(r#"{{"data":"{text}","event":"e","message_send_time":T,{offset}"pipe":"{PIPE}"}}"#)
}

fn subscribed(epoch: &str, offset: u64, recovered: bool) -> String {
    format!(
        r#"{{"data":{{"epoch":"{epoch}","offset":{offset},"recovered":{recovered}}},"event":"subscribed","pipe":"{PIPE}"}}"#
    )
}

/// Sends `subscription2` for PIPE (with a position when given) and reads up to its `subscribed` frame:
/// the frames before it (the replay) and the frame's (epoch, offset, recovered).
async fn subscribe2(b: &mut Browser, position: Option<(&str, u64)>) -> (Vec<String>, Value) {
    let line = match position {
        None => PIPE.to_string(),
        Some((epoch, offset)) => format!("{PIPE}\t{epoch}\t{offset}"),
    };
    b.send(&format!("subscription2\n{line}")).await;
    let mut before = Vec::new();
    loop {
        let frame = b.recv().await;
        let v = json(&frame);
        if v["event"] == "subscribed" {
            assert_eq!(v["pipe"], PIPE, "{frame}");
            return (before, v["data"].clone());
        }
        before.push(pin(&frame));
    }
}

/// The `offset` of a frame (pinned frames are not JSON any more).
fn offset_of(frame: &str) -> Option<u64> {
    let rest = &frame[frame.find(r#""offset":"#)? + 9..];
    rest[..rest.find(|c: char| !c.is_ascii_digit())?]
        .parse()
        .ok()
}

fn epoch_of(data: &Value) -> String {
    data["epoch"].as_str().expect("an epoch string").to_string()
}

async fn connect(server: &TestServer, tenant: &Tenant, tag: &str) -> Browser {
    Browser::connect(server, tenant.dev_id, 0, "", tag).await
}

async fn offsets_and_recovery_on_reconnect(backend: Backend) {
    let server = server(backend, |_| {}).await;
    let tenant = server.tenant("recovery@example.com").await;
    let mut q = RawMysql::login(&server, &tenant).await;

    let mut legacy = connect(&server, &tenant, "legacy").await;
    legacy.subscribe(&[PIPE]).await;
    let mut b = connect(&server, &tenant, "positions").await;
    let (replayed, data) = subscribe2(&mut b, None).await;
    assert!(replayed.is_empty(), "{replayed:?}");
    let epoch = epoch_of(&data);
    assert!(!epoch.is_empty());
    assert_eq!(data, json(&subscribed(&epoch, 0, false))["data"]);

    for i in 1..=3 {
        publish(&mut q, &format!("m{i}")).await;
    }
    for i in 1..=3 {
        b.expect(&message(&format!("m{i}"), Some(i))).await;
        // The legacy connection on the same pipe: the frame it always had, no offset.
        legacy.expect(&message(&format!("m{i}"), None)).await;
    }

    // Gone (a clean close); five published meanwhile; back with the last position processed.
    b.close().await;
    wait_subscribers(&server, tenant.dev_id, PIPE, 1).await;
    for i in 4..=8 {
        publish(&mut q, &format!("m{i}")).await;
    }
    let mut b = connect(&server, &tenant, "positions").await;
    let (replayed, data) = subscribe2(&mut b, Some((&epoch, 3))).await;
    let want: Vec<String> = (4..=8)
        .map(|i| message(&format!("m{i}"), Some(i)))
        .collect();
    assert_eq!(
        replayed, want,
        "the missed five, in order, before subscribed"
    );
    assert_eq!(data["epoch"], epoch.as_str());
    assert_eq!(data["offset"], 8);
    assert_eq!(data["recovered"], true);
    publish(&mut q, "m9").await;
    b.expect(&message("m9", Some(9))).await;
    b.expect_nothing().await;
    for i in 4..=9 {
        legacy.expect(&message(&format!("m{i}"), None)).await;
    }
    legacy.expect_nothing().await;
    server.stop().await;
}

async fn a_stale_position_replays_nothing(backend: Backend) {
    let server = server(backend, |c| c.recovery.window_messages = 3).await;
    let tenant = server.tenant("stale@example.com").await;
    let mut q = RawMysql::login(&server, &tenant).await;

    let mut b = connect(&server, &tenant, "stale").await;
    let (_, data) = subscribe2(&mut b, None).await;
    let epoch = epoch_of(&data);
    publish(&mut q, "m1").await;
    b.expect(&message("m1", Some(1))).await;
    b.close().await;
    wait_subscribers(&server, tenant.dev_id, PIPE, 0).await;
    // Five published while away, the window keeps three: the position (1) is older than the window.
    for i in 2..=6 {
        publish(&mut q, &format!("m{i}")).await;
    }
    let mut b = connect(&server, &tenant, "stale").await;
    let (replayed, data) = subscribe2(&mut b, Some((&epoch, 1))).await;
    assert!(replayed.is_empty(), "never a partial replay: {replayed:?}");
    assert_eq!(data, json(&subscribed(&epoch, 6, false))["data"]);
    // A position within the window does recover.
    let (replayed, data) = subscribe2(&mut b, Some((&epoch, 4))).await;
    assert_eq!(replayed, [message("m5", Some(5)), message("m6", Some(6))]);
    assert_eq!(data, json(&subscribed(&epoch, 6, true))["data"]);
    // Another epoch (another stream, or another node run): nothing replayed.
    let (replayed, data) = subscribe2(&mut b, Some(("0123456789abcdef", 4))).await;
    assert!(replayed.is_empty(), "{replayed:?}");
    assert_eq!(data, json(&subscribed(&epoch, 6, false))["data"]);
    // A position ahead of the pipe (a client confused about the stream): nothing replayed either.
    let (replayed, data) = subscribe2(&mut b, Some((&epoch, 7))).await;
    assert!(replayed.is_empty(), "{replayed:?}");
    assert_eq!(data["recovered"], false);
    publish(&mut q, "m7").await;
    b.expect(&message("m7", Some(7))).await;
    b.expect_nothing().await;
    server.stop().await;
}

/// A publisher runs while one client drops its connection (without a close handshake) and reconnects with
/// its last position, over and over: every message arrives exactly once and in order, replayed or live.
async fn publishes_racing_resubscribes_arrive_exactly_once(backend: Backend) {
    const MESSAGES: u64 = 300;
    let server = server(backend, |c| {
        c.recovery.window_messages = 1_000;
        c.recovery.replay_max = 1_000;
    })
    .await;
    let tenant = server.tenant("race@example.com").await;
    let mut q = RawMysql::login(&server, &tenant).await;

    let mut b = connect(&server, &tenant, "race").await;
    let (_, data) = subscribe2(&mut b, None).await;
    let epoch = epoch_of(&data);
    let publisher = tokio::spawn(async move {
        for i in 1..=MESSAGES {
            publish(&mut q, &format!("m{i}")).await;
        }
    });
    let mut seen: Vec<u64> = Vec::new();
    let mut round = 0;
    while seen.last() != Some(&MESSAGES) {
        // A few live frames, then the connection is dropped and made again.
        for _ in 0..7 {
            if seen.last() == Some(&MESSAGES) {
                break;
            }
            let v = json(&b.recv().await);
            seen.push(v["offset"].as_u64().expect("an offset"));
        }
        drop(b);
        round += 1;
        b = connect(&server, &tenant, "race").await;
        let last = seen.last().copied().unwrap_or(0);
        let (replayed, data) = subscribe2(&mut b, Some((&epoch, last))).await;
        assert_eq!(data["recovered"], true, "round {round}: {data}");
        seen.extend(replayed.iter().map(|f| offset_of(f).expect("an offset")));
        let top = data["offset"].as_u64().unwrap();
        assert_eq!(seen.last().copied().unwrap_or(0), top, "round {round}");
    }
    publisher.await.unwrap();
    assert_eq!(seen, (1..=MESSAGES).collect::<Vec<_>>());
    b.expect_nothing().await;
    eprintln!("{backend:?}: {MESSAGES} messages over {round} reconnects");
    server.stop().await;
}

/// A restart makes a new stream: positions of the old one are not honoured (the window lived in memory).
async fn a_restart_changes_the_epoch(backend: Backend) {
    let mut server = server(backend, |_| {}).await;
    let tenant = server.tenant("restart@example.com").await;
    let mut q = RawMysql::login(&server, &tenant).await;
    let mut b = connect(&server, &tenant, "restart").await;
    let (_, data) = subscribe2(&mut b, None).await;
    let epoch = epoch_of(&data);
    publish(&mut q, "m1").await;
    b.expect(&message("m1", Some(1))).await;
    drop(b);
    drop(q);
    server.restart().await;
    let mut b = connect(&server, &tenant, "restart").await;
    let (replayed, data) = subscribe2(&mut b, Some((&epoch, 1))).await;
    assert!(replayed.is_empty(), "{replayed:?}");
    assert_eq!(data["recovered"], false);
    assert_eq!(data["offset"], 0);
    assert_ne!(epoch_of(&data), epoch, "a new stream, a new epoch");
    server.stop().await;
}

/// `subscription` after `subscription2` on the same connection: back to plain frames, no `subscribed`.
async fn a_plain_subscription_turns_offsets_off(backend: Backend) {
    let server = server(backend, |_| {}).await;
    let tenant = server.tenant("plain@example.com").await;
    let mut q = RawMysql::login(&server, &tenant).await;
    let mut b = connect(&server, &tenant, "plain").await;
    let (_, data) = subscribe2(&mut b, None).await;
    assert_eq!(data["offset"], 0);
    publish(&mut q, "m1").await;
    b.expect(&message("m1", Some(1))).await;
    assert!(b.subscribe(&[PIPE]).await.is_empty(), "no subscribed frame");
    publish(&mut q, "m2").await;
    b.expect(&message("m2", None)).await;
    // And back: the stream went on meanwhile (m2 was offset 2).
    let (replayed, data) = subscribe2(&mut b, None).await;
    assert!(replayed.is_empty());
    assert_eq!(data["offset"], 2);
    b.expect_nothing().await;
    server.stop().await;
}

on_both_backends!(
    a_plain_subscription_turns_offsets_off,
    offsets_and_recovery_on_reconnect,
    a_stale_position_replays_nothing,
    publishes_racing_resubscribes_arrive_exactly_once,
    a_restart_changes_the_epoch,
);
