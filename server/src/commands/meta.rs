//! The statements drivers and tools send that are not about a table: SHOW ..., SELECT @@..., SELECT DATABASE().
//! Scoped to the caller's tenant; host-level figures are never shown to tenants (docs/compatibility.md §2).

use std::sync::atomic::Ordering;

use super::table::apply_limit;
use super::{Caller, CommandError, Ctx, ErrorCode, Outcome};
use crate::cometql::{Limit, Show, StatusScope};

pub(crate) const DATABASE: &str = "CometQL_v1";

/// SHOW TABLES lists these, in the reference's order.
const TABLES: &[&str] = &[
    "users_auth",
    "users_time",
    "users_messages",
    "pipes_messages",
    "users_in_pipes",
    "pipes",
    "pipes_settings",
];

pub(crate) fn version_comment() -> String {
    format!(
        "Halley {} (comet-server compatible CometQL)",
        env!("CARGO_PKG_VERSION")
    )
}

/// The server version string: MySQL-style digits first, because drivers parse it.
pub fn server_version() -> String {
    format!("5.7.99-Halley-{}", env!("CARGO_PKG_VERSION"))
}

fn rows(columns: &[&str], rows: Vec<Vec<String>>) -> Outcome {
    Outcome::Rows {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        rows,
    }
}

/// Values for the variables drivers and tools ask about; the rest get the version comment, as in the reference.
fn variable(ctx: &Ctx, name: &str) -> String {
    let bare = name.trim_start_matches("@@");
    let bare = bare
        .strip_prefix("session.")
        .or_else(|| bare.strip_prefix("global."))
        .or_else(|| bare.strip_prefix("SESSION."))
        .or_else(|| bare.strip_prefix("GLOBAL."))
        .unwrap_or(bare);
    match bare.to_ascii_lowercase().as_str() {
        "version" => server_version(),
        "version_comment" => version_comment(),
        "max_allowed_packet" => ctx.config.cometql.max_query_bytes.to_string(),
        "character_set_client"
        | "character_set_connection"
        | "character_set_results"
        | "character_set_server"
        | "character_set_database" => "utf8mb4".into(),
        "collation_connection" | "collation_server" | "collation_database" => {
            "utf8mb4_general_ci".into()
        }
        "autocommit" | "auto_increment_increment" => "1".into(),
        "sql_mode" => "NO_BACKSLASH_ESCAPES".into(),
        "lower_case_table_names" => "0".into(),
        "time_zone" | "system_time_zone" => "UTC".into(),
        "wait_timeout" | "interactive_timeout" => ctx.config.cometql.idle_timeout_secs.to_string(),
        "tx_isolation" | "transaction_isolation" => "READ-COMMITTED".into(),
        _ => version_comment(),
    }
}

/// Columns are named as written (`@@version_comment`) or by their alias, as MySQL does.
pub(crate) fn select_variables(
    ctx: &Ctx,
    names: &[String],
    aliases: &[Option<String>],
    limit: Option<&Limit>,
) -> Outcome {
    let row = names.iter().map(|n| variable(ctx, n)).collect();
    let columns = names
        .iter()
        .zip(aliases)
        .map(|(n, a)| a.clone().unwrap_or_else(|| n.clone()))
        .collect();
    Outcome::Rows {
        columns,
        rows: apply_limit(vec![row], limit),
    }
}

pub(crate) fn select_database() -> Outcome {
    rows(&["DATABASE()"], vec![vec![DATABASE.into()]])
}

/// `SHOW VARIABLES` rows: the variables above that a pattern can ask for.
const VARIABLES: &[&str] = &[
    "autocommit",
    "character_set_client",
    "character_set_connection",
    "character_set_results",
    "character_set_server",
    "collation_connection",
    "collation_server",
    "lower_case_table_names",
    "max_allowed_packet",
    "sql_mode",
    "time_zone",
    "version",
    "version_comment",
    "wait_timeout",
];

