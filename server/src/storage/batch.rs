//! The statements of one group commit (`writer.rs` decides what goes in a batch and when): every history
//! append, enqueue, claim and users_time change waiting, in one transaction. Rows of one pipe are numbered
//! with one UPDATE, all rows go in with multi-row INSERTs, and each pipe is trimmed once per batch, by
//! position (an index range), not once per message.
//!
//! Round trips are what a commit costs here (each a hand-over to the database's thread or process and
//! back): a batch is one round trip when it can be (see `run`). Statements that return rows tag them with
//! their number (`stmt`), so that one stream of rows can be told apart.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Either, Executor};

use super::queue::QueuedMessage;
use super::totals::ENTRY_BYTES;
use super::{get, Backend, DurablePosition, HistoryRow, StorageError, StoredUsage};
use crate::ids::{DevId, UserId};

/// Rows per multi-row INSERT: well below either database's bind limit.
const CHUNK: usize = 32;

/// One history append of a batch, as the batch needs it.
#[derive(Clone, Copy)]
pub(super) struct Append<'a> {
    pub dev_id: DevId,
    pub row: &'a HistoryRow,
    pub keep: i64,
    /// Numbered: the pipe's epoch if it has none yet.
    pub epoch: Option<&'a str>,
}

/// One private message to queue.
pub(super) struct Enqueue<'a> {
    pub dev_id: DevId,
    pub user: UserId,
    pub msg: &'a QueuedMessage,
    pub expires_at: i64,
}

/// A claim of the user's oldest unexpired queued messages (at most `limit`).
pub(super) struct Claim {
    pub dev_id: DevId,
    pub user: UserId,
    pub now: i64,
    pub limit: i64,
}

/// Everything one transaction writes; `usize` keys are the writes' places in the batch.
#[derive(Default)]
pub(super) struct Batch<'a> {
    pub appends: Vec<(usize, Append<'a>)>,
    pub enqueues: Vec<Enqueue<'a>>,
    pub claims: Vec<(usize, Claim)>,
    pub claim_uuids: Vec<(usize, DevId, &'a str)>,
    pub times: &'a [((DevId, UserId), i64)],
}

/// What one append did: its row with the trim it caused (apportioned), and its position.
#[derive(Debug, Clone, Default)]
pub(super) struct Placed {
    pub change: StoredUsage,
    pub position: Option<DurablePosition>,
}

/// What the batch's statements gave each write, by its place in the batch.
#[derive(Default)]
pub(super) struct Results {
    pub placed: HashMap<usize, Placed>,
    pub claimed: HashMap<usize, Vec<QueuedMessage>>,
    pub claimed_uuid: HashMap<usize, Option<UserId>>,
}

/// Deletes the rows of pipe `$2` of tenant `$1` older than its newest `$3`, walking the pipe's index from
/// the newest: for pipes whose rows have no positions (`trust_` pipes), and for a length shortened.
pub(super) fn trim_by_id_sql() -> String {
    format!(
        "DELETE FROM pipe_history WHERE dev_id = $1 AND pipe = $2 AND id <= \
         (SELECT id FROM pipe_history WHERE dev_id = $1 AND pipe = $2 ORDER BY id DESC LIMIT 1 OFFSET $3) \
         RETURNING dev_id, {ENTRY_BYTES} AS bytes"
    )
}

#[derive(Debug, Clone, Copy)]
enum Bind<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Str(&'a str),
    OptStr(Option<&'a str>),
}

/// What a statement's rows are.
#[derive(Debug, Clone, Copy)]
enum Yields {
    Nothing,
    /// The numbering of pipe `n` (in `Plan::pipes`).
    Top(usize),
    Trim(usize),
    Claim(usize),
    ClaimUuid(usize),
}

/// One statement, its parameters numbered `$1...` in its own text.
struct Stmt<'a> {
    sql: String,
    binds: Vec<Bind<'a>>,
    yields: Yields,
}

impl<'a> Stmt<'a> {
    fn new(sql: String, binds: Vec<Bind<'a>>, yields: Yields) -> Self {
        Stmt { sql, binds, yields }
    }
}

/// `$n` placeholders renumbered from `$1 + offset`, for statements joined into one script (SQLite numbers
/// the parameters of a script as one list).
fn shifted(sql: &str, offset: usize) -> String {
    if offset == 0 {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len() + 16);
    let mut chars = sql.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while let Some(&(j, d)) = chars.peek() {
            if !d.is_ascii_digit() {
                break;
            }
            end = j + 1;
            chars.next();
        }
        if end > start {
            let n: usize = sql[start..end].parse().expect("digits");
            out.push_str(&(n + offset).to_string());
        }
    }
    out
}

