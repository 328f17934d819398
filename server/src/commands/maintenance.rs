//! The periodic sweeps that keep stored state within its promises: expired private messages, `trust_`
//! history, minted users_auth hashes and remembered logouts go; tenant limits and quotas set by the CLI or
//! the dashboard on another process are reloaded.
use std::time::Duration;

use tokio::sync::watch;

use super::Ctx;

/// Expires queued private messages, `trust_` history, minted users_auth hashes and remembered logouts, once
/// a minute.
pub(crate) async fn run(ctx: Ctx, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let now = crate::tenant::unix_now();
        ctx.limits.sweep();
        if let Err(e) = ctx.limits.load_overrides(&ctx.storage).await {
            tracing::warn!(error = %e, "reloading tenant limits failed");
        }
        if let Err(e) = ctx.storage.purge_expired_hashes(now).await {
            tracing::warn!(error = %e, "expiring users_auth hashes minted for JWTs failed");
        }
        if let Err(e) = ctx.storage.purge_ended_sessions(now).await {
            tracing::warn!(error = %e, "forgetting expired dashboard logouts failed");
        }
        if let Err(e) = ctx.quotas.load_overrides(&ctx.storage).await {
            tracing::warn!(error = %e, "reloading tenant quotas failed");
        }
        // After the reloads, so that a changed window or quota applies to the sweep's trim.
        for dev_id in ctx.hub.registry().window_tenants() {
            super::quota::refresh_window(&ctx, dev_id);
        }
        ctx.hub.registry().sweep_windows();
        ctx.hub.registry().sweep_private();
        if let Err(e) = ctx.storage.purge_expired_messages(now).await {
            tracing::warn!(error = %e, "expiring queued private messages failed");
        }
        let before = now - ctx.config.messages.trust_history_secs as i64;
        if let Err(e) = ctx.storage.purge_trust_history(before).await {
            tracing::warn!(error = %e, "expiring trust_ history failed");
        }
        ctx.history_cache.invalidate_trust();
        ctx.hub.tell_stale(crate::hub::Stale::Trust).await;
    }
}
