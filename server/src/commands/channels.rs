//! The Pusher protocol's channels: what a Pusher connection may subscribe to and send, and what it is told.
//! The WebSocket door (`/app/{key}`) holds a [`PusherConn`] per connection and calls in here with each
//! frame it read; the HTTP API (`/apps/{id}/...`) publishes through `pipes_messages` like CometQL and reads
//! the channels' state here (`channels_api`).
//!
//! The bridge: a public channel whose name is a valid pipe name is that pipe, the same registry entry, so
//! a CometQL INSERT reaches Pusher subscribers and an HTTP API event reaches comet pages. Every other
//! channel (private, presence, encrypted, user channels, public names no pipe can have) lives under a key
//! no comet client or CometQL statement can name (`hub::outgoing::PUSHER_ONLY`): a comet subscription
//! needs no signature, so a private channel shared with a pipe would be readable by anyone.
//!
//! One node: presence members, sign-ins, client events and cached events are this node's
//! (`hub::pusher`), their announcements delivered locally (`Hub::publish_local`). A cluster: the same rules
//! with the state every node shares (`channels_cluster`). Events published through `pipes_messages`
//! (CometQL, the HTTP API) reach every node like any publish.

use std::borrow::Cow;
use std::sync::Arc;

use tokio::time::{Duration, Instant};

use super::channels_cluster as cluster;
use super::Ctx;
use crate::browser::names::is_private;
use crate::hub::outgoing::{pusher_bytes, pusher_channel, pusher_frame};
use crate::hub::{Frame, Outbox, Publication};
use crate::ids::{DevId, PipeName};
use crate::pusher::channel::{is_cache_name, USER_CHANNEL_PREFIX};
use crate::pusher::sign::{check_channel_auth, check_signin_auth};
use crate::pusher::{
    Channel, ChannelKind, ClientEvent, ErrorCode, MemberInfo, ServerFrame, Signin, SocketId,
    Subscribe,
};

/// Why a frame of a Pusher connection was refused: sent as `pusher:error` (`code: None` is Pusher's
/// `"code": null`, one request failed and the connection is fine), then the connection closes with the
/// code when `close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: Option<ErrorCode>,
    pub message: Cow<'static, str>,
    pub close: bool,
}

impl Refusal {
    pub(super) fn request(message: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal {
            code: None,
            message: message.into(),
            close: false,
        }
    }

    fn internal(e: impl std::fmt::Display) -> Refusal {
        tracing::error!(error = %e, "a Pusher request failed");
        Refusal::request("Internal server error")
    }
}

/// The registry key of a channel: the pipe of the same name for a public channel that can be one, else
/// the channel under the Pusher-only prefix.
pub(crate) fn channel_key(channel: &Channel) -> PipeName {
    if channel.kind() == ChannelKind::Public {
        if let Ok(pipe) = PipeName::parse_subscription(channel.name()) {
            return pipe;
        }
    }
    PipeName::pusher_only(channel.name())
}

/// A publish to a `cache-` channel (from any door) is kept as its last event (a cluster keeps it in Redis,
/// with its publish).
pub(crate) fn keep_cached(ctx: &Ctx, dev_id: DevId, pipe: &PipeName, frame: &Frame) {
    if is_cache_name(pusher_channel(pipe)) && ctx.hub.pusher_route().is_none() {
        let per_tenant = ctx.config.pusher.cache_channels_per_tenant;
        ctx.hub
            .pusher()
            .keep_cached(&(dev_id, pipe.clone()), frame.clone(), per_tenant);
    }
}

/// One channel a connection is subscribed to.
#[derive(Debug)]
struct Joined {
    channel: Channel,
    key: PipeName,
    /// The member it joined a presence channel as.
    user_id: Option<Arc<str>>,
}

/// One Pusher connection's channels and sign-in.
pub(crate) struct PusherConn {
    pub dev_id: DevId,
    /// The tenant's app key: the key part of every `auth` the connection sends.
    pub app_key: Arc<str>,
    pub socket_id: SocketId,
    pub outbox: Outbox,
    joined: Vec<Joined>,
    /// Who the connection signed in as (`pusher:signin`).
    user: Option<Arc<str>>,
    /// Client events sent in the current second, and when it started.
    events: (u32, Instant),
}

impl PusherConn {
    pub(crate) fn new(
        ctx: &Ctx,
        dev_id: DevId,
        app_key: Arc<str>,
        socket_id: SocketId,
        outbox: Outbox,
    ) -> PusherConn {
        ctx.hub
            .pusher()
            .add_socket(outbox.conn(), dev_id, socket_id.as_str());
        PusherConn {
            dev_id,
            app_key,
            socket_id,
            outbox,
            joined: Vec::new(),
            user: None,
            events: (0, Instant::now()),
        }
    }

    fn send(&self, frame: &ServerFrame<'_>) {
        self.outbox.push(&pusher_bytes(frame));
    }

