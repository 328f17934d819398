//! What the Pusher HTTP API does (`/apps/{id}/...`, after its signature is checked by the door): events
//! published through `pipes_messages` like a CometQL INSERT (the same budget, history where a bridged pipe
//! keeps it), and the channels' state read from the hub.

use super::channels::channel_key;
use super::pipes_messages::{self, Message};
use super::{Caller, CommandError, Ctx};
use crate::hub::outgoing::pusher_channel;
use crate::hub::CloseReason;
use std::collections::BTreeMap;

use crate::ids::{DevId, EventName, PipeName};
use crate::pusher::{Channel, ChannelKind, SocketId};

/// One event to one or more channels (`POST /events`, an item of `/batch_events`), validated.
#[derive(Debug, Clone)]
pub(crate) struct Trigger {
    pub channels: Vec<Channel>,
    pub event: EventName,
    pub data: String,
    /// The connection that must not get it (`toOthers()`); an unknown one excludes nobody, as on Pusher.
    pub socket_id: Option<SocketId>,
}

/// Publishes every event to every channel it names, as one statement: all paid for and delivered, or
/// none (a batch over the budget publishes nothing).
pub(crate) async fn trigger(
    ctx: &Ctx,
    caller: Caller,
    triggers: Vec<Trigger>,
) -> Result<(), CommandError> {
    let mut messages = Vec::new();
    for t in triggers {
        let except = t
            .socket_id
            .as_ref()
            .and_then(|s| ctx.hub.pusher().socket(caller.dev_id, s.as_str()));
        for channel in &t.channels {
            messages.push(Message {
                pipe: channel_key(channel),
                event: t.event.clone(),
                text: t.data.clone(),
                sender: None,
                except,
                socket: t.socket_id.as_ref().map(|s| s.as_str().into()),
            });
        }
    }
    pipes_messages::publish_all(ctx, caller, messages).await?;
    Ok(())
}

/// An occupied channel as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChannelState {
    pub name: String,
    /// Connections subscribed (Pusher and comet alike on a bridged pipe).
    pub subscription_count: usize,
    /// Users on a presence channel.
    pub user_count: Option<usize>,
}

/// The tenant's occupied channels whose name starts with `prefix` (a cluster: this node's subscribers
/// and the other nodes' Pusher subscribers, users cluster-wide).
pub(crate) async fn channels(
    ctx: &Ctx,
    dev_id: DevId,
    prefix: &str,
) -> Result<Vec<ChannelState>, CommandError> {
    let registry = ctx.hub.registry();
    let mut counts: BTreeMap<PipeName, usize> = registry.pipes_of(dev_id, "").into_iter().collect();
    if let Some(route) = ctx.hub.pusher_route() {
        for (pipe, n) in route.subscriptions(dev_id).await? {
            *counts.entry(pipe).or_default() += n as usize;
        }
    }
    let mut out = Vec::new();
    let mut presence = Vec::new();
    for (pipe, count) in counts {
        let name = pusher_channel(&pipe);
        if !name.starts_with(prefix) || count == 0 {
            continue;
        }
        let user_count = match Channel::parse(name) {
            Ok(c) if c.kind() == ChannelKind::Presence => {
                presence.push((out.len(), channel_key(&c)));
                Some(ctx.hub.pusher().user_count(&(dev_id, channel_key(&c))))
            }
            _ => None,
        };
        out.push(ChannelState {
            name: name.to_owned(),
            subscription_count: count,
            user_count,
        });
    }
    if let Some(route) = ctx.hub.pusher_route() {
        let pipes = presence.iter().map(|(_, k)| k.clone()).collect();
        let users = route.user_counts(dev_id, pipes).await?;
        for ((i, _), n) in presence.iter().zip(users) {
            out[*i].user_count = Some(n as usize);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// One channel's state (occupied or not).
pub(crate) async fn channel(
    ctx: &Ctx,
    dev_id: DevId,
    channel: &Channel,
) -> Result<ChannelState, CommandError> {
    let key = channel_key(channel);
    let presence = channel.kind() == ChannelKind::Presence;
    let mut subscription_count = ctx.hub.registry().subscribers(dev_id, &key);
    let mut user_count = presence.then(|| ctx.hub.pusher().user_count(&(dev_id, key.clone())));
    if let Some(route) = ctx.hub.pusher_route() {
        subscription_count += route
            .subscriptions(dev_id)
            .await?
            .into_iter()
            .filter(|(p, _)| *p == key)
            .map(|(_, n)| n as usize)
            .sum::<usize>();
        if presence {
            user_count = route
                .user_counts(dev_id, vec![key])
                .await?
                .first()
                .map(|n| *n as usize);
        }
    }
    Ok(ChannelState {
        name: channel.name().to_owned(),
        subscription_count,
        user_count,
    })
}

/// The user ids on a presence channel (one node: in the order they joined).
pub(crate) async fn users(
    ctx: &Ctx,
    dev_id: DevId,
    channel: &Channel,
) -> Result<Vec<String>, CommandError> {
    let key = channel_key(channel);
    if let Some(route) = ctx.hub.pusher_route() {
        let mut users = route.users(dev_id, &key).await?;
        users.sort();
        return Ok(users);
    }
    Ok(ctx
        .hub
        .pusher()
        .members(&(dev_id, key))
        .iter()
        .map(|m| m.user_id.to_string())
        .collect())
}

/// Closes every connection signed in as `user_id` (`terminateUserConnections`), on every node; how many
/// on this one. An error: the other nodes could not be told (this one's are closed).
pub(crate) async fn terminate(
    ctx: &Ctx,
    dev_id: DevId,
    user_id: &str,
) -> Result<usize, CommandError> {
    let conns = ctx.hub.pusher().user_connections(dev_id, user_id);
    let here = conns
        .iter()
        .filter(|o| o.close(CloseReason::Kicked))
        .count();
    if let Some(route) = ctx.hub.pusher_route() {
        route.terminate(dev_id, user_id).await?;
    }
    Ok(here)
}
