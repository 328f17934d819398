//! A batch on PostgreSQL, through sqlx: one round trip when it can be (one statement of CTEs), otherwise its
//! statements one by one in a transaction.

use sqlx::{AnyConnection, Executor};

use super::plan::{plan, shifted, Bind, Yields};
use super::{results, Batch, Results, Returned};
use crate::storage::{get, StorageError};

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    binds: &[Bind<'q>],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for b in binds {
        q = match *b {
            Bind::Int(v) => q.bind(v),
            Bind::OptInt(v) => q.bind(v),
            Bind::Str(v) => q.bind(v),
            Bind::OptStr(v) => q.bind(v),
        };
    }
    q
}

/// Begins the batch's transaction and runs its statements. With `commit` (every write was admitted
/// before) it commits too; otherwise the caller commits (`finish`) or rolls back once it has seen what the
/// statements did.
pub(in crate::storage) async fn run(
    conn: &mut AnyConnection,
    batch: &Batch<'_>,
    commit: bool,
) -> Result<Results, StorageError> {
    // A committing batch goes as one statement of CTEs (one round trip, no transaction around it) unless it
    // claims queued messages (two claims in one statement could meet the same row), writes users_auth (two
    // logins of one user would change one row twice) or writes to a pipe that is not numbered (its trim by
    // count would not see the rows inserted).
    let one = commit
        && batch.claims.is_empty()
        && batch.claim_uuids.is_empty()
        && batch.auths.is_empty()
        && batch.appends.iter().all(|(_, a)| a.epoch.is_some());
    let plan = plan(batch, one);
    let mut rows: Vec<Vec<Returned>> = (0..plan.stmts.len()).map(|_| Vec::new()).collect();
    if one && plan.stmts.len() > 1 {
        let mut sql = String::from("WITH ");
        let mut binds = Vec::new();
        let mut tail = Vec::new();
        for (n, s) in plan.stmts.iter().enumerate() {
            if n > 0 {
                sql.push_str(",\n");
            }
            sql.push_str(&format!("s{n} AS ({})", shifted(&s.sql, binds.len())));
            binds.extend_from_slice(&s.binds);
            match s.yields {
                Yields::Top(_) => tail.push(format!(
                    "SELECT stmt, epoch, top, NULL::BIGINT AS id, NULL::BIGINT AS bytes FROM s{n}"
                )),
                Yields::Trim(_) => tail.push(format!(
                    "SELECT stmt, NULL::TEXT AS epoch, NULL::BIGINT AS top, id, bytes FROM s{n}"
                )),
                _ => {}
            }
        }
        if tail.is_empty() {
            tail.push("SELECT NULL::BIGINT AS stmt WHERE false".into());
        }
        sql.push('\n');
        sql.push_str(&tail.join("\nUNION ALL "));
        for row in conn.fetch_all(bind_all(sqlx::query(&sql), &binds)).await? {
            let n = get::<i64>(&row, "stmt")? as usize;
            rows[n].extend(Returned::read(plan.stmts[n].yields, &row)?);
        }
    } else if commit && plan.stmts.len() == 1 {
        // One statement that commits at once needs no transaction around it: one round trip (a lone
        // enqueue, a lone users_time flush). `finish` then has nothing to end.
        let s = &plan.stmts[0];
        for row in conn
            .fetch_all(bind_all(sqlx::query(&s.sql), &s.binds))
            .await?
        {
            rows[0].extend(Returned::read(s.yields, &row)?);
        }
    } else {
        conn.execute("BEGIN").await?;
        for (s, out) in plan.stmts.iter().zip(rows.iter_mut()) {
            for row in conn
                .fetch_all(bind_all(sqlx::query(&s.sql), &s.binds))
                .await?
            {
                out.extend(Returned::read(s.yields, &row)?);
            }
        }
        if commit {
            conn.execute("COMMIT").await?;
        }
    }
    Ok(results(batch, &plan, rows))
}

/// Ends the transaction `run` began.
pub(in crate::storage) async fn finish(
    conn: &mut AnyConnection,
    commit: bool,
) -> Result<(), StorageError> {
    conn.execute(if commit { "COMMIT" } else { "ROLLBACK" })
        .await?;
    Ok(())
}
