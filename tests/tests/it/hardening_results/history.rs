//! The bounded history caches, in process: the history-length cache (item 9) and the cache of the
//! newest entries that CometQL SELECTs and the browser's `pipe_log` read through (item 12).

use halley_tests::ws::WsClient;
use halley_tests::{on_both_backends, Backend, TestServer};

use super::{message, metric, streamed};
use halley_tests::browser::anonymous;
use halley_tests::cometql::{history, insert_sql, multi_insert_sql};
use halley_tests::mysql_raw::RawMysql;
use halley_tests::wait::WAIT;

/// Item 9. Publishing to many distinct pipes leaves at most `history_lengths_entries` of them in the
/// history-length cache (seen in /metrics), and a pipe whose length was forgotten still keeps its history
/// (the database is asked again).
async fn the_history_length_cache_is_bounded(backend: Backend) {
    const ENTRIES: usize = 50;
    let server = TestServer::start_with(backend, |c| {
        c.cache.history_lengths_entries = ENTRIES;
        c.limits.publish_burst = 100_000;
        c.limits.publishes_per_sec = 100_000;
    })
    .await;
    let t = server.tenant("lengths@example.com").await;
    let mut q = RawMysql::login(&server, &t).await;
    q.query("INSERT INTO pipes_settings (name, length) VALUES ('kept', 2)")
        .await
        .assert_ok();
    q.query(&insert_sql("kept", "e", "k1")).await.assert_ok();
    for batch in 0..10 {
        let rows: Vec<String> = (0..100)
            .map(|i| format!("('p{batch}_{i}', 'e', 'x')"))
            .collect();
        q.query(&format!(
            "INSERT INTO pipes_messages (name, event, message) VALUES {}",
            rows.join(", ")
        ))
        .await
        .assert_ok();
    }
    let cached = metric(server.http_addr(), "halley_history_lengths_cached")
        .await
        .expect("the cache size is in /metrics");
    assert!(
        (1.0..=ENTRIES as f64).contains(&cached),
        "{cached} pipe lengths cached after 1,001 distinct pipes, bound {ENTRIES}"
    );
    // `kept` was evicted long ago: its setting is read again and still applies.
    q.query(&insert_sql("kept", "e", "k2")).await.assert_ok();
    q.query(&insert_sql("kept", "e", "k3")).await.assert_ok();
    let got = q
        .query("SELECT message FROM pipes_messages WHERE name = 'kept'")
        .await;
    assert_eq!(got.rows(), &[vec!["k2".to_string()], vec!["k3".into()]]);
    server.stop().await;
}

