//! Property-style tests: thousands of random and mutated statements must never panic and every accepted
//! statement must keep the AST's promises; literals must round-trip through both escaping styles.
//! (A deterministic generator, so a failure reproduces; `cargo fuzz` goes further.)

use std::collections::HashSet;

use super::*;

/// xorshift64*: small, deterministic, no dependency.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub(super) fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const SEEDS: &[&str] = &[
    "SeLeCt * FrOm pipes WhErE name = 'web_x'",
    "INSERT INTO pipes_messages (name, event, message) VALUES ('chat', 'msg', 'hi')",
    "INSERT INTO pipes_messages VALUES ('a','b','c'), (\"d\", e, -1)",
    "SELECT * FROM users_time WHERE id IN (1,2,3) LIMIT 2",
    "SELECT name, users FROM pipes WHERE name = 'a' OR name = 'b' LIMIT 1, 2",
    "DELETE FROM pipes_messages WHERE name = 'p' AND (id = 'x' OR id IN ('y')) ORDER BY time",
    "SET NAMES utf8mb4 COLLATE 'x', @@a := CONCAT(@@b, ',c')",
    "SELECT @@session.version_comment AS v, @@x LIMIT 1",
    "SELECT DATABASE()",
    "SHOW FULL COLUMNS FROM users_auth",
    "SHOW SESSION VARIABLES LIKE 'sql_mode'",
    "SHOW GLOBAL STATUS",
    "DESCRIBE users_auth",
    "/* c */ SELECT * FROM t WHERE a BETWEEN 1 AND 2 -- x\n;",
    "INSERT INTO t (m) VALUES ('it\\'s ''q'' \\\\ \"\\\" 😀 é')",
];

const FRAGMENTS: &[&str] = &[
    "SELECT",
    "INSERT",
    "INTO",
    "DELETE",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "IS",
    "NULL",
    "LIKE",
    "BETWEEN",
    "LIMIT",
    "OFFSET",
    "ORDER",
    "BY",
    "DESC",
    "VALUES",
    "SET",
    "SHOW",
    "FULL",
    "COLUMNS",
    "STATUS",
    "TABLE",
    "VARIABLES",
    "DATABASE",
    "AS",
    "pipes",
    "name",
    "`index`",
    "id",
    "'x'",
    "'it''s'",
    "'a\\'b'",
    "\"q\\\"\"",
    "'",
    "\"",
    "`",
    "\\",
    "@@v",
    "@@s.v",
    "@u",
    "1",
    "-",
    "+",
    "1.5",
    "18446744073709551616",
    "*",
    ",",
    "(",
    ")",
    ";",
    "=",
    ":=",
    ">",
    "<=>",
    "!=",
    "!",
    "/*",
    "*/",
    "--",
    "#",
    "\n",
    " ",
    "é",
    "😀",
    "\u{0}",
    ".",
    "''",
    "``",
];

/// Checks what every accepted statement promises its callers.
fn check(sql: &str) {
    let Ok(statement) = parse(sql) else { return };
    let unique = |names: &[String]| names.iter().collect::<HashSet<_>>().len() == names.len();
    let filter_ok = |f: &Filter| {
        f.conditions.len() <= MAX_CONDITIONS
            && f.conditions
                .iter()
                .all(|c| !c.values.is_empty() && c.values.len() <= MAX_VALUES_PER_CONDITION)
            && unique(
                &f.conditions
                    .iter()
                    .map(|c| c.column.clone())
                    .collect::<Vec<_>>(),
            )
    };
    let fine = match &statement {
        Statement::Select(s) => {
            filter_ok(&s.filter)
                && match &s.columns {
                    Columns::All => true,
                    Columns::Named(names) => {
                        !names.is_empty() && names.len() <= MAX_COLUMNS && unique(names)
                    }
                }
        }
        Statement::Delete(d) => filter_ok(&d.filter),
        Statement::Insert(i) => {
            !i.rows.is_empty()
                && i.rows.iter().all(|r| !r.is_empty())
                && i.columns.as_ref().is_none_or(|cols| {
                    unique(cols)
                        && cols.len() <= MAX_COLUMNS
                        && i.rows.iter().all(|r| r.len() == cols.len())
                })
        }
        Statement::SelectVariables { names, aliases, .. } => {
            !names.is_empty() && names.len() == aliases.len()
        }
        _ => true,
    };
    assert!(fine, "{sql:?} broke an AST promise: {statement:?}");
}

fn char_boundaries(s: &str) -> Vec<usize> {
    s.char_indices().map(|(i, _)| i).chain([s.len()]).collect()
}

fn mutate(rng: &mut Rng, sql: &str) -> String {
    let cuts = char_boundaries(sql);
    let a = cuts[rng.below(cuts.len())];
    let b = cuts[rng.below(cuts.len())];
    let (lo, hi) = (a.min(b), a.max(b));
    match rng.below(4) {
        0 => format!("{}{}{}", &sql[..a], rng.pick(FRAGMENTS), &sql[a..]),
        1 => format!("{}{}", &sql[..lo], &sql[hi..]),
        2 => format!("{}{}", &sql[..hi], &sql[lo..]),
        _ => format!("{} {}", rng.pick(SEEDS), &sql[lo..hi]),
    }
}

