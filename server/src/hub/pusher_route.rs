//! The Pusher protocol across a cluster's nodes (`crate::cluster::pusher`): what one node keeps in
//! `hub::pusher` (presence members, cached events, subscriber counts, signed-in users) kept or said where
//! every node reads it. One node has none of it (`Hub::pusher_route` is `None`): `hub::pusher` is the
//! whole truth there. The rules (who may join, who is told what) stay `commands::channels`'.

use serde_json::Value;

use super::broker::Pending;
use super::Frame;
use crate::ids::{ConnId, DevId, PipeName};

/// One user of a presence channel, as every node reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceUser {
    pub user_id: String,
    pub user_info: Option<Value>,
}

/// A connection joining a presence channel.
#[derive(Debug, Clone)]
pub struct PresenceJoin {
    pub dev_id: DevId,
    pub pipe: PipeName,
    pub conn: ConnId,
    pub user: PresenceUser,
    /// The channel holds at most this many users.
    pub cap: usize,
    /// `pusher_internal:member_added`, announced to every node's subscribers but `conn` when the user is
    /// new to the channel cluster-wide.
    pub added: String,
    /// `pusher_internal:member_removed`, announced when the user's last connection anywhere leaves
    /// (by whichever node removes it: this one, or a survivor of its death).
    pub removed: String,
}

/// What a presence join did.
#[derive(Debug, Clone, PartialEq)]
pub enum Joined {
    /// The channel is full (of other users); nothing changed.
    Full,
    /// Joined: the channel's users after the join, and whether the user was new to it.
    Members {
        users: Vec<PresenceUser>,
        first: bool,
    },
}

pub trait PusherRoute: Send + Sync {
    /// Sends a Pusher-only frame (a client event) to the channel's subscribers on every node, but
    /// `except` on this one.
    fn relay(&self, dev_id: DevId, pipe: &PipeName, except: ConnId, json: String) -> Pending<()>;

    /// Joins a presence channel cluster-wide (the cap, the announcement: see [`PresenceJoin`]).
    fn join(&self, join: PresenceJoin) -> Pending<Joined>;

    /// The connection left a presence channel: removed cluster-wide, its user's leave announced when it
    /// was their last connection anywhere. Not waited for; written again until Redis takes it.
    fn leave(&self, dev_id: DevId, pipe: &PipeName, conn: ConnId);

    /// A presence channel's users, cluster-wide.
    fn users(&self, dev_id: DevId, pipe: &PipeName) -> Pending<Vec<String>>;

    /// How many users each presence channel has, cluster-wide.
    fn user_counts(&self, dev_id: DevId, pipes: Vec<PipeName>) -> Pending<Vec<u64>>;

    /// A `cache-` channel's last event, unless it expired.
    fn cached(&self, dev_id: DevId, pipe: &PipeName) -> Pending<Option<Frame>>;

    /// This node's Pusher subscriptions of the channel changed by `delta`.
    fn subscribed(&self, dev_id: DevId, pipe: &PipeName, delta: i64) -> Pending<()>;

    /// The other nodes' Pusher subscriptions of the tenant's channels (this node's are its registry's).
    fn subscriptions(&self, dev_id: DevId) -> Pending<Vec<(PipeName, u64)>>;

    /// Closes the connections signed in as `user_id` on every other node (`terminate_connections`).
    fn terminate(&self, dev_id: DevId, user_id: &str) -> Pending<()>;
}
