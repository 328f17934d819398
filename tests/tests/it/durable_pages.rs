//! History on one index (issue 17: fewer pages per commit). pipe_history lost its id index (and, on SQLite,
//! AUTOINCREMENT): every read and trim of a pipe walks `pipe_history_by_pos` in (position, id) order. These
//! pin what that order must still give, on both backends: the newest entries in the order they were
//! published after the highest ids were freed (SQLite then gives them out again), a shortened length
//! keeps the newest, and a `trust_` pipe (its rows have no positions) lists and trims by id.

use halley_tests::cometql::{history, insert_sql};
use halley_tests::mysql_raw::RawMysql;
use halley_tests::{on_both_backends, Backend, TestServer};

/// Every id, position and message the database holds for `pipe`, in id order.
async fn stored(server: &TestServer, dev_id: u64, pipe: &str) -> Vec<(i64, Option<i64>, String)> {
    let pool = server.database().await;
    let rows: Vec<(i64, Option<i64>, String)> = sqlx::query_as(
        "SELECT id, pos, message FROM pipe_history WHERE dev_id = $1 AND pipe = $2 ORDER BY id",
    )
    .bind(dev_id as i64)
    .bind(pipe)
    .fetch_all(&pool)
    .await
    .expect("read pipe_history");
    pool.close().await;
    rows
}

async fn publish(q: &mut RawMysql, pipe: &str, messages: impl IntoIterator<Item = String>) {
    for m in messages {
        q.query(&insert_sql(pipe, "e", &m)).await.assert_ok();
    }
}

fn texts(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

async fn history_keeps_publish_order_on_one_index(backend: Backend) {
    let server = TestServer::start(backend).await;
    let tenant = server.tenant("pages@example.com").await;
    let mut q = RawMysql::login(&server, &tenant).await;
    q.query("INSERT INTO pipes_settings (name, length) VALUES ('pages_a', 5), ('pages_b', 5)")
        .await
        .assert_ok();

    publish(&mut q, "pages_a", texts("a", 0..3)).await;
    publish(&mut q, "pages_b", texts("b", 0..3)).await;
    // pages_b held the highest ids: SQLite gives them out again to pages_a's next rows.
    let freed = stored(&server, tenant.dev_id, "pages_b").await;
    q.query("DELETE FROM pipes_messages WHERE name = 'pages_b'")
        .await
        .assert_ok();
    publish(&mut q, "pages_a", texts("a", 3..9)).await;
    assert_eq!(history(&mut q, "pages_a").await, texts("a", 4..9));
    let rows = stored(&server, tenant.dev_id, "pages_a").await;
    assert_eq!(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        (5..=9).map(Some).collect::<Vec<_>>(),
        "{backend:?}: positions in publish order: {rows:?}"
    );
    if backend == Backend::Sqlite {
        assert!(
            rows.iter().any(|r| freed.iter().any(|f| f.0 == r.0)),
            "SQLite without AUTOINCREMENT gives freed ids out again: {rows:?} after {freed:?}"
        );
    }

    // A shortened length keeps the newest, in order.
    q.query("INSERT INTO pipes_settings (name, length) VALUES ('pages_a', 2)")
        .await
        .assert_ok();
    assert_eq!(history(&mut q, "pages_a").await, texts("a", 7..9));
    publish(&mut q, "pages_a", texts("a", 9..10)).await;
    assert_eq!(history(&mut q, "pages_a").await, texts("a", 8..10));
    assert_eq!(stored(&server, tenant.dev_id, "pages_a").await.len(), 2);

    // A trust_ pipe: no positions, listed oldest first by id; deleting one entry keeps the others' order.
    publish(&mut q, "trust_pages", texts("t", 0..6)).await;
    let trusted = stored(&server, tenant.dev_id, "trust_pages").await;
    assert!(trusted.iter().all(|r| r.1.is_none()), "{trusted:?}");
    assert_eq!(history(&mut q, "trust_pages").await, texts("t", 0..6));
    let uuid: Vec<Vec<String>> = q
        .query("SELECT id, message FROM pipes_messages WHERE name = 'trust_pages'")
        .await
        .rows()
        .to_vec();
    let third = uuid.iter().find(|r| r[1] == "t2").expect("t2 listed")[0].clone();
    q.query(&format!("DELETE FROM pipes_messages WHERE id = '{third}'"))
        .await
        .assert_ok();
    publish(&mut q, "trust_pages", texts("t", 6..8)).await;
    let mut want = texts("t", 0..8);
    want.remove(2);
    assert_eq!(history(&mut q, "trust_pages").await, want);
    server.stop().await;
}

on_both_backends!(history_keeps_publish_order_on_one_index);
