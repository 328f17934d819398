//! What a CometQL statement says, owned (callers may keep it past the query text). Table and column names
//! are kept exactly as written: they are case-sensitive and the `commands` layer compares them.

/// One parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// `SELECT * | col, ... FROM table [WHERE ...] [LIMIT ...]`
    Select(Select),
    /// `INSERT INTO table [(col, ...)] VALUES (v, ...)[, (v, ...)]`
    Insert(Insert),
    /// `DELETE FROM table [WHERE ...] [LIMIT ...]`
    Delete(Delete),
    /// `SELECT @@version_comment, @@session.x AS x [LIMIT n]`.
    /// `names[i]` is the variable as written (`"@@session.x"`); `aliases[i]` its `AS` name if any, which
    /// MySQL uses as the result column's name instead (Connector/J's init query relies on it).
    /// Both vectors always have the same length.
    SelectVariables {
        names: Vec<String>,
        aliases: Vec<Option<String>>,
        limit: Option<Limit>,
    },
    /// `SELECT DATABASE()`
    SelectDatabase,
    Show(Show),
    /// Any `SET ...` (names, autocommit, session variables, ...): accepted and ignored.
    Set,
    /// Only whitespace, `;` and comments: answered with a plain OK.
    Empty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Select {
    pub columns: Columns,
    pub table: String,
    pub filter: Filter,
    pub limit: Option<Limit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Columns {
    All,
    /// Each name at most once (checked), in the order the result must follow.
    Named(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insert {
    pub table: String,
    /// `None` when the statement lists no columns: then each row gives every column of the table, in order.
    /// When `Some`, every row has exactly as many values as there are columns (checked).
    pub columns: Option<Vec<String>>,
    /// At least one row, each with at least one value.
    pub rows: Vec<Vec<Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub table: String,
    pub filter: Filter,
    pub limit: Option<Limit>,
}

/// The WHERE clause: conditions joined by AND, each on a different column. Empty when there is no WHERE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub conditions: Vec<Condition>,
}

impl Filter {
    /// The condition on `column` (compared case-sensitively), if the WHERE has one.
    pub fn get(&self, column: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.column == column)
    }
}

/// `col = v` (one value), `col IN (a, b)` or `col = a OR col = b` (several, in the order written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub column: String,
    pub values: Vec<Value>,
}

/// MySQL semantics: `LIMIT n` is offset 0, count n; `LIMIT o, n` and `LIMIT n OFFSET o` skip o rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub offset: u64,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Show {
    Databases,
    Tables,
    Status(StatusScope),
    TableStatus,
    Processlist,
    /// `SHOW [GLOBAL|SESSION] VARIABLES [LIKE 'pattern']`
    Variables {
        like: Option<String>,
    },
    /// `SHOW [FULL] COLUMNS|FIELDS FROM|IN t`, `DESCRIBE t`, `DESC t`
    Columns {
        table: String,
    },
}

/// `SHOW [scope] STATUS`; a bare `SHOW STATUS` is `Session`, as in the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusScope {
    Session,
    Global,
    Filesystem,
    Ram,
    Avg,
    Uptime,
}

/// A value as the client wrote it. Strings have had the literal rules applied (see `literal`); numbers
/// keep their text (`"-5"`, `"007"`) so that the table decides how to read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `'text'` or `"text"`
    Str(String),
    /// `5`, `-5`, `1.5`
    Number(String),
    /// A bare or backquoted word: `chat`, `` `chat` ``
    Ident(String),
    Null,
}

impl Value {
    /// The text of the value, whichever way it was written; `None` for NULL.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Number(s) | Value::Ident(s) => Some(s),
            Value::Null => None,
        }
    }
}
