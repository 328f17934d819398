//! The statements of a batch (`Batch`), planned once for either database: their SQL with `$n` parameters,
//! the values to bind, and what each statement's rows are (`Yields`).

use std::collections::HashMap;

use super::super::totals::ENTRY_BYTES;
use super::Batch;
use crate::ids::DevId;

/// Rows per multi-row INSERT: well below either database's bind limit.
const CHUNK: usize = 32;

/// A pipe's rows newest first, on its one index (`pipe_history_by_pos`, whose entries end with the id): a
/// numbered pipe by offset, a `trust_` pipe (its rows have no offsets) by id. A pipe never holds both for
/// long: rows stored unnumbered in a numbered pipe go with the batch that stored them.
pub(in crate::storage) const NEWEST_FIRST: &str = "ORDER BY pos DESC, id DESC";

/// No bound, for a `LIMIT` that only a following `OFFSET` needs (either database's syntax for none differs).
pub(in crate::storage) const ALL: &str = "LIMIT 9223372036854775807";

/// The ids of pipe `$2` of tenant `$1` older than its newest `$3`: the rows a trim to that count deletes.
pub(in crate::storage) fn beyond_newest_sql() -> String {
    format!(
        "SELECT id FROM pipe_history WHERE dev_id = $1 AND pipe = $2 {NEWEST_FIRST} {ALL} OFFSET $3"
    )
}

/// Deletes the rows of pipe `$2` of tenant `$1` older than its newest `$3`, walking the pipe's index from
/// the newest: for pipes whose rows have no positions (`trust_` pipes), and for a length shortened.
pub(in crate::storage) fn trim_by_count_sql() -> String {
    format!(
        "DELETE FROM pipe_history WHERE id IN ({}) RETURNING dev_id, {ENTRY_BYTES} AS bytes",
        beyond_newest_sql()
    )
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Bind<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Str(&'a str),
    OptStr(Option<&'a str>),
}

/// What a statement's rows are.
#[derive(Debug, Clone, Copy)]
pub(super) enum Yields {
    Nothing,
    /// The numbering of pipe `n` (in `Plan::pipes`).
    Top(usize),
    Trim(usize),
    Claim(usize),
    ClaimUuid(usize),
}

/// One statement, its parameters numbered `$1...` in its own text.
pub(super) struct Stmt<'a> {
    pub sql: String,
    pub binds: Vec<Bind<'a>>,
    pub yields: Yields,
}

impl<'a> Stmt<'a> {
    fn new(sql: String, binds: Vec<Bind<'a>>, yields: Yields) -> Self {
        Stmt { sql, binds, yields }
    }
}

/// `$n` placeholders renumbered from `$1 + offset`, for statements joined into one (the CTEs of one
/// PostgreSQL statement number their parameters as one list).
pub(super) fn shifted(sql: &str, offset: usize) -> String {
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
pub(super) struct Plan<'a> {
    pub stmts: Vec<Stmt<'a>>,
    pub pipes: Vec<(DevId, &'a str, Vec<usize>)>,
    /// Planned as one statement: a numbered pipe's rows past its length were not inserted.
    pub one: bool,
}

const TOP_OF: &str =
    "(SELECT top FROM pipe_settings WHERE dev_id = $1 AND pipe = $2 AND length > 0)";

/// The statements of `batch`; `one`: as the CTEs of one PostgreSQL statement (see `postgres.rs`).
pub(super) fn plan<'a>(batch: &Batch<'a>, one: bool) -> Plan<'a> {
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
                "DELETE FROM pipe_history WHERE id IN ({}) \
                 RETURNING CAST($4 AS BIGINT) AS stmt, id, {ENTRY_BYTES} AS bytes",
                beyond_newest_sql()
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
    // Before the claims: a claim in the same batch finds them in their place.
    let put_back: Vec<_> = batch
        .put_backs
        .iter()
        .flat_map(|p| p.msgs.iter().map(move |m| (p, m)))
        .collect();
    for chunk in put_back.chunks(CHUNK) {
        let mut binds = Vec::new();
        for (p, m) in chunk {
            binds.extend([
                Bind::Int(m.id),
                Bind::Int(p.dev_id.0 as i64),
                Bind::Int(p.user.0 as i64),
                Bind::Str(&m.uuid),
                Bind::Str(&m.event),
                Bind::Str(&m.message),
                Bind::Int(m.sent_at),
                Bind::Int(p.expires_at),
            ]);
        }
        stmts.push(Stmt::new(
            format!(
                "INSERT INTO user_messages (id, dev_id, user_id, uuid, event, message, sent_at, expires_at) \
                 VALUES {}",
                values(chunk.len(), 8)
            ),
            binds,
            Yields::Nothing,
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
    // In the order they came (a user's two logins in one batch: the later one's change stands).
    for a in &batch.auths {
        let (dev_id, user) = (Bind::Int(a.dev_id.0 as i64), Bind::Int(a.user.0 as i64));
        stmts.push(match a.hash {
            Some(hash) => Stmt::new(
                "INSERT INTO users_auth (dev_id, user_id, hash, expires_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (dev_id, user_id) DO UPDATE SET hash = excluded.hash, \
                 expires_at = excluded.expires_at"
                    .into(),
                vec![dev_id, user, Bind::Str(hash), Bind::Int(a.expires_at)],
                Yields::Nothing,
            ),
            None => Stmt::new(
                "UPDATE users_auth SET expires_at = $3 \
                 WHERE dev_id = $1 AND user_id = $2 AND expires_at IS NOT NULL AND expires_at < $3"
                    .into(),
                vec![dev_id, user, Bind::Int(a.expires_at)],
                Yields::Nothing,
            ),
        });
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
