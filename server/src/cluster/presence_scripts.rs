//! The presence scripts: one per transition, each on one key's slot (the pipe's or the user's tag, with
//! the channel of the same tag), so that the change and its announcement are one atomic step and every
//! node sees the announcements in the order Redis made the changes. Each is idempotent: run twice, the
//! second changes and announces nothing (a node re-applies its truth after Redis was away; two survivors
//! may sweep one dead node).
//!
//! An announcement is `<head>p 0\n<time> - <event>\n<text>` (`wire.rs` kind `p`, body as `member.rs`).

use std::sync::LazyLock;

use redis::Script;

/// A connection is a member of a pipe. KEYS: members, channel. ARGV: field, member, head ("" for a pipe
/// that is not `track_`: nothing announced), time. Returns 1 when it was not a member yet.
pub(super) static JOIN_MEMBER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if new == 1 and ARGV[3] ~= '' then
  redis.call('PUBLISH', KEYS[2], ARGV[3] .. 'p 0\n' .. ARGV[4] .. ' - subscription\n' .. ARGV[2])
end
return new
"#,
    )
});

/// A connection is no longer a member. KEYS: members, channel. ARGV: field, head ("": not announced),
/// time. Returns 1 when it was a member (the leave is announced with the member it was).
pub(super) static LEAVE_MEMBER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
if ARGV[2] ~= '' then
  redis.call('PUBLISH', KEYS[2], ARGV[2] .. 'p 0\n' .. ARGV[3] .. ' - unsubscription\n' .. v)
end
return 1
"#,
    )
});

/// A node's count of a user's connections (0: none there). KEYS: users, the `user_status_<id>` channel,
/// the user's last offline time. ARGV: node, count, head, time. Returns 1 when the user came online
/// cluster-wide (no node had them), -1 when they went offline (this was the last node), 0 otherwise;
/// only then is it announced, and the time of going offline kept a day (users_time on every node reads
/// it before the database, where the transition's node writes it a little later).
pub(super) static USER_COUNT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local before = redis.call('EXISTS', KEYS[1])
if tonumber(ARGV[2]) > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local after = redis.call('EXISTS', KEYS[1])
if before == after then
  return 0
end
local ev = 'offline'
if after == 1 then
  ev = 'online'
end
redis.call('PUBLISH', KEYS[2], ARGV[3] .. 'p 0\n' .. ARGV[4] .. ' - ' .. ev .. '\n')
if after == 1 then
  redis.call('DEL', KEYS[3])
  return 1
end
redis.call('SET', KEYS[3], ARGV[4], 'EX', 86400)
return -1
"#,
    )
});

/// Every presence script, loaded before a pipeline uses them (EVALSHA in a pipeline does not load).
pub(super) fn all() -> [&'static Script; 3] {
    [&JOIN_MEMBER, &LEAVE_MEMBER, &USER_COUNT]
}
