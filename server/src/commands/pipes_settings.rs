//! `pipes_settings`: how many messages a pipe keeps in its history.

use super::table::{required, where_pipes, Collector, Table, Verb};
use super::{Caller, CommandError, Ctx, ErrorCode, Outcome};
use crate::cometql::{Delete, Insert, Select};
use crate::hub::Stale;
use crate::ids::PipeName;

pub(super) const TABLE: Table = Table {
    name: "pipes_settings",
    columns: &["name", "length"],
    key: "name",
};

pub(super) async fn insert(
    ctx: &Ctx,
    caller: Caller,
    ins: &Insert,
) -> Result<Outcome, CommandError> {
    let max = ctx.config.messages.max_history_length;
    let mut settings = Vec::new();
    for row in &ins.rows {
        let row = TABLE.insert_row(ins.columns.as_deref(), row)?;
        let pipe = PipeName::parse(required(&row, "name")?)?;
        let length = match row
            .iter()
            .find(|(c, _)| *c == "length")
            .and_then(|(_, v)| v.as_text())
        {
            None => 0,
            Some(text) => text.trim().parse::<i64>().map_err(|_| {
                CommandError::new(ErrorCode::Invalid, "The length field must be a number")
            })?,
        };
        settings.push((pipe, length.clamp(0, max)));
    }
    for (pipe, length) in &settings {
        // Under the pipe's publish lock: a publish numbers its message by the length it reads under it
        // (a length switched to 0 clears the pipe's epoch; a numbered write after that would revive it).
        let _order = ctx.pipe_locks.lock(caller.dev_id, pipe).await;
        // Publishes handed over with the old length are stored (and trimmed) before it changes.
        ctx.storage.barrier().await?;
        ctx.storage
            .set_pipe_length(caller.dev_id, pipe.as_str(), *length)
            .await?;
        ctx.history.set(caller.dev_id, pipe, *length);
        ctx.hub
            .tell_stale(Stale::Settings(caller.dev_id, pipe.clone()))
            .await;
        // A shorter length takes effect now, not at the next publish: its room is free at once. (At 0 the
        // pipe stores nothing more; what it kept stays readable until deleted, as before.)
        if *length > 0 {
            ctx.storage
                .trim_history(caller.dev_id, pipe.as_str(), *length)
                .await?;
            ctx.hub
                .tell_stale(Stale::History(caller.dev_id, pipe.clone()))
                .await;
        }
        ctx.history_cache.invalidate(caller.dev_id, pipe);
    }
    Ok(Outcome::Done {
        affected_rows: settings.len() as u64,
        last_insert_id: 0,
    })
}

pub(super) async fn select(
    ctx: &Ctx,
    caller: Caller,
    sel: &Select,
) -> Result<Outcome, CommandError> {
    let proj = TABLE.projection(&sel.columns)?;
    let names = TABLE.key_values(&sel.filter, "name", Verb::Select)?;
    let mut rows = Collector::new(ctx, sel.limit.as_ref()).projected(&proj);
    for pipe in where_pipes(names) {
        if rows.done() {
            break;
        }
        if let Some(length) = ctx
            .storage
            .pipe_length(caller.dev_id, pipe.as_str())
            .await?
        {
            rows.offer(vec![pipe.as_str().to_string(), length.to_string()])?;
        }
    }
    Ok(rows.finish(&TABLE, &proj))
}

/// Removes the settings and clears the pipe's history (reference).
pub(super) async fn delete(
    ctx: &Ctx,
    caller: Caller,
    del: &Delete,
) -> Result<Outcome, CommandError> {
    let names = TABLE.key_values(&del.filter, "name", Verb::Delete)?;
    for pipe in where_pipes(names) {
        let _order = ctx.pipe_locks.lock(caller.dev_id, &pipe).await;
        ctx.storage.barrier().await?;
        let deleted = ctx
            .storage
            .delete_pipe_settings(caller.dev_id, pipe.as_str())
            .await;
        ctx.history_cache.invalidate(caller.dev_id, &pipe);
        ctx.hub
            .tell_stale(Stale::Settings(caller.dev_id, pipe.clone()))
            .await;
        deleted?;
        ctx.history.set(caller.dev_id, &pipe, 0);
    }
    Ok(Outcome::OK)
}
