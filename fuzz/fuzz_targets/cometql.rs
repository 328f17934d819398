//! The CometQL parser on arbitrary query text (what COM_QUERY carries once it is valid UTF-8).
//!
//! Checked beyond "no panic": every accepted statement keeps the promises of `cometql::ast` (the same ones
//! `cometql/fuzz_tests.rs` checks), errors carry a code and a text, any text escaped by either style
//! (doubled quotes as mysqli_real_escape_string under NO_BACKSLASH_ESCAPES, backslashes as Node mysql2) reads
//! back as that one value or is refused as ambiguous, never as other SQL (docs/compatibility.md §2, issue 11
//! item 2), and a published value becomes a frame whose JSON is valid and carries the value unchanged.
#![no_main]

use std::collections::HashSet;

use halley::cometql::{
    parse, parse_in_session, Columns, Escaping, Filter, Statement, Value, MAX_COLUMNS,
    MAX_CONDITIONS, MAX_VALUES_PER_CONDITION,
};
use halley::browser::frames::{pipe_message, ApiEra};
use libfuzzer_sys::fuzz_target;

#[path = "../src/frame_json.rs"]
mod frame_json;

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else {
        return;
    };
    check(sql);
    literal_round_trip(sql);
});

fn check(sql: &str) {
    let statement = match parse(sql) {
        Ok(s) => s,
        Err(e) => {
            assert!(!e.message.is_empty() && e.code > 0, "{e:?}");
            return;
        }
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
            for row in i.rows.iter().take(4) {
                for v in row.iter().take(4) {
                    if let Value::Str(text) = v {
                        frame_carries(text);
                    }
                }
            }
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

fn unique(names: &[String]) -> bool {
    names.iter().collect::<HashSet<_>>().len() == names.len()
}

fn filter_ok(f: &Filter) -> bool {
    let columns: Vec<String> = f.conditions.iter().map(|c| c.column.clone()).collect();
    f.conditions.len() <= MAX_CONDITIONS
        && f.conditions
            .iter()
            .all(|c| !c.values.is_empty() && c.values.len() <= MAX_VALUES_PER_CONDITION)
        && unique(&columns)
}

/// Any text, escaped either way, reads back as exactly that value where the session's escaping fits,
/// as one value in the same place otherwise, or is refused as ambiguous; never as other SQL.
fn literal_round_trip(text: &str) {
    let doubled = text.replace('\'', "''");
    let slashed = mysql2_escape(text);
    for (escaped, fits) in [
        (doubled, [Escaping::Unknown, Escaping::DoubledQuotes]),
        (slashed, [Escaping::Backslashes, Escaping::Backslashes]),
    ] {
        let sql = format!(
            "INSERT INTO pipes_messages (name, event, message) VALUES ('p', 'e', '{escaped}')"
        );
        for escaping in [
            Escaping::Unknown,
            Escaping::DoubledQuotes,
            Escaping::Backslashes,
        ] {
            let mut session = escaping;
            match parse_in_session(&sql, &mut session) {
                Ok(Statement::Insert(i)) => {
                    let [row] = i.rows.as_slice() else {
                        panic!("{sql:?} in {escaping:?}: {:?}", i.rows)
                    };
                    assert_eq!(
                        row[..2],
                        [Value::Str("p".into()), Value::Str("e".into())],
                        "{sql:?}"
                    );
                    assert_eq!(row.len(), 3, "{sql:?}");
                    if fits.contains(&escaping) {
                        assert_eq!(row[2], Value::Str(text.into()), "{sql:?} in {escaping:?}");
                    }
                }
                Err(e) if e.is_ambiguous() => {}
                other => panic!("{sql:?} in {escaping:?} did not round-trip: {other:?}"),
            }
        }
    }
}

/// Node mysql2's (sqlstring's) escaping of a string.
fn mysql2_escape(text: &str) -> String {
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

/// The frame a subscriber gets for this message is valid JSON whose `data` is the message.
fn frame_carries(text: &str) {
    for era in [ApiEra::Modern, ApiEra::Legacy] {
        let frame = pipe_message("pipe", "event", text, 1_700_000_000).encode(era);
        let json = frame_json::parse(&frame);
        assert_eq!(json["data"].as_str(), Some(text), "{era:?}");
    }
}
