//! The CometQL front door's glue: a MySQL session whose tenant is fixed at login, queries parsed by
//! `cometql` and executed by `commands`. Errors become ERR packets here and nowhere else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::{ConnInfo, Handler};
use crate::commands::{execute, Caller, CommandError, Ctx, ErrorCode, Outcome};
use crate::ids::DevId;
use crate::mysql::{ErrorPacket, LoginRequest, Reply, ResultSet, RowStream};
use crate::stats::TenantCounters;
use crate::tenant::Login;

pub struct Session {
    id: u64,
    login: Login,
    /// The rest of the result being streamed, between two parts.
    rest: Option<Box<crate::commands::Rest>>,
    closer: Arc<Notify>,
    counters: Arc<TenantCounters>,
    /// How this client escapes string literals, as its statements have shown (`cometql::readings`).
    escaping: crate::cometql::Escaping,
}

/// Live CometQL sessions, so that revoking a key or shutting down can close them.
#[derive(Default)]
struct Sessions {
    next: AtomicU64,
    live: Mutex<HashMap<u64, (i64, Arc<Notify>)>>,
}

pub struct CometQl {
    ctx: Ctx,
    sessions: Sessions,
}

impl From<CommandError> for ErrorPacket {
    fn from(e: CommandError) -> Self {
        ErrorPacket {
            code: e.code as u16,
            message: e.message.into_owned(),
        }
    }
}

impl From<Outcome> for Reply {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Done {
                affected_rows,
                last_insert_id,
            } => Reply::Ok {
                affected_rows,
                last_insert_id,
            },
            Outcome::Rows { columns, rows } => Reply::Rows(ResultSet { columns, rows }),
            // The rest of a stream lives in the session (see `query`); without it the result would be cut.
            Outcome::Stream { .. } => Reply::Error(
                CommandError::new(ErrorCode::Internal, "internal server error: result stream")
                    .into(),
            ),
        }
    }
}

fn auth_failure() -> ErrorPacket {
    CommandError::new(ErrorCode::Auth, "Authentication failure").into()
}

/// MySQL's own code for `require_secure_transport`, with the reason named: the tenant's setting.
pub(crate) const INSECURE_TRANSPORT: &str = "Connections using insecure transport are prohibited: \
     this tenant requires TLS (require_tls); connect with SSL";

fn insecure_transport() -> ErrorPacket {
    CommandError::new(ErrorCode::InsecureTransport, INSECURE_TRANSPORT).into()
}

fn select_db_failure() -> ErrorPacket {
    CommandError::new(ErrorCode::NoTable, "Select database failure").into()
}

/// `CometQL_v1`, or `db_<N>` naming the caller's own tenant; another tenant's database is refused.
fn database_allowed(db: &str, dev_id: DevId) -> bool {
    db == crate::commands::meta::DATABASE
        || db
            .strip_prefix("db_")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n == dev_id.0)
}

impl CometQl {
    pub fn new(ctx: Ctx) -> CometQl {
        CometQl {
            ctx,
            sessions: Sessions::default(),
        }
    }

    /// Closes every session (server shutdown).
    pub fn close_all(&self) {
        for (_, notify) in lock(&self.sessions.live).values() {
            notify.notify_one();
        }
    }

    /// Closes the sessions that logged in with `key_id` (the key was revoked).
    pub fn close_key(&self, key_id: i64) {
        for (k, notify) in lock(&self.sessions.live).values() {
            if *k == key_id {
                notify.notify_one();
            }
        }
    }

