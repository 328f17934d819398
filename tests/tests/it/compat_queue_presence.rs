//! Private-message queue and presence (issue 3): a user who was offline gets every queued message once, in
//! order, on connect; the queue expires after its TTL; track_ pipes announce who comes and goes;
//! user_status_<id> tells online/offline across several connections of a user; users_time follows.

use std::time::Duration;

use halley_tests::browser::{unix_now, Browser};
use halley_tests::cometql::{ok, rows, strs, Cql};
use halley_tests::deploy::{Deployment, Target};
use halley_tests::frames::js;
use halley_tests::on_every_target;

async fn queued_messages_delivered_once_in_order(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("queue@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    let mut sql = vec!["INSERT INTO users_auth (id, hash) VALUES (70, 'h70')".to_string()];
    for i in 0..50 {
        sql.push(format!(
            "INSERT INTO users_messages (id, event, message) VALUES (70, 'ev{}', 'message {i}: it''s \"{i}\"')",
            i % 3
        ));
    }
    sql.push("SELECT message FROM users_messages WHERE id = 70".into());
    let r = cql.run(sql).await;
    for r in &r[1..51] {
        assert_eq!(ok(r), (0, 70));
    }
    let queued: Vec<String> = rows(&r[51]).into_iter().map(|mut r| r.remove(0)).collect();
    let expected: Vec<String> = (0..50)
        .map(|i| format!("message {i}: it's \"{i}\""))
        .collect();
    assert_eq!(queued, expected, "all 50 queued, oldest first");

    // All of them on the next authorized connect (not only 10), in order, each with fromQueue.
    let mut b = Browser::connect(d.ws(0), t.dev_id, 70, "h70", "first").await;
    for (i, text) in expected.iter().enumerate() {
        b.expect(&format!(
            r#"{{"data":{},"event":"ev{}","fromQueue":true,"message_send_time":T,"pipe":"msg"}}"#,
            js(text),
            i % 3
        ))
        .await;
    }
    b.expect_nothing().await;
    let left = cql.one("SELECT * FROM users_messages WHERE id = 70").await;
    assert!(rows(&left).is_empty(), "delivered messages leave the queue");
    b.close().await;
    d.wait_ws_connections(t.dev_id, 0).await;

    // Exactly once: the next connect gets none.
    let mut again = Browser::connect(d.ws(1), t.dev_id, 70, "h70", "again").await;
    again.expect_nothing().await;
    // An unauthorized connection claiming the id never drains the queue.
    again.close().await;
    d.wait_ws_connections(t.dev_id, 0).await;
    ok(&cql
        .one("INSERT INTO users_messages (id, event, message) VALUES (70, 'e', 'kept')")
        .await);
    let mut impostor = Browser::connect(d.ws(2), t.dev_id, 70, "bad", "impostor").await;
    impostor.expect_nothing().await;
    let mut owner = Browser::connect(d.ws(3), t.dev_id, 70, "h70", "owner").await;
    owner
        .expect(
            r#"{"data":"kept","event":"e","fromQueue":true,"message_send_time":T,"pipe":"msg"}"#,
        )
        .await;
    impostor.close().await;
    owner.close().await;
    d.stop().await;
}

async fn queued_messages_expire(target: Target) {
    // A 2 s TTL rather than 1 s: times have second resolution, so a 1 s TTL can expire a message within
    // milliseconds of its INSERT (sent at x.999), before the control SELECT below could see it.
    let d = Deployment::start_with(target, |c| c.messages.queue_ttl_secs = 2).await;
    let t = d.tenant("ttl@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    let r = cql
        .run([
            "INSERT INTO users_auth (id, hash) VALUES (71, 'h71')",
            "INSERT INTO users_messages (id, event, message) VALUES (71, 'e', 'short-lived')",
            "SELECT message FROM users_messages WHERE id = 71",
        ])
        .await;
    assert_eq!(strs(&rows(&r[2])), [["short-lived"]]);
    // Expiry is a matter of time, not of an event: 2 s after the INSERT the 2 s TTL has passed whatever
    // the fraction of a second it was sent at.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = cql
        .one("SELECT message FROM users_messages WHERE id = 71")
        .await;
    assert!(rows(&r).is_empty(), "expired: {:?}", rows(&r));
    let mut b = Browser::connect(d.ws(0), t.dev_id, 71, "h71", "late").await;
    assert!(b.authorized());
    b.expect_nothing().await;
    b.close().await;
    d.stop().await;
}

fn track(pipe: &str, event: &str, user_id: u64, uuid: &str) -> String {
    format!(
        r#"{{"data":{{"user_id":{user_id},"uuid":"{uuid}"}},"event":"{event}","message_send_time":T,"pipe":"{pipe}"}}"#
    )
}

async fn track_presence(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("presence@example.com").await;
    Cql::new(d.cql(), &t)
        .run(["INSERT INTO users_auth (id, hash) VALUES (72, 'h72')"])
        .await;
    let mut w = Browser::connect(d.ws(0), t.dev_id, 0, "", "watcher").await;
    let mut u = Browser::connect(d.ws(1), t.dev_id, 72, "h72", "user72").await;
    let mut a = Browser::connect(d.ws(2), t.dev_id, 0, "", "anon").await;
    assert!(w.subscribe(&["track_room"]).await.is_empty());

    // Existing subscribers hear about a newcomer; the newcomer hears nothing about itself.
    assert!(u.subscribe(&["track_room"]).await.is_empty());
    w.expect(&track("track_room", "subscription", 72, &u.uuid))
        .await;
    assert!(a.subscribe(&["web_x", "track_room"]).await.is_empty());
    let joined = track("track_room", "subscription", 0, &a.uuid);
    w.expect(&joined).await;
    u.expect(&joined).await;

    // Re-subscribing without the pipe is leaving it.
    u.subscribe(&["web_else"]).await;
    let left = track("track_room", "unsubscription", 72, &u.uuid);
    w.expect(&left).await;
    a.expect(&left).await;
    // So is closing the connection.
    let a_uuid = a.uuid.clone();
    a.close().await;
    w.expect(&track("track_room", "unsubscription", 0, &a_uuid))
        .await;
    w.expect_nothing().await;
    u.expect_nothing().await;
    w.close().await;
    u.close().await;
    d.stop().await;
}

async fn user_status_presence(target: Target) {
    let d = Deployment::start(target).await;
    let t = d.tenant("online@example.com").await;
    let cql = Cql::new(d.cql(), &t);
    let time = |r: &halley_tests::clients::StepResult| -> i64 { rows(r)[0][0].parse().unwrap() };
    let r = cql
        .run([
            "INSERT INTO users_auth (id, hash) VALUES (73, 'h73')",
            "SELECT time FROM users_time WHERE id = 73",
        ])
        .await;
    assert_eq!(time(&r[1]), -1);
    let mut w = Browser::connect(d.ws(0), t.dev_id, 0, "", "watcher").await;
    w.subscribe(&["user_status_73"]).await;

    // First connection of the user: online.
    let u1 = Browser::connect(d.ws(1), t.dev_id, 73, "h73", "u1").await;
    w.expect(r#"{"data":"online","event":"online","pipe":"user_status_73"}"#)
        .await;
    assert_eq!(
        time(&cql.one("SELECT time FROM users_time WHERE id = 73").await),
        0
    );
    // A second one, or an unauthorized one claiming the id: no event.
    let u2 = Browser::connect(d.ws(2), t.dev_id, 73, "h73", "u2").await;
    let claimed = Browser::connect(d.ws(3), t.dev_id, 73, "bad", "claimed").await;
    w.expect_nothing().await;
    claimed.close().await;
    // Closing one of two: still online, no event.
    u1.close().await;
    d.wait_ws_connections(t.dev_id, 2).await;
    w.expect_nothing().await;
    assert_eq!(
        time(&cql.one("SELECT time FROM users_time WHERE id = 73").await),
        0
    );
    // Closing the last: offline, and users_time is the disconnect time.
    let before = unix_now();
    u2.close().await;
    w.expect(r#"{"data":"offline","event":"offline","pipe":"user_status_73"}"#)
        .await;
    let after = unix_now();
    let last = time(&cql.one("SELECT time FROM users_time WHERE id = 73").await);
    assert!(
        (before..=after).contains(&last),
        "{last} in {before}..={after}"
    );
    // And online again on the next connect.
    let u3 = Browser::connect(d.ws(4), t.dev_id, 73, "h73", "u3").await;
    w.expect(r#"{"data":"online","event":"online","pipe":"user_status_73"}"#)
        .await;
    u3.close().await;
    w.expect(r#"{"data":"offline","event":"offline","pipe":"user_status_73"}"#)
        .await;
    w.close().await;
    d.stop().await;
}

on_every_target!(
    queued_messages_delivered_once_in_order,
    queued_messages_expire,
    track_presence,
    user_status_presence,
);
