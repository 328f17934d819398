//! Names in Redis: every key and channel of the cluster, and nothing else, knows how they are spelled.
//!
//! A pipe's keys and channel share the hash tag `{<dev_id>:<pipe>}`, so that on Redis Cluster they live in
//! one slot (the publish script touches the meta, the window and the channel at once) and sharded pub/sub
//! (`SSUBSCRIBE`) could carry the channel later. Per-node names (the lease, the probe, the control channel)
//! have no tag. Everything starts with the configured prefix, so that clusters (and tests) share a Redis.

use crate::ids::{DevId, PipeName, UserId};

/// The names of one cluster (one prefix).
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// `prefix` is validated by the config (1-64 of `A-Za-z0-9_.:-`).
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    fn tagged(&self, dev_id: DevId, pipe: &PipeName, suffix: char) -> String {
        format!(
            "{}:{{{}:{}}}:{suffix}",
            self.prefix,
            dev_id.0,
            pipe.as_str()
        )
    }

    /// The channel a pipe's messages travel on (one per (tenant, pipe), never one for all traffic).
    pub fn channel(&self, dev_id: DevId, pipe: &PipeName) -> String {
        self.tagged(dev_id, pipe, 'c')
    }

    /// A hash: `e` the pipe's epoch, `t` its last offset, `d` 1 when the offsets are the database's.
    pub fn meta(&self, dev_id: DevId, pipe: &PipeName) -> String {
        self.tagged(dev_id, pipe, 'm')
    }

    /// A sorted set: the pipe's newest wire messages, scored by offset (its recovery window).
    pub fn window(&self, dev_id: DevId, pipe: &PipeName) -> String {
        self.tagged(dev_id, pipe, 'w')
    }

    /// A string: a Pusher `cache-` channel's last event (a wire message), expiring 30 minutes after it.
    pub fn cached(&self, dev_id: DevId, pipe: &PipeName) -> String {
        self.tagged(dev_id, pipe, 'k')
    }

    /// A sorted set: the tenant's cached `cache-` channels (their `cached` keys), scored by when they
    /// expire (ms), so that the publish script keeps at most `cache_channels_per_tenant` of them.
    pub fn cached_index(&self, dev_id: DevId) -> String {
        format!("{}:cache:{{{}}}", self.prefix, dev_id.0)
    }

    /// A hash: a Pusher presence channel's users, user id -> the member's JSON (`{"user_id", "user_info"}`).
    pub fn pusher_users(&self, dev_id: DevId, pipe: &PipeName) -> String {
        self.tagged(dev_id, pipe, 'U')
    }

    /// A hash: a Pusher presence channel's connections, `<node>/<conn>` -> user id.
    pub fn pusher_conns(&self, dev_id: DevId, pipe: &PipeName) -> String {
        self.tagged(dev_id, pipe, 'C')
    }

    /// A hash: a Pusher presence channel's user id -> their connections' count, and `r:<user id>` -> the
    /// `member_removed` frame that announces their leave (whoever removes them need not know them).
    pub fn pusher_counts(&self, dev_id: DevId, pipe: &PipeName) -> String {
        self.tagged(dev_id, pipe, 'N')
    }

    /// A hash: a node's Pusher subscriptions, `<dev_id> <pipe>` -> how many of its connections.
    pub fn pusher_subscriptions(&self, node: &str) -> String {
        format!("{}:psubs:{node}", self.prefix)
    }

    fn user_tagged(&self, dev_id: DevId, user: UserId, suffix: char) -> String {
        format!("{}:{{u:{}:{}}}:{suffix}", self.prefix, dev_id.0, user.0)
    }

    /// The channel a user's private messages travel on; subscribed by the nodes that hold the user's
    /// connections.
    pub fn user_channel(&self, dev_id: DevId, user: UserId) -> String {
        self.user_tagged(dev_id, user, 'c')
    }

    /// A hash: node -> `d` (holds the user's connections, all draining), `q` (draining, and a message
    /// was queued meanwhile), `r` (one of them past its drain). Same tag as the user's channel.
    pub fn holders(&self, dev_id: DevId, user: UserId) -> String {
        self.user_tagged(dev_id, user, 'h')
    }

    /// The channel every node listens to for what concerns all of them (revocations).
    pub fn control_all(&self) -> String {
        format!("{}:ctl", self.prefix)
    }

    /// The last number given to a revocation on the control channel.
    pub fn control_seq(&self) -> String {
        format!("{}:ctl:n", self.prefix)
    }

    /// A sorted set: the newest revocations, scored by number, for nodes that missed them.
    pub fn control_window(&self) -> String {
        format!("{}:ctl:w", self.prefix)
    }

    /// A hash: the tenant's publish token bucket (`v` tokens at `ts` ms), shared by every node.
    pub fn publish_bucket(&self, dev_id: DevId) -> String {
        format!("{}:lim:{{{}}}:p", self.prefix, dev_id.0)
    }

    /// A hash: the tenant's open WebSocket connections per node (`c/<node>`, `t/<node>` its expiry).
    pub fn connection_counts(&self, dev_id: DevId) -> String {
        format!("{}:lim:{{{}}}:c", self.prefix, dev_id.0)
    }

    /// A hash: the pipe's members cluster-wide, field `<node>/<conn>` -> the member (`member.rs`).
    pub fn members(&self, dev_id: DevId, pipe: &PipeName) -> String {
        self.tagged(dev_id, pipe, 'p')
    }

    /// A hash: node -> the user's live connections there, under the tag of the user's `user_status_<id>`
    /// pipe, so that the presence script changes it and publishes on that pipe's channel in one slot.
    pub fn users(&self, dev_id: DevId, status_pipe: &PipeName) -> String {
        self.tagged(dev_id, status_pipe, 'u')
    }

    /// A string: when the user last went offline cluster-wide (unix seconds), kept a day beside
    /// [`Keys::users`] (same tag): the node that made the transition records it in users_time through its
    /// own storage writer, which other nodes' reads cannot see until it is committed.
    pub fn last_offline(&self, dev_id: DevId, status_pipe: &PipeName) -> String {
        self.tagged(dev_id, status_pipe, 't')
    }

    /// A set: what a node wrote to the shared presence (`member.rs`, `Held`), so that a dead node's
    /// members and users can be removed by whoever survives it.
    pub fn held(&self, node: &str) -> String {
        format!("{}:held:{node}", self.prefix)
    }

    /// A set: the nodes that have written presence (the survivors look for dead ones there).
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// Taken (SET NX, with a TTL) by the one node that removes a dead node's presence.
    pub fn sweep_lock(&self, node: &str) -> String {
        format!("{}:sweep:{node}", self.prefix)
    }

    /// The key a live node holds (with a TTL its heartbeat renews), so that no two nodes share a name.
    pub fn lease(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    /// The channel a node publishes to itself, to learn that its pub/sub connection still delivers.
    pub fn probe(&self, node: &str) -> String {
        format!("{}:probe:{node}", self.prefix)
    }

    /// Reserved for what is said to one node (presence, revocation: later slices).
    pub fn control(&self, node: &str) -> String {
        format!("{}:ctl:{node}", self.prefix)
    }

    /// The tenant and user a user channel is of; `None` for any other name.
    pub fn parse_user_channel(&self, channel: &str) -> Option<(DevId, UserId)> {
        let inner = channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{u:")?
            .strip_suffix("}:c")?;
        let (dev, user) = inner.split_once(':')?;
        let number = |s: &str| -> Option<u64> {
            if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        Some((DevId(number(dev)?), UserId(number(user)?)))
    }

    /// The tenant and pipe a pipe channel is of; `None` for any other name (a probe, or garbage).
    pub fn parse_channel<'a>(&self, channel: &'a str) -> Option<(DevId, &'a str)> {
        let rest = channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{")?;
        let inner = rest.strip_suffix("}:c")?;
        let (dev, pipe) = inner.split_once(':')?;
        if dev.is_empty() || dev.len() > 20 || !dev.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((DevId(dev.parse().ok()?), pipe))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe(s: &str) -> PipeName {
        PipeName::parse_command(s).unwrap()
    }

    #[test]
    fn a_pipe_s_names_share_one_hash_tag() {
        let k = Keys::new("hx:eu");
        let p = pipe("web_chat");
        assert_eq!(k.channel(DevId(7), &p), "hx:eu:{7:web_chat}:c");
        assert_eq!(k.meta(DevId(7), &p), "hx:eu:{7:web_chat}:m");
        assert_eq!(k.window(DevId(7), &p), "hx:eu:{7:web_chat}:w");
        assert_eq!(k.members(DevId(7), &p), "hx:eu:{7:web_chat}:p");
        let status = pipe("user_status_42");
        assert_eq!(k.users(DevId(7), &status), "hx:eu:{7:user_status_42}:u");
        assert_eq!(
            k.last_offline(DevId(7), &status),
            "hx:eu:{7:user_status_42}:t"
        );
        assert_eq!(k.channel(DevId(7), &status), "hx:eu:{7:user_status_42}:c");
        assert_eq!(k.held("node-a"), "hx:eu:held:node-a");
        assert_eq!(k.nodes(), "hx:eu:nodes");
        assert_eq!(k.sweep_lock("node-a"), "hx:eu:sweep:node-a");
        assert_eq!(k.lease("node-a"), "hx:eu:node:node-a");
        assert_eq!(k.probe("node-a"), "hx:eu:probe:node-a");
        assert_eq!(k.control("node-a"), "hx:eu:ctl:node-a");
    }

    #[test]
    fn channels_parse_back_and_nothing_else_does() {
        let k = Keys::new("p");
        assert_eq!(
            k.parse_channel("p:{12:web_a-b}:c"),
            Some((DevId(12), "web_a-b"))
        );
        for bad in [
            "p:probe:n",
            "q:{12:web}:c",
            "p:{12:web}:m",
            "p:{x:web}:c",
            "p:{:web}:c",
            "p:{123456789012345678901:web}:c",
            "p:{99999999999999999999:web}:c",
            "p{1:web}:c",
            "",
        ] {
            assert_eq!(k.parse_channel(bad), None, "{bad}");
        }
        assert_eq!(k.parse_channel("p:{u:12:5}:c"), None);
        assert_eq!(k.user_channel(DevId(12), UserId(5)), "p:{u:12:5}:c");
        assert_eq!(k.holders(DevId(12), UserId(5)), "p:{u:12:5}:h");
        assert_eq!(
            k.parse_user_channel("p:{u:12:5}:c"),
            Some((DevId(12), UserId(5)))
        );
        for bad in [
            "p:{u:12:5}:h",
            "p:{12:web}:c",
            "p:{u:12}:c",
            "p:{u:x:5}:c",
            "pq:{u:1:5}:c",
        ] {
            assert_eq!(k.parse_user_channel(bad), None, "{bad}");
        }
        // Another cluster's prefix that merely starts with ours is not ours.
        assert_eq!(k.parse_channel("pq:{1:web}:c"), None);
    }
}
