//! A tenant's limits across the cluster (`hub::SharedLimits`): publishes as one token bucket in Redis that
//! nodes lease tokens from (`tenant::leases` says the bound), WebSocket connections as a count per node in
//! one hash per tenant, checked and incremented by one script. Per-address limits stay each node's own.
//!
//! A node's counts carry an expiry its heartbeat renews (`refresh`, which also writes the node's true
//! counts, so a decrement lost with Redis heals), so a node that died stops counting after
//! `CONN_TTL`. While Redis is away a connection is admitted against the node's own cap and written into
//! the shared count when Redis is back (a publish, by contrast, fails closed). Redis's clock (`TIME`) is
//! the only clock in these scripts.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use redis::Script;
use tokio::sync::watch;

use super::broker::RedisBroker;
use super::{run, Shared, COMMAND_TIMEOUT};
use crate::hub::broker::Pending;
use crate::hub::SharedLimits;
use crate::ids::DevId;

/// A node's connection counts are forgotten this long after its last heartbeat.
const CONN_TTL: Duration = Duration::from_secs(15);
const REFRESH_EVERY: Duration = Duration::from_secs(3);
/// An idle tenant's bucket goes (it is full again by then anyway).
const BUCKET_TTL_MS: u64 = 3600 * 1000;

/// KEYS: bucket. ARGV: want, rate, burst, ttl ms. Returns {taken, ms until the rest}.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'v', 'ts')
local v = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
if now > ts then v = math.min(burst, v + (now - ts) * rate / 1000) end
local want = tonumber(ARGV[1])
local take = math.min(want, math.floor(v))
v = v - take
redis.call('HSET', KEYS[1], 'v', tostring(v), 'ts', now)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local wait = 0
if take < want then wait = math.ceil((want - take - v) * 1000 / rate) end
return {take, wait}
"#,
    )
});

/// KEYS: bucket. ARGV: tokens, burst.
static GIVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local v = tonumber(redis.call('HGET', KEYS[1], 'v'))
if v then
  redis.call('HSET', KEYS[1], 'v', tostring(math.min(tonumber(ARGV[2]), v + tonumber(ARGV[1]))))
end
return 1
"#,
    )
});

/// KEYS: counts. ARGV: node, max, ttl ms. Fields `c/<node>` (open connections) and `t/<node>` (when
/// they stop counting). Returns 1 when counted, 0 when the tenant has `max` open.
static JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HGETALL', KEYS[1])
local f = {}
for i = 1, #h, 2 do f[h[i]] = h[i + 1] end
local total = 0
for k, v in pairs(f) do
  if string.sub(k, 1, 2) == 'c/' then
    local node = string.sub(k, 3)
    if node ~= ARGV[1] and tonumber(f['t/' .. node] or '0') < now then
      redis.call('HDEL', KEYS[1], k, 't/' .. node)
    else
      total = total + tonumber(v)
    end
  end
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], 'c/' .. ARGV[1], 1)
redis.call('HSET', KEYS[1], 't/' .. ARGV[1], now + tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 4)
return 1
"#,
    )
});

/// KEYS: counts. ARGV: node, count, ttl ms. This node's true count (0: its fields go).
static REFRESH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if tonumber(ARGV[2]) <= 0 then
  redis.call('HDEL', KEYS[1], 'c/' .. ARGV[1], 't/' .. ARGV[1])
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'c/' .. ARGV[1], ARGV[2], 't/' .. ARGV[1], now + tonumber(ARGV[3]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 4)
return 1
"#,
    )
});

/// This node's counted connections per tenant.
pub(super) type Counted = Mutex<HashMap<DevId, i64>>;

fn counted(s: &Shared) -> std::sync::MutexGuard<'_, HashMap<DevId, i64>> {
    s.counted.lock().unwrap_or_else(|e| e.into_inner())
}

