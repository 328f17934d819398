//! CometQL, the SQL dialect of the MySQL-protocol API: `parse(&str) -> Statement`. Pure: no I/O, and no
//! knowledge of what the tables do (that is `commands`). See docs/compatibility.md §2 and docs/reference-cppcomet.md
//! 1.4-1.7.
//!
//! String literals can be read two ways (with and without backslash escapes); `readings.rs` has the rule
//! that picks one, so that a value a driver escaped is never read as SQL.

mod ast;
mod client_init;
mod error;
mod filter;
mod lexer;
mod literal;
mod parser;
mod readings;

#[cfg(test)]
mod fuzz_tests;
#[cfg(test)]
mod readings_tests;
#[cfg(test)]
mod tests;

pub use ast::{
    Columns, Condition, Delete, Filter, Insert, Limit, Select, Show, Statement, StatusScope, Value,
};
pub use error::{ParseError, MAX_COLUMNS, MAX_CONDITIONS, MAX_VALUES_PER_CONDITION};

pub use readings::{parse_in_session, Escaping};

/// Parses one CometQL statement of a session that has shown nothing yet about its escaping (see
/// [`parse_in_session`]). `Err` carries the MySQL error code and text to send to the client.
pub fn parse(sql: &str) -> Result<Statement, ParseError> {
    parse_in_session(sql, &mut Escaping::default())
}