    /// `pusher:subscribe`: checks the signature (private, presence, encrypted), the sign-in (a user
    /// channel), then subscribes and answers `subscription_succeeded` (with the members on presence, and
    /// the cached event or `cache_miss` on a cache channel).
    pub(crate) async fn subscribe(&mut self, ctx: &Ctx, s: Subscribe) -> Result<(), Refusal> {
        let name = s.channel.name();
        if self.joined.iter().any(|j| j.channel == s.channel) {
            return Err(Refusal::request(format!(
                "Existing subscription to channel {name}"
            )));
        }
        if self.joined.len() >= ctx.config.pusher.channels_per_connection {
            return Err(Refusal::request(format!(
                "A connection may be subscribed to at most {} channels",
                ctx.config.pusher.channels_per_connection
            )));
        }
        match s.channel.kind() {
            ChannelKind::Private | ChannelKind::Presence | ChannelKind::PrivateEncrypted => {
                let auth = s.auth.as_deref().unwrap_or("");
                let keys = ctx
                    .tenants
                    .signing_keys(self.dev_id)
                    .await
                    .map_err(Refusal::internal)?;
                check_channel_auth(
                    auth,
                    &self.app_key,
                    &keys,
                    &self.socket_id,
                    name,
                    s.channel_data.as_deref(),
                )
                .map_err(|e| Refusal::request(format!("{e} for channel {name}")))?;
            }
            ChannelKind::User => {
                if self.user.as_deref() != s.channel.user() {
                    return Err(Refusal::request(format!(
                        "Only the connection signed in as that user may subscribe to {USER_CHANNEL_PREFIX}..."
                    )));
                }
            }
            ChannelKind::Public => {
                if is_private(name) {
                    return Err(Refusal::request(
                        "Pipes named private_* are for users authorized by CometQL; use a private- channel",
                    ));
                }
            }
        }
        let key = channel_key(&s.channel);
        let pair = (self.dev_id, key.clone());
        if let Some(route) = ctx.hub.pusher_route() {
            let (dev_id, outbox) = (self.dev_id, &self.outbox);
            let member = s.member.as_ref();
            cluster::subscribe(ctx, route, dev_id, outbox, name, &key, member).await?;
            if s.channel.is_cache() {
                cluster::send_cached(route, dev_id, outbox, name, &key).await;
            }
            let user_id = s.member.as_ref().map(|m| Arc::from(m.user_id.as_str()));
            self.joined.push(Joined {
                channel: s.channel,
                key,
                user_id,
            });
            return Ok(());
        }
        let mut member_id = None;
        match &s.member {
            Some(member) => {
                let cap = ctx.config.pusher.presence_max_members;
                let conn = self.outbox.conn();
                let outbox = &self.outbox;
                ctx.hub
                    .pusher()
                    .join(
                        &pair,
                        conn,
                        &member.user_id,
                        member.user_info.clone(),
                        cap,
                        |members, first| {
                            let list: Vec<MemberInfo<'_>> = members
                                .iter()
                                .map(|m| MemberInfo {
                                    user_id: &m.user_id,
                                    user_info: m.user_info.as_ref(),
                                })
                                .collect();
                            outbox.push(&pusher_bytes(&ServerFrame::SubscriptionSucceeded {
                                channel: name,
                                members: Some(&list),
                            }));
                            ctx.hub
                                .registry()
                                .subscribe(self.dev_id, &key, outbox.clone());
                            if first {
                                let added = ServerFrame::MemberAdded {
                                    channel: name,
                                    member: MemberInfo {
                                        user_id: &member.user_id,
                                        user_info: member.user_info.as_ref(),
                                    },
                                };
                                ctx.hub.publish_local(Publication {
                                    dev_id: self.dev_id,
                                    pipe: key.clone(),
                                    frame: pusher_frame(&added),
                                    except: Some(conn),
                                    position: None,
                                    presence: true,
                                    socket: None,
                                });
                            }
                        },
                    )
                    .map_err(|_| {
                        Refusal::request(format!("Presence channel {name} is full ({cap} members)"))
                    })?;
                member_id = Some(Arc::from(member.user_id.as_str()));
            }
            None => {
                self.send(&ServerFrame::SubscriptionSucceeded {
                    channel: name,
                    members: None,
                });
                ctx.hub
                    .registry()
                    .subscribe(self.dev_id, &key, self.outbox.clone());
            }
        }
        if s.channel.is_cache() {
            match ctx.hub.pusher().cached(&pair) {
                Some(frame) => {
                    self.outbox.push(&frame.wire(crate::hub::Era::Pusher));
                }
                None => self.send(&ServerFrame::CacheMiss { channel: name }),
            }
        }
        self.joined.push(Joined {
            channel: s.channel,
            key,
            user_id: member_id,
        });
        Ok(())
    }

    /// `pusher:unsubscribe` (of a channel it is not subscribed to: nothing happens, as on Pusher).
    pub(crate) fn unsubscribe(&mut self, ctx: &Ctx, channel: &Channel) {
        if let Some(i) = self.joined.iter().position(|j| j.channel == *channel) {
            let joined = self.joined.remove(i);
            self.leave(ctx, joined);
        }
    }

