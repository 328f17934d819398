//! Issue 11, hardening of what CometQL reads and writes in bulk:
//! - item 1: a SELECT whose IN list repeats one key 4,000 times (the largest query there is) must not
//!   build 4,000 copies of the rows; a result past `[cometql] max_result_rows` / `max_result_bytes` is
//!   refused with ERROR 11; a large result is streamed as the client reads it, so non-reading clients
//!   cannot grow the server's memory (measured in `/proc/<pid>/status` of the real binary);
//! - item 13: a multi-row INSERT over the publish budget delivers nothing (and gets ERROR 429);
//! - item 9: the history-length cache stays within `[cache] history_lengths_entries`;
//! - item 12: history reads (`SELECT ... FROM pipes_messages` and the browser's `pipe_log`) are served
//!   from a cache bounded by `[cache] history_bytes`, and stay right after writes, trims and deletes;
//!   concurrent misses of one pipe read the database once and a publish updates the cached entries;
//! - the small tables (users_data, revoked_tokens, ...) stop at the caps while they read.

mod history;
mod memory;
mod small_tables;

use std::net::SocketAddr;

use anyhow::anyhow;
use halley_tests::browser::{browser, subscriber};
use halley_tests::clients;
use halley_tests::cometql::{insert_sql, multi_insert_sql};
use halley_tests::frames::{next_json, next_message};
use halley_tests::mysql_raw::{parse_err, RawMysql};
use halley_tests::wait::{within, WAIT};
use halley_tests::{on_both_backends, Backend, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// `GET /metrics` (loopback needs no token) and the value of the unlabelled series `name`.
async fn metric(http: SocketAddr, name: &str) -> anyhow::Result<f64> {
    let body = within(WAIT, async {
        let mut s = tokio::net::TcpStream::connect(http).await?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        anyhow::Ok(String::from_utf8_lossy(&out).into_owned())
    })
    .await??;
    body.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .ok_or_else(|| anyhow!("/metrics has no {name}"))
}

/// `n` CometQL sessions of `user` that each send `queries` in one write and read nothing past the first
/// packet of the first reply (the server has started answering): the non-reading attackers of the memory
/// tests, returned so that they stay connected while the server is measured.
async fn hold_unread(
    addr: SocketAddr,
    user: &str,
    key: &str,
    queries: &[String],
    n: usize,
) -> Vec<halley_tests::mysql_raw::RawMysql> {
    use halley_tests::mysql_raw::RawMysql;
    let mut attackers = Vec::new();
    for _ in 0..n {
        let (user, key, queries) = (user.to_owned(), key.to_owned(), queries.to_vec());
        attackers.push(tokio::spawn(async move {
            let mut m = RawMysql::login_at(addr, &user, &key).await;
            let burst: Vec<u8> = queries
                .iter()
                .flat_map(|q| RawMysql::com_query(q))
                .collect();
            m.write(&burst).await?;
            m.packet_within(std::time::Duration::from_secs(110))
                .await?
                .ok_or_else(|| anyhow!("closed instead of replying"))?;
            anyhow::Ok(m)
        }));
    }
    let mut held = Vec::new();
    for a in attackers {
        held.push(
            within(std::time::Duration::from_secs(120), a)
                .await
                .expect("the server answers the first query")
                .expect("task")
                .expect("attacker"),
        );
    }
    held
}

/// Waits (up to `limit`) until the server has run `want` CometQL queries in all.
async fn queries_ran(
    http: SocketAddr,
    want: f64,
    limit: std::time::Duration,
) -> anyhow::Result<()> {
    halley_tests::wait::eventually(limit, || async {
        let n = metric(http, "halley_cometql_query_seconds_count").await?;
        if n >= want {
            Ok(())
        } else {
            Err(anyhow!("{n} queries run, want {want}"))
        }
    })
    .await
}

/// `sql` padded with spaces to exactly `len` bytes: the largest query the server accepts.
fn padded(sql: String, len: usize) -> String {
    assert!(sql.len() <= len, "{} bytes already", sql.len());
    let pad = len - sql.len();
    sql + &" ".repeat(pad)
}

fn message(i: usize, len: usize) -> String {
    let head = format!("m{i:03}-");
    head.clone() + &"x".repeat(len - head.len())
}

const MESSAGE_BYTES: usize = 512;
const KEEP: usize = 99;

/// Reads one result packet by packet: the rows' values, and the ERR that ended it early, if any.
async fn streamed(m: &mut RawMysql) -> (Vec<Vec<String>>, Option<(u16, String)>) {
    let (_, first) = m.packet().await.expect("reply").expect("open");
    assert!(
        first[0] != 0x00 && first[0] != 0xFF,
        "not a result set: {first:?}"
    );
    let width = first[0] as usize;
    for _ in 0..=width {
        m.packet().await.expect("column definitions").expect("open");
    }
    let mut rows = Vec::new();
    loop {
        let (_, p) = m.packet().await.expect("a row").expect("open");
        if p[0] == 0xFE && p.len() < 9 {
            return (rows, None);
        }
        if p[0] == 0xFF {
            return (rows, Some(parse_err(&p).expect("ERR")));
        }
        let mut pos = 0;
        let mut row = Vec::new();
        for _ in 0..width {
            let len = p[pos] as usize;
            let (len, skip) = match len {
                0xFC => (u16::from_le_bytes([p[pos + 1], p[pos + 2]]) as usize, 3),
                0xFD => (
                    u32::from_le_bytes([p[pos + 1], p[pos + 2], p[pos + 3], 0]) as usize,
                    4,
                ),
                n => (n, 1),
            };
            pos += skip;
            row.push(String::from_utf8(p[pos..pos + len].to_vec()).expect("UTF-8"));
            pos += len;
        }
        rows.push(row);
    }
}

/// Item 1, streaming. A result larger than the server builds at once (512 KiB) is sent in parts as it is
/// read: every row arrives, in order, the `index` column counting on across the parts, through the raw
/// client and the real drivers; a queue longer than that too; and past the byte cap the stream ends with
/// ERROR 11.
async fn large_results_are_streamed_whole(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.cometql.max_result_bytes = 900 * 1024;
    })
    .await;
    let t = server.tenant("stream@example.com").await;
    let mut q = RawMysql::login(&server, &t).await;
    let body: Vec<String> = (0..KEEP).map(|i| message(i, 2000)).collect();
    let pipes: Vec<String> = (0..5).map(|p| format!("stream{p}")).collect();
    for pipe in &pipes {
        q.query(&format!(
            "INSERT INTO pipes_settings (name, length) VALUES ('{pipe}', {KEEP})"
        ))
        .await
        .assert_ok();
        for part in body.chunks(25) {
            q.query(&multi_insert_sql(
                pipe,
                "e",
                part.iter().map(String::as_str),
            ))
            .await
            .assert_ok();
        }
    }
    // 4 pipes x 99 x 2 KB: about 820 KB, over the 512 KiB built at once, under the 900 KiB cap.
    let four = pipes[..4]
        .iter()
        .map(|p| format!("'{p}'"))
        .collect::<Vec<_>>()
        .join(", ");
    q.write(&RawMysql::com_query(&format!(
        "SELECT name, `index`, message FROM pipes_messages WHERE name IN ({four})"
    )))
    .await
    .unwrap();
    let (rows, err) = streamed(&mut q).await;
    assert_eq!(err, None);
    assert_eq!(rows.len(), 4 * KEEP);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row[0], pipes[i / KEEP], "row {i}");
        assert_eq!(row[1], i.to_string(), "row {i}");
        assert_eq!(row[2], body[i % KEEP], "row {i}");
    }
    // A LIMIT inside the streamed part.
    let got = q
        .query(&format!(
            "SELECT `index` FROM pipes_messages WHERE name IN ({four}) LIMIT 300, 3"
        ))
        .await;
    assert_eq!(
        got.rows(),
        &[
            vec!["300".to_string()],
            vec!["301".into()],
            vec!["302".into()]
        ]
    );
    // Five pipes: about 1 MB, past the 900 KiB cap, found out while streaming: the rows sent so far, then
    // ERROR 11, and the session goes on.
    let five = pipes
        .iter()
        .map(|p| format!("'{p}'"))
        .collect::<Vec<_>>()
        .join(", ");
    q.write(&RawMysql::com_query(&format!(
        "SELECT * FROM pipes_messages WHERE name IN ({five}, {five})"
    )))
    .await
    .unwrap();
    let (rows, err) = streamed(&mut q).await;
    assert!(rows.len() < 5 * KEEP, "{} rows", rows.len());
    assert_eq!(
        err,
        Some((
            11,
            "Result too large: more than 921600 bytes (select fewer keys or use LIMIT)".into()
        ))
    );
    assert_eq!(
        q.query("SELECT * FROM pipes_messages WHERE name = 'stream0'")
            .await
            .rows()
            .len(),
        KEEP
    );

    // A queue of 300 x 2 KB for user 9, read in parts too.
    for part in 0..12 {
        let rows: Vec<String> = (part * 25..part * 25 + 25)
            .map(|i| format!("(9, 'e', '{}')", message(i, 2000)))
            .collect();
        q.query(&format!(
            "INSERT INTO users_messages (id, event, message) VALUES {}",
            rows.join(", ")
        ))
        .await
        .assert_ok();
    }
    q.write(&RawMysql::com_query(
        "SELECT message FROM users_messages WHERE id IN (9, 9)",
    ))
    .await
    .unwrap();
    let (rows, err) = streamed(&mut q).await;
    assert_eq!(err, None);
    let want: Vec<Vec<String>> = (0..300).map(|i| vec![message(i, 2000)]).collect();
    assert_eq!(rows, want);

    // The users' real drivers read the streamed result as any other.
    let login = clients::Login::new(server.cometql_port(), t.dev_id.to_string(), t.key.clone())
        .database(Some("CometQL_v1"));
    let req = login.request().sql(format!(
        "SELECT `index`, message FROM pipes_messages WHERE name IN ({four})"
    ));
    for client in clients::Client::ALL {
        let resp = clients::run(client, &req)
            .await
            .unwrap_or_else(|e| panic!("{client}: {e:#}"));
        let got = resp.results[0]
            .rows()
            .unwrap_or_else(|e| panic!("{client}: {e:#}"));
        assert_eq!(got.len(), 4 * KEEP, "{client}");
        for (i, row) in got.iter().enumerate() {
            assert_eq!(row[0].as_deref(), Some(i.to_string().as_str()), "{client}");
            assert_eq!(row[1].as_deref(), Some(body[i % KEEP].as_str()), "{client}");
        }
    }
    server.stop().await;
}

