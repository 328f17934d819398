//! Which pipes keep history, cached: the publish path must not query the database for every message to
//! learn that a pipe keeps none. This node updates the cache on its own pipes_settings writes.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{CommandError, Ctx};
use crate::ids::{DevId, PipeName, UserId};
use crate::push::protocol::names::is_trust;
use crate::storage::HistoryRow;
use crate::tenant::unix_now;

/// Most history entries a read returns per pipe (reference: 99).
pub const READ_LIMIT: i64 = 99;

/// `trust_` pipes keep everything for a while, bounded by this count.
const TRUST_KEEP: i64 = 1000;

#[derive(Default)]
pub struct HistoryLengths {
    map: Mutex<HashMap<(DevId, PipeName), i64>>,
}

impl HistoryLengths {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(DevId, PipeName), i64>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set(&self, dev_id: DevId, pipe: &PipeName, length: i64) {
        self.lock().insert((dev_id, pipe.clone()), length);
    }

    /// How many entries the pipe keeps: its setting, or 0.
    pub async fn get(
        &self,
        ctx: &Ctx,
        dev_id: DevId,
        pipe: &PipeName,
    ) -> Result<i64, CommandError> {
        if let Some(n) = self.lock().get(&(dev_id, pipe.clone())) {
            return Ok(*n);
        }
        let n = ctx
            .storage
            .pipe_length(dev_id, pipe.as_str())
            .await?
            .unwrap_or(0);
        self.set(dev_id, pipe, n);
        Ok(n)
    }
}

/// Stores a published message when its pipe keeps history (or is a `trust_` pipe).
pub async fn record(
    ctx: &Ctx,
    dev_id: DevId,
    pipe: &PipeName,
    event: &str,
    message: &str,
    sender: Option<UserId>,
) -> Result<(), CommandError> {
    let keep = if is_trust(pipe.as_str()) {
        TRUST_KEEP
    } else {
        ctx.history.get(ctx, dev_id, pipe).await?
    };
    if keep <= 0 {
        return Ok(());
    }
    let row = HistoryRow {
        pipe: pipe.as_str().to_string(),
        uuid: uuid::Uuid::now_v7().to_string(),
        event: event.to_string(),
        message: message.to_string(),
        user_id: sender.map_or(0, |u| u.0 as i64),
        sent_at: unix_now(),
    };
    let _room = super::quota::history_entry(ctx, dev_id, message)?;
    ctx.storage.append_history(dev_id, &row, keep).await?;
    Ok(())
}

/// Whether a message published to the pipe is stored (as `record` decides).
pub async fn keeps_history(
    ctx: &Ctx,
    dev_id: DevId,
    pipe: &PipeName,
) -> Result<bool, CommandError> {
    Ok(is_trust(pipe.as_str()) || ctx.history.get(ctx, dev_id, pipe).await? > 0)
}
