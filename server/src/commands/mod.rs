//! What each statement does: one file per CometQL table, each with the same verbs. This is the only place
//! business rules live; the CometQL session, the WebSocket commands and (later) the HTTP API all call it.

pub(crate) mod channels;
pub(crate) mod channels_api;
mod channels_cluster;
mod error;
pub(crate) mod history;
mod history_cache;
mod lru;
pub(crate) mod maintenance;
pub(crate) mod meta;
mod pipes;
pub(crate) mod pipes_messages;
mod pipes_settings;
pub(crate) mod positions;
pub(crate) mod presence;
pub(crate) mod quota;
mod revoked_tokens;

mod table;
pub(crate) mod users;
pub(crate) mod users_auth;
pub(crate) mod users_data;
pub(crate) mod users_in_pipes;
pub mod users_messages;
pub(crate) mod users_time;

pub use error::{CommandError, ErrorCode};

use std::sync::Arc;

use crate::cometql::Statement;
use crate::config::Config;
use crate::hub::{Hub, Stale};
use crate::ids::{DevId, UserId};
use crate::storage::Storage;
use crate::tenant::limits::{Limits, Refused};
use crate::tenant::Tenants;

/// Everything a command may touch, as cheap cloneable handles.
#[derive(Clone)]
pub struct Ctx {
    pub config: Arc<Config>,
    pub storage: Storage,
    pub tenants: Tenants,
    pub hub: Hub,
    /// Which pipes keep history, cached for the publish path.
    pub history: Arc<history::HistoryLengths>,
    /// The newest history entries of recently read pipes.
    pub history_cache: Arc<history::HistoryCache>,
    /// The publish lock of pipes that number their history (`positions`).
    pub pipe_locks: Arc<positions::PipeLocks>,
    pub limits: Arc<Limits>,
    /// Storage quotas per tenant (what is in use: `storage.totals()`).
    pub quotas: Arc<crate::tenant::quota::Quotas>,
    /// Storage room a statement reserved for all its rows, which each row's write takes from.
    pub(crate) room: Option<Arc<quota::StatementRoom>>,
    /// The node's figures (the hub's own: one handle for every counter).
    pub stats: crate::stats::Stats,
}

impl Ctx {
    pub fn new(config: Arc<Config>, tenants: Tenants, hub: Hub) -> Ctx {
        // A node keeps these caches right on its own writes; in a cluster the other nodes tell it what
        // their writes changed (`hub::Stale`, over the control channel), or their publishes and
        // pipes_settings changes would leave them stale (history missing from SELECT and pipe_log, a
        // publish that keeps no history).
        let cache = config.cache.clone();
        let history = Arc::new(history::HistoryLengths::new(&cache));
        let history_cache = Arc::new(history::HistoryCache::new(&cache));
        let (lengths, cached) = (history.clone(), history_cache.clone());
        hub.registry()
            .stale
            .set(Arc::new(move |stale: &Stale| match stale {
                Stale::History(dev_id, pipe) => cached.invalidate(*dev_id, pipe),
                Stale::Settings(dev_id, pipe) => {
                    lengths.forget(*dev_id, pipe);
                    cached.invalidate(*dev_id, pipe);
                }
                Stale::Tenant(dev_id) => cached.invalidate_tenant(*dev_id),
                Stale::Trust => cached.invalidate_trust(),
                Stale::All => {
                    lengths.clear();
                    cached.clear();
                }
            }));
        Ctx {
            storage: tenants.storage().clone(),
            tenants,
            limits: Arc::new(Limits::new(config.limits.clone(), hub.stats().clone())),
            quotas: Arc::new(crate::tenant::quota::Quotas::new(&config.limits)),
            room: None,
            history,
            history_cache,
            pipe_locks: Arc::default(),
            config,
            stats: hub.stats().clone(),
            hub,
        }
    }
}

impl Ctx {
    /// Spends one publish of the tenant's budget (CometQL, web_pipe2 and HTTP share it) and counts it
    /// as a message of the tenant (SHOW STATUS, the dashboard's usage). Presence events are not messages.
    pub async fn spend_publish(&self, dev_id: DevId) -> Result<(), CommandError> {
        self.spend_publishes(dev_id, 1).await
    }

    /// Spends `n` publishes at once, or none: a multi-row INSERT is paid for before any row takes effect.
    /// On a cluster the budget is the tenant's across every node (`tenant::leases`).
    pub async fn spend_publishes(&self, dev_id: DevId, n: usize) -> Result<(), CommandError> {
        use std::sync::atomic::Ordering::Relaxed;
        let counters = self.stats.tenant(dev_id);
        let n32 = u32::try_from(n).unwrap_or(u32::MAX);
        let spent = match self.hub.shared_limits() {
            None => self.limits.publish_n(dev_id, n32),
            Some(shared) => {
                crate::tenant::leases::publish_n_shared(&self.limits, shared, dev_id, n32).await?
            }
        };
        match spent {
            Ok(()) => {
                counters.messages.fetch_add(n as u64, Relaxed);
                Ok(())
            }
            Err(r) => {
                counters.rate_limited.fetch_add(n as u64, Relaxed);
                Err(r.into())
            }
        }
    }
}

