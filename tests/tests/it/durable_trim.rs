//! History trimmed exactly to its length under concurrent publishers (issue 17; docs/compatibility.md:
//! "trimming to pipes_settings.length keeps exactly the newest messages"). Several CometQL connections
//! publish to pipes of different lengths at once, and one pipe's length is shortened while they do.
//! Afterwards each pipe holds exactly min(published, length) entries, the newest ones in the order a
//! positioned page saw them live (contiguous offsets), each publisher's kept messages are the tail of what
//! it sent, and the tenant's running storage totals are what the tables really hold. Both backends.

use std::collections::HashMap;

use halley::ids::DevId;
use halley_tests::browser::Browser;
use halley_tests::cometql::{history, insert_sql};
use halley_tests::frames::json;
use halley_tests::limits::counted_in_tables;
use halley_tests::mysql_raw::RawMysql;
use halley_tests::{on_both_backends, Backend, TestServer};
use tokio::sync::oneshot;

const PUBLISHERS: usize = 4;
const EACH: usize = 150;
/// The pipe whose length is cut while publishes run.
const SHRINK: &str = "trim_shrink";
const SHRINK_FROM: usize = 800;
const SHRINK_TO: usize = 30;
/// `(pipe, length)`; the last one is [`SHRINK`] at its first length.
const PIPES: [(&str, usize); 4] = [
    ("trim_10", 10),
    ("trim_100", 100),
    ("trim_1000", 1000),
    (SHRINK, SHRINK_FROM),
];
/// What each pipe receives in all.
const PER_PIPE: usize = PUBLISHERS * EACH;

fn final_length(pipe: &str) -> usize {
    if pipe == SHRINK {
        SHRINK_TO
    } else {
        PIPES.iter().find(|(p, _)| *p == pipe).unwrap().1
    }
}

async fn server(backend: Backend) -> TestServer {
    TestServer::start_unthrottled(backend).await
}

/// Publisher `c` sends `c{c}-{i}` to every pipe, `i` ascending; publisher 0 says when it is a third of the
/// way, for the length to be cut in the middle of the run.
async fn publish(mut q: RawMysql, c: usize, third: Option<oneshot::Sender<()>>) {
    let mut third = third;
    for i in 0..EACH {
        if i == EACH / 3 {
            if let Some(tx) = third.take() {
                let _ = tx.send(());
            }
        }
        for (pipe, _) in PIPES {
            q.query(&insert_sql(pipe, "e", &format!("c{c}-{i}")))
                .await
                .assert_ok();
        }
    }
}

/// Every entry the database holds for `pipe`, `(position, message)` by position, read with sqlx beside the
/// server: CometQL's SELECT and pipe_log list only the 99 newest.
async fn stored_entries(server: &TestServer, dev_id: u64, pipe: &str) -> Vec<(u64, String)> {
    let pool = server.database().await;
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT pos, message FROM pipe_history WHERE dev_id = $1 AND pipe = $2 ORDER BY pos",
    )
    .bind(dev_id as i64)
    .bind(pipe)
    .fetch_all(&pool)
    .await
    .expect("read pipe_history");
    pool.close().await;
    rows.into_iter().map(|(p, m)| (p as u64, m)).collect()
}

/// A positioned page on every pipe: per pipe, `(offset, data)` of each message in the order it arrived.
async fn watch(mut b: Browser) -> (Browser, HashMap<String, Vec<(u64, String)>>) {
    let mut live: HashMap<String, Vec<(u64, String)>> = HashMap::new();
    let mut n = 0;
    while n < PIPES.len() * PER_PIPE {
        let v = json(&b.recv().await);
        let pipe = v["pipe"].as_str().expect("a pipe").to_string();
        assert_eq!(v["event"], "e", "only the published messages: {v}");
        live.entry(pipe).or_default().push((
            v["offset"].as_u64().expect("an offset"),
            v["data"].as_str().unwrap().to_string(),
        ));
        n += 1;
    }
    (b, live)
}

