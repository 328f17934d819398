//! What the Pusher protocol needs beyond the pipe registry: presence channels' members (a user counted
//! once, however many connections they have), signed-in users' connections, each connection's socket id
//! (so that an HTTP API `socket_id` names only a live connection of its own tenant), and the last event of
//! `cache-` channels. Sharded std mutexes, never held across an await; the rules (who may join, who is
//! told what) are `commands::channels`', which calls in here with closures run under the lock so that a
//! member list and the announcements that follow it are in one order for everybody.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::registry::lock;
use super::{Frame, Outbox};
use crate::ids::{ConnId, DevId, PipeName};

const SHARDS: usize = 16;

/// How long a `cache-` channel keeps its last event (Pusher: 30 minutes).
pub const CACHE_TTL: Duration = Duration::from_secs(30 * 60);

/// One presence member: a user, with the connections through which they are subscribed.
#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: Arc<str>,
    pub user_info: Option<Value>,
    conns: Vec<ConnId>,
}

/// A presence channel's members, in the order they joined.
#[derive(Debug, Default)]
struct Presence {
    members: Vec<Member>,
}

/// Why a presence join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceFull;

type Key = (DevId, PipeName);
type UserKey = (DevId, Arc<str>);

struct Sharded<K, V> {
    shards: Box<[Mutex<HashMap<K, V>>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl<K: Hash + Eq, V> Sharded<K, V> {
    fn new() -> Self {
        Sharded {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
        }
    }

    fn shard(&self, key: &K) -> &Mutex<HashMap<K, V>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }
}

/// A tenant's cached events: channel → (frame, when).
#[derive(Default)]
struct TenantCache {
    events: HashMap<PipeName, (Frame, Instant)>,
}

pub struct PusherState {
    presence: Sharded<Key, Presence>,
    users: Sharded<UserKey, Vec<Outbox>>,
    sockets: Mutex<HashMap<ConnId, (DevId, Box<str>)>>,
    cache: Mutex<HashMap<DevId, TenantCache>>,
}

impl Default for PusherState {
    fn default() -> Self {
        PusherState {
            presence: Sharded::new(),
            users: Sharded::new(),
            sockets: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl PusherState {
    /// Adds `conn` to the presence channel `key` as `user_id`; `joined` runs under the channel's lock with
    /// the members after the join and whether the user is new to the channel. Refused (nothing changes)
    /// when the user is new and the channel already has `cap` members.
    pub fn join(
        &self,
        key: &Key,
        conn: ConnId,
        user_id: &str,
        user_info: Option<Value>,
        cap: usize,
        joined: impl FnOnce(&[Member], bool),
    ) -> Result<(), PresenceFull> {
        let mut shard = lock(self.presence.shard(key));
        let channel = shard.entry(key.clone()).or_default();
        let first = match channel.members.iter_mut().find(|m| &*m.user_id == user_id) {
            Some(m) => {
                if !m.conns.contains(&conn) {
                    m.conns.push(conn);
                }
                false
            }
            None => {
                if channel.members.len() >= cap {
                    if channel.members.is_empty() {
                        shard.remove(key);
                    }
                    return Err(PresenceFull);
                }
                channel.members.push(Member {
                    user_id: user_id.into(),
                    user_info,
                    conns: vec![conn],
                });
                true
            }
        };
        joined(&channel.members, first);
        Ok(())
    }

    /// Takes `conn` out of the presence channel `key`; `left` runs under the channel's lock with the user
    /// whose last connection it was there.
    pub fn leave(&self, key: &Key, conn: ConnId, left: impl FnOnce(&str)) {
        let mut shard = lock(self.presence.shard(key));
        let Some(channel) = shard.get_mut(key) else {
            return;
        };
        let Some(i) = channel.members.iter().position(|m| m.conns.contains(&conn)) else {
            return;
        };
        let member = &mut channel.members[i];
        member.conns.retain(|c| *c != conn);
        if member.conns.is_empty() {
            let gone = channel.members.remove(i);
            left(&gone.user_id);
        }
        if channel.members.is_empty() {
            shard.remove(key);
        }
    }

    /// The members of a presence channel (empty when nobody is there).
    pub fn members(&self, key: &Key) -> Vec<Member> {
        lock(self.presence.shard(key))
            .get(key)
            .map(|c| c.members.clone())
            .unwrap_or_default()
    }

    /// How many users a presence channel has.
    pub fn user_count(&self, key: &Key) -> usize {
        lock(self.presence.shard(key))
            .get(key)
            .map_or(0, |c| c.members.len())
    }

    /// Links a connection to the user it signed in as.
    pub fn sign_in(&self, dev_id: DevId, user_id: &str, outbox: Outbox) {
        let key = (dev_id, Arc::from(user_id));
        let mut shard = lock(self.users.shard(&key));
        let conns = shard.entry(key).or_default();
        if !conns.iter().any(|o| o.conn() == outbox.conn()) {
            conns.push(outbox);
        }
    }

    pub fn sign_out(&self, dev_id: DevId, user_id: &str, conn: ConnId) {
        let key = (dev_id, Arc::from(user_id));
        let mut shard = lock(self.users.shard(&key));
        if let Entry::Occupied(mut e) = shard.entry(key) {
            e.get_mut().retain(|o| o.conn() != conn);
            if e.get().is_empty() {
                e.remove();
            }
        }
    }

    /// The connections signed in as `user_id`.
    pub fn user_connections(&self, dev_id: DevId, user_id: &str) -> Vec<Outbox> {
        let key = (dev_id, Arc::from(user_id));
        lock(self.users.shard(&key))
            .get(&key)
            .cloned()
            .unwrap_or_default()
    }

    /// Records a Pusher connection's socket id.
    pub fn add_socket(&self, conn: ConnId, dev_id: DevId, socket_id: &str) {
        lock(&self.sockets).insert(conn, (dev_id, socket_id.into()));
    }

    pub fn remove_socket(&self, conn: ConnId) {
        lock(&self.sockets).remove(&conn);
    }

    /// The live connection of `dev_id` whose socket id is `socket_id` (`<conn>.<random>`), if any.
    pub fn socket(&self, dev_id: DevId, socket_id: &str) -> Option<ConnId> {
        let conn = ConnId(socket_id.split_once('.')?.0.parse().ok()?);
        let sockets = lock(&self.sockets);
        let (owner, id) = sockets.get(&conn)?;
        (*owner == dev_id && **id == *socket_id).then_some(conn)
    }

    /// Keeps `frame` as the last event of the cache channel `key`. A tenant keeps at most `per_tenant`
    /// channels: expired ones go first, then the oldest.
    pub fn keep_cached(&self, key: &Key, frame: Frame, per_tenant: usize) {
        if per_tenant == 0 {
            return;
        }
        let now = Instant::now();
        let mut cache = lock(&self.cache);
        let tenant = cache.entry(key.0).or_default();
        if !tenant.events.contains_key(&key.1) && tenant.events.len() >= per_tenant {
            tenant
                .events
                .retain(|_, (_, at)| now.duration_since(*at) < CACHE_TTL);
            if tenant.events.len() >= per_tenant {
                let oldest = tenant
                    .events
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    tenant.events.remove(&oldest);
                }
            }
        }
        tenant.events.insert(key.1.clone(), (frame, now));
    }

    /// The last event of a cache channel, unless it expired.
    pub fn cached(&self, key: &Key) -> Option<Frame> {
        let cache = lock(&self.cache);
        let (frame, at) = cache.get(&key.0)?.events.get(&key.1)?;
        (at.elapsed() < CACHE_TTL).then(|| frame.clone())
    }

    /// Cache entries held (all tenants).
    pub fn cached_channels(&self) -> usize {
        lock(&self.cache).values().map(|t| t.events.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::outgoing::pusher_frame;
    use crate::pusher::ServerFrame;

    fn key(name: &str) -> Key {
        (DevId(1), PipeName::pusher_only(name))
    }

    #[test]
    fn a_user_joins_once_and_leaves_with_their_last_connection() {
        let s = PusherState::default();
        let k = key("presence-a");
        let mut firsts = Vec::new();
        for conn in [1, 2] {
            s.join(&k, ConnId(conn), "u1", None, 10, |members, first| {
                assert_eq!(members.len(), 1);
                firsts.push(first);
            })
            .unwrap();
        }
        assert_eq!(firsts, [true, false]);
        let mut left = Vec::new();
        s.leave(&k, ConnId(1), |u| left.push(u.to_owned()));
        assert!(left.is_empty());
        assert_eq!(s.user_count(&k), 1);
        s.leave(&k, ConnId(2), |u| left.push(u.to_owned()));
        assert_eq!(left, ["u1"]);
        assert_eq!(s.user_count(&k), 0);
    }

    #[test]
    fn a_full_channel_refuses_new_users_only() {
        let s = PusherState::default();
        let k = key("presence-a");
        s.join(&k, ConnId(1), "u1", None, 1, |_, _| {}).unwrap();
        assert_eq!(
            s.join(&k, ConnId(2), "u2", None, 1, |_, _| {}),
            Err(PresenceFull)
        );
        assert!(s.join(&k, ConnId(3), "u1", None, 1, |_, _| {}).is_ok());
        assert_eq!(s.members(&k).len(), 1);
    }

    #[test]
    fn socket_ids_name_live_connections_of_their_tenant_only() {
        let s = PusherState::default();
        s.add_socket(ConnId(7), DevId(1), "7.12345");
        assert_eq!(s.socket(DevId(1), "7.12345"), Some(ConnId(7)));
        assert_eq!(s.socket(DevId(2), "7.12345"), None);
        assert_eq!(s.socket(DevId(1), "7.12346"), None);
        assert_eq!(s.socket(DevId(1), "nonsense"), None);
        s.remove_socket(ConnId(7));
        assert_eq!(s.socket(DevId(1), "7.12345"), None);
    }

    #[test]
    fn the_cache_is_bounded_per_tenant() {
        let s = PusherState::default();
        let f = pusher_frame(&ServerFrame::Ping);
        for name in ["cache-a", "cache-b", "cache-c"] {
            s.keep_cached(&key(name), f.clone(), 2);
        }
        assert_eq!(s.cached_channels(), 2);
        assert!(s.cached(&key("cache-a")).is_none(), "the oldest went");
        assert!(s.cached(&key("cache-c")).is_some());
        s.keep_cached(&key("cache-c"), f.clone(), 2);
        assert_eq!(s.cached_channels(), 2);
    }
}
