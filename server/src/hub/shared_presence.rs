//! Presence that several nodes share (a cluster's, `crate::cluster::presence`): who is in which pipe and
//! which users are online, kept where every node reads it, and announced once for the whole cluster. One
//! node has none of it: the registry is the whole truth there, and `commands::presence` announces itself.

use super::broker::Pending;
use crate::ids::{ConnId, DevId, PipeName, UserId};

/// One member of a pipe as every node reads it (what `users_in_pipes` and `track_pipe_users` show).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The node that holds the connection, and the connection's id there: members sort by these.
    pub node: String,
    pub conn: u64,
    pub user_id: UserId,
    pub uuid: String,
    pub ip: String,
    pub user_agent: String,
    pub origin: String,
    pub language: String,
}

/// What a cluster's presence does. The `*_changed` calls only say *what* changed: the cluster reads the
/// registry's truth when it writes (so calls may be merged, and a write that failed is made again from
/// the registry), and resolves once Redis has it.
pub trait SharedPresence: Send + Sync {
    /// The connection joined or left the pipe (the registry already says which).
    fn member_changed(&self, dev_id: DevId, pipe: &PipeName, conn: ConnId) -> Pending<()>;

    /// The user's number of live connections on this node changed.
    fn user_changed(&self, dev_id: DevId, user: UserId) -> Pending<()>;

    /// Members of each pipe, cluster-wide.
    fn counts(&self, dev_id: DevId, pipes: Vec<PipeName>) -> Pending<Vec<u64>>;

    /// At most `max` members of the pipe, cluster-wide, sorted by (node, connection).
    fn members(&self, dev_id: DevId, pipe: PipeName, max: usize) -> Pending<Vec<Member>>;

    /// The user's users_time as the shared presence knows it: `Some(0)` with a live connection on some
    /// node, the time they went offline when it is recent, `None` when only the database can tell.
    fn last_online(&self, dev_id: DevId, user: UserId) -> Pending<Option<i64>>;

    /// Resolves once every change this node made before the call is written (what a test waits for
    /// before it reads another node).
    fn written(&self) -> Pending<()>;
}
