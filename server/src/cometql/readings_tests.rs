//! The rule of `readings.rs` with literal statements, then an injection corpus: values escaped by each
//! real driver's escaping (Node mysql2 and PHP addslashes with backslashes, mysqli_real_escape_string,
//! PDO and PyMySQL by doubling quotes), placed in statements the way placeholders place them, must read
//! back as exactly one value in that place, or be refused, in every session state.

use super::tests::{err, insert, inserted, str, syntax};
use super::*;

fn in_session(sql: &str, escaping: Escaping) -> (Result<Statement, ParseError>, Escaping) {
    let mut escaping = escaping;
    let result = parse_in_session(sql, &mut escaping);
    (result, escaping)
}

fn ambiguous() -> (u16, String) {
    let e = err("INSERT INTO t (m) VALUES ('x\\') # ')");
    assert!(e.1.starts_with("Ambiguous string literal"), "{e:?}");
    e
}

#[test]
fn string_literals_no_backslash_reading_first() {
    let q = |lit: &str| format!("INSERT INTO pipes_messages (message) VALUES ({lit})");
    let cases: &[(&str, &str)] = &[
        ("'it''s'", "it's"),
        ("'abc\\'", "abc\\"),
        ("'\\'", "\\"),
        ("'a\\\\b'", "a\\\\b"),
        ("'\\n'", "\\n"),
        (
            r#"'{"text":"say \"hi\"","e":"\u00e9","url":"http:\/\/x.y\/"}'"#,
            r#"{"text":"say \"hi\"","e":"\u00e9","url":"http:\/\/x.y\/"}"#,
        ),
        ("\"say \"\"hi\"\" it's\"", "say \"hi\" it's"),
        ("'Привет, мир'", "Привет, мир"),
        ("'😀 ''emoji'' 🎉'", "😀 'emoji' 🎉"),
    ];
    for (lit, want) in cases {
        assert_eq!(inserted(&q(lit)), *want, "{lit}");
    }
    // The backslash reading stops at the stray `\` of `\y`: only the first reading can be read.
    let i = insert("INSERT INTO t (a, b) VALUES ('x\\', '\\y')");
    assert_eq!(i.rows, vec![vec![str("x\\"), str("\\y")]]);
}

#[test]
fn string_literals_backslash_reading_as_fallback() {
    let q = |lit: &str| format!("INSERT INTO pipes_messages (message) VALUES ({lit})");
    let cases: &[(&str, &str)] = &[
        ("'it\\'s'", "it's"),
        ("'it\\'s \\\"q\\\" \\\\'", "it's \"q\" \\"),
        ("'\\''", "'"),
        ("'a\\'b''c'", "a'b'c"),
        (
            "'\\'\\0\\n\\r\\t\\b\\Z\\%\\_\\x'",
            "'\0\n\r\t\u{8}\u{1a}\\%\\_x",
        ),
        ("'日本\\'語 😀'", "日本'語 😀"),
        ("\"\\\"quoted\\\" and it\\'s\" ", "\"quoted\" and it's"),
    ];
    for (lit, want) in cases {
        assert_eq!(inserted(&q(lit)), *want, "{lit}");
    }
    // The whole statement is re-read, so every literal in it gets the backslash rules.
    let i = insert("INSERT INTO t (a, b) VALUES ('a\\\\b', 'it\\'s')");
    assert_eq!(i.rows, vec![vec![str("a\\b"), str("it's")]]);
    // Neither reading parses: unterminated either way.
    syntax("INSERT INTO t (a) VALUES ('abc\\')x");
}

#[test]
fn error_from_the_reading_that_got_furthest() {
    // First reading: syntax error (`b` after `'a\'`); second: OR across columns, which says more.
    assert_eq!(
        err("SELECT * FROM pipes WHERE name = 'a\\'b' OR users = 1"),
        (2, "Operator OR is not yet implemented".into())
    );
    // First reading refuses a well-formed statement: that refusal stands.
    assert_eq!(err("SELECT * FROM pipes WHERE name > 'a\\'").0, 2);
}

#[test]
fn sixty_kib_literals() {
    let body = "Grüße 😀 \"json\" \\u00e9 it's ".repeat(60 * 1024 / 32);
    let nbe = body.replace('\'', "''");
    let sql =
        format!("INSERT INTO pipes_messages (name, event, message) VALUES ('p', 'e', '{nbe}')");
    assert_eq!(insert(&sql).rows[0][2], str(&body));
    let slashed = body
        .replace('\\', "\\\\")
        .replace('\'', "\\'")
        .replace('"', "\\\"");
    let sql =
        format!("INSERT INTO pipes_messages (name, event, message) VALUES ('p', 'e', '{slashed}')");
    assert_eq!(insert(&sql).rows[0][2], str(&body));
}