pub(crate) fn show(ctx: &Ctx, caller: Caller, show: Show) -> Result<Outcome, CommandError> {
    match show {
        Show::Databases => Ok(rows(&["Database"], vec![vec![DATABASE.into()]])),
        Show::Tables => Ok(rows(
            &["Tables"],
            TABLES.iter().map(|t| vec![t.to_string()]).collect(),
        )),
        Show::Variables { like } => {
            let rows_ = VARIABLES
                .iter()
                .filter(|v| like.as_deref().is_none_or(|p| like_match(p, v)))
                .map(|v| vec![v.to_string(), variable(ctx, v)])
                .collect();
            Ok(rows(&["Variable_name", "Value"], rows_))
        }
        Show::Status(scope) if !matches!(scope, StatusScope::Session | StatusScope::Global) => {
            Err(CommandError::new(
                ErrorCode::NotImplemented,
                "Host status (filesystem, RAM, load, uptime) is not shown on a shared server",
            ))
        }
        Show::Status(scope) => {
            let t = ctx.stats.tenant(caller.dev_id);
            let v = |n: &str, x: String| vec![n.to_string(), x];
            Ok(rows(
                &["Variable_name", "Value"],
                vec![
                    v(
                        "flag",
                        if scope == StatusScope::Global {
                            "global"
                        } else {
                            "session"
                        }
                        .into(),
                    ),
                    v("id", caller.dev_id.to_string()),
                    v(
                        "user_online",
                        t.websocket_connections.load(Ordering::Relaxed).to_string(),
                    ),
                    v(
                        "server_online",
                        t.cometql_sessions.load(Ordering::Relaxed).to_string(),
                    ),
                    v("messages", t.messages.load(Ordering::Relaxed).to_string()),
                ],
            ))
        }
        Show::Columns { table } => show_columns(&table),
        Show::TableStatus => Ok(table_status()),
        Show::Processlist => Ok(rows(&["ServiceName", "id", "status", "count"], Vec::new())),
    }
}

/// SHOW COLUMNS / DESCRIBE, for every table (the reference answered only for users_auth).
fn show_columns(name: &str) -> Result<Outcome, CommandError> {
    let table = super::TABLES
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| CommandError::new(ErrorCode::NoTable, "Table doesn't exist"))?;
    let numeric = |c: &str| {
        matches!(c, "time" | "users" | "length" | "user_id") || (c == "id" && table.key == "id")
    };
    let out = table
        .columns
        .iter()
        .map(|c| {
            vec![
                c.to_string(),
                if numeric(c) {
                    "int(11)"
                } else {
                    "varchar(255)"
                }
                .to_string(),
                "NO".to_string(),
                if *c == table.key { "PRI" } else { "" }.to_string(),
                String::new(),
                String::new(),
            ]
        })
        .collect();
    Ok(rows(
        &["Field", "Type", "Null", "Key", "Default", "Extra"],
        out,
    ))
}

/// MySQL's 18 columns, one row per listed table; figures that mean nothing here are empty.
fn table_status() -> Outcome {
    const COLUMNS: &[&str] = &[
        "Name",
        "Engine",
        "Version",
        "Row_format",
        "Rows",
        "Avg_row_length",
        "Data_length",
        "Max_data_length",
        "Index_length",
        "Data_free",
        "Auto_increment",
        "Create_time",
        "Update_time",
        "Check_time",
        "Collation",
        "Checksum",
        "Create_options",
        "Comment",
    ];
    let out = TABLES
        .iter()
        .map(|t| {
            let mut row = vec![String::new(); COLUMNS.len()];
            row[0] = t.to_string();
            row[1] = "Halley".into();
            row[2] = "10".into();
            row[3] = "Dynamic".into();
            row[14] = "utf8mb4_general_ci".into();
            row
        })
        .collect();
    rows(COLUMNS, out)
}

/// SQL LIKE with `%` and `_`, case-insensitive as MySQL's default collation is. Dynamic programming, so
/// no pattern can make it slow.
fn like_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    // row[j]: does p[..i] match t[..j]
    let mut row = vec![false; t.len() + 1];
    row[0] = true;
    for &c in p {
        let mut next = vec![false; t.len() + 1];
        if c == b'%' {
            next[0] = row[0];
            for j in 1..=t.len() {
                next[j] = row[j] || next[j - 1];
            }
        } else {
            for j in 1..=t.len() {
                next[j] = row[j - 1] && (c == b'_' || t[j - 1].eq_ignore_ascii_case(&c));
            }
        }
        row = next;
    }
    row[t.len()]
}

#[cfg(test)]
mod tests {
    use super::like_match;

    #[test]
    fn like_patterns() {
        assert!(like_match("%char%", "character_set_client"));
        assert!(like_match(
            "lower_case_table_names",
            "lower_case_table_names"
        ));
        assert!(like_match("SQL_MODE", "sql_mode"));
        assert!(!like_match("%xyz%", "sql_mode"));
    }
}