async fn trimmed_exactly_under_concurrent_publishers(backend: Backend) {
    let server = server(backend).await;
    let tenant = server.tenant("trim@example.com").await;
    let mut q = RawMysql::login(&server, &tenant).await;
    let settings: Vec<String> = PIPES.iter().map(|(p, l)| format!("('{p}', {l})")).collect();
    q.query(&format!(
        "INSERT INTO pipes_settings (name, length) VALUES {}",
        settings.join(", ")
    ))
    .await
    .assert_ok();

    let mut b = Browser::connect(&server, tenant.dev_id, 0, "", "trimwatch").await;
    let names: Vec<&str> = PIPES.iter().map(|(p, _)| *p).collect();
    b.send(&format!("subscription2\n{}", names.join("\n")))
        .await;
    let mut subscribed = 0;
    while subscribed < PIPES.len() {
        if json(&b.recv().await)["event"] == "subscribed" {
            subscribed += 1;
        }
    }
    let watcher = tokio::spawn(watch(b));

    let (third_tx, third_rx) = oneshot::channel();
    let mut third_tx = Some(third_tx);
    let mut tasks = Vec::new();
    for c in 0..PUBLISHERS {
        let session = RawMysql::login(&server, &tenant).await;
        let signal = if c == 0 { third_tx.take() } else { None };
        tasks.push(tokio::spawn(publish(session, c, signal)));
    }
    third_rx.await.expect("publisher 0 got a third of the way");
    q.query(&format!(
        "INSERT INTO pipes_settings (name, length) VALUES ('{SHRINK}', {SHRINK_TO})"
    ))
    .await
    .assert_ok();
    for t in tasks {
        t.await.expect("a publisher");
    }
    let (mut b, live) = watcher.await.expect("the watcher");

    let mut total = 0;
    for (pipe, _) in PIPES {
        let length = final_length(pipe);
        let kept = PER_PIPE.min(length);
        total += kept;
        let seen = &live[pipe];
        assert_eq!(
            seen.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
            (1..=PER_PIPE as u64).collect::<Vec<_>>(),
            "{pipe}: live offsets contiguous"
        );
        let entries = stored_entries(&server, tenant.dev_id, pipe).await;
        assert_eq!(
            entries.len(),
            kept,
            "{backend:?}: {pipe} (length {length}, {PER_PIPE} published) holds {} entries",
            entries.len()
        );
        assert_eq!(
            entries,
            seen[PER_PIPE - kept..].to_vec(),
            "{pipe}: the newest, with the positions they were published at"
        );
        // What CometQL lists: the newest 99 at most, oldest first.
        let stored = history(&mut q, pipe).await;
        let shown = kept.min(99);
        let newest: Vec<String> = seen[PER_PIPE - shown..]
            .iter()
            .map(|(_, d)| d.clone())
            .collect();
        assert_eq!(stored, newest, "{pipe}: SELECT lists the newest, in order");
        let stored: Vec<String> = entries.into_iter().map(|(_, m)| m).collect();
        for c in 0..PUBLISHERS {
            let prefix = format!("c{c}-");
            let mine: Vec<&String> = stored.iter().filter(|t| t.starts_with(&prefix)).collect();
            let tail: Vec<String> = (EACH - mine.len()..EACH)
                .map(|i| format!("c{c}-{i}"))
                .collect();
            assert_eq!(
                mine,
                tail.iter().collect::<Vec<_>>(),
                "{pipe}: publisher {c}'s kept messages are the last it sent"
            );
        }
        // A positioned pipe_log: the kept entries keep their offsets (the newest 99 at most).
        b.send(&format!("pipe_log\n{pipe}\nm\n")).await;
        let logged: Vec<(u64, String)> = b
            .sync()
            .await
            .iter()
            .map(|f| json(f))
            .map(|v| {
                (
                    v["offset"].as_u64().expect("an offset"),
                    v["data"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            logged,
            seen[PER_PIPE - shown..].to_vec(),
            "{pipe}: pipe_log lists the newest with their live offsets"
        );
    }

    let in_tables = counted_in_tables(&server, tenant.dev_id).await;
    assert_eq!(in_tables.history_rows, total as i64, "rows in pipe_history");
    assert_eq!(
        server.ctx().storage.totals().stored(DevId(tenant.dev_id)),
        in_tables,
        "the tenant's running totals are what the tables hold"
    );
    b.close().await;
    server.stop().await;
}

on_both_backends!(trimmed_exactly_under_concurrent_publishers);