/// Item 1. Past `max_result_rows` or `max_result_bytes` a SELECT gets ERROR 11 and nothing else; LIMIT
/// keeps a result within them; the session stays usable.
async fn results_past_the_caps_are_refused(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.cometql.max_result_rows = 150;
        c.cometql.max_result_bytes = 64 * 1024;
    })
    .await;
    let t = server.tenant("caps@example.com").await;
    let mut q = RawMysql::login(&server, &t).await;
    for pipe in ["pipe_a", "pipe_b", "pipe_c"] {
        q.query(&format!(
            "INSERT INTO pipes_settings (name, length) VALUES ('{pipe}', 99)"
        ))
        .await
        .assert_ok();
    }
    let small: Vec<String> = (0..99).map(|i| format!("s{i}")).collect();
    for pipe in ["pipe_a", "pipe_b"] {
        q.query(&multi_insert_sql(
            pipe,
            "e",
            small.iter().map(String::as_str),
        ))
        .await
        .assert_ok();
    }
    let big: Vec<String> = (0..10).map(|i| message(i, 8 * 1024)).collect();
    for half in big.chunks(5) {
        q.query(&multi_insert_sql(
            "pipe_c",
            "e",
            half.iter().map(String::as_str),
        ))
        .await
        .assert_ok();
    }

    let rows_refusal = q
        .query("SELECT * FROM pipes_messages WHERE name IN ('pipe_a', 'pipe_b')")
        .await;
    assert_eq!(
        rows_refusal.err(),
        (
            11,
            "Result too large: more than 150 rows (select fewer keys or use LIMIT)"
        )
    );
    let bytes_refusal = q
        .query("SELECT * FROM pipes_messages WHERE name = 'pipe_c'")
        .await;
    assert_eq!(
        bytes_refusal.err(),
        (
            11,
            "Result too large: more than 65536 bytes (select fewer keys or use LIMIT)"
        )
    );
    // Within the caps: one pipe, or a LIMIT (the index column keeps counting the rows skipped).
    assert_eq!(
        q.query("SELECT * FROM pipes_messages WHERE name = 'pipe_a'")
            .await
            .rows()
            .len(),
        99
    );
    let limited = q
        .query("SELECT `index`, message FROM pipes_messages WHERE name IN ('pipe_a', 'pipe_b') LIMIT 95, 10")
        .await;
    let got: Vec<(String, String)> = limited
        .rows()
        .iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect();
    let want: Vec<(String, String)> = (95..105)
        .map(|i| (i.to_string(), format!("s{}", i % 99)))
        .collect();
    assert_eq!(got, want);
    // A projection is charged for the columns it returns only.
    assert_eq!(
        q.query("SELECT id FROM pipes_messages WHERE name = 'pipe_c'")
            .await
            .rows()
            .len(),
        10
    );

    // users_messages: a queue longer than the row cap.
    let rows: Vec<String> = (0..151).map(|i| format!("(7, 'e', 'q{i}')")).collect();
    q.query(&format!(
        "INSERT INTO users_messages (id, event, message) VALUES {}",
        rows.join(", ")
    ))
    .await
    .assert_ok();
    assert_eq!(
        q.query("SELECT * FROM users_messages WHERE id = 7")
            .await
            .err()
            .0,
        11
    );
    let first = q
        .query("SELECT message FROM users_messages WHERE id IN (7, 7, '7') LIMIT 3")
        .await;
    assert_eq!(
        first.rows(),
        &[vec!["q0".to_string()], vec!["q1".into()], vec!["q2".into()]]
    );
    // An offset past the row cap reads on (page by page) and returns what LIMIT asks for.
    let last = q
        .query("SELECT message FROM users_messages WHERE id = 7 LIMIT 150, 5")
        .await;
    assert_eq!(last.rows(), &[vec!["q150".to_string()]]);
    server.stop().await;
}

