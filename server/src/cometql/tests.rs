//! One test per rule, with literal statements (reference examples first).

use super::*;

pub(super) fn ok(sql: &str) -> Statement {
    match parse(sql) {
        Ok(statement) => statement,
        Err(e) => panic!("{sql:?} should parse, got {e:?}"),
    }
}

pub(super) fn err(sql: &str) -> (u16, String) {
    match parse(sql) {
        Ok(statement) => panic!("{sql:?} should fail, got {statement:?}"),
        Err(e) => (e.code, e.message),
    }
}

pub(super) fn syntax(sql: &str) {
    assert_eq!(err(sql), (3, "Syntax error in query".into()), "{sql:?}");
}

pub(super) fn select(sql: &str) -> Select {
    match ok(sql) {
        Statement::Select(s) => s,
        other => panic!("{sql:?} is not a SELECT: {other:?}"),
    }
}

pub(super) fn insert(sql: &str) -> Insert {
    match ok(sql) {
        Statement::Insert(i) => i,
        other => panic!("{sql:?} is not an INSERT: {other:?}"),
    }
}

pub(super) fn str(s: &str) -> Value {
    Value::Str(s.into())
}

pub(super) fn num(s: &str) -> Value {
    Value::Number(s.into())
}

pub(super) fn cond(column: &str, values: Vec<Value>) -> Condition {
    Condition {
        column: column.into(),
        values,
    }
}

/// The single value of the single condition of a SELECT.
pub(super) fn where_value(sql: &str) -> Value {
    let s = select(sql);
    assert_eq!(s.filter.conditions.len(), 1, "{sql:?}");
    assert_eq!(s.filter.conditions[0].values.len(), 1, "{sql:?}");
    s.filter.conditions[0].values[0].clone()
}

/// The single value of a one-column INSERT.
pub(super) fn inserted(sql: &str) -> String {
    let i = insert(sql);
    assert_eq!(i.rows.len(), 1);
    i.rows[0][0].as_text().expect("not NULL").to_string()
}

#[test]
fn reference_select_with_mixed_case_keywords() {
    assert_eq!(
        select("SeLeCt * FrOm pipes WhErE name = 'web_x'"),
        Select {
            columns: Columns::All,
            table: "pipes".into(),
            filter: Filter {
                conditions: vec![cond("name", vec![str("web_x")])]
            },
            limit: None,
        }
    );
}

#[test]
fn reference_inserts() {
    assert_eq!(
        insert("INSERT INTO pipes_messages (name, event, message) VALUES ('chat', 'msg', 'hi')"),
        Insert {
            table: "pipes_messages".into(),
            columns: Some(vec!["name".into(), "event".into(), "message".into()]),
            rows: vec![vec![str("chat"), str("msg"), str("hi")]],
        }
    );
    assert_eq!(
        insert("INSERT INTO pipes_messages VALUES ('a','b','c')"),
        Insert {
            table: "pipes_messages".into(),
            columns: None,
            rows: vec![vec![str("a"), str("b"), str("c")]],
        }
    );
}

#[test]
fn reference_in_list_with_limit() {
    let s = select("SELECT * FROM users_time WHERE id IN (1,2,3) LIMIT 2");
    assert_eq!(
        s.filter.conditions,
        vec![cond("id", vec![num("1"), num("2"), num("3")])]
    );
    assert_eq!(
        s.limit,
        Some(Limit {
            offset: 0,
            count: 2
        })
    );
}

#[test]
fn names_are_case_sensitive_and_kept_as_written() {
    let s = select("select NAME, `Users` from PIPES where `NAME` = 'x'");
    assert_eq!(s.table, "PIPES");
    assert_eq!(
        s.columns,
        Columns::Named(vec!["NAME".into(), "Users".into()])
    );
    assert_eq!(s.filter.conditions[0].column, "NAME");
    assert_eq!(s.filter.get("NAME").map(|c| c.values.len()), Some(1));
    assert_eq!(s.filter.get("name"), None);
}