#[test]
fn a_comment_in_one_reading_only_is_ambiguous() {
    // addslashes("x') # ") is `x\') # `: the first reading ends the string at the quote and `#` hides
    // the rest, the second reads one value. Same tokens, but a comment in one reading only: refused.
    assert_eq!(ambiguous().0, 3);
    let (result, _) = in_session(
        "INSERT INTO t (m) VALUES ('x\\') # ')",
        Escaping::Backslashes,
    );
    assert_eq!(result, Err(ParseError::ambiguous()));
}

#[test]
fn the_issue_11_examples_are_refused_in_every_session_state() {
    let attacks = [
        // mysql2 / addslashes of `hi'),(private_admin,evil,pwned)#`
        "INSERT INTO pipes_messages (name, event, message) VALUES ('chat', 'msg', 'hi\\'),(private_admin,evil,pwned)#')",
        // mysql2 / addslashes of `chat' OR name = private_admin #`
        "SELECT * FROM pipes_messages WHERE name = 'chat\\' OR name = private_admin #'",
        // mysqli_real_escape_string of `x\'),(private_admin,evil,pwned)#`, read with backslash escapes
        "INSERT INTO pipes_messages (name, event, message) VALUES ('chat', 'msg', 'x\\''),(private_admin,evil,pwned)#')",
    ];
    for sql in attacks {
        for escaping in [
            Escaping::Unknown,
            Escaping::DoubledQuotes,
            Escaping::Backslashes,
        ] {
            let (result, after) = in_session(sql, escaping);
            assert_eq!(
                result,
                Err(ParseError::ambiguous()),
                "{sql} in {escaping:?}"
            );
            assert_eq!(after, escaping, "a refused statement shows nothing");
        }
    }
}

#[test]
fn a_statement_readable_one_way_only_shows_the_session_how_it_escapes() {
    let q = |lit: &str| format!("INSERT INTO pipes_messages (message) VALUES ({lit})");
    let message = |r: Result<Statement, ParseError>| match r {
        Ok(Statement::Insert(i)) => i.rows[0][0].as_text().expect("text").to_string(),
        other => panic!("{other:?}"),
    };
    // `\"` and `\\` read either way: as announced (NO_BACKSLASH_ESCAPES) until the session shows more.
    let json_slashed = q("'{\\\"a\\\":\\\"b\\\\\\\\c\\\"}'");
    let (r, e) = in_session(&json_slashed, Escaping::Unknown);
    assert_eq!(message(r), "{\\\"a\\\":\\\"b\\\\\\\\c\\\"}");
    assert_eq!(e, Escaping::Unknown);
    // mysql2 escapes `it's` as `it\'s`: readable only with backslash escapes.
    let (r, e) = in_session(&q("'it\\'s'"), Escaping::Unknown);
    assert_eq!((message(r).as_str(), e), ("it's", Escaping::Backslashes));
    // From then on the same JSON reads the backslash way.
    let (r, e) = in_session(&json_slashed, e);
    assert_eq!(message(r), "{\"a\":\"b\\\\c\"}");
    assert_eq!(e, Escaping::Backslashes);
    // ... unless the statement has what no backslash escaper writes: json_encode output from mysqli
    // (`\u00e9`, `\/`, an unescaped `"`) stays byte-exact in such a session.
    for lit in [
        "'{\"t\":\"caf\\u00e9 \\/p\"}'",
        "'say \\\"hi\\\" to \"them\"'",
        "'it''s \\\"q\\\"'",
        "\"it's a\\\\b\"",
    ] {
        let (r, e) = in_session(&q(lit), Escaping::Backslashes);
        let want = match read_literal_the_first_way(lit) {
            Some(text) => text,
            None => panic!("{lit}"),
        };
        assert_eq!((message(r), e), (want, Escaping::Backslashes), "{lit}");
    }
    // A trailing backslash (mysqli: `abc\`) is readable only without backslash escapes.
    let (r, e) = in_session(&q("'abc\\'"), Escaping::Backslashes);
    assert_eq!((message(r).as_str(), e), ("abc\\", Escaping::DoubledQuotes));
    let (r, _) = in_session(&json_slashed, e);
    assert_eq!(message(r), "{\\\"a\\\":\\\"b\\\\\\\\c\\\"}");
}

