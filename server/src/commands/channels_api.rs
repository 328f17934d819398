//! What the Pusher HTTP API does (`/apps/{id}/...`, after its signature is checked by the door): events
//! published through `pipes_messages` like a CometQL INSERT (the same budget, history where a bridged pipe
//! keeps it), and the channels' state read from the hub.

use super::channels::channel_key;
use super::pipes_messages::{self, Message};
use super::{Caller, CommandError, Ctx};
use crate::hub::outgoing::pusher_channel;
use crate::hub::CloseReason;
use crate::ids::{DevId, EventName};
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

/// The tenant's occupied channels whose name starts with `prefix`.
pub(crate) fn channels(ctx: &Ctx, dev_id: DevId, prefix: &str) -> Vec<ChannelState> {
    let registry = ctx.hub.registry();
    let mut out = Vec::new();
    for (pipe, count) in registry.pipes_of(dev_id, "") {
        let name = pusher_channel(&pipe);
        if !name.starts_with(prefix) {
            continue;
        }
        let user_count = match Channel::parse(name) {
            Ok(c) if c.kind() == ChannelKind::Presence => {
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
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// One channel's state (occupied or not).
pub(crate) fn channel(ctx: &Ctx, dev_id: DevId, channel: &Channel) -> ChannelState {
    let key = channel_key(channel);
    let subscription_count = ctx.hub.registry().subscribers(dev_id, &key);
    let user_count = (channel.kind() == ChannelKind::Presence)
        .then(|| ctx.hub.pusher().user_count(&(dev_id, key)));
    ChannelState {
        name: channel.name().to_owned(),
        subscription_count,
        user_count,
    }
}

/// The user ids on a presence channel, in the order they joined.
pub(crate) fn users(ctx: &Ctx, dev_id: DevId, channel: &Channel) -> Vec<String> {
    ctx.hub
        .pusher()
        .members(&(dev_id, channel_key(channel)))
        .iter()
        .map(|m| m.user_id.to_string())
        .collect()
}

/// Closes every connection signed in as `user_id` (`terminateUserConnections`); how many.
pub(crate) fn terminate(ctx: &Ctx, dev_id: DevId, user_id: &str) -> usize {
    let conns = ctx.hub.pusher().user_connections(dev_id, user_id);
    conns
        .iter()
        .filter(|o| o.close(CloseReason::Kicked))
        .count()
}