impl SharedLimits for RedisBroker {
    fn take_publishes(
        &self,
        dev_id: DevId,
        want: u32,
        rate: u32,
        burst: u32,
    ) -> Pending<(u32, Duration)> {
        let s = self.shared.clone();
        Box::pin(async move {
            let mut call = TAKE.key(s.keys.publish_bucket(dev_id));
            call.arg(want).arg(rate).arg(burst).arg(BUCKET_TTL_MS);
            let (taken, wait_ms): (u32, u64) = run(&s, call).await?;
            Ok((taken, Duration::from_millis(wait_ms)))
        })
    }

    fn give_back_publishes(&self, dev_id: DevId, n: u32, burst: u32) -> Pending<()> {
        let s = self.shared.clone();
        Box::pin(async move {
            let mut call = GIVE.key(s.keys.publish_bucket(dev_id));
            call.arg(n).arg(burst);
            run::<i64>(&s, call).await.map(|_| ())
        })
    }

    fn join_connection(&self, dev_id: DevId, max: i64) -> Pending<bool> {
        let s = self.shared.clone();
        Box::pin(async move {
            let mut call = JOIN.key(s.keys.connection_counts(dev_id));
            call.arg(&s.node).arg(max).arg(CONN_TTL.as_millis() as u64);
            let joined = match run::<i64>(&s, call).await {
                Ok(joined) => joined == 1,
                // Redis away: the node's own cap still holds (checked before), and the refresh writes
                // this connection into the shared count once Redis answers again. Connections are not
                // refused for want of Redis (presence keeps them too); publishes are.
                Err(e) => {
                    tracing::debug!(error = %e, "connection counted on this node only");
                    true
                }
            };
            if joined {
                *counted(&s).entry(dev_id).or_default() += 1;
            }
            Ok(joined)
        })
    }

    fn leave_connection(&self, dev_id: DevId) {
        {
            let mut c = counted(&self.shared);
            if let Some(n) = c.get_mut(&dev_id) {
                *n -= 1;
            }
        }
        let s = self.shared.clone();
        tokio::spawn(async move {
            let mut conn = s.conn.clone();
            let mut cmd = redis::cmd("HINCRBY");
            cmd.arg(s.keys.connection_counts(dev_id))
                .arg(format!("c/{}", s.node))
                .arg(-1);
            // Lost (Redis away): the next refresh writes the true count.
            let _ = tokio::time::timeout(COMMAND_TIMEOUT, cmd.query_async::<i64>(&mut conn)).await;
        });
    }
}

/// Renews this node's connection counts (their true values) until shutdown; a tenant whose last
/// connection here ended is removed after its count was written as 0.
pub(super) async fn refresh(s: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(REFRESH_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        let now: Vec<(DevId, i64)> = counted(&s).iter().map(|(d, n)| (*d, *n)).collect();
        for (dev_id, n) in now {
            let mut call = REFRESH.key(s.keys.connection_counts(dev_id));
            call.arg(&s.node)
                .arg(n.max(0))
                .arg(CONN_TTL.as_millis() as u64);
            if run::<i64>(&s, call).await.is_ok() && n <= 0 {
                let mut c = counted(&s);
                if c.get(&dev_id).is_some_and(|n| *n <= 0) {
                    c.remove(&dev_id);
                }
            }
        }
    }
}

/// A node that stops: its connection counts go, and the publish tokens it held go back.
pub(super) async fn release(s: &Shared, held: Vec<(DevId, u32, u32)>) {
    let tenants: Vec<DevId> = counted(s).keys().copied().collect();
    for dev_id in tenants {
        let mut call = REFRESH.key(s.keys.connection_counts(dev_id));
        call.arg(&s.node).arg(0).arg(CONN_TTL.as_millis() as u64);
        let _ = run::<i64>(s, call).await;
    }
    for (dev_id, n, burst) in held {
        let mut call = GIVE.key(s.keys.publish_bucket(dev_id));
        call.arg(n).arg(burst);
        let _ = run::<i64>(s, call).await;
    }
}
