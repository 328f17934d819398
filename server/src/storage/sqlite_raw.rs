//! SQLite called in place, on the caller's thread, through the handle sqlx lends
//! (`SqliteConnection::lock_handle`): the storage writer's batches run here (`batch/sqlite.rs` says why).
//! This is the crate's only `unsafe` code (`tests/it/floors.rs` checks it), behind a safe API, with
//! `libsqlite3-sys` at the version sqlx-sqlite links (one SQLite in the binary).
//!
//! [`Db`] owns the lent handle and a cache of prepared statements keyed by their SQL, finalized when evicted
//! or dropped (before the handle goes back to sqlx). [`Db::prepare`] gives a [`Query`]: parameters bound by
//! their `$n` number, rows stepped one at a time and their columns read by name; dropping it resets the
//! statement and clears its bindings.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::collections::HashMap;
use std::ffi::{c_char, c_int, CStr};
use std::ptr::{self, NonNull};

use libsqlite3_sys as ffi;
use sqlx::sqlite::LockedSqliteHandle;

/// An error SQLite returned (`code` is its extended result code), or a misuse of this API (`SQLITE_MISUSE`,
/// `SQLITE_RANGE`, `SQLITE_MISMATCH`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("(code: {code}) {message}")]
pub struct SqliteError {
    pub code: i32,
    pub message: String,
}

impl SqliteError {
    /// "database is locked" (`SQLITE_BUSY` and its extended codes): another connection holds the lock.
    pub fn is_busy(&self) -> bool {
        self.code & 0xff == ffi::SQLITE_BUSY
    }

    fn new(code: c_int, message: impl Into<String>) -> SqliteError {
        SqliteError {
            code,
            message: message.into(),
        }
    }
}

/// A parameter's value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'v> {
    Null,
    Int(i64),
    Text(&'v str),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Value::Null, Value::Int)
    }
}

impl<'v> From<&'v str> for Value<'v> {
    fn from(v: &'v str) -> Self {
        Value::Text(v)
    }
}

impl<'v> From<Option<&'v str>> for Value<'v> {
    fn from(v: Option<&'v str>) -> Self {
        v.map_or(Value::Null, Value::Text)
    }
}

/// A prepared statement, finalized when dropped.
struct Stmt(NonNull<ffi::sqlite3_stmt>);

// SAFETY: a statement is only used through the `Db` that owns it, whose methods take `&mut self` (one
// thread at a time), and sqlx opens its connections in SQLite's multi-thread mode (`SQLITE_OPEN_NOMUTEX`,
// with SQLite built thread-safe), where a connection and its statements may move between threads as long as
// no two use them at once.
unsafe impl Send for Stmt {}

impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a successful `sqlite3_prepare_v3` on the connection `Db` still holds
        // (statements are dropped before the handle: see the field order of `Db`), and is finalized once,
        // here; no `Query` or `Row` borrows it any more.
        unsafe {
            ffi::sqlite3_finalize(self.0.as_ptr());
        }
    }
}

struct Prepared {
    stmt: Stmt,
    /// `slots[n - 1]`: SQLite's index of parameter `$n` (SQLite numbers named parameters in the order they
    /// first appear, and gives a name used twice one index).
    slots: Vec<Option<c_int>>,
    columns: Vec<String>,
    /// When it was last prepared, for evicting the least recently used.
    used: u64,
}

/// A SQLite connection lent by sqlx, with its prepared statements.
pub(crate) struct Db<'c> {
    // Declared before `handle`: the statements are finalized before the handle goes back.
    statements: HashMap<String, Prepared>,
    capacity: usize,
    clock: u64,
    handle: LockedSqliteHandle<'c>,
}