fn values(rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let p: Vec<String> = (1..=cols).map(|c| format!("${}", r * cols + c)).collect();
            format!("({})", p.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The statements of a batch, and the pipes its appends go to (in first-seen order, each with its
/// appends' places in `Batch::appends`).
struct Plan<'a> {
    stmts: Vec<Stmt<'a>>,
    pipes: Vec<(DevId, &'a str, Vec<usize>)>,
    /// Planned as one statement: a numbered pipe's rows past its length were not inserted.
    one: bool,
}

const TOP_OF: &str =
    "(SELECT top FROM pipe_settings WHERE dev_id = $1 AND pipe = $2 AND length > 0)";

fn plan<'a>(batch: &Batch<'a>, one: bool) -> Plan<'a> {
    let mut stmts = Vec::new();
    let mut pipes: Vec<(DevId, &'a str, Vec<usize>)> = Vec::new();
    let mut index: HashMap<(DevId, &str), usize> = HashMap::new();
    for (k, (_, a)) in batch.appends.iter().enumerate() {
        let key = (a.dev_id, a.row.pipe.as_str());
        let at = *index.entry(key).or_insert_with(|| {
            pipes.push((key.0, key.1, Vec::new()));
            pipes.len() - 1
        });
        pipes[at].2.push(k);
    }
    let tag = |n: usize| Bind::Int(n as i64);
    // Positions: the settings row's `top` goes up by the pipe's numbered appends at once. A pipe's appends
    // are all numbered or none (the lock and barrier in `commands::positions` see to it).
    let numbered = |members: &[usize]| members.iter().all(|&k| batch.appends[k].1.epoch.is_some());
    // In one statement (`one`), the statements are CTEs that all see the database as it was before it:
    // the new top is read from the UPDATE's CTE, not the table.
    let mut top_of: HashMap<usize, String> = HashMap::new();
    for (p, (dev_id, pipe, members)) in pipes.iter().enumerate() {
        if !numbered(members) {
            continue;
        }
        let epoch = batch.appends[members[0]].1.epoch;
        let n = stmts.len();
        if one {
            top_of.insert(p, format!("(SELECT top FROM s{n})"));
        }
        stmts.push(Stmt::new(
            "UPDATE pipe_settings SET top = top + $3, epoch = COALESCE(epoch, $4) \
             WHERE dev_id = $1 AND pipe = $2 AND length > 0 \
             RETURNING CAST($5 AS BIGINT) AS stmt, epoch, top"
                .into(),
            vec![
                Bind::Int(dev_id.0 as i64),
                Bind::Str(pipe),
                Bind::Int(members.len() as i64),
                Bind::OptStr(epoch),
                tag(n),
            ],
            Yields::Top(p),
        ));
    }
    // Every row, in batch order, so that ids (the read order) follow positions; a numbered row's
    // position is the pipe's new top less the numbered rows after it in this batch.
    let mut after: HashMap<usize, (usize, i64)> = HashMap::new();
    for (p, (_, _, members)) in pipes.iter().enumerate() {
        if numbered(members) {
            for (i, &k) in members.iter().enumerate() {
                after.insert(k, (p, (members.len() - 1 - i) as i64));
            }
        }
    }
    // In one statement the trim cannot see the rows inserted with it: the rows it would trim at once
    // are not inserted (they are numbered and delivered all the same).
    let stored: Vec<usize> = (0..batch.appends.len())
        .filter(|k| {
            !one || after
                .get(k)
                .is_none_or(|(_, back)| *back < batch.appends[*k].1.keep)
        })
        .collect();
    for chunk in stored.chunks(CHUNK) {
        let mut tuples = Vec::new();
        let mut binds = Vec::new();
        for &k in chunk {
            let (a, row) = (&batch.appends[k].1, batch.appends[k].1.row);
            let b = binds.len();
            let pos = match after.get(&k) {
                Some((p, _)) => match top_of.get(p) {
                    Some(top) => format!("{top} - ${}", b + 8),
                    None => format!(
                        "(SELECT top FROM pipe_settings WHERE dev_id = ${} AND pipe = ${} AND length > 0) - ${}",
                        b + 1,
                        b + 2,
                        b + 8
                    ),
                },
                None => format!("${}", b + 8),
            };
            tuples.push(format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, {pos}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 9
            ));
            binds.extend([
                Bind::Int(a.dev_id.0 as i64),
                Bind::Str(&row.pipe),
                Bind::Str(&row.uuid),
                Bind::Str(&row.event),
                Bind::Str(&row.message),
                Bind::Int(row.user_id),
                Bind::Int(row.sent_at),
                match after.get(&k) {
                    Some(&(_, back)) => Bind::Int(back),
                    None => Bind::OptInt(None),
                },
                Bind::OptInt(row.sender),
            ]);
        }
        stmts.push(Stmt::new(
            format!(
                "INSERT INTO pipe_history (dev_id, pipe, uuid, event, message, user_id, sent_at, pos, sender) \
                 VALUES {}",
                tuples.join(", ")
            ),
            binds,
            Yields::Nothing,
        ));
    }
    // One trim per pipe, to the length its last append saw.
    for (p, (dev_id, pipe, members)) in pipes.iter().enumerate() {
        let keep = batch.appends[*members.last().expect("a pipe has appends")]
            .1
            .keep;
        let n = stmts.len();
        // A numbered pipe whose settings went meanwhile (a stale length) stored its rows unnumbered:
        // they go with the trim, as the pipe keeps no history.
        let sql = if numbered(members) {
            let top = top_of.get(&p).map_or(TOP_OF, |t| t.as_str());
            format!(
                "DELETE FROM pipe_history WHERE dev_id = $1 AND pipe = $2 AND \
                 (pos <= {top} - $3 OR (pos IS NULL AND {top} IS NULL)) \
                 RETURNING CAST($4 AS BIGINT) AS stmt, id, {ENTRY_BYTES} AS bytes"
            )
        } else {
            format!(
                "DELETE FROM pipe_history WHERE dev_id = $1 AND pipe = $2 AND id <= \
                 (SELECT id FROM pipe_history WHERE dev_id = $1 AND pipe = $2 ORDER BY id DESC LIMIT 1 OFFSET $3) \
                 RETURNING CAST($4 AS BIGINT) AS stmt, id, {ENTRY_BYTES} AS bytes"
            )
        };
        stmts.push(Stmt::new(
            sql,
            vec![
                Bind::Int(dev_id.0 as i64),
                Bind::Str(pipe),
                Bind::Int(keep),
                tag(n),
            ],
            Yields::Trim(p),
        ));
    }
    for chunk in batch.enqueues.chunks(CHUNK) {
        let mut binds = Vec::new();
        for e in chunk {
            binds.extend([
                Bind::Int(e.dev_id.0 as i64),
                Bind::Int(e.user.0 as i64),
                Bind::Str(&e.msg.uuid),
                Bind::Str(&e.msg.event),
                Bind::Str(&e.msg.message),
                Bind::Int(e.msg.sent_at),
                Bind::Int(e.expires_at),
            ]);
        }
        stmts.push(Stmt::new(
            format!(
                "INSERT INTO user_messages (dev_id, user_id, uuid, event, message, sent_at, expires_at) \
                 VALUES {}",
                values(chunk.len(), 7)
            ),
            binds,
            Yields::Nothing,
        ));
    }
    for (i, c) in &batch.claims {
        let n = stmts.len();
        stmts.push(Stmt::new(
            "DELETE FROM user_messages WHERE id IN (SELECT id FROM user_messages \
             WHERE dev_id = $1 AND user_id = $2 AND expires_at > $3 ORDER BY id LIMIT $4) \
             RETURNING CAST($5 AS BIGINT) AS stmt, id, uuid, event, message, sent_at"
                .into(),
            vec![
                Bind::Int(c.dev_id.0 as i64),
                Bind::Int(c.user.0 as i64),
                Bind::Int(c.now),
                Bind::Int(c.limit),
                tag(n),
            ],
            Yields::Claim(*i),
        ));
    }
    for (i, dev_id, uuid) in &batch.claim_uuids {
        let n = stmts.len();
        stmts.push(Stmt::new(
            "DELETE FROM user_messages WHERE dev_id = $1 AND uuid = $2 \
             RETURNING CAST($3 AS BIGINT) AS stmt, user_id"
                .into(),
            vec![Bind::Int(dev_id.0 as i64), Bind::Str(uuid), tag(n)],
            Yields::ClaimUuid(*i),
        ));
    }
    // One row per user (the map the times come from has unique keys: one upsert never meets a key twice).
    for chunk in batch.times.chunks(CHUNK * 4) {
        let mut binds = Vec::new();
        for ((dev_id, user), t) in chunk {
            binds.extend([
                Bind::Int(dev_id.0 as i64),
                Bind::Int(user.0 as i64),
                Bind::Int(*t),
            ]);
        }
        stmts.push(Stmt::new(
            format!(
                "INSERT INTO users_time (dev_id, user_id, last_online) VALUES {} \
                 ON CONFLICT (dev_id, user_id) DO UPDATE SET last_online = excluded.last_online",
                values(chunk.len(), 3)
            ),
            binds,
            Yields::Nothing,
        ));
    }
    Plan { stmts, pipes, one }
}

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
/// before) it commits too, in the same round trip on SQLite; otherwise the caller commits (`finish`) or
/// rolls back once it has seen what the statements did.
pub(super) async fn run(
    conn: &mut AnyConnection,
    backend: Backend,
    batch: &Batch<'_>,
    commit: bool,
) -> Result<Results, StorageError> {
    // PostgreSQL takes a committing batch as one statement of CTEs (one round trip, no transaction
    // around it) unless it claims queued messages (two claims in one statement could meet the same row)
    // or writes to a pipe that is not numbered (its trim by count would not see the rows inserted).
    let one = backend == Backend::Postgres
        && commit
        && batch.claims.is_empty()
        && batch.claim_uuids.is_empty()
        && batch.appends.iter().all(|(_, a)| a.epoch.is_some());
    let plan = plan(batch, one);
    let mut rows: Vec<Vec<AnyRow>> = (0..plan.stmts.len()).map(|_| Vec::new()).collect();
    match backend {
        Backend::Postgres if one && plan.stmts.len() > 1 => {
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
                let n: i64 = get(&row, "stmt")?;
                rows[n as usize].push(row);
            }
        }
        Backend::Sqlite => {
            let mut script = String::from("BEGIN IMMEDIATE");
            let mut binds = Vec::new();
            for s in &plan.stmts {
                script.push_str(";\n");
                script.push_str(&shifted(&s.sql, binds.len()));
                binds.extend_from_slice(&s.binds);
            }
            if commit {
                script.push_str(";\nCOMMIT");
            }
            // Kept prepared: the scripts of the common batches (one publish, one enqueue) recur, and
            // parsing one costs more than running it; the connection's cache evicts the rare ones.
            let q = bind_all(sqlx::query(&script), &binds);
            let mut stream = conn.fetch_many(q);
            while let Some(item) = stream.try_next().await? {
                if let Either::Right(row) = item {
                    let n: i64 = get(&row, "stmt")?;
                    rows[n as usize].push(row);
                }
            }
        }
        // One statement that commits at once needs no transaction around it: one round trip (a lone
        // enqueue, a lone users_time flush). `finish` then has nothing to end.
        Backend::Postgres if commit && plan.stmts.len() == 1 => {
            let s = &plan.stmts[0];
            rows[0] = conn
                .fetch_all(bind_all(sqlx::query(&s.sql), &s.binds))
                .await?;
        }
        Backend::Postgres => {
            conn.execute("BEGIN").await?;
            for (n, s) in plan.stmts.iter().enumerate() {
                rows[n] = conn
                    .fetch_all(bind_all(sqlx::query(&s.sql), &s.binds))
                    .await?;
            }
            if commit {
                conn.execute("COMMIT").await?;
            }
        }
    }
    results(batch, &plan, rows)
}

