//! The CometQL parser on arbitrary query text (what COM_QUERY carries once it is valid UTF-8).
//!
//! Checked beyond "no panic": every accepted statement keeps the promises of `cometql::ast` (the same ones
//! `cometql/fuzz_tests.rs` checks), errors carry a code and a text, any text round-trips through a
//! NO_BACKSLASH_ESCAPES literal (contract §2), and a published value becomes a frame whose JSON is valid and
//! carries the value unchanged.
#![no_main]

use std::collections::HashSet;

use halley::cometql::{
    parse, Columns, Filter, Statement, Value, MAX_COLUMNS, MAX_CONDITIONS, MAX_VALUES_PER_CONDITION,
};
use halley::push::protocol::frames::{pipe_message, ApiEra};
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

/// Any text, quoted the way mysqli_real_escape_string does under NO_BACKSLASH_ESCAPES, reads back as is.
fn literal_round_trip(text: &str) {
    let sql = format!(
        "INSERT INTO pipes_messages (name, event, message) VALUES ('p', 'e', '{}')",
        text.replace('\'', "''")
    );
    match parse(&sql) {
        Ok(Statement::Insert(i)) => assert_eq!(
            i.rows,
            [[
                Value::Str("p".into()),
                Value::Str("e".into()),
                Value::Str(text.into())
            ]]
        ),
        other => panic!("{sql:?} did not round-trip: {other:?}"),
    }
}

/// The frame a subscriber gets for this message is valid JSON whose `data` is the message.
fn frame_carries(text: &str) {
    for era in [ApiEra::Modern, ApiEra::Legacy] {
        let frame = pipe_message("pipe", "event", text, 1_700_000_000).encode(era);
        let json = frame_json::parse(&frame);
        assert_eq!(json["data"].as_str(), Some(text), "{era:?}");
    }
}
