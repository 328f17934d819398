//! The Lua scripts the cluster runs in Redis, each loaded once (EVALSHA; redis-rs loads it again on
//! NOSCRIPT, after a Redis restart). Keys are always one pipe's (one hash slot), except the tenant's cache
//! index that a publish to a `cache-` channel also touches (the cluster runs on one Redis server).

use std::sync::LazyLock;

use redis::Script;

/// Publish: number, keep, PUBLISH, atomically.
/// KEYS: meta, window, channel, cached, the tenant's cache index. ARGV: head, body, epoch (the database's
/// for a durable pipe, else the one to start with when the pipe has none), durable offset ("" when Redis
/// numbers), window messages, window ttl ms, meta ttl ms, cache ttl ms ("": not a Pusher `cache-`
/// channel; else the message is kept as the channel's last event, in the same step as its PUBLISH, so
/// that the last one published is the one kept), cached channels per tenant (a channel not cached yet is
/// not kept while the tenant has that many unexpired, as on one node). Returns {epoch, offset}.
pub(super) static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local e = redis.call('HGET', KEYS[1], 'e')
local d = redis.call('HGET', KEYS[1], 'd')
local off
if ARGV[4] ~= '' then
  off = tonumber(ARGV[4])
  if e ~= ARGV[3] or d ~= '1' then
    redis.call('DEL', KEYS[2])
    e = ARGV[3]
    redis.call('HSET', KEYS[1], 'e', e, 'd', '1', 't', 0)
  end
  if off > tonumber(redis.call('HGET', KEYS[1], 't') or '0') then
    redis.call('HSET', KEYS[1], 't', ARGV[4])
  end
else
  if not e or d == '1' then
    redis.call('DEL', KEYS[2])
    e = ARGV[3]
    redis.call('HSET', KEYS[1], 'e', e, 'd', '0', 't', 0)
  end
  off = redis.call('HINCRBY', KEYS[1], 't', 1)
end
local pos = string.format('%d', off)
local msg = ARGV[1] .. e .. ' ' .. pos .. '\n' .. ARGV[2]
local keep = tonumber(ARGV[5])
if keep > 0 then
  redis.call('ZADD', KEYS[2], pos, msg)
  local n = redis.call('ZCARD', KEYS[2])
  if n > keep then
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, n - keep - 1)
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
if ARGV[8] ~= '' then
  local now = redis.call('TIME')
  local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', ms)
  if redis.call('ZSCORE', KEYS[5], KEYS[4]) or redis.call('ZCARD', KEYS[5]) < tonumber(ARGV[9]) then
    redis.call('SET', KEYS[4], msg, 'PX', ARGV[8])
    redis.call('ZADD', KEYS[5], ms + tonumber(ARGV[8]), KEYS[4])
    redis.call('PEXPIRE', KEYS[5], ARGV[8])
  end
end
redis.call('PUBLISH', KEYS[3], msg)
return {e, pos}
"#,
    )
});

/// A positioned join's read: the pipe's epoch and top (made from ARGV when the pipe has none yet), and
/// the window's messages after the client's offset; with a marker head, the join's marker PUBLISHed on
/// the pipe's channel at that top (`receiver.rs`: where the join takes its place in the channel's order).
/// KEYS: meta, window, channel. ARGV: epoch, top, durable "1"/"0", after ("" for none), most entries,
/// meta ttl ms, marker head ("" for no marker), marker body. Returns {epoch, top, {messages...}}.
pub(super) static JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  e = ARGV[1]
  redis.call('HSET', KEYS[1], 'e', e, 't', ARGV[2], 'd', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
end
local t = redis.call('HGET', KEYS[1], 't') or '0'
local entries = {}
if ARGV[4] ~= '' then
  entries = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[4], '+inf', 'LIMIT', 0, ARGV[5])
end
if ARGV[7] ~= '' then
  redis.call('PUBLISH', KEYS[3], ARGV[7] .. e .. ' ' .. t .. '\n' .. ARGV[8])
end
return {e, t, entries}
"#,
    )
});

/// A sync: the pipe's epoch and top (`-` and 0 when it has no numbering yet) PUBLISHed as a marker on its
/// channel, for a node that just subscribed it (`receiver::sync`). KEYS: meta, channel. ARGV: marker head,
/// marker body.
pub(super) static SYNC: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local e = redis.call('HGET', KEYS[1], 'e')
local t = redis.call('HGET', KEYS[1], 't') or '0'
if not e then
  e = '-'
  t = '0'
end
redis.call('PUBLISH', KEYS[2], ARGV[1] .. e .. ' ' .. t .. '\n' .. ARGV[2])
return 1
"#,
    )
});

/// The lease: renewed only by its holder. KEYS: lease. ARGV: token, ttl ms. Returns 1 when renewed, 2 when
/// taken again after Redis lost it (or survivors found it expired: presence is written again), 0 when
/// another node holds it.
pub(super) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"#,
    )
});

/// Release the lease if it is still ours. KEYS: lease. ARGV: token.
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
    )
});
