//! The refusals a statement can get before any table sees it. `code` and `message` are exactly what the
//! MySQL client prints (`ERROR <code> (HY000): <message>`), so the texts follow the reference
//! (docs/reference-cppcomet.md 1.7).

use thiserror::Error;

/// At most this many AND-joined conditions in a WHERE (the reference's limit, reported instead of truncated).
pub const MAX_CONDITIONS: usize = 10;
/// At most this many values in one condition (an IN list, or the values of an OR chain).
pub const MAX_VALUES_PER_CONDITION: usize = 4000;
/// At most this many columns in a SELECT or INSERT column list (the reference's limit).
pub const MAX_COLUMNS: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("CometQL error {code}: {message}")]
pub struct ParseError {
    pub code: u16,
    pub message: String,
}

impl ParseError {
    pub const NOT_IMPLEMENTED: u16 = 2;
    pub const SYNTAX: u16 = 3;
    pub const USED_ONLY_ONCE: u16 = 13;
    pub const COLUMNS_LIST: u16 = 14;
    pub const TOO_MANY_CONDITIONS: u16 = 18;
    pub const TOO_MANY_VALUES: u16 = 19;
    pub const TOO_MANY_COLUMNS: u16 = 20;

    fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn syntax() -> Self {
        Self::new(Self::SYNTAX, "Syntax error in query")
    }

    /// Rule 4 of `readings.rs`: the statement reads as different SQL with and without backslash escapes.
    pub(super) fn ambiguous() -> Self {
        Self::new(
            Self::SYNTAX,
            "Ambiguous string literal: the query reads differently with and without backslash \
             escapes, so it was not run (a backslash before a quote; see String literals in the CometQL docs)",
        )
    }

    /// True for the refusal of rule 4 of `readings.rs`.
    pub fn is_ambiguous(&self) -> bool {
        *self == Self::ambiguous()
    }

    /// True for "the text could not be read" (as opposed to a well-formed statement that is refused).
    pub fn is_syntax(&self) -> bool {
        self.code == Self::SYNTAX
    }

    /// `op` as the client wrote it for symbols (`>`, `!=`), upper-cased for keywords (`LIKE`, `NOT IN`).
    pub(super) fn operator(op: &str) -> Self {
        Self::new(
            Self::NOT_IMPLEMENTED,
            format!("Operator {op} is not yet implemented"),
        )
    }

    pub(super) fn order_by() -> Self {
        Self::new(
            Self::NOT_IMPLEMENTED,
            "Token ORDER BY is not yet implemented",
        )
    }

    pub(super) fn duplicate_select_column() -> Self {
        Self::new(
            Self::USED_ONLY_ONCE,
            "Each column in the select used only once",
        )
    }

    pub(super) fn duplicate_insert_column() -> Self {
        Self::new(
            Self::USED_ONLY_ONCE,
            "Each column in the insert used only once",
        )
    }

    pub(super) fn duplicate_condition_column() -> Self {
        Self::new(
            Self::USED_ONLY_ONCE,
            "Each column in the conditions used only once",
        )
    }

    pub(super) fn columns_list() -> Self {
        Self::new(Self::COLUMNS_LIST, "Error in columns list")
    }

    pub(super) fn too_many_conditions() -> Self {
        Self::new(
            Self::TOO_MANY_CONDITIONS,
            format!("Too many conditions (the limit is {MAX_CONDITIONS})"),
        )
    }

    pub(super) fn too_many_values() -> Self {
        Self::new(
            Self::TOO_MANY_VALUES,
            format!("Too many values in the conditions (the limit is {MAX_VALUES_PER_CONDITION})"),
        )
    }

    pub(super) fn too_many_columns() -> Self {
        Self::new(
            Self::TOO_MANY_COLUMNS,
            format!("Too many columns (the limit is {MAX_COLUMNS})"),
        )
    }
}