    async fn query_inner(
        &self,
        session: &mut Session,
        sql: &[u8],
    ) -> Result<Outcome, CommandError> {
        let max = self.ctx.config.cometql.max_query_bytes;
        if sql.len() > max {
            return Err(CommandError::new(ErrorCode::TooLong, "Data is too long"));
        }
        let text = std::str::from_utf8(sql)
            .map_err(|_| CommandError::new(ErrorCode::Invalid, "The query is not valid UTF-8"))?;
        let trimmed = text.trim_start();
        if trimmed
            .as_bytes()
            .get(..17)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"cometqlcluster_v1"))
        {
            // The reference lets any client switch tenants this way; we never do.
            return Err(CommandError::new(ErrorCode::Auth, "Invalid dev_id value"));
        }
        let stmt = crate::cometql::parse_in_session(text, &mut session.escaping)?;
        let caller = Caller {
            dev_id: session.login.dev_id,
        };
        execute(&self.ctx, caller, stmt).await
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Handler for CometQl {
    type Session = Session;

    async fn login(&self, req: LoginRequest<'_>, conn: ConnInfo) -> Result<Session, ErrorPacket> {
        let (limits, peer) = (&self.ctx.limits, conn.peer);
        // Past the failed-login limit the key is not even checked: same error, no oracle, no work.
        if limits.login_blocked(peer.ip()) {
            return Err(auth_failure());
        }
        let login = match self
            .ctx
            .tenants
            .login(req.user, req.salt, req.auth_response)
            .await
        {
            Ok(l) => l,
            Err(_) => {
                self.ctx
                    .stats
                    .cometql_logins_failed
                    .fetch_add(1, Ordering::Relaxed);
                limits.login_failed(peer.ip());
                return Err(auth_failure());
            }
        };
        // Checked only once the key is proven: an unauthenticated client learns nothing about the tenant
        // (its refusal stays `Authentication failure`), and a right key over plaintext is not a failed login.
        if !conn.tls && limits.requires_tls(login.dev_id) {
            return Err(insecure_transport());
        }
        if let Some(db) = req.database.filter(|d| !d.is_empty()) {
            if !database_allowed(db, login.dev_id) {
                return Err(select_db_failure());
            }
        }
        let id = self.sessions.next.fetch_add(1, Ordering::Relaxed);
        let closer = Arc::new(Notify::new());
        lock(&self.sessions.live).insert(id, (login.key_id, closer.clone()));
        let counters = self.ctx.stats.tenant(login.dev_id);
        counters.cometql_sessions.fetch_add(1, Ordering::Relaxed);
        Ok(Session {
            id,
            login,
            rest: None,
            closer,
            counters,
            escaping: crate::cometql::Escaping::default(),
        })
    }

    async fn init_db(&self, session: &mut Session, db: &str) -> Result<(), ErrorPacket> {
        if database_allowed(db, session.login.dev_id) {
            Ok(())
        } else {
            Err(select_db_failure())
        }
    }

    async fn query(&self, session: &mut Session, sql: &[u8]) -> Reply {
        let started = std::time::Instant::now();
        let result = self.query_inner(session, sql).await;
        self.ctx
            .stats
            .cometql_query_seconds
            .observe(started.elapsed());
        session.rest = None;
        match result {
            Ok(Outcome::Stream {
                columns,
                widths,
                rows,
                rest,
            }) => {
                session.rest = Some(rest);
                Reply::Stream(RowStream {
                    columns,
                    widths,
                    rows,
                })
            }
            Ok(outcome) => outcome.into(),
            Err(e) => Reply::Error(e.into()),
        }
    }

    async fn more_rows(
        &self,
        session: &mut Session,
    ) -> Option<Result<Vec<Vec<String>>, ErrorPacket>> {
        let caller = Caller {
            dev_id: session.login.dev_id,
        };
        let rest = session.rest.as_mut()?;
        match crate::commands::more(&self.ctx, caller, rest).await {
            Ok(Some(rows)) => Some(Ok(rows)),
            Ok(None) => {
                session.rest = None;
                None
            }
            Err(e) => {
                session.rest = None;
                Some(Err(e.into()))
            }
        }
    }

    fn closer(&self, session: &Session) -> Arc<Notify> {
        session.closer.clone()
    }

    fn closed(&self, session: Session) {
        lock(&self.sessions.live).remove(&session.id);
        session
            .counters
            .cometql_sessions
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_own_database() {
        assert!(database_allowed("CometQL_v1", DevId(7)));
        assert!(database_allowed("db_7", DevId(7)));
        assert!(!database_allowed("db_8", DevId(7)));
        assert!(!database_allowed("cometql_v1", DevId(7)));
        assert!(!database_allowed("db_x", DevId(7)));
    }
}