fn read_literal_the_first_way(lit: &str) -> Option<String> {
    match in_session(
        &format!("INSERT INTO t (m) VALUES ({lit})"),
        Escaping::Unknown,
    )
    .0
    {
        Ok(Statement::Insert(i)) => i.rows[0][0].as_text().map(str::to_owned),
        _ => None,
    }
}

/// Node mysql2 (sqlstring), for strings: every placeholder value and `connection.escape`.
fn mysql2(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1a}' => out.push_str("\\Z"),
            '"' | '\'' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            other => out.push(other),
        }
    }
    out
}

/// PHP addslashes.
fn addslashes(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '"' | '\'' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            other => out.push(other),
        }
    }
    out
}

/// mysqli_real_escape_string, PDO::quote (mysqlnd) and PyMySQL once NO_BACKSLASH_ESCAPES is announced.
fn doubling(text: &str) -> String {
    text.replace('\'', "''")
}

/// A driver's escaping function.
type Escaper = fn(&str) -> String;

const MARK: &str = "PLACEHOLDER";

/// Statements with `%s` where a driver puts an escaped value (inside the quotes the template supplies).
const TEMPLATES: &[&str] = &[
    "INSERT INTO pipes_messages (name, event, message) VALUES ('chat', 'msg', '%s')",
    "INSERT INTO pipes_messages (message, event, name) VALUES ('%s', 'msg', 'chat')",
    "INSERT INTO pipes_messages (name, event, message) VALUES ('chat', '%s', '%s'), ('chat', 'e', 'm')",
    "SELECT * FROM pipes_messages WHERE name = '%s'",
    "SELECT name, message FROM pipes_messages WHERE name IN ('%s', 'chat') LIMIT 5",
    "DELETE FROM users_auth WHERE id = '%s'",
];

/// Double-quoted templates: only backslash escapers escape `"`, so only they can fill these.
const DOUBLE_QUOTED_TEMPLATES: &[&str] = &[
    "INSERT INTO pipes_messages (name, event, message) VALUES (\"chat\", \"msg\", \"%s\")",
    "SELECT * FROM pipes_messages WHERE name = \"%s\"",
];

fn values(statement: &Statement) -> Vec<Value> {
    match statement {
        Statement::Insert(i) => i.rows.concat(),
        Statement::Select(s) => s
            .filter
            .conditions
            .iter()
            .flat_map(|c| c.values.clone())
            .collect(),
        Statement::Delete(d) => d
            .filter
            .conditions
            .iter()
            .flat_map(|c| c.values.clone())
            .collect(),
        other => panic!("not a statement with values: {other:?}"),
    }
}

fn map_values(statement: &Statement, f: impl Fn(&Value) -> Value) -> Statement {
    let mut s = statement.clone();
    let map_filter = |filter: &mut Filter| {
        for c in &mut filter.conditions {
            c.values = c.values.iter().map(&f).collect();
        }
    };
    match &mut s {
        Statement::Insert(i) => {
            for row in &mut i.rows {
                *row = row.iter().map(&f).collect();
            }
        }
        Statement::Select(sel) => map_filter(&mut sel.filter),
        Statement::Delete(d) => map_filter(&mut d.filter),
        _ => {}
    }
    s
}

/// The statement `template` means with `text` in every `%s`: parsed with a mark, the mark replaced.
fn intended(template: &str, text: &str) -> Statement {
    let with_mark = parse(&template.replace("%s", MARK)).expect("templates parse");
    map_values(&with_mark, |v| match v {
        Value::Str(s) if s == MARK => Value::Str(text.into()),
        other => other.clone(),
    })
}

/// Whether the escaper writes a backslash sequence other than one before the template's quote character
/// for this text: with one, the value can read two ways without any change of structure (rule 5).
fn has_value_ambiguity(escape: Escaper, template: &str, text: &str) -> bool {
    let quote = if template.contains("\"%s\"") {
        '"'
    } else {
        '\''
    };
    escape(&text.replace(quote, "")).contains('\\')
}