/// Item 13. The whole statement's publishes are paid for before any row takes effect: a multi-row INSERT
/// larger than the burst, or than what is left of it, delivers nothing (the subscriber's next frame is the
/// marker sent afterwards) and gets ERROR 429; users_messages likewise.
async fn an_insert_over_the_budget_delivers_nothing(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.publishes_per_sec = 1;
        c.limits.publish_burst = 10;
    })
    .await;
    let t = server.tenant("budget@example.com").await;
    let mut q = RawMysql::login(&server, &t).await;
    let mut sub = subscriber(&server, t.dev_id, "web_budget", 0).await;
    let rows =
        |n: usize, tag: &str| -> Vec<String> { (0..n).map(|i| format!("{tag}{i}")).collect() };

    // Eleven rows can never fit a burst of ten: none is delivered (the marker comes first), ERROR 429.
    let eleven = rows(11, "over");
    let refusal = q
        .query(&multi_insert_sql(
            "web_budget",
            "e",
            eleven.iter().map(String::as_str),
        ))
        .await;
    q.query(&insert_sql("web_budget", "e", "marker1"))
        .await
        .assert_ok();
    assert_eq!(next_message(&mut sub, "web_budget").await, "marker1");
    assert_eq!(
        refusal.err(),
        (
            429,
            "Rate limit exceeded: publishes per tenant (one statement publishes more rows than the burst allows)"
        )
    );

    // Six fit, then ten do not fit in the three left: none of the ten is delivered.
    let six = rows(6, "ok");
    q.query(&multi_insert_sql(
        "web_budget",
        "e",
        six.iter().map(String::as_str),
    ))
    .await
    .assert_ok();
    for m in &six {
        assert_eq!(&next_message(&mut sub, "web_budget").await, m);
    }
    let ten = rows(10, "late");
    let refusal = q
        .query(&multi_insert_sql(
            "web_budget",
            "e",
            ten.iter().map(String::as_str),
        ))
        .await;
    q.query(&insert_sql("web_budget", "e", "marker2"))
        .await
        .assert_ok();
    assert_eq!(next_message(&mut sub, "web_budget").await, "marker2");
    let (code, text) = refusal.err();
    assert_eq!(code, 429);
    assert!(
        text.starts_with("Rate limit exceeded: publishes per tenant (retry in "),
        "{text}"
    );

    // users_messages: an online user gets none of a refused statement's messages.
    q.query("INSERT INTO users_auth (id, hash) VALUES (7, 'h7')")
        .await
        .assert_ok();
    let (mut user, _) = browser(&server, t.dev_id, 7, "h7").await;
    let private: Vec<String> = (0..11).map(|i| format!("(7, 'e', 'p{i}')")).collect();
    assert_eq!(
        q.query(&format!(
            "INSERT INTO users_messages (id, event, message) VALUES {}",
            private.join(", ")
        ))
        .await
        .err()
        .0,
        429
    );
    q.query("INSERT INTO users_messages (id, event, message) VALUES (7, 'e', 'marker3')")
        .await
        .assert_ok();
    let v = next_json(&mut user).await;
    assert_eq!(
        (v["pipe"].as_str(), v["data"].as_str()),
        (Some("msg"), Some("marker3")),
        "{v}"
    );
    server.stop().await;
}

on_both_backends!(
    results_past_the_caps_are_refused,
    large_results_are_streamed_whole,
    an_insert_over_the_budget_delivers_nothing,
);