impl<'c> Db<'c> {
    /// Keeps at most `capacity` statements prepared (at least one).
    pub(crate) fn new(handle: LockedSqliteHandle<'c>, capacity: usize) -> Db<'c> {
        Db {
            statements: HashMap::new(),
            capacity: capacity.max(1),
            clock: 0,
            handle,
        }
    }

    /// Statements kept prepared.
    #[cfg(test)]
    fn cached(&self) -> usize {
        self.statements.len()
    }

    /// `false` inside a transaction (`BEGIN` ran, and no `COMMIT` or `ROLLBACK` ended it).
    pub(crate) fn autocommit(&mut self) -> bool {
        let db = self.handle.as_raw_handle();
        // SAFETY: `db` is the open connection the handle lends us alone (sqlx's worker thread makes no call on
        // it while the handle lives).
        unsafe { ffi::sqlite3_get_autocommit(db.as_ptr()) != 0 }
    }

    /// Runs one statement to its end, its rows (if any) unread.
    pub(crate) fn execute(&mut self, sql: &str) -> Result<(), SqliteError> {
        let mut q = self.prepare(sql)?;
        while q.step()?.is_some() {}
        Ok(())
    }

    /// One statement, from the cache or prepared now (and cached, evicting the least recently used).
    pub(crate) fn prepare(&mut self, sql: &str) -> Result<Query<'_>, SqliteError> {
        self.clock += 1;
        if !self.statements.contains_key(sql) {
            let prepared = self.compile(sql)?;
            if self.statements.len() >= self.capacity {
                let oldest = self
                    .statements
                    .iter()
                    .min_by_key(|(_, p)| p.used)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.statements.remove(&k);
                }
            }
            self.statements.insert(sql.to_owned(), prepared);
        }
        let db = self.handle.as_raw_handle();
        let p = self.statements.get_mut(sql).expect("cached above");
        p.used = self.clock;
        Ok(Query { db, p })
    }

    fn compile(&mut self, sql: &str) -> Result<Prepared, SqliteError> {
        let db = self.handle.as_raw_handle().as_ptr();
        let len = c_int::try_from(sql.len())
            .map_err(|_| SqliteError::new(ffi::SQLITE_TOOBIG, "statement too long"))?;
        let mut raw = ptr::null_mut();
        let mut tail = ptr::null();
        // SAFETY: `db` is the open connection lent to us alone; SQLite reads at most `len` bytes of `sql` (no
        // NUL terminator needed); `raw` and `tail` are valid places for its answers.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db,
                sql.as_ptr().cast(),
                len,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut raw,
                &mut tail,
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(last_error(db, rc));
        }
        let Some(stmt) = NonNull::new(raw).map(Stmt) else {
            return Err(SqliteError::new(
                ffi::SQLITE_MISUSE,
                "no statement in the SQL",
            ));
        };
        // `tail` points into `sql`, just past the statement prepared.
        let used = (tail as usize).saturating_sub(sql.as_ptr() as usize);
        if !sql.get(used..).unwrap_or("").trim().is_empty() {
            return Err(SqliteError::new(
                ffi::SQLITE_MISUSE,
                format!("one statement at a time: {sql:?}"),
            ));
        }
        let s = stmt.0.as_ptr();
        let mut slots: Vec<Option<c_int>> = Vec::new();
        let mut positional = 0;
        // SAFETY: `s` is the statement just prepared, alive (owned by `stmt`).
        let params = unsafe { ffi::sqlite3_bind_parameter_count(s) };
        for i in 1..=params {
            // SAFETY: `s` is alive and `i` within its parameter count; the name (NULL for a bare `?`) is a
            // NUL-terminated string SQLite owns while the statement lives, copied at once.
            let name = unsafe { nul_terminated(ffi::sqlite3_bind_parameter_name(s, i)) };
            let n = match name {
                None => {
                    positional += 1;
                    positional
                }
                Some(name) => name
                    .strip_prefix('$')
                    .or_else(|| name.strip_prefix('?'))
                    .and_then(|d| d.parse::<usize>().ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        SqliteError::new(ffi::SQLITE_MISUSE, format!("parameter {name} is not $n"))
                    })?,
            };
            if slots.len() < n {
                slots.resize(n, None);
            }
            slots[n - 1] = Some(i);
        }
        // SAFETY: `s` is alive.
        let count = unsafe { ffi::sqlite3_column_count(s) };
        let mut columns = Vec::with_capacity(count.max(0) as usize);
        for i in 0..count {
            // SAFETY: `s` is alive and `i` within its column count; the name (NULL only when out of memory)
            // is a NUL-terminated string SQLite owns until the statement changes, copied at once.
            let name = unsafe { nul_terminated(ffi::sqlite3_column_name(s, i)) };
            columns.push(name.ok_or_else(|| SqliteError::new(ffi::SQLITE_NOMEM, "out of memory"))?);
        }
        Ok(Prepared {
            stmt,
            slots,
            columns,
            used: self.clock,
        })
    }
}

/// A copy of a NUL-terminated string SQLite gave (`None` for NULL).
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that stays valid for the call.
unsafe fn nul_terminated(ptr: *const c_char) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: not NULL, so a NUL-terminated string valid for the call (the caller's promise).
    let text = unsafe { CStr::from_ptr(ptr) };
    Some(text.to_string_lossy().into_owned())
}

/// The connection's last error, with the result code a call returned.
fn last_error(db: *mut ffi::sqlite3, rc: c_int) -> SqliteError {
    // SAFETY: `db` is an open connection; `sqlite3_errmsg` returns a NUL-terminated string SQLite owns until
    // the next call on `db` (never NULL), copied at once.
    let message = unsafe { nul_terminated(ffi::sqlite3_errmsg(db)) };
    SqliteError::new(rc, message.unwrap_or_default())
}

/// A cached statement in use: bind, step, read. Reset, with its bindings cleared, when dropped.
pub(crate) struct Query<'q> {
    db: NonNull<ffi::sqlite3>,
    p: &'q mut Prepared,
}