#[test]
fn random_fragments_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..4000 {
        let len = 1 + rng.below(24);
        let parts: Vec<&str> = (0..len).map(|_| rng.pick(FRAGMENTS)).collect();
        let sep = if rng.below(3) == 0 { "" } else { " " };
        check(&parts.join(sep));
    }
}

#[test]
fn mutated_statements_never_panic() {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    for _ in 0..4000 {
        let mut sql = rng.pick(SEEDS).to_string();
        for _ in 0..1 + rng.below(4) {
            sql = mutate(&mut rng, &sql);
        }
        check(&sql);
    }
}

#[test]
fn pathological_inputs_finish() {
    let deep = format!(
        "SELECT * FROM t WHERE {}a = 1{}",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    assert_eq!(parse(&deep), Err(ParseError::syntax()));
    let nots = format!("SELECT * FROM t WHERE {}a = 1", "NOT ".repeat(20_000));
    assert_eq!(parse(&nots).map_err(|e| e.code), Err(2));
    let ors = format!("SELECT * FROM t WHERE a = 1{}", " OR a = 1".repeat(20_000));
    assert_eq!(parse(&ors).map_err(|e| e.code), Err(19));
    let ands = format!(
        "SELECT * FROM t WHERE a = 1{}",
        " AND (a = 1)".repeat(20_000)
    );
    assert_eq!(parse(&ands).map_err(|e| e.code), Err(18));
    let set = format!("SET a = {}{}", "(".repeat(50_000), ")".repeat(50_000));
    assert_eq!(parse(&set), Ok(Statement::Set));
    for filler in [
        "'", "\\", "\\'", "`", "/*", "-- ", "@@", ",", "é😀", "\u{0}",
    ] {
        let _ = parse(&filler.repeat(40_000));
        let _ = parse(&format!(
            "INSERT INTO t VALUES ('{}')",
            filler.repeat(40_000)
        ));
    }
}

/// Text drawn from quotes, backslashes, escape letters, multi-byte characters and SQL punctuation.
fn random_text(rng: &mut Rng, alphabet: &[&str]) -> String {
    (0..rng.below(40)).map(|_| rng.pick(alphabet)).collect()
}

#[test]
fn no_backslash_escaping_always_round_trips() {
    // What mysqli_real_escape_string does once the server announced NO_BACKSLASH_ESCAPES.
    let alphabet = &[
        "a", "'", "\"", "\\", "n", "0", "Z", "%", "_", " ", "é", "😀", "\n", "\r", "\t", ")", "(",
        ",", ";", "#", "-", "/", "*", "\u{0}", "\u{1a}", "u00e9",
    ];
    let mut rng = Rng(0x0123_4567_89AB_CDEF);
    for _ in 0..3000 {
        let text = random_text(&mut rng, alphabet);
        let sql = format!(
            "INSERT INTO pipes_messages (name, message) VALUES ('p', '{}')",
            text.replace('\'', "''")
        );
        let Ok(Statement::Insert(insert)) = parse(&sql) else {
            panic!("{sql:?} did not parse");
        };
        assert_eq!(insert.rows[0][1], Value::Str(text), "{sql:?}");
    }
}

#[test]
fn backslash_escaping_round_trips_when_a_quote_needs_it() {
    // What addslashes / mysql_real_escape_string do without NO_BACKSLASH_ESCAPES. Text with a `'` cannot
    // be read the first way, so the second reading decodes it. (Comment openers are left out: after a
    // `\'` closes the first reading's string, `') # ...` makes that reading valid too, and the statement
    // is refused as ambiguous: `readings_tests.rs` checks those.)
    let alphabet = &[
        "a", "'", "\"", "\\", "n", "0", "Z", " ", "é", "😀", "\n", "\r", "\t", ")", "(", ",", ";",
        "\u{0}", "\u{1a}", "x",
    ];
    let mut rng = Rng(0xFEDC_BA98_7654_3210);
    for _ in 0..3000 {
        let text = format!(
            "{}'{}",
            random_text(&mut rng, alphabet),
            random_text(&mut rng, alphabet)
        );
        let mut escaped = String::new();
        for c in text.chars() {
            match c {
                '\0' => escaped.push_str("\\0"),
                '\n' => escaped.push_str("\\n"),
                '\r' => escaped.push_str("\\r"),
                '\u{1a}' => escaped.push_str("\\Z"),
                '\\' | '\'' | '"' => {
                    escaped.push('\\');
                    escaped.push(c);
                }
                other => escaped.push(other),
            }
        }
        let sql = format!("INSERT INTO pipes_messages (name, message) VALUES ('p', '{escaped}')");
        let Ok(Statement::Insert(insert)) = parse(&sql) else {
            panic!("{sql:?} did not parse");
        };
        assert_eq!(insert.rows[0][1], Value::Str(text), "{sql:?}");
    }
}
