//! The Pusher channels' rules on a cluster (`Hub::pusher_route`): the same answers as `channels.rs` gives
//! on one node, with the state every node shares (`crate::cluster::pusher`). A subscription is answered
//! once the channel's messages reach this node (`Hub::listen`, as a comet subscription is); a presence
//! join, its member list and its `member_added` are one step in Redis, the cap cluster-wide; client
//! events are relayed to every node. Redis unavailable: a presence join and a client event are refused
//! with `pusher:error` 4200 (the connection stays), as a publish is refused with 503; a plain
//! subscription is kept (like a comet one) and gets what reaches the node once Redis is back.

use super::channels::Refusal;
use super::Ctx;
use crate::hub::outgoing::pusher_bytes;
use crate::hub::{BrokerError, Joined, Outbox, PresenceJoin, PresenceUser, PusherRoute};
use crate::ids::{DevId, PipeName};
use crate::pusher::{ErrorCode, Member, MemberInfo, ServerFrame};

/// The refusal of a request the cluster could not take.
pub(super) fn unavailable(e: BrokerError) -> Refusal {
    tracing::warn!(error = %e, "a Pusher request refused: the cluster is unavailable");
    Refusal {
        code: Some(ErrorCode::GenericReconnect),
        message: format!("{e}").into(),
        close: false,
    }
}

/// Subscribes `outbox` to the channel `key` named `name` and answers `subscription_succeeded` (with the
/// cluster's members on a presence channel, joined as `member`).
pub(super) async fn subscribe(
    ctx: &Ctx,
    route: &dyn PusherRoute,
    dev_id: DevId,
    outbox: &Outbox,
    name: &str,
    key: &PipeName,
    member: Option<&Member>,
) -> Result<(), Refusal> {
    let registry = ctx.hub.registry();
    registry.subscribe(dev_id, key, outbox.clone());
    let listening = ctx.hub.listen(dev_id, key).await;
    let Some(member) = member else {
        if let Err(e) = listening {
            tracing::warn!(error = %e, "subscribed while the cluster is unavailable");
        }
        // Counted before the answer: whoever learns of the subscription finds it on every node.
        count(route, dev_id, key, 1).await;
        outbox.push(&pusher_bytes(&ServerFrame::SubscriptionSucceeded {
            channel: name,
            members: None,
        }));
        return Ok(());
    };
    let conn = outbox.conn();
    let refused = |r: Refusal| {
        registry.unsubscribe(dev_id, key, conn);
        Err(r)
    };
    if let Err(e) = listening {
        return refused(unavailable(e));
    }
    let cap = ctx.config.pusher.presence_max_members;
    let info = MemberInfo {
        user_id: &member.user_id,
        user_info: member.user_info.as_ref(),
    };
    let join = PresenceJoin {
        dev_id,
        pipe: key.clone(),
        conn,
        user: PresenceUser {
            user_id: member.user_id.clone(),
            user_info: member.user_info.clone(),
        },
        cap,
        added: ServerFrame::MemberAdded {
            channel: name,
            member: info,
        }
        .encode_string(),
        removed: ServerFrame::MemberRemoved {
            channel: name,
            user_id: &member.user_id,
        }
        .encode_string(),
    };
    match route.join(join).await {
        Err(e) => refused(unavailable(e)),
        Ok(Joined::Full) => refused(Refusal::request(format!(
            "Presence channel {name} is full ({cap} members)"
        ))),
        Ok(Joined::Members { users, .. }) => {
            let list: Vec<MemberInfo<'_>> = users
                .iter()
                .map(|u| MemberInfo {
                    user_id: &u.user_id,
                    user_info: u.user_info.as_ref(),
                })
                .collect();
            count(route, dev_id, key, 1).await;
            outbox.push(&pusher_bytes(&ServerFrame::SubscriptionSucceeded {
                channel: name,
                members: Some(&list),
            }));
            Ok(())
        }
    }
}

/// Counts the subscription for the other nodes' HTTP API (a count that fails is only logged: the
/// subscription itself works).
async fn count(route: &dyn PusherRoute, dev_id: DevId, key: &PipeName, delta: i64) {
    if let Err(e) = route.subscribed(dev_id, key, delta).await {
        tracing::warn!(error = %e, "Pusher subscriber count not written");
    }
}

/// The connection left the channel `key` (a presence member when `presence`): counted and announced
/// cluster-wide, without waiting.
pub(super) fn leave(
    route: &dyn PusherRoute,
    dev_id: DevId,
    key: &PipeName,
    outbox: &Outbox,
    presence: bool,
) {
    if presence {
        route.leave(dev_id, key, outbox.conn());
    }
    let counted = route.subscribed(dev_id, key, -1);
    tokio::spawn(async move {
        if let Err(e) = counted.await {
            tracing::warn!(error = %e, "Pusher subscriber count not written");
        }
    });
}

/// The cached event of a `cache-` channel, or `cache_miss`, to a new subscriber.
pub(super) async fn send_cached(
    route: &dyn PusherRoute,
    dev_id: DevId,
    outbox: &Outbox,
    name: &str,
    key: &PipeName,
) {
    match route.cached(dev_id, key).await {
        Ok(Some(frame)) => {
            outbox.push(&frame.wire(crate::hub::Era::Pusher));
        }
        Ok(None) => {
            outbox.push(&pusher_bytes(&ServerFrame::CacheMiss { channel: name }));
        }
        Err(e) => {
            // As on Pusher when the cache cannot be read: the client is told there is none.
            tracing::warn!(error = %e, "cached event not read");
            outbox.push(&pusher_bytes(&ServerFrame::CacheMiss { channel: name }));
        }
    }
}

/// A client event to the channel's other subscribers on every node.
pub(super) async fn relay(
    route: &dyn PusherRoute,
    dev_id: DevId,
    key: &PipeName,
    outbox: &Outbox,
    frame: &ServerFrame<'_>,
) -> Result<(), Refusal> {
    route
        .relay(dev_id, key, outbox.conn(), frame.encode_string())
        .await
        .map_err(unavailable)
}