#[test]
fn names_may_be_backquoted_or_quoted_like_identifiers() {
    let s = select("SELECT `index`, 'event', \"message\" FROM `pipes_messages` WHERE `name` = 'p'");
    assert_eq!(s.table, "pipes_messages");
    assert_eq!(
        s.columns,
        Columns::Named(vec!["index".into(), "event".into(), "message".into()])
    );
    // A quoted string that is not an identifier is not a name.
    syntax("SELECT 'a b' FROM pipes");
    // Reserved words need backquotes.
    syntax("SELECT * FROM where");
    assert_eq!(select("SELECT * FROM `where`").table, "where");
}

#[test]
fn values_may_be_strings_words_or_numbers() {
    for sql in [
        "SELECT * FROM pipes WHERE name = chat",
        "SELECT * FROM pipes WHERE name = `chat`",
        "SELECT * FROM pipes WHERE name = 'chat'",
        "SELECT * FROM pipes WHERE name = \"chat\"",
    ] {
        assert_eq!(where_value(sql).as_text(), Some("chat"), "{sql}");
    }
    assert_eq!(where_value("SELECT * FROM t WHERE id = 5"), num("5"));
    assert_eq!(where_value("SELECT * FROM t WHERE id = '5'"), str("5"));
    assert_eq!(where_value("SELECT * FROM t WHERE id = 1.5"), num("1.5"));
    assert_eq!(where_value("SELECT * FROM t WHERE id = NULL"), Value::Null);
    assert_eq!(Value::Null.as_text(), None);
}

#[test]
fn a_minus_sign_makes_a_number_negative() {
    assert_eq!(
        where_value("SELECT * FROM users_time WHERE id = -5"),
        num("-5")
    );
    assert_eq!(
        where_value("SELECT * FROM users_time WHERE id = - 5"),
        num("-5")
    );
    assert_eq!(
        where_value("SELECT * FROM users_time WHERE id = +5"),
        num("5")
    );
    syntax("SELECT * FROM users_time WHERE id = -'5'");
    syntax("SELECT * FROM users_time WHERE id = --5");
}

#[test]
fn limit_follows_mysql() {
    let limit = |sql| select(sql).limit;
    let l = |offset, count| Some(Limit { offset, count });
    assert_eq!(limit("SELECT * FROM t WHERE a = 1 LIMIT 3"), l(0, 3));
    assert_eq!(limit("SELECT * FROM t WHERE a = 1 LIMIT 4, 1"), l(4, 1));
    assert_eq!(
        limit("SELECT * FROM t WHERE a = 1 LIMIT 1 OFFSET 4"),
        l(4, 1)
    );
    assert_eq!(limit("SELECT * FROM t WHERE a = 1 LIMIT '2'"), l(0, 2));
    assert_eq!(
        limit("SELECT * FROM t LIMIT 18446744073709551615"),
        l(0, u64::MAX)
    );
    syntax("SELECT * FROM t LIMIT 18446744073709551616");
    syntax("SELECT * FROM t LIMIT -1");
    syntax("SELECT * FROM t LIMIT 1.5");
    syntax("SELECT * FROM t LIMIT");
    syntax("SELECT * FROM t LIMIT 1 WHERE a = 1");
    let d = match ok("DELETE FROM pipes_messages WHERE name = 'p' LIMIT 2") {
        Statement::Delete(d) => d,
        other => panic!("{other:?}"),
    };
    assert_eq!(d.limit, l(0, 2));
    assert_eq!(d.table, "pipes_messages");
    assert_eq!(d.filter.conditions, vec![cond("name", vec![str("p")])]);
}

#[test]
fn order_by_is_refused() {
    let msg = (2, "Token ORDER BY is not yet implemented".to_string());
    assert_eq!(
        err("SELECT * FROM pipes_messages WHERE name = 'p' ORDER BY time DESC LIMIT 5"),
        msg
    );
    assert_eq!(err("select * from t order   by a, b asc"), msg);
    assert_eq!(
        err("DELETE FROM pipes_messages WHERE name = 'p' ORDER BY 1"),
        msg
    );
    syntax("SELECT * FROM t ORDER a");
}

