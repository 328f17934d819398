//! The drain of a long queue under live traffic (issue 17): a user with 20,000 queued private messages
//! connects while another CometQL connection keeps sending it live messages. The page gets every message
//! exactly once, the queue in order first, then what was sent while and after it connected, in the order it
//! was sent (docs/cometql.md, users_messages: "everything comes in order, queue first"). Bodies carry
//! sequence numbers so that a loss, a repeat or a swap names the message. Both backends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use halley_tests::browser::Browser;
use halley_tests::frames::json;
use halley_tests::limits::counted_in_tables;
use halley_tests::mysql_raw::RawMysql;
use halley_tests::{on_both_backends, Backend, TestServer};

const QUEUED: usize = 20_000;
/// Rows per INSERT while filling the queue (well under the 64 KiB statement limit).
const ROWS: usize = 500;
/// Live messages still sent once the page has seen the first live one (after the drain).
const AFTER_DRAIN: usize = 50;
const USER: u64 = 77;
const HASH: &str = "drainhash";

async fn server(backend: Backend) -> TestServer {
    TestServer::start_with(backend, |c| {
        c.limits.publishes_per_sec = 1_000_000;
        c.limits.publish_burst = 1_000_000;
        c.limits.queued_messages_per_user = 1_000_000;
        c.limits.queued_messages_per_tenant = 1_000_000;
        c.messages.queue_ttl_secs = 3600;
    })
    .await
}

fn private(user: u64, rows: impl Iterator<Item = String>) -> String {
    let values: Vec<String> = rows.map(|m| format!("({user}, 'pm', '{m}')")).collect();
    format!(
        "INSERT INTO users_messages (id, event, message) VALUES {}",
        values.join(", ")
    )
}

/// A received `msg` frame: its body and whether it came from the queue.
fn body(frame: &str) -> (String, bool) {
    let v = json(frame);
    assert_eq!(
        (v["pipe"].as_str(), v["event"].as_str()),
        (Some("msg"), Some("pm")),
        "{frame}"
    );
    (
        v["data"].as_str().expect("a text body").to_string(),
        v["fromQueue"] == true,
    )
}

async fn a_long_queue_drains_under_live_messages(backend: Backend) {
    let started = std::time::Instant::now();
    let server = server(backend).await;
    let tenant = server.tenant("drain@example.com").await;
    let mut q = RawMysql::login(&server, &tenant).await;
    q.query(&format!(
        "INSERT INTO users_auth (id, hash) VALUES ({USER}, '{HASH}')"
    ))
    .await
    .assert_ok();
    for start in (0..QUEUED).step_by(ROWS) {
        q.query(&private(
            USER,
            (start..(start + ROWS).min(QUEUED)).map(|i| format!("q{i}")),
        ))
        .await
        .assert_ok();
    }
    assert_eq!(
        counted_in_tables(&server, tenant.dev_id)
            .await
            .queued_messages,
        QUEUED as i64,
        "the queue is stored"
    );

    // The live sender: one message after the other, each acknowledged before the next, until told to
    // stop; it starts before the page connects so that some of its messages join the queue.
    let stop = Arc::new(AtomicBool::new(false));
    let mut live_q = RawMysql::login(&server, &tenant).await;
    let sender = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut sent = 0usize;
            while !stop.load(Ordering::SeqCst) {
                live_q
                    .query(&private(USER, std::iter::once(format!("l{sent}"))))
                    .await
                    .assert_ok();
                sent += 1;
                // Live traffic, not a flood: the page must be able to get ahead of it.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let filled = started.elapsed();

    let mut b = Browser::connect(&server, tenant.dev_id, USER, HASH, "drain").await;
    assert!(b.authorized());
    let mut got: Vec<(String, bool)> = Vec::new();
    // Read until the drain is over (a message that no longer comes from the queue), then let the
    // sender go on a little: those are live for sure.
    loop {
        let (text, queued) = body(&b.recv().await);
        got.push((text, queued));
        if !queued {
            break;
        }
    }
    let live_at = got.len();
    while got.len() < live_at + AFTER_DRAIN {
        got.push(body(&b.recv().await));
    }
    stop.store(true, Ordering::SeqCst);
    let sent = sender.await.expect("the live sender");
    // Whatever is still on its way: commands are answered in order after every message written before.
    for frame in b.sync().await {
        got.push(body(&frame));
    }

    let texts: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    let want: Vec<String> = (0..QUEUED)
        .map(|i| format!("q{i}"))
        .chain((0..sent).map(|i| format!("l{i}")))
        .collect();
    if texts != want {
        let mut seen = std::collections::HashMap::<&str, usize>::new();
        for t in &texts {
            *seen.entry(t).or_default() += 1;
        }
        let lost: Vec<&String> = want
            .iter()
            .filter(|w| !seen.contains_key(w.as_str()))
            .collect();
        let repeated: Vec<(&&str, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
        let first_swap = texts
            .iter()
            .zip(&want)
            .position(|(g, w)| g != w)
            .map(|at| (at, texts[at], want[at].as_str()));
        panic!(
            "{backend:?}: got {} messages, want {} ({QUEUED} queued + {sent} live): {} lost {:?}..., \
             {} repeated {:?}..., first difference (index, got, want) {first_swap:?}",
            texts.len(),
            want.len(),
            lost.len(),
            &lost[..lost.len().min(10)],
            repeated.len(),
            &repeated[..repeated.len().min(10)],
        );
    }
    eprintln!(
        "{backend:?}: {QUEUED} queued + {sent} live, {} of the live ones joined the queue; \
         queue filled in {filled:?}, drained with live traffic in {:?} (informational)",
        live_at - 1 - QUEUED,
        started.elapsed() - filled
    );
    // The queue came marked as such; after the first live message, none is.
    assert!(got[..QUEUED].iter().all(|(_, queued)| *queued));
    assert!(got[live_at..].iter().all(|(_, queued)| !*queued));
    assert_eq!(
        counted_in_tables(&server, tenant.dev_id)
            .await
            .queued_messages,
        0,
        "nothing left in the queue"
    );
    b.close().await;
    server.stop().await;
}

on_both_backends!(a_long_queue_drains_under_live_messages);
