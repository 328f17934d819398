//! The wrapper on literal SQL, against in-memory and file databases.

use super::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;
use std::time::Duration;

async fn memory() -> SqliteConnection {
    SqliteConnection::connect("sqlite::memory:").await.unwrap()
}

fn setup(db: &mut Db<'_>) {
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, n INTEGER)")
        .unwrap();
}

#[tokio::test]
async fn binds_by_number_steps_rows_and_reads_columns_by_name() {
    let mut conn = memory().await;
    let mut db = Db::new(conn.lock_handle().await.unwrap(), 8);
    setup(&mut db);
    // `$2` first and `$1` twice: SQLite's parameter indexes are not the numbers.
    let mut q = db
        .prepare("INSERT INTO t (n, name) VALUES ($2, $1 || '-' || $1)")
        .unwrap();
    q.bind(1, "a\0b").unwrap();
    q.bind(2, Some(7)).unwrap();
    assert!(q.step().unwrap().is_none());
    drop(q);
    let mut q = db
        .prepare("INSERT INTO t (name, n) VALUES ($1, $2) RETURNING id, name, n")
        .unwrap();
    q.bind(1, Some("c")).unwrap();
    q.bind(2, None::<i64>).unwrap();
    let row = q.step().unwrap().expect("a row");
    assert_eq!(row.int("id").unwrap(), 2);
    assert_eq!(row.text("name").unwrap(), "c");
    assert_eq!(row.opt_int("n").unwrap(), None);
    assert_eq!(row.int("n").unwrap_err().code, ffi::SQLITE_MISMATCH);
    assert_eq!(row.text("id").unwrap_err().code, ffi::SQLITE_MISMATCH);
    assert_eq!(row.int("nope").unwrap_err().code, ffi::SQLITE_RANGE);
    assert!(q.step().unwrap().is_none());
    drop(q);
    let mut q = db.prepare("SELECT name, n FROM t ORDER BY id").unwrap();
    let mut got = Vec::new();
    while let Some(r) = q.step().unwrap() {
        got.push((r.text("name").unwrap(), r.opt_int("n").unwrap()));
    }
    assert_eq!(
        got,
        [("a\0b-a\0b".to_string(), Some(7)), ("c".to_string(), None)]
    );
    assert_eq!(q.bind(3, 1).unwrap_err().code, ffi::SQLITE_RANGE);
    assert_eq!(q.bind(0, 1).unwrap_err().code, ffi::SQLITE_RANGE);
}

#[tokio::test]
async fn statements_are_cached_reset_and_evicted() {
    let mut conn = memory().await;
    let mut db = Db::new(conn.lock_handle().await.unwrap(), 2);
    setup(&mut db);
    for name in ["a", "b"] {
        let mut q = db.prepare("INSERT INTO t (name) VALUES ($1)").unwrap();
        q.bind(1, name).unwrap();
        q.step().unwrap();
        // Dropped mid-way or done, a statement is reset and its bindings cleared for the next use.
    }
    let count = |db: &mut Db<'_>| {
        let mut q = db.prepare("SELECT count(*) AS c FROM t").unwrap();
        let r = q.step().unwrap().unwrap();
        r.int("c").unwrap()
    };
    assert_eq!(count(&mut db), 2);
    assert_eq!(db.cached(), 2);
    db.execute("SELECT 1").unwrap();
    assert_eq!(db.cached(), 2, "the least recently used was evicted");
    // Unbound, the parameter is NULL: the NOT NULL constraint refuses it.
    let err = db.execute("INSERT INTO t (name) VALUES ($1)").unwrap_err();
    assert_eq!(err.code, ffi::SQLITE_CONSTRAINT_NOTNULL, "{err}");
    assert_eq!(count(&mut db), 2);
}

#[tokio::test]
async fn errors_carry_sqlite_codes_and_leave_the_statement_usable() {
    let mut conn = memory().await;
    let mut db = Db::new(conn.lock_handle().await.unwrap(), 8);
    setup(&mut db);
    let err = db.execute("INSERT INTO t (name VALUES").unwrap_err();
    assert_eq!(err.code, ffi::SQLITE_ERROR);
    assert!(err.message.contains("syntax error"), "{err}");
    let err = db.execute("SELECT 1; SELECT 2").unwrap_err();
    assert_eq!(err.code, ffi::SQLITE_MISUSE, "{err}");
    let err = db.execute("  ").unwrap_err();
    assert_eq!(err.code, ffi::SQLITE_MISUSE, "{err}");
    let err = db.execute("SELECT $x").unwrap_err();
    assert_eq!(err.code, ffi::SQLITE_MISUSE, "{err}");

    let insert = "INSERT INTO t (name) VALUES ($1)";
    let mut q = db.prepare(insert).unwrap();
    q.bind(1, "x").unwrap();
    assert!(q.step().unwrap().is_none());
    drop(q);
    let mut q = db.prepare(insert).unwrap();
    q.bind(1, "x").unwrap();
    let err = q.step().err().expect("a duplicate");
    assert_eq!(err.code, ffi::SQLITE_CONSTRAINT_UNIQUE, "{err}");
    assert!(!err.is_busy());
    drop(q);
    // The same cached statement runs again after its error.
    let mut q = db.prepare(insert).unwrap();
    q.bind(1, "y").unwrap();
    assert!(q.step().unwrap().is_none());
    drop(q);
    db.execute("BEGIN").unwrap();
    assert!(!db.autocommit());
    db.execute("ROLLBACK").unwrap();
    assert!(db.autocommit());
}

#[tokio::test]
async fn a_lock_held_elsewhere_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.db");
    let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", file.display()))
        .unwrap()
        .create_if_missing(true)
        .busy_timeout(Duration::from_millis(10));
    let mut holder = opts.connect().await.unwrap();
    sqlx::raw_sql(
        "PRAGMA journal_mode = WAL; CREATE TABLE t (x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1)",
    )
    .execute(&mut holder)
    .await
    .unwrap();
    let mut conn = opts.connect().await.unwrap();
    let mut db = Db::new(conn.lock_handle().await.unwrap(), 8);
    let err = db.execute("BEGIN IMMEDIATE").unwrap_err();
    assert!(err.is_busy(), "{err}");
    assert!(db.autocommit());
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    db.execute("BEGIN IMMEDIATE").unwrap();
    db.execute("COMMIT").unwrap();
}
