//! What every table command needs from a statement: its columns checked against the table's, the key
//! column's values out of WHERE, LIMIT applied to rows. The rules and texts are the reference's
//! (docs/reference-cppcomet.md 1.5).

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

pub(super) fn not_a_column() -> CommandError {
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
pub(super) fn required<'a>(
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

/// The valid pipe names of a WHERE list, each once; the rest are skipped, as in the reference.
pub(super) fn where_pipes(values: &[Value]) -> Vec<PipeName> {
    let mut seen = std::collections::HashSet::new();
    values
        .iter()
        .filter_map(|v| v.as_text())
        .filter_map(|n| PipeName::parse(n).ok())
        .filter(|p| seen.insert(p.clone()))
        .collect()
}

/// A SELECT's rows collected as they are read: LIMIT is applied on the way (the reader stops once
/// [`Collector::done`]), each kept row is projected, and the result caps (`[cometql] max_result_rows`,
/// `max_result_bytes`) are checked on every row kept, so an oversized result is refused before it is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Collector {
    rows: Vec<Vec<String>>,
    /// Bytes of the rows held (what [`Collector::take_rows`] hands over).
    held: usize,
    proj: Option<Vec<usize>>,
    seen: u64,
    offset: u64,
    count: u64,
    charged: usize,
    bytes: usize,
    max_rows: usize,
    max_bytes: usize,
}

/// The framing of one value in a text result row: its length-encoded prefix.
fn lenenc_len(n: usize) -> usize {
    match n {
        0..=250 => 1,
        251..=0xFFFF => 3,
        0x1_0000..=0xFF_FFFF => 4,
        _ => 9,
    }
}

impl Collector {
    pub(super) fn new(ctx: &super::Ctx, limit: Option<&Limit>) -> Collector {
        Collector {
            rows: Vec::new(),
            held: 0,
            proj: None,
            seen: 0,
            offset: limit.map_or(0, |l| l.offset),
            count: limit.map_or(u64::MAX, |l| l.count),
            charged: 0,
            bytes: 0,
            max_rows: ctx.config.cometql.max_result_rows,
            max_bytes: ctx.config.cometql.max_result_bytes,
        }
    }

    /// Keeps only these columns of each row, in this order.
    pub(super) fn projected(mut self, proj: &[usize]) -> Collector {
        self.proj = Some(proj.to_vec());
        self
    }

    /// Rows offered so far, kept or skipped by the offset.
    pub(super) fn seen(&self) -> u64 {
        self.seen
    }

    /// LIMIT is satisfied: nothing more will be kept.
    pub(super) fn done(&self) -> bool {
        self.seen >= self.offset.saturating_add(self.count)
    }

    /// The next row in result order.
    pub(super) fn offer(&mut self, row: Vec<String>) -> Result<(), CommandError> {
        self.seen += 1;
        if self.seen <= self.offset || self.seen > self.offset.saturating_add(self.count) {
            return Ok(());
        }
        let row = match &self.proj {
            None => row,
            Some(proj) => {
                let mut row = row;
                proj.iter().map(|&i| std::mem::take(&mut row[i])).collect()
            }
        };
        let before = self.bytes;
        self.charge(&row)?;
        self.held += self.bytes - before;
        self.rows.push(row);
        Ok(())
    }

    /// Bytes of the rows kept and not yet taken.
    pub(super) fn held_bytes(&self) -> usize {
        self.held
    }

    /// The rows kept so far, for a part of a streamed result; the caps keep counting the whole result.
    pub(super) fn take_rows(&mut self) -> Vec<Vec<String>> {
        self.held = 0;
        std::mem::take(&mut self.rows)
    }

    /// Counts one row of the result against the caps.
    pub(super) fn charge(&mut self, row: &[String]) -> Result<(), CommandError> {
        let too_large = |what: String| {
            CommandError::new(
                ErrorCode::TooLong,
                format!("Result too large: more than {what} (select fewer keys or use LIMIT)"),
            )
        };
        self.charged += 1;
        self.bytes += 4 + row
            .iter()
            .map(|v| lenenc_len(v.len()) + v.len())
            .sum::<usize>();
        if self.charged > self.max_rows {
            return Err(too_large(format!("{} rows", self.max_rows)));
        }
        if self.bytes > self.max_bytes {
            return Err(too_large(format!("{} bytes", self.max_bytes)));
        }
        Ok(())
    }

    /// The result: the projected columns' names and the rows kept.
    pub(super) fn finish(self, table: &Table, proj: &[usize]) -> super::Outcome {
        super::Outcome::Rows {
            columns: proj.iter().map(|&i| table.columns[i].to_string()).collect(),
            rows: self.rows,
        }
    }
}

/// A result is built whole while it stays under this many bytes (its column widths then fit its values
/// exactly, as always); past it, it is sent in parts of [`STREAM_PART`] bytes as it is read, so that a
/// session holds about this much of a result at most, whatever the client reads.
pub(super) const STREAM_AT: usize = 512 * 1024;
pub(super) const STREAM_PART: usize = 64 * 1024;

/// A result past `STREAM_AT`: the rows read so far, then `rest` part by part. Its columns declare the
/// widths any value can take (messages up to `[websocket] max_message_bytes`; every other column is a
/// name, id, number or UUID), since the later rows are not known yet.
pub(super) fn streamed(
    ctx: &super::Ctx,
    table: &Table,
    proj: &[usize],
    rows: Vec<Vec<String>>,
    rest: super::Rest,
) -> super::Outcome {
    super::Outcome::Stream {
        columns: proj.iter().map(|&i| table.columns[i].to_string()).collect(),
        widths: stream_widths(ctx, table, proj),
        rows,
        rest: Box::new(rest),
    }
}

fn stream_widths(ctx: &super::Ctx, table: &Table, proj: &[usize]) -> Vec<u32> {
    let message = u32::try_from(ctx.config.websocket.max_message_bytes).unwrap_or(u32::MAX);
    proj.iter()
        .map(|&i| {
            if table.columns[i] == "message" {
                message
            } else {
                0
            }
        })
        .collect()
}

/// MySQL LIMIT over rows already in order.
pub(super) fn apply_limit<T>(rows: Vec<T>, limit: Option<&Limit>) -> Vec<T> {
    match limit {
        None => rows,
        Some(l) => rows
            .into_iter()
            .skip(usize::try_from(l.offset).unwrap_or(usize::MAX))
            .take(usize::try_from(l.count).unwrap_or(usize::MAX))
            .collect(),
    }
}