impl Query<'_> {
    /// Binds `$n` (SQLite copies text).
    pub(crate) fn bind<'v>(
        &mut self,
        n: usize,
        v: impl Into<Value<'v>>,
    ) -> Result<(), SqliteError> {
        let Some(i) = n
            .checked_sub(1)
            .and_then(|k| self.p.slots.get(k).copied().flatten())
        else {
            return Err(SqliteError::new(
                ffi::SQLITE_RANGE,
                format!("no parameter ${n}"),
            ));
        };
        let s = self.p.stmt.0.as_ptr();
        // SAFETY: `s` is a live statement of the connection we hold alone, `i` one of its parameter indexes;
        // text is passed with its length (NULs inside are kept) and SQLITE_TRANSIENT, so SQLite copies it
        // before returning and keeps no pointer into `v`.
        let rc = unsafe {
            match v.into() {
                Value::Null => ffi::sqlite3_bind_null(s, i),
                Value::Int(v) => ffi::sqlite3_bind_int64(s, i, v),
                Value::Text(t) => ffi::sqlite3_bind_text64(
                    s,
                    i,
                    t.as_ptr().cast(),
                    t.len() as u64,
                    ffi::SQLITE_TRANSIENT(),
                    ffi::SQLITE_UTF8 as u8,
                ),
            }
        };
        if rc != ffi::SQLITE_OK {
            return Err(last_error(self.db.as_ptr(), rc));
        }
        Ok(())
    }

    /// The next row, or `None` when the statement is done. Parameters not bound are NULL.
    pub(crate) fn step(&mut self) -> Result<Option<Row<'_>>, SqliteError> {
        let s = self.p.stmt.0;
        // SAFETY: a live statement of the connection we hold alone; no `Row` of the previous step is left (a
        // `Row` borrows this `Query`).
        let rc = unsafe { ffi::sqlite3_step(s.as_ptr()) };
        match rc {
            ffi::SQLITE_ROW => Ok(Some(Row {
                stmt: s,
                columns: &self.p.columns,
            })),
            ffi::SQLITE_DONE => Ok(None),
            rc => Err(last_error(self.db.as_ptr(), rc)),
        }
    }
}

impl Drop for Query<'_> {
    fn drop(&mut self) {
        let s = self.p.stmt.0.as_ptr();
        // SAFETY: a live statement of the connection we hold alone. `sqlite3_reset` repeats the last step's
        // error, if any, which its caller has had already.
        unsafe {
            ffi::sqlite3_reset(s);
            ffi::sqlite3_clear_bindings(s);
        }
    }
}

/// The row a statement stands on, valid until its next step.
pub(crate) struct Row<'r> {
    stmt: NonNull<ffi::sqlite3_stmt>,
    columns: &'r [String],
}

impl Row<'_> {
    fn column(&self, name: &str) -> Result<(c_int, c_int), SqliteError> {
        let i = self
            .columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| SqliteError::new(ffi::SQLITE_RANGE, format!("no column {name}")))?;
        let i = i as c_int;
        // SAFETY: the statement stands on a row (it borrows the `Query` that stepped to it) and `i` is one of
        // its columns.
        let kind = unsafe { ffi::sqlite3_column_type(self.stmt.as_ptr(), i) };
        Ok((i, kind))
    }

    fn mismatch(name: &str, want: &str) -> SqliteError {
        SqliteError::new(ffi::SQLITE_MISMATCH, format!("column {name} is not {want}"))
    }

    /// An INTEGER column (NULL or any other type is an error).
    pub(crate) fn int(&self, name: &str) -> Result<i64, SqliteError> {
        self.opt_int(name)?
            .ok_or_else(|| Row::mismatch(name, "an integer (NULL)"))
    }

    pub(crate) fn opt_int(&self, name: &str) -> Result<Option<i64>, SqliteError> {
        match self.column(name)? {
            (_, ffi::SQLITE_NULL) => Ok(None),
            // SAFETY: as in `column`.
            (i, ffi::SQLITE_INTEGER) => Ok(Some(unsafe {
                ffi::sqlite3_column_int64(self.stmt.as_ptr(), i)
            })),
            _ => Err(Row::mismatch(name, "an integer")),
        }
    }

    /// A TEXT column (NULL or any other type is an error).
    pub(crate) fn text(&self, name: &str) -> Result<String, SqliteError> {
        self.opt_text(name)?
            .ok_or_else(|| Row::mismatch(name, "text (NULL)"))
    }

    pub(crate) fn opt_text(&self, name: &str) -> Result<Option<String>, SqliteError> {
        let i = match self.column(name)? {
            (_, ffi::SQLITE_NULL) => return Ok(None),
            (i, ffi::SQLITE_TEXT) => i,
            _ => return Err(Row::mismatch(name, "text")),
        };
        let s = self.stmt.as_ptr();
        // SAFETY: as in `column`. `sqlite3_column_bytes` is called after `sqlite3_column_text` (the order SQLite
        // asks for), and the bytes are copied before the row can change.
        let bytes = unsafe {
            let text = ffi::sqlite3_column_text(s, i);
            let len = ffi::sqlite3_column_bytes(s, i);
            if text.is_null() {
                return Err(SqliteError::new(ffi::SQLITE_NOMEM, "out of memory"));
            }
            std::slice::from_raw_parts(text, len.max(0) as usize).to_vec()
        };
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| Row::mismatch(name, "UTF-8 text"))
    }
}

#[cfg(test)]
mod tests;