/// `pipe_log` over a fresh anonymous connection: the `data` of the `n` history frames it answers with.
async fn pipe_log(server: &TestServer, dev_id: u64, pipe: &str, n: usize) -> Vec<String> {
    let mut ws: WsClient = anonymous(server, dev_id).await;
    ws.send_text(&format!("pipe_log\n{pipe}\nmk\n"))
        .await
        .expect("send pipe_log");
    let mut out = Vec::new();
    for _ in 0..n {
        let v = ws.recv_json(WAIT).await.expect("a history frame");
        assert_eq!(v["fromQueue"], true, "not a history frame: {v}");
        out.push(v["data"].as_str().expect("data").to_string());
    }
    let _ = ws.close().await;
    out
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Item 12. History reads by CometQL and by `pipe_log` go through one cache: a second read is a hit
/// (counted in /metrics), writes, trims and deletes are seen at once, and the cached bytes stay within
/// `[cache] history_bytes` however many pipes are read.
async fn history_reads_are_cached_right_and_bounded(backend: Backend) {
    const BYTES: usize = 64 * 1024;
    let server = TestServer::start_with(backend, |c| {
        c.cache.history_bytes = BYTES;
        c.limits.publish_burst = 100_000;
        c.limits.publishes_per_sec = 100_000;
    })
    .await;
    let t = server.tenant("cache@example.com").await;
    let http = server.http_addr();
    let mut q = RawMysql::login(&server, &t).await;
    q.query("INSERT INTO pipes_settings (name, length) VALUES ('web_h', 3)")
        .await
        .assert_ok();
    q.query(&multi_insert_sql(
        "web_h",
        "e",
        ["m1", "m2", "m3", "m4", "m5end"],
    ))
    .await
    .assert_ok();
    let hits = || async {
        metric(http, "halley_history_cache_hits_total")
            .await
            .expect("hits")
    };
    let h0 = hits().await;
    assert_eq!(
        history(&mut q, "web_h").await,
        strings(&["m3", "m4", "m5end"])
    );
    // The browser's pipe_log reads the same cached entries.
    assert_eq!(
        pipe_log(&server, t.dev_id, "web_h", 3).await,
        strings(&["m3", "m4", "m5end"])
    );
    assert_eq!(
        history(&mut q, "web_h").await,
        strings(&["m3", "m4", "m5end"])
    );
    assert_eq!(
        hits().await,
        h0 + 2.0,
        "pipe_log and the second SELECT are cache hits"
    );

    // A publish is seen at once (and trims).
    q.query(&insert_sql("web_h", "e", "m6end"))
        .await
        .assert_ok();
    assert_eq!(
        pipe_log(&server, t.dev_id, "web_h", 3).await,
        strings(&["m4", "m5end", "m6end"])
    );
    assert_eq!(
        history(&mut q, "web_h").await,
        strings(&["m4", "m5end", "m6end"])
    );
    // Deleting one entry by id.
    let id = q
        .query("SELECT id, message FROM pipes_messages WHERE name = 'web_h'")
        .await
        .rows()
        .iter()
        .find(|r| r[1] == "m5end")
        .expect("m5end")[0]
        .clone();
    q.query(&format!("DELETE FROM pipes_messages WHERE id = '{id}'"))
        .await
        .assert_ok();
    assert_eq!(history(&mut q, "web_h").await, strings(&["m4", "m6end"]));
    // A shorter length trims at the next publish.
    q.query("INSERT INTO pipes_settings (name, length) VALUES ('web_h', 2)")
        .await
        .assert_ok();
    q.query(&insert_sql("web_h", "e", "m7end"))
        .await
        .assert_ok();
    assert_eq!(
        pipe_log(&server, t.dev_id, "web_h", 2).await,
        strings(&["m6end", "m7end"])
    );
    // Clearing the pipe, then removing its settings.
    q.query("DELETE FROM pipes_messages WHERE name = 'web_h'")
        .await
        .assert_ok();
    assert!(history(&mut q, "web_h").await.is_empty());
    q.query(&insert_sql("web_h", "e", "m8end"))
        .await
        .assert_ok();
    assert_eq!(history(&mut q, "web_h").await, strings(&["m8end"]));
    q.query("DELETE FROM pipes_settings WHERE name = 'web_h'")
        .await
        .assert_ok();
    assert!(history(&mut q, "web_h").await.is_empty());

    // Many pipes of 10 x 1 KiB read: the cache keeps within its bytes, and every read is right.
    let body: Vec<String> = (0..10).map(|i| message(i, 1024)).collect();
    for p in 0..40 {
        let pipe = format!("web_many{p}");
        q.query(&format!(
            "INSERT INTO pipes_settings (name, length) VALUES ('{pipe}', 10)"
        ))
        .await
        .assert_ok();
        q.query(&multi_insert_sql(
            &pipe,
            "e",
            body.iter().map(String::as_str),
        ))
        .await
        .assert_ok();
    }
    for round in 0..2 {
        for p in 0..40 {
            let got = history(&mut q, &format!("web_many{p}")).await;
            assert_eq!(got, body, "round {round}, pipe {p}");
            let bytes = metric(http, "halley_history_cache_bytes")
                .await
                .expect("bytes");
            assert!(
                bytes > 0.0 && bytes <= BYTES as f64,
                "{bytes} bytes of history cached, bound {BYTES}"
            );
        }
    }
    let pipes = metric(http, "halley_history_cache_pipes")
        .await
        .expect("pipes");
    assert!(
        pipes < 40.0,
        "{pipes} pipes of 10 KiB cached within {BYTES} bytes"
    );
    server.stop().await;
}

on_both_backends!(
    the_history_length_cache_is_bounded,
    history_reads_are_cached_right_and_bounded,
);

/// Review, Medium 7. Twenty-four readers (twelve anonymous `pipe_log`, twelve CometQL SELECTs) ask for
/// the same uncached pipe at once: the database is read once (`halley_history_cache_misses_total` +1) and
/// the other twenty-three wait for that read (hits); every reader gets all 99 entries. Before the fix
/// every reader that missed read the database itself (and each new one kept the earlier reads from being
/// cached: 83 reads here).
async fn concurrent_history_misses_read_the_database_once(backend: Backend) {
    const READERS: usize = 12;
    let server = TestServer::start_with(backend, |c| {
        c.limits.publish_burst = 100_000;
        c.limits.publishes_per_sec = 100_000;
    })
    .await;
    let t = server.tenant("flight@example.com").await;
    let http = server.http_addr();
    let mut q = RawMysql::login(&server, &t).await;
    q.query("INSERT INTO pipes_settings (name, length) VALUES ('web_flight', 99)")
        .await
        .assert_ok();
    let body: Vec<String> = (0..99).map(|i| message(i, 8 * 1024)).collect();
    for part in body.chunks(6) {
        q.query(&multi_insert_sql(
            "web_flight",
            "e",
            part.iter().map(String::as_str),
        ))
        .await
        .assert_ok();
    }
    let mut browsers = Vec::new();
    let mut sessions = Vec::new();
    for _ in 0..READERS {
        browsers.push(anonymous(&server, t.dev_id).await);
        sessions.push(RawMysql::login(&server, &t).await);
    }
    let counter = |name: &'static str| async move { metric(http, name).await.expect(name) };
    let hits = counter("halley_history_cache_hits_total").await;
    let misses = counter("halley_history_cache_misses_total").await;

    // Every request is sent before any answer is read.
    let select =
        RawMysql::com_query("SELECT message FROM pipes_messages WHERE name = 'web_flight'");
    for (ws, m) in browsers.iter_mut().zip(sessions.iter_mut()) {
        ws.send_text("pipe_log\nweb_flight\nmk\n")
            .await
            .expect("send pipe_log");
        m.write(&select).await.expect("send SELECT");
    }
    for (ws, m) in browsers.iter_mut().zip(sessions.iter_mut()) {
        let mut got = Vec::new();
        for _ in 0..body.len() {
            let v = ws.recv_json(WAIT).await.expect("a history frame");
            assert_eq!(v["fromQueue"], true, "not a history frame: {v}");
            got.push(v["data"].as_str().expect("data").to_string());
        }
        assert_eq!(got, body);
        let (rows, err) = streamed(m).await;
        assert_eq!(err, None);
        let got: Vec<String> = rows.into_iter().map(|mut r| r.remove(0)).collect();
        assert_eq!(got, body);
    }
    let read = counter("halley_history_cache_misses_total").await - misses;
    let joined = counter("halley_history_cache_hits_total").await - hits;
    // A SELECT this large is streamed: each later part looks the pipe up again (a hit).
    assert!(
        read == 1.0 && joined >= (2 * READERS - 1) as f64,
        "{read} database reads and {joined} reads served without one, for {} concurrent readers",
        2 * READERS
    );
    server.stop().await;
}

/// Review, Medium 7. A publish to a cached pipe updates its cached entries (the new one appended, the
/// oldest dropped past the pipe's length) instead of evicting them: the reads after it are hits, and they
/// return exactly what the database holds (compared after the cache is emptied).
async fn a_publish_updates_the_cached_history(backend: Backend) {
    let server = TestServer::start(backend).await;
    let t = server.tenant("update@example.com").await;
    let http = server.http_addr();
    let mut q = RawMysql::login(&server, &t).await;
    q.query("INSERT INTO pipes_settings (name, length) VALUES ('web_up', 3)")
        .await
        .assert_ok();
    q.query(&multi_insert_sql("web_up", "e", ["m1", "m2", "m3", "m4"]))
        .await
        .assert_ok();
    let counter = |name: &'static str| async move { metric(http, name).await.expect(name) };
    let misses = counter("halley_history_cache_misses_total").await;
    assert_eq!(
        history(&mut q, "web_up").await,
        strings(&["m2", "m3", "m4"])
    );
    let hits = counter("halley_history_cache_hits_total").await;
    q.query(&insert_sql("web_up", "ev2", "m5"))
        .await
        .assert_ok();
    q.query(&multi_insert_sql("web_up", "e", ["m6", "m7"]))
        .await
        .assert_ok();
    assert_eq!(
        pipe_log(&server, t.dev_id, "web_up", 3).await,
        strings(&["m5", "m6", "m7"])
    );
    let cached = q
        .query("SELECT * FROM pipes_messages WHERE name = 'web_up'")
        .await
        .rows()
        .to_vec();
    assert_eq!(
        (
            counter("halley_history_cache_misses_total").await - misses,
            counter("halley_history_cache_hits_total").await - hits
        ),
        (1.0, 2.0),
        "one read of the database (the first), then hits after the publishes"
    );
    // Deleting an entry that does not exist empties the tenant's cached pipes: the database's rows.
    q.query("DELETE FROM pipes_messages WHERE id = 'no-such-entry'")
        .await
        .assert_ok();
    let stored = q
        .query("SELECT * FROM pipes_messages WHERE name = 'web_up'")
        .await
        .rows()
        .to_vec();
    assert_eq!(
        counter("halley_history_cache_misses_total").await - misses,
        2.0
    );
    assert_eq!(cached, stored);
    assert_eq!(stored[0][4], "ev2");
    server.stop().await;
}

on_both_backends!(
    concurrent_history_misses_read_the_database_once,
    a_publish_updates_the_cached_history,
);