    fn leave(&self, ctx: &Ctx, joined: Joined) {
        let conn = self.outbox.conn();
        ctx.hub
            .registry()
            .unsubscribe(self.dev_id, &joined.key, conn);
        if let Some(route) = ctx.hub.pusher_route() {
            let presence = joined.user_id.is_some();
            cluster::leave(route, self.dev_id, &joined.key, &self.outbox, presence);
            return;
        }
        if joined.user_id.is_some() {
            let pair = (self.dev_id, joined.key.clone());
            ctx.hub.pusher().leave(&pair, conn, |user_id| {
                let removed = ServerFrame::MemberRemoved {
                    channel: joined.channel.name(),
                    user_id,
                };
                ctx.hub.publish_local(Publication {
                    dev_id: self.dev_id,
                    pipe: joined.key.clone(),
                    frame: pusher_frame(&removed),
                    except: None,
                    position: None,
                    presence: true,
                    socket: None,
                });
            });
        }
    }

    /// The connection is going: leaves every channel (members announced) and signs out.
    pub(crate) fn close(&mut self, ctx: &Ctx) {
        for joined in std::mem::take(&mut self.joined) {
            self.leave(ctx, joined);
        }
        if let Some(user) = self.user.take() {
            ctx.hub
                .pusher()
                .sign_out(self.dev_id, &user, self.outbox.conn());
        }
        ctx.hub.pusher().remove_socket(self.outbox.conn());
    }

    /// `pusher:signin`: a valid signature makes the connection this user (who may then subscribe to their
    /// user channel); an invalid one closes it with 4009, as Pusher does.
    pub(crate) async fn sign_in(&mut self, ctx: &Ctx, s: Signin) -> Result<(), Refusal> {
        let keys = ctx
            .tenants
            .signing_keys(self.dev_id)
            .await
            .map_err(Refusal::internal)?;
        if let Err(e) =
            check_signin_auth(&s.auth, &self.app_key, &keys, &self.socket_id, &s.user_data)
        {
            return Err(Refusal {
                code: Some(ErrorCode::Unauthorized),
                message: format!("{e} for the sign-in").into(),
                close: true,
            });
        }
        let conn = self.outbox.conn();
        if let Some(before) = self.user.take() {
            ctx.hub.pusher().sign_out(self.dev_id, &before, conn);
        }
        ctx.hub
            .pusher()
            .sign_in(self.dev_id, &s.user_id, self.outbox.clone());
        self.user = Some(Arc::from(s.user_id.as_str()));
        self.send(&ServerFrame::SigninSuccess {
            user_data: &s.user_data,
        });
        Ok(())
    }

    /// A `client-*` event: relayed to the channel's other subscribers when the tenant allows client
    /// events, the channel is private or presence and subscribed to, and the connection is within its
    /// rate; paid from the tenant's publish budget like any publish.
    pub(crate) async fn client_event(&mut self, ctx: &Ctx, e: ClientEvent) -> Result<(), Refusal> {
        if !ctx.limits.client_events(self.dev_id) {
            return Err(Refusal::request(
                "To send client events, turn them on in the dashboard's settings (or halley tenant limits --client-events true)",
            ));
        }
        if !e.channel.allows_client_events() {
            return Err(Refusal::request(
                "Client events are only allowed on private and presence channels",
            ));
        }
        let Some(joined) = self.joined.iter().find(|j| j.channel == e.channel) else {
            return Err(Refusal::request(format!(
                "Client event rejected - not subscribed to channel {}",
                e.channel.name()
            )));
        };
        let now = Instant::now();
        if now.duration_since(self.events.1) >= Duration::from_secs(1) {
            self.events = (0, now);
        }
        if self.events.0 >= ctx.config.pusher.client_events_per_sec {
            return Err(Refusal {
                code: Some(ErrorCode::ClientEventRateLimit),
                message: ErrorCode::ClientEventRateLimit.message().into(),
                close: false,
            });
        }
        self.events.0 += 1;
        ctx.spend_publish(self.dev_id)
            .await
            .map_err(|e| match e.code {
                // A cluster's budget that Redis could not be asked for: as a relay Redis did not take.
                super::ErrorCode::Unavailable => Refusal {
                    code: Some(ErrorCode::GenericReconnect),
                    message: e.message,
                    close: false,
                },
                _ => Refusal::request(e.message),
            })?;
        let event = ServerFrame::Event {
            event: &e.event,
            channel: e.channel.name(),
            data: &e.data,
            user_id: joined.user_id.as_deref(),
        };
        if let Some(route) = ctx.hub.pusher_route() {
            return cluster::relay(route, self.dev_id, &joined.key, &self.outbox, &event).await;
        }
        let frame = pusher_frame(&event);
        ctx.hub.publish_local(Publication {
            dev_id: self.dev_id,
            pipe: joined.key.clone(),
            frame,
            except: Some(self.outbox.conn()),
            position: None,
            presence: false,
            socket: None,
        });
        Ok(())
    }
}