/// Ends the transaction `run` began.
pub(super) async fn finish(conn: &mut AnyConnection, commit: bool) -> Result<(), StorageError> {
    conn.execute(if commit { "COMMIT" } else { "ROLLBACK" })
        .await?;
    Ok(())
}

fn results(
    batch: &Batch<'_>,
    plan: &Plan<'_>,
    rows: Vec<Vec<AnyRow>>,
) -> Result<Results, StorageError> {
    let mut out = Results::default();
    let mut tops: HashMap<usize, (String, i64)> = HashMap::new();
    let mut trims: HashMap<usize, Vec<i64>> = HashMap::new();
    for (s, rows) in plan.stmts.iter().zip(rows) {
        match s.yields {
            Yields::Nothing => {}
            Yields::Top(p) => {
                if let Some(r) = rows.first() {
                    tops.insert(p, (get(r, "epoch")?, get(r, "top")?));
                }
            }
            Yields::Trim(p) => {
                // Oldest first (RETURNING promises no order), so each append is charged the entry its
                // write pushed out.
                let mut removed = rows
                    .iter()
                    .map(|r| Ok((get::<i64>(r, "id")?, get::<i64>(r, "bytes")?)))
                    .collect::<Result<Vec<_>, StorageError>>()?;
                removed.sort_unstable();
                trims.insert(p, removed.into_iter().map(|(_, b)| b).collect());
            }
            Yields::Claim(i) => {
                let mut got = rows
                    .iter()
                    .map(QueuedMessage::from_row)
                    .collect::<Result<Vec<_>, _>>()?;
                // RETURNING promises no order.
                got.sort_by_key(|m| m.id);
                out.claimed.insert(i, got);
            }
            Yields::ClaimUuid(i) => {
                let user = rows.first().map(|r| get::<i64>(r, "user_id")).transpose()?;
                out.claimed_uuid.insert(i, user.map(|u| UserId(u as u64)));
            }
        }
    }
    for (p, (_, _, members)) in plan.pipes.iter().enumerate() {
        let top = tops.get(&p);
        // What the trim removed is shared out over the pipe's appends in order (one entry each, the rest
        // on the last), so each append's change is what it would have changed alone at its length.
        let mut removed = trims.remove(&p).unwrap_or_default().into_iter();
        for (k, &m) in members.iter().enumerate() {
            let (place, a) = &batch.appends[m];
            let back = (members.len() - 1 - k) as i64;
            let take: Vec<i64> = if plan.one && back >= a.keep {
                // Not inserted: as if written and trimmed at once.
                vec![a.row.message.len() as i64]
            } else if k + 1 == members.len() {
                removed.by_ref().collect()
            } else {
                removed.next().into_iter().collect()
            };
            let position = top.map(|(epoch, top)| DurablePosition {
                epoch: epoch.clone(),
                top: top - (members.len() - 1 - k) as i64,
            });
            let change = StoredUsage {
                history_rows: 1 - take.len() as i64,
                history_bytes: a.row.message.len() as i64 - take.iter().sum::<i64>(),
                ..StoredUsage::default()
            };
            out.placed.insert(*place, Placed { change, position });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_number_placeholders_row_by_row() {
        assert_eq!(values(2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(values(1, 1), "($1)");
    }

    #[test]
    fn a_script_numbers_its_statements_parameters_as_one_list() {
        assert_eq!(shifted("a = $1 AND b = $12", 0), "a = $1 AND b = $12");
        assert_eq!(
            shifted("a = $1 AND b = $12 - $3", 10),
            "a = $11 AND b = $22 - $13"
        );
        assert_eq!(shifted("no parameters", 5), "no parameters");
    }
}
