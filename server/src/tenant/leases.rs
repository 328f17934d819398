//! Publishes on a cluster: the tenant's budget (`publishes_per_sec`, `publish_burst`) is one token bucket
//! in Redis that every node draws from (`crate::cluster`, `limits.rs`). A node takes a lease of a few
//! tokens at a time ([`lease_size`]) and spends them locally, so most publishes need no round trip to
//! Redis; a statement that does not fit in what the node holds takes what it needs plus a new lease.
//!
//! The bound: every token spent was taken from the bucket first, and a node holds at most about one
//! lease it has not spent (a refused statement gives back what it took; tokens held longer than
//! [`LEASE_FOR`] are dropped, never given out twice). So over any interval of `T` seconds a tenant's
//! publishes across the cluster are at most `burst + rate * T + nodes * lease_size`: the lease slack.
//! Dropped and given-back tokens only ever make the cluster admit less.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::limits::{Limit, Limits, Refused};
use crate::hub::{BrokerError, SharedLimits};
use crate::ids::DevId;

/// How long a node keeps tokens it leased and did not spend.
pub(crate) const LEASE_FOR: Duration = Duration::from_secs(1);

/// Tokens a node takes beyond what a publish needs: a tenth of a second's budget, at least one.
pub(crate) fn lease_size(rate: u32, burst: u32) -> u32 {
    (rate.min(burst) / 10).max(1)
}

struct Held {
    tokens: u32,
    until: Instant,
}

/// The tokens this node holds, per tenant.
#[derive(Default)]
pub(crate) struct PublishLeases {
    held: Mutex<HashMap<DevId, Held>>,
}

impl PublishLeases {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DevId, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spends `n` of the tenant's tokens held here, if there are that many: `None` when not (nothing
    /// spent), with how many there are.
    fn spend(&self, dev_id: DevId, n: u32, now: Instant) -> Result<(), u32> {
        let mut held = self.lock();
        let Some(h) = held.get_mut(&dev_id) else {
            return Err(0);
        };
        if h.until <= now {
            held.remove(&dev_id);
            return Err(0);
        }
        if h.tokens < n {
            return Err(h.tokens);
        }
        h.tokens -= n;
        Ok(())
    }

    /// Adds tokens just taken, then spends `n` if there are that many now.
    fn add_and_spend(&self, dev_id: DevId, taken: u32, n: u32, now: Instant) -> bool {
        let mut held = self.lock();
        let h = held.entry(dev_id).or_insert(Held {
            tokens: 0,
            until: now,
        });
        if h.until <= now {
            h.tokens = 0;
        }
        h.tokens = h.tokens.saturating_add(taken);
        h.until = now + LEASE_FOR;
        if h.tokens < n {
            return false;
        }
        h.tokens -= n;
        true
    }

    /// Takes back `n` tokens added for a statement that was refused (to give them back to the bucket).
    fn take_back(&self, dev_id: DevId, n: u32) -> u32 {
        let mut held = self.lock();
        let Some(h) = held.get_mut(&dev_id) else {
            return 0;
        };
        let back = h.tokens.min(n);
        h.tokens -= back;
        back
    }

    /// Everything held and unexpired, emptied (a node that stops gives it back).
    pub(crate) fn drain(&self) -> Vec<(DevId, u32)> {
        let now = Instant::now();
        self.lock()
            .drain()
            .filter(|(_, h)| h.until > now && h.tokens > 0)
            .map(|(d, h)| (d, h.tokens))
            .collect()
    }
}

/// `n` publishes of the tenant against the cluster's budget: all of them, or none (as
/// `Limits::publish_n`). The outer error: Redis could not be asked (the publish fails closed).
pub(crate) async fn publish_n_shared(
    limits: &Limits,
    shared: &dyn SharedLimits,
    dev_id: DevId,
    n: u32,
) -> Result<Result<(), Refused>, BrokerError> {
    let Some(n) = NonZeroU32::new(n) else {
        return Ok(Ok(()));
    };
    let n = n.get();
    let (rate, burst) = limits.publish_quota(dev_id);
    if n > burst {
        return Ok(Err(limits.refuse(Limit::PublishBurst, Duration::ZERO)));
    }
    let leases = &limits.leases;
    let have = match leases.spend(dev_id, n, Instant::now()) {
        Ok(()) => return Ok(Ok(())),
        Err(have) => have,
    };
    let want = n - have + lease_size(rate, burst);
    let (taken, wait) = shared.take_publishes(dev_id, want, rate, burst).await?;
    if leases.add_and_spend(dev_id, taken, n, Instant::now()) {
        return Ok(Ok(()));
    }
    // Refused: what this statement took goes back to the bucket, for the other nodes.
    let back = leases.take_back(dev_id, taken);
    if back > 0 {
        let _ = shared.give_back_publishes(dev_id, back, burst).await;
    }
    Ok(Err(limits.refuse(
        Limit::Publishes,
        wait.max(Duration::from_millis(1)),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_spent_locally_and_expires() {
        let l = PublishLeases::default();
        let d = DevId(1);
        let t0 = Instant::now();
        assert_eq!(l.spend(d, 1, t0), Err(0));
        assert!(l.add_and_spend(d, 5, 2, t0));
        assert_eq!(l.spend(d, 2, t0), Ok(()));
        assert_eq!(l.spend(d, 2, t0), Err(1));
        assert!(!l.add_and_spend(d, 0, 2, t0));
        assert_eq!(l.take_back(d, 9), 1);
        assert!(l.add_and_spend(d, 3, 1, t0));
        assert_eq!(l.spend(d, 1, t0 + LEASE_FOR), Err(0), "expired");
        assert!(l.drain().is_empty());
        assert_eq!(lease_size(1000, 50), 5);
        assert_eq!(lease_size(5, 100), 1);
    }
}
