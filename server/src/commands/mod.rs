//! What each statement does: one file per CometQL table, each with the same verbs. This is the only place
//! business rules live; the CometQL session, the WebSocket commands and (later) the HTTP API all call it.

mod error;
pub(crate) mod meta;
mod pipes;
pub mod pipes_messages;
pub mod session;
mod table;

pub use error::{CommandError, ErrorCode};

use std::sync::Arc;

use crate::cometql::Statement;
use crate::config::Config;
use crate::hub::Hub;
use crate::ids::DevId;
use crate::storage::Storage;
use crate::tenant::Tenants;

/// Everything a command may touch, as cheap cloneable handles.
#[derive(Clone)]
pub struct Ctx {
    pub config: Arc<Config>,
    pub storage: Storage,
    pub tenants: Tenants,
    pub hub: Hub,
}

/// Who runs the statement. The tenant is fixed at login and never changes within a session.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub dev_id: DevId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done {
        affected_rows: u64,
        last_insert_id: u64,
    },
    Rows {
        columns: Vec<String>,
        rows: Vec<Vec<String>>,
    },
}

impl Outcome {
    pub const OK: Outcome = Outcome::Done {
        affected_rows: 0,
        last_insert_id: 0,
    };
}

/// Tables of the reference's video feature: refused with a clear error rather than "doesn't exist".
const UNSUPPORTED_TABLES: &[&str] = &["conference", "conference_members", "dialogs", "profiler"];

pub async fn execute(ctx: &Ctx, caller: Caller, stmt: Statement) -> Result<Outcome, CommandError> {
    use crate::cometql::Statement as S;
    match stmt {
        S::Empty | S::Set => Ok(Outcome::OK),
        S::SelectVariables {
            names,
            aliases,
            limit,
        } => Ok(meta::select_variables(
            ctx,
            &names,
            &aliases,
            limit.as_ref(),
        )),
        S::SelectDatabase => Ok(meta::select_database()),
        S::Show(show) => meta::show(ctx, caller, show),
        S::Insert(ins) => match ins.table.as_str() {
            "pipes_messages" => pipes_messages::insert(ctx, caller, &ins).await,
            "pipes" => Err(pipes::read_only()),
            other => Err(unknown_table(other)),
        },
        S::Select(sel) => match sel.table.as_str() {
            "pipes" => pipes::select(ctx, caller, &sel),
            other => Err(unknown_table(other)),
        },
        S::Delete(del) => match del.table.as_str() {
            "pipes" => Err(pipes::read_only()),
            other => Err(unknown_table(other)),
        },
    }
}

fn unknown_table(name: &str) -> CommandError {
    if UNSUPPORTED_TABLES.contains(&name) {
        CommandError::new(
            ErrorCode::ReadOnly,
            format!("Table `{name}` is not supported"),
        )
    } else {
        CommandError::new(ErrorCode::NoTable, "Table doesn't exist")
    }
}

pub use meta::server_version;