#[test]
fn the_same_column_twice() {
    assert_eq!(
        err("SELECT * FROM pipes WHERE name = 'a' AND name = 'b'"),
        (13, "Each column in the conditions used only once".into())
    );
    assert_eq!(
        err("SELECT name, users, name FROM pipes WHERE name = 'a'"),
        (13, "Each column in the select used only once".into())
    );
    assert_eq!(
        err("INSERT INTO pipes_messages (name, name) VALUES ('a', 'b')"),
        (13, "Each column in the insert used only once".into())
    );
    // Only the exact spelling is the same column.
    assert!(matches!(
        ok("SELECT name, NAME FROM pipes WHERE name = 'a'"),
        Statement::Select(_)
    ));
}

#[test]
fn insert_column_count_must_match() {
    let msg = (14, "Error in columns list".to_string());
    assert_eq!(
        err("INSERT INTO pipes_messages (name, event, message) VALUES ('a', 'b')"),
        msg
    );
    assert_eq!(
        err("INSERT INTO pipes_messages (name, event) VALUES ('a', 'b'), ('c', 'd', 'e')"),
        msg
    );
    let i = insert("INSERT INTO pipes_settings (name, length) VALUES ('a', 10), (b, -1)");
    assert_eq!(
        i.rows,
        vec![
            vec![str("a"), num("10")],
            vec![Value::Ident("b".into()), num("-1")]
        ]
    );
    let i = insert("insert into users_auth values (1, NULL)");
    assert_eq!(i.rows, vec![vec![num("1"), Value::Null]]);
    syntax("INSERT INTO t () VALUES ()");
    syntax("INSERT INTO t VALUES ()");
    syntax("INSERT t VALUES (1)");
    syntax("INSERT INTO t (a) VALUES (1),");
    syntax("INSERT INTO t (a) VALUES (NOW())");
}

#[test]
fn unsupported_statements_are_syntax_errors() {
    for sql in [
        "SELECT 1",
        "SELECT version()",
        "SELECT COUNT(*) FROM pipes",
        "SELECT * FROM CometQL_v1.pipes",
        "USE CometQL_v1",
        "UPDATE pipes SET name = 'a'",
        "REPLACE INTO pipes_settings VALUES ('a', 1)",
        "SELECT * FROM",
        "SELECT name FROM pipes WHERE",
        "SELECT * FROM pipes WHERE name = 'a' AND",
        "SELECT * FROM pipes WHERE (name = 'a'",
        "SELECT * FROM pipes WHERE name IN ()",
        "SELECT * FROM pipes WHERE 'a b' = name",
        "SELECT * FROM users_time WHERE 5 = id",
        "SELECT * FROM pipes WHERE name = 'a' 'b'",
        "hello",
    ] {
        syntax(sql);
    }
}

#[test]
fn stray_characters_are_not_ignored() {
    syntax("SeLeCt * FrOm pipes WhErE name = 'web_x' !! ?? ;;");
    syntax("SELECT * FROM users_time WHERE id ! = 5");
    syntax("!!!!!");
    syntax("SELECT * FROM pipes WHERE name = 'a' \\");
}

#[test]
fn empty_statements_comments_and_semicolons() {
    for sql in [
        "",
        "  \t\r\n ",
        ";",
        ";;;",
        "-- hi",
        "# hi\n;",
        "/* a */ /* b */",
        "/*!40101 SET NAMES utf8 */;",
    ] {
        assert_eq!(ok(sql), Statement::Empty, "{sql:?}");
    }
    assert_eq!(
        select("-- driver comment\nSELECT * /* x */ FROM pipes # y\n WHERE name = 'a';;").table,
        "pipes"
    );
    syntax("/* never closed");
    syntax("SELECT * FROM t --comment");
}

#[test]
fn one_statement_per_query() {
    syntax("INSERT INTO t VALUES (1); INSERT INTO t VALUES (2)");
    syntax("SET NAMES utf8; SELECT * FROM pipes WHERE name = 'a'");
    syntax("SELECT * FROM pipes WHERE name = 'a'; show tables;");
}

#[test]
fn limit_on_columns() {
    let columns: Vec<String> = (0..21).map(|i| format!("c{i}")).collect();
    assert_eq!(err(&format!("SELECT {} FROM t", columns.join(","))).0, 20);
    assert_eq!(
        err(&format!("INSERT INTO t ({}) VALUES (1)", columns.join(","))).0,
        20
    );
}
