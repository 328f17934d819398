//! The drivers against a real MariaDB server, to check the test kit itself (not Halley).
//! They run only when HALLEY_TEST_MARIADB is set (`1` for 127.0.0.1:3306, or `HOST:PORT`), as root with
//! an empty password and a database `test`; otherwise they return at once.

use super::*;

fn target() -> Option<Login> {
    let var = std::env::var("HALLEY_TEST_MARIADB").ok()?;
    let (host, port) = var
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse().ok()?)))
        .unwrap_or(("127.0.0.1".to_owned(), 3306));
    Some(
        Login::new(port, "root", "")
            .host(host)
            .database(Some("test")),
    )
}

macro_rules! mariadb_or_return {
    () => {
        match target() {
            Some(login) => login,
            None => {
                eprintln!("HALLEY_TEST_MARIADB not set: nothing to check");
                return;
            }
        }
    };
}

const TRICKY: &str = "it's \"q\" \\ and a trailing backslash \\";

#[tokio::test]
async fn every_driver_connects_and_selects() {
    let login = mariadb_or_return!();
    let req = login
        .request()
        .sql("SELECT 'it''s' AS a, NULL AS b, 1 AS c")
        .ping();
    for (client, resp) in run_all(&req).await.unwrap() {
        let first = resp.step(0).unwrap();
        assert_eq!(first.columns().unwrap(), ["a", "b", "c"], "{client}");
        assert_eq!(
            first.rows().unwrap(),
            [vec![Some("it's".to_owned()), None, Some("1".to_owned())]],
            "{client}"
        );
        assert_eq!(resp.step(1).unwrap().ok().unwrap(), (0, 0), "{client}");
        assert!(resp
            .connect
            .unwrap()
            .server_version
            .unwrap()
            .contains("MariaDB"));
    }
}

#[tokio::test]
async fn template_escaping_round_trips() {
    let login = mariadb_or_return!();
    let big: String = "é😀'\\\"".repeat(7000); // 63,000 bytes
    let req = login
        .request()
        .template("SELECT '%s'", TRICKY)
        .template("SELECT '%s'", big.clone());
    for (client, resp) in run_all(&req).await.unwrap() {
        let r = resp.step(0).unwrap();
        assert_eq!(r.scalar().unwrap(), Some(TRICKY), "{client}");
        assert_eq!(
            r.escaped.as_deref(),
            Some(r#"it\'s \"q\" \\ and a trailing backslash \\"#),
            "{client}"
        );
        assert_eq!(
            resp.step(1).unwrap().scalar().unwrap(),
            Some(big.as_str()),
            "{client}"
        );
    }
}

#[tokio::test]
async fn escaping_follows_no_backslash_escapes_except_in_mysql2() {
    let login = mariadb_or_return!();
    let req = login
        .request()
        .sql("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
        .template("SELECT '%s'", "it's \\");
    for (client, resp) in run_all(&req).await.unwrap() {
        let r = resp.step(1).unwrap();
        if client == Client::Node {
            assert_eq!(r.escaped.as_deref(), Some(r"it\'s \\"));
        } else {
            assert_eq!(r.escaped.as_deref(), Some(r"it''s \"), "{client}");
            assert_eq!(r.scalar().unwrap(), Some(r"it's \"), "{client}");
        }
    }
}

#[tokio::test]
async fn wrong_password_is_error_1045() {
    let login = mariadb_or_return!();
    let mut bad = login.clone();
    bad.password = "wrong".into();
    let req = bad.request().sql("SELECT 1");
    for (client, resp) in run_all(&req).await.unwrap() {
        let e = resp.connect_error().unwrap();
        assert_eq!(e.code, 1045, "{client}");
        assert!(
            e.message.contains("Access denied"),
            "{client}: {}",
            e.message
        );
        assert!(resp.results.is_empty());
    }
}

#[tokio::test]
async fn errors_init_db_change_user_and_prepare() {
    let login = mariadb_or_return!();
    let req = login
        .request()
        .sql("SELEC 1")
        .init_db("mysql")
        .sql("SELECT DATABASE()")
        .init_db("no_such_db")
        .prepare("SELECT 2")
        .change_user("root", "", Some("test"))
        .sql("SELECT DATABASE()");
    for (client, resp) in run_all(&req).await.unwrap() {
        assert_eq!(
            resp.step(0).unwrap().error().unwrap().code,
            1064,
            "{client}"
        );
        assert_eq!(resp.step(1).unwrap().ok().unwrap(), (0, 0), "{client}");
        assert_eq!(
            resp.step(2).unwrap().scalar().unwrap(),
            Some("mysql"),
            "{client}"
        );
        assert_eq!(
            resp.step(3).unwrap().error().unwrap().code,
            1049,
            "{client}"
        );
        let prepared = &resp.step(4).unwrap().outcome;
        let changed = &resp.step(5).unwrap().outcome;
        if client == Client::Python {
            assert!(matches!(prepared, Outcome::Unsupported(_)));
            assert!(matches!(changed, Outcome::Unsupported(_)));
        } else {
            assert_eq!(
                resp.step(4).unwrap().scalar().unwrap(),
                Some("2"),
                "{client}"
            );
            assert_eq!(resp.step(5).unwrap().ok().unwrap(), (0, 0), "{client}");
            assert_eq!(
                resp.step(6).unwrap().scalar().unwrap(),
                Some("test"),
                "{client}"
            );
        }
    }
}

#[tokio::test]
async fn affected_rows_and_insert_id() {
    let login = mariadb_or_return!();
    let req = login
        .request()
        .sql("CREATE TEMPORARY TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)")
        .sql("INSERT INTO t (v) VALUES ('a'), ('b')")
        .sql("DELETE FROM t");
    for (client, resp) in run_all(&req).await.unwrap() {
        assert_eq!(resp.step(1).unwrap().ok().unwrap(), (2, 1), "{client}");
        assert_eq!(resp.step(2).unwrap().ok().unwrap(), (2, 0), "{client}");
    }
}

#[tokio::test]
async fn refused_connection_is_data_not_a_driver_failure() {
    let _ = mariadb_or_return!();
    // Port 1 on loopback: nothing listens there.
    let req = Login::new(1, "root", "").request().sql("SELECT 1");
    for (client, resp) in run_all(&req).await.unwrap() {
        assert!(resp.connect_error().unwrap().code >= 2000, "{client}");
    }
}

#[tokio::test]
async fn mariadb_cli_selects_and_reports_errors() {
    let login = mariadb_or_return!();
    let out = mariadb_query(&login, "SELECT 'it''s', NULL").await.unwrap();
    assert!(out.success(), "{out:?}");
    assert_eq!(out.rows(), vec![vec!["it's", "NULL"]]);

    let mut bad = login.clone();
    bad.password = "wrong".into();
    let out = mariadb_query(&bad, "SELECT 1").await.unwrap();
    assert_eq!(out.status, Some(1));
    assert_eq!(out.error().map(|e| e.0), Some(1045), "{out:?}");

    let out = mariadb_query(&login, "SELEC 1").await.unwrap();
    assert_eq!(out.error().map(|e| e.0), Some(1064), "{out:?}");
}
