//! What the other nodes' caches must forget (`hub::Stale`), on the control channel beside revocations
//! (`control.rs`), so that every node keeps its history and history-length caches on. Unlike a revocation
//! it is not numbered: a cache told nothing is only stale, and what a node may have missed (its pub/sub
//! link came back) it forgets all at once (`Stale::All`, in `subscriber.rs`). The sending node's own
//! caches were told already; it skips its own message.
//!
//! ```text
//! ~ <node> h <dev_id> <pipe>   a pipe's history
//! ~ <node> s <dev_id> <pipe>   a pipe's settings (and history)
//! ~ <node> t <dev_id>          some entry of the tenant's history
//! ~ <node> T                   trust_ history expired
//! ```

use std::sync::Arc;

use super::broker::unavailable;
use super::{Shared, COMMAND_TIMEOUT};
use crate::hub::broker::Pending;
use crate::hub::Stale;
use crate::ids::{DevId, PipeName};

/// Whether a control message is one of these (a revocation starts with its number).
pub(super) fn is_stale(payload: &[u8]) -> bool {
    payload.starts_with(b"~ ")
}

fn body(node: &str, stale: &Stale) -> Option<String> {
    Some(match stale {
        Stale::History(dev, pipe) => format!("~ {node} h {} {}", dev.0, pipe.as_str()),
        Stale::Settings(dev, pipe) => format!("~ {node} s {} {}", dev.0, pipe.as_str()),
        Stale::Tenant(dev) => format!("~ {node} t {}", dev.0),
        Stale::Trust => format!("~ {node} T"),
        // Each node's own: nothing to tell the others.
        Stale::All => return None,
    })
}

fn pipe_name(s: &str) -> Option<PipeName> {
    PipeName::parse_command(s)
        .or_else(|_| PipeName::parse(s))
        .ok()
}

/// The sender and what changed; `None` for anything else. A pipe name no rule accepts here still makes
/// its tenant's history go.
pub(super) fn parse(payload: &[u8]) -> Option<(&str, Stale)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut f = text.splitn(5, ' ');
    if f.next()? != "~" {
        return None;
    }
    let node = f.next().filter(|n| !n.is_empty())?;
    let kind = f.next()?;
    let dev = f.next().map(|d| d.parse::<u64>().map(DevId));
    let pipe = f.next();
    let stale = match (kind, dev, pipe) {
        ("h", Some(Ok(dev)), Some(p)) => {
            pipe_name(p).map_or(Stale::Tenant(dev), |p| Stale::History(dev, p))
        }
        ("s", Some(Ok(dev)), Some(p)) => {
            pipe_name(p).map_or(Stale::Tenant(dev), |p| Stale::Settings(dev, p))
        }
        ("t", Some(Ok(dev)), None) => Stale::Tenant(dev),
        ("T", None, None) => Stale::Trust,
        _ => return None,
    };
    Some((node, stale))
}

/// Tells the other nodes: done once Redis has written it to their links (a failure leaves their caches
/// stale until their link comes back or the entry is evicted; the caller logs it).
pub(super) fn publish(s: Arc<Shared>, stale: Stale) -> Option<Pending<()>> {
    let msg = body(&s.node, &stale)?;
    Some(Box::pin(async move {
        let mut conn = s.conn.clone();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(s.keys.control_all()).arg(msg);
        match tokio::time::timeout(COMMAND_TIMEOUT, cmd.query_async::<i64>(&mut conn)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable("no answer in time")),
        }
    }))
}

/// Another node's change: this node's caches forget it.
pub(super) fn receive(s: &Shared, payload: &[u8]) {
    match parse(payload) {
        Some((node, _)) if node == s.node => {}
        Some((_, stale)) => s.registry.stale.tell(&stale),
        None => super::metrics::Metrics::add(&s.metrics.garbled, 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_read_back_and_nothing_else_does() {
        let pipe = PipeName::parse("web_news").unwrap();
        for stale in [
            Stale::History(DevId(3), pipe.clone()),
            Stale::Settings(DevId(4), pipe.clone()),
            Stale::Tenant(DevId(5)),
            Stale::Trust,
        ] {
            let msg = body("node-a", &stale).unwrap();
            assert!(is_stale(msg.as_bytes()), "{msg}");
            assert_eq!(parse(msg.as_bytes()), Some(("node-a", stale)), "{msg}");
        }
        assert_eq!(body("node-a", &Stale::All), None);
        assert_eq!(
            parse(b"~ n h 7 bad pipe name"),
            Some(("n", Stale::Tenant(DevId(7)))),
            "a pipe name no rule takes: the tenant's history goes"
        );
        for bad in [
            "",
            "~",
            "~ n",
            "~ n h",
            "~ n h 1",
            "~ n h x p",
            "~ n t",
            "~ n t 1 p",
            "~ n T 1",
            "~ n z 1",
            "~  h 1 p",
            "7 u 1 2",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad}");
        }
        assert!(!is_stale(b"7 u 1 2"), "a revocation");
    }
}
