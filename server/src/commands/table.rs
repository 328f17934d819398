//! What every table command needs from a statement: its columns checked against the table's, the key
//! column's values out of WHERE, LIMIT applied to rows. The rules and texts are the reference's (1.5).

use super::error::{CommandError, ErrorCode};
use crate::cometql::{Columns, Filter, Limit, Value};
use crate::ids::PipeName;

/// A CometQL table's name and its columns in the reference's order.
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [&'static str],
    /// The column a SELECT or DELETE must filter on.
    pub key: &'static str,
}

pub fn not_a_column() -> CommandError {
    CommandError::new(ErrorCode::Column, "Not a specific column")
}

impl Table {
    /// Indexes of the selected columns, in the order asked for.
    pub fn projection(&self, columns: &Columns) -> Result<Vec<usize>, CommandError> {
        match columns {
            Columns::All => Ok((0..self.columns.len()).collect()),
            Columns::Named(names) => names
                .iter()
                .map(|n| self.column_index(n).ok_or_else(not_a_column))
                .collect(),
        }
    }

    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| *c == name)
    }

    /// The key column's values. Every other WHERE column must exist but is otherwise ignored, as in the
    /// reference; a missing key column is ERR 13 with the reference's text for the verb.
    pub fn key_values<'a>(
        &self,
        filter: &'a Filter,
        key: &str,
        verb: Verb,
    ) -> Result<&'a [Value], CommandError> {
        let mut found = None;
        for cond in &filter.conditions {
            if self.column_index(&cond.column).is_none() {
                return Err(not_a_column());
            }
            if cond.column == key {
                found = Some(cond.values.as_slice());
            }
        }
        found.ok_or_else(|| verb.key_required())
    }

    /// Maps an INSERT's values onto column names. Without a column list the row must name every column.
    pub fn insert_row<'a>(
        &self,
        columns: Option<&'a [String]>,
        row: &'a [Value],
    ) -> Result<Vec<(&'a str, &'a Value)>, CommandError> {
        let list_error = || CommandError::new(ErrorCode::Column, "Error in columns list");
        match columns {
            Some(cols) => {
                if cols.len() != row.len() {
                    return Err(list_error());
                }
                cols.iter()
                    .zip(row)
                    .map(|(c, v)| match self.column_index(c) {
                        Some(_) => Ok((c.as_str(), v)),
                        None => Err(not_a_column()),
                    })
                    .collect()
            }
            None => {
                if row.len() != self.columns.len() {
                    return Err(list_error());
                }
                Ok(self.columns.iter().copied().zip(row).collect())
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Verb {
    Select,
    Delete,
}

impl Verb {
    fn key_required(self) -> CommandError {
        let text = match self {
            Verb::Select => "Selection without transferring the requested values of the primary key is not supported",
            Verb::Delete => "Deleting without transferring the requested values of the primary key is not supported",
        };
        CommandError::new(ErrorCode::KeyRequired, text)
    }
}

/// The named column's value in an INSERT row, or ERR 12 "field `x` is required".
pub fn required<'a>(
    row: &[(&str, &'a Value)],
    column: &'static str,
) -> Result<&'a str, CommandError> {
    row.iter()
        .find(|(c, _)| *c == column)
        .and_then(|(_, v)| v.as_text())
        .ok_or_else(|| {
            CommandError::new(ErrorCode::Invalid, format!("field `{column}` is required"))
        })
}

/// The valid pipe names of a WHERE list; the rest are skipped, as in the reference.
pub fn where_pipes(values: &[Value]) -> Vec<PipeName> {
    values
        .iter()
        .filter_map(|v| v.as_text())
        .filter_map(|n| PipeName::parse(n).ok())
        .collect()
}

/// MySQL LIMIT over rows already in order.
pub fn apply_limit<T>(rows: Vec<T>, limit: Option<&Limit>) -> Vec<T> {
    match limit {
        None => rows,
        Some(l) => rows
            .into_iter()
            .skip(usize::try_from(l.offset).unwrap_or(usize::MAX))
            .take(usize::try_from(l.count).unwrap_or(usize::MAX))
            .collect(),
    }
}

/// Builds the result of a SELECT: the projection of each full row.
pub fn project(table: &Table, proj: &[usize], rows: Vec<Vec<String>>) -> super::Outcome {
    super::Outcome::Rows {
        columns: proj.iter().map(|&i| table.columns[i].to_string()).collect(),
        rows: rows
            .into_iter()
            .map(|mut r| proj.iter().map(|&i| std::mem::take(&mut r[i])).collect())
            .collect(),
    }
}