impl From<Refused> for CommandError {
    fn from(r: Refused) -> Self {
        let message = match r.limit {
            crate::tenant::limits::Limit::PublishBurst => r.to_string(),
            _ => format!("{r} (retry in {} ms)", r.retry_after.as_millis().max(1)),
        };
        // A statement larger than the burst never fits: no time to wait for.
        let retry_after = (!r.retry_after.is_zero()).then_some(r.retry_after);
        CommandError {
            retry_after,
            ..CommandError::new(ErrorCode::RateLimited, message)
        }
    }
}

/// Who runs the statement. The tenant is fixed at login and never changes within a session.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub dev_id: DevId,
}

/// A browser connection running a command: its tenant and its user (UserId(0) when anonymous). The
/// commands a browser may run check what its login allows (`private_` pipes, `webauth_` publishing); the
/// tenant's backend, a [`Caller`], may do anything.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub dev_id: DevId,
    pub user: UserId,
}

impl Client {
    pub fn authorized(&self) -> bool {
        self.user.0 != 0
    }

    pub fn caller(&self) -> Caller {
        Caller {
            dev_id: self.dev_id,
        }
    }
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
    /// The first rows of a result too large to build at once; [`more`] gives the rest, part by part.
    /// The column definitions declare `widths`, since the later rows are not known yet.
    Stream {
        columns: Vec<String>,
        widths: Vec<u32>,
        rows: Vec<Vec<String>>,
        rest: Box<Rest>,
    },
}

/// Where a streamed SELECT goes on from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rest {
    PipesMessages(pipes_messages::Rest),
    UsersMessages(users_messages::Rest),
}

/// The next part of a streamed result (`Some`, maybe empty), or `None` once it is complete.
pub async fn more(
    ctx: &Ctx,
    caller: Caller,
    rest: &mut Rest,
) -> Result<Option<Vec<Vec<String>>>, CommandError> {
    match rest {
        Rest::PipesMessages(r) => pipes_messages::more(ctx, caller, r).await,
        Rest::UsersMessages(r) => users_messages::more(ctx, caller, r).await,
    }
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
            "pipes_settings" => pipes_settings::insert(ctx, caller, &ins).await,
            "users_auth" => users_auth::insert(ctx, caller, &ins).await,
            "users_data" => users_data::insert(ctx, caller, &ins).await,
            "users_messages" => users_messages::insert(ctx, caller, &ins).await,
            "revoked_tokens" => revoked_tokens::insert(ctx, caller, &ins).await,
            other => Err(not_writable(other)),
        },
        S::Select(sel) => select(ctx, caller, &sel).await,
        S::Delete(del) => match del.table.as_str() {
            "pipes_messages" => pipes_messages::delete(ctx, caller, &del).await,
            "pipes_settings" => pipes_settings::delete(ctx, caller, &del).await,
            "users_auth" => users_auth::delete(ctx, caller, &del).await,
            "users_data" => users_data::delete(ctx, caller, &del).await,
            "users_messages" => users_messages::delete(ctx, caller, &del).await,
            "revoked_tokens" => revoked_tokens::delete(ctx, caller, &del).await,
            other => Err(not_writable(other)),
        },
    }
}

/// Every table collects its rows through `table::Collector`, which refuses a result past `[cometql]
/// max_result_rows` or `max_result_bytes` at the row that crosses it, before the rest is read.
async fn select(
    ctx: &Ctx,
    caller: Caller,
    sel: &crate::cometql::Select,
) -> Result<Outcome, CommandError> {
    match sel.table.as_str() {
        "pipes_messages" => pipes_messages::select(ctx, caller, sel).await,
        "pipes_settings" => pipes_settings::select(ctx, caller, sel).await,
        "pipes" => pipes::select(ctx, caller, sel).await,
        "users_in_pipes" => users_in_pipes::select(ctx, caller, sel).await,
        "users_auth" => users_auth::select(ctx, caller, sel).await,
        "users_time" => users_time::select(ctx, caller, sel).await,
        "users_data" => users_data::select(ctx, caller, sel).await,
        "users_messages" => users_messages::select(ctx, caller, sel).await,
        "revoked_tokens" => revoked_tokens::select(ctx, caller, sel).await,
        other => Err(unknown_table(other)),
    }
}

/// Every CometQL table, for SHOW COLUMNS / DESCRIBE.
pub(crate) const TABLES: &[&table::Table] = &[
    &pipes_messages::TABLE,
    &pipes_settings::TABLE,
    &pipes::TABLE,
    &users_in_pipes::TABLE,
    &users_auth::TABLE,
    &users_time::TABLE,
    &users_messages::TABLE,
    &users_data::TABLE,
    &revoked_tokens::TABLE,
];

/// INSERT or DELETE on a table that cannot take it.
fn not_writable(name: &str) -> CommandError {
    match name {
        "pipes" => pipes::read_only(),
        "users_time" => users_time::read_only(),
        "users_in_pipes" => users_in_pipes::read_only(),
        other => unknown_table(other),
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