/// One escaped value in one template, in each session state: the value's intended statement, or a
/// refusal as ambiguous, never another statement. Exactly that value where the session's escaping fits
/// the escaper's; otherwise (rule 5) the same statement with only this value read the other way.
fn check(escape: Escaper, backslashes: bool, template: &str, text: &str) {
    let sql = template.replace("%s", &escape(text));
    let want = intended(template, text);
    for escaping in [
        Escaping::Unknown,
        Escaping::DoubledQuotes,
        Escaping::Backslashes,
    ] {
        let (result, _) = in_session(&sql, escaping);
        let got = match result {
            Err(e) if e == ParseError::ambiguous() => continue,
            Err(e) => panic!("{sql:?} in {escaping:?}: {e:?}"),
            Ok(got) => got,
        };
        let exact = if backslashes {
            escaping == Escaping::Backslashes || !has_value_ambiguity(escape, template, text)
        } else {
            escaping != Escaping::Backslashes
        };
        if exact {
            assert_eq!(got, want, "{sql:?} in {escaping:?}");
            continue;
        }
        let blank = |v: &Value| match v {
            Value::Str(_) => Value::Str(String::new()),
            other => other.clone(),
        };
        assert_eq!(
            map_values(&got, blank),
            map_values(&want, blank),
            "{sql:?} in {escaping:?}"
        );
        let template_values = values(&intended(template, MARK));
        for ((t, g), w) in template_values.iter().zip(values(&got)).zip(values(&want)) {
            if *t != Value::Str(MARK.into()) {
                assert_eq!(g, w, "{sql:?} in {escaping:?}");
            }
        }
    }
}

fn check_every_escaper(text: &str) {
    let escapers: [(Escaper, bool); 3] = [(mysql2, true), (addslashes, true), (doubling, false)];
    for (escape, backslashes) in escapers {
        for template in TEMPLATES {
            check(escape, backslashes, template, text);
        }
        if backslashes {
            for template in DOUBLE_QUOTED_TEMPLATES {
                check(escape, backslashes, template, text);
            }
        }
    }
}

/// End-user text written to break out of a literal escaped one way when read the other way.
const ATTACKS: &[&str] = &[
    "hi'),(private_admin,evil,pwned)#",
    "hi'), ('private_admin', 'evil', 'pwned') -- ",
    "hi'),('private_admin','evil','pwned')/*",
    "chat' OR name = private_admin #",
    "chat' OR name = 'private_admin",
    "chat', 'private_admin') #",
    r"x\'),(private_admin,evil,pwned)#",
    r"x\\'),(private_admin,evil,pwned)#",
    r"\'),(private_admin,evil,pwned)#",
    r"\' OR name = private_admin #",
    r"\', 'private_admin') #",
    "x') # ",
    r"x\') # ",
    "\"),(private_admin,evil,pwned)#",
    r#"\"),(private_admin,evil,pwned)#"#,
    "\" OR name = private_admin #",
    "it's",
    "say \"hi\"",
    r"C:\path\",
    r"a\\b \n \u00e9 \/",
    r#"{"text":"say \"hi\" caf\u00e9 \/path \\ end"}"#,
    "line\nbreak\ttab\0nul\u{1a}",
    "'; DELETE FROM pipes_messages; --",
    "''''",
    r"\",
];

#[test]
fn injection_corpus_never_changes_the_statement() {
    for text in ATTACKS {
        check_every_escaper(text);
    }
}

#[test]
fn random_text_never_changes_the_statement() {
    let alphabet = &[
        "'",
        "'",
        "\"",
        "\\",
        "\\",
        ")",
        "(",
        ",",
        " ",
        "#",
        "-- ",
        "/*",
        "*/",
        "\n",
        "\0",
        "private_admin",
        "OR name =",
        "a",
        "é",
        "😀",
        "u00e9",
        "n",
        ";",
        "=",
    ];
    let mut rng = super::fuzz_tests::Rng(0x5EED_1DEA_0B5E_55ED);
    for _ in 0..800 {
        let text: String = (0..rng.below(14)).map(|_| rng.pick(alphabet)).collect();
        check_every_escaper(&text);
    }
}

#[test]
fn a_refused_reading_still_counts_as_readable() {
    // mysql2 fills `IN (?, ?, ...)` with 4,001 end-user values, the first one `a') OR name = victim #`.
    // With backslash escapes (the right reading) the list is over the limit: ERR 19. Without them, `#`
    // hides the rest and the statement would read `name IN ('a\') OR name = victim`. A refusal is a reading
    // of well-formed SQL, so the two disagree: refused as ambiguous, never run the other way.
    let mut values = vec![mysql2("a') OR name = victim #")];
    values.extend((0..MAX_VALUES_PER_CONDITION).map(|i| format!("v{i}")));
    let list: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    let sql = format!(
        "SELECT * FROM pipes_messages WHERE name IN ({})",
        list.join(", ")
    );
    for escaping in [
        Escaping::Unknown,
        Escaping::DoubledQuotes,
        Escaping::Backslashes,
    ] {
        assert_eq!(in_session(&sql, escaping).0, Err(ParseError::ambiguous()));
    }
    // The same list without the attack is simply over the limit.
    let sql = sql.replacen(&list[0], "'a'", 1);
    assert_eq!(err(&sql).0, ParseError::TOO_MANY_VALUES);
}
