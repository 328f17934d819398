//! One browser connection's state and what its commands do. No I/O here: handling a command yields the
//! frames to answer with; the socket task writes them. Everything that publishes goes through `commands`.

use crate::browser::frames::{self, Frame, TrackEvent};
use crate::browser::names::{is_private, is_track, is_webauth};
use crate::browser::{Command, CommandError};
use crate::commands::pipes_messages::{self, Message};
use crate::commands::{users_time, Caller, Ctx, ErrorCode};
use crate::hub::outgoing::shared;
use crate::hub::{Hub, Outbox, Publication};
use crate::ids::{ConnId, DevId, PipeName, UserId};
use crate::storage::{HistoryRow, UserTable};
use crate::tenant::unix_now;
use std::sync::Arc;

/// The frame of one history entry, as `pipe_log` sends it.
pub fn history_frame(h: &HistoryRow) -> Frame {
    frames::history_entry(&h.pipe, &h.event, &h.message, h.sent_at, h.user_id as u64)
}

/// Most pipes one connection may hold (docs/reference-cppcomet.md 2.5; docs/compatibility.md §5).
pub const MAX_PIPES: usize = 32;

/// What handling a command asks the socket task to do.
pub struct Answer {
    pub frames: Vec<Frame>,
    /// History entries to send after `frames`. Kept as the shared cached rows rather than as frames: the
    /// socket task encodes them one by one as the client takes them, so a client that does not read a
    /// long history costs its connection no copy of it (`ConnLoop::drain_input`).
    pub history: Option<Arc<[HistoryRow]>>,
    pub close: bool,
}

impl Answer {
    fn none() -> Answer {
        Answer {
            frames: Vec::new(),
            history: None,
            close: false,
        }
    }

    fn one(frame: Frame) -> Answer {
        Answer {
            frames: vec![frame],
            history: None,
            close: false,
        }
    }

    /// The command's error frame; closes when the reference closes for that error.
    pub fn refuse(e: CommandError) -> Answer {
        Answer {
            frames: vec![e.frame(unix_now())],
            history: None,
            close: e.closes_connection(),
        }
    }
}

pub struct Session {
    pub dev_id: DevId,
    /// UserId(0) unless authorized.
    pub user: UserId,
    pub outbox: Outbox,
    pipes: Vec<PipeName>,
}

impl Session {
    pub fn new(dev_id: DevId, user: UserId, outbox: Outbox) -> Session {
        Session {
            dev_id,
            user,
            outbox,
            pipes: Vec::new(),
        }
    }

    pub fn authorized(&self) -> bool {
        self.user.0 != 0
    }

    fn conn(&self) -> ConnId {
        self.outbox.conn()
    }

    fn caller(&self) -> Caller {
        Caller {
            dev_id: self.dev_id,
        }
    }

    pub async fn handle(&mut self, ctx: &Ctx, command: Command<'_>) -> Answer {
        let now = unix_now();
        match command {
            Command::Subscription(sub) => {
                self.replace_subscriptions(ctx, &sub.pipes);
                sub.notice.map_or_else(Answer::none, Answer::refuse)
            }
            Command::WebPipe2 {
                pipe,
                anonymous,
                event,
                message,
                ..
            } => self.web_pipe2(ctx, pipe, anonymous, event, message).await,
            Command::PipeLog { pipe, .. } => {
                let Ok(pipe) = PipeName::parse_command(pipe) else {
                    return Answer::refuse(CommandError::InvalidPipeName);
                };
                // Whoever may not subscribe to a pipe may not read its history either.
                if is_private(pipe.as_str()) && !self.authorized() {
                    return Answer::refuse(CommandError::PrivateAnonymous);
                }
                match crate::commands::history::read(ctx, self.dev_id, &pipe).await {
                    Ok(rows) => Answer {
                        frames: Vec::new(),
                        history: Some(rows),
                        close: false,
                    },
                    Err(e) => internal(e),
                }
            }
            Command::PipeCount { pipe, marker } => {
                let Ok(pipe) = PipeName::parse_command(pipe) else {
                    return Answer::refuse(CommandError::InvalidPipeName);
                };
                let n = ctx.hub.registry().subscribers(self.dev_id, &pipe);
                Answer::one(frames::pipe_count_answer(marker, n as u64, now))
            }
            Command::TrackPipeUsers { pipe, marker } => {
                let Ok(pipe) = PipeName::parse_command(pipe) else {
                    return Answer::refuse(CommandError::InvalidPipeName);
                };
                let mut members = ctx.hub.registry().members(self.dev_id, &pipe);
                members.sort_by_key(|m| m.conn());
                let users = members
                    .iter()
                    .map(|m| (m.info().user_id.0, m.info().uuid.as_str()));
                Answer::one(frames::track_pipe_users_answer(marker, users, now))
            }
            Command::UserStatus { user_id } => {
                match users_time::last_online(ctx, self.dev_id, UserId(user_id)).await {
                    Ok(t) => Answer::one(frames::user_status_answer(user_id, t, now)),
                    Err(e) => internal(e),
                }
            }
            Command::UserData { marker, user_id } => {
                match ctx
                    .storage
                    .user_value(UserTable::Data, self.dev_id, UserId(user_id))
                    .await
                {
                    Ok(data) => Answer::one(frames::user_data_answer(
                        marker,
                        user_id,
                        data.as_deref().unwrap_or(""),
                        now,
                    )),
                    Err(e) => internal(e),
                }
            }
            Command::Statistics | Command::Noop => Answer::none(),
            Command::Unknown(word) => {
                tracing::debug!(
                    command = word,
                    "unknown WebSocket command: closing, as the reference does"
                );
                Answer {
                    frames: Vec::new(),
                    history: None,
                    close: true,
                }
            }
        }
    }

    async fn web_pipe2(
        &mut self,
        ctx: &Ctx,
        pipe: &str,
        anonymous: bool,
        event: &str,
        message: &str,
    ) -> Answer {
        if is_webauth(pipe) && !self.authorized() {
            return Answer::refuse(CommandError::WebauthAnonymous);
        }
        let mut m = match Message::new(pipe, event, message, ctx.config.websocket.max_message_bytes)
        {
            Ok(m) => m,
            Err(e) if e.code == ErrorCode::TooLong => {
                return Answer::refuse(CommandError::MessageTooLong)
            }
            Err(_) => return Answer::refuse(CommandError::InvalidChannelName),
        };
        m.sender = Some(if anonymous { UserId(0) } else { self.user });
        let pipe = m.pipe.clone();
        // The text is relayed exactly as sent (the reference mysql-escaped it).
        match pipes_messages::publish(ctx, self.caller(), m, Some(self.conn())).await {
            Ok(n) => Answer::one(frames::web_pipe_answer(
                pipe.as_str(),
                message,
                n as u64,
                unix_now(),
            )),
            // Past the tenant's publish budget (shared with CometQL): an error frame naming the limit and
            // the retry time, as CometQL's ERROR 429 does; the connection stays open.
            // Past a storage quota (the pipe keeps history): the same kind of error frame.
            Err(e) if matches!(e.code, ErrorCode::RateLimited | ErrorCode::QuotaExceeded) => {
                Answer::one(frames::command_error(&e.message, unix_now()))
            }
            Err(e) => internal(e),
        }
    }

    /// `subscription` replaces the whole set (docs/reference-cppcomet.md 2.5). `private_` pipes are skipped for
    /// anonymous connections; `track_` pipes tell their other subscribers who came and went. Only real changes
    /// count: pipes left are left (announced) first, then pipes joined are joined in order, and a pipe in both sets
    /// stays subscribed without a word. The reference left and re-joined every pipe, so one 20-byte command re-sent
    /// in a loop made two presence frames per subscriber of each `track_` pipe.
    pub fn replace_subscriptions(&mut self, ctx: &Ctx, names: &[&str]) {
        let mut wanted: Vec<PipeName> = Vec::with_capacity(names.len().min(MAX_PIPES));
        for name in names.iter().take(MAX_PIPES) {
            let Ok(pipe) = PipeName::parse_subscription(name) else {
                continue;
            };
            if (is_private(pipe.as_str()) && !self.authorized()) || wanted.contains(&pipe) {
                continue;
            }
            wanted.push(pipe);
        }
        for pipe in std::mem::take(&mut self.pipes) {
            if wanted.contains(&pipe) {
                self.pipes.push(pipe);
            } else {
                self.leave(ctx, pipe);
            }
        }
        for pipe in wanted {
            if self.pipes.contains(&pipe) {
                continue;
            }
            if is_track(pipe.as_str()) {
                self.presence(ctx, &pipe, TrackEvent::Subscription);
            }
            ctx.hub
                .registry()
                .subscribe(self.dev_id, &pipe, self.outbox.clone());
            self.pipes.push(pipe);
        }
    }

    pub fn unsubscribe_all(&mut self, ctx: &Ctx) {
        for pipe in std::mem::take(&mut self.pipes) {
            self.leave(ctx, pipe);
        }
    }

    fn leave(&self, ctx: &Ctx, pipe: PipeName) {
        ctx.hub
            .registry()
            .unsubscribe(self.dev_id, &pipe, self.conn());
        if is_track(pipe.as_str()) {
            self.presence(ctx, &pipe, TrackEvent::Unsubscription);
        }
    }

    fn presence(&self, ctx: &Ctx, pipe: &PipeName, event: TrackEvent) {
        let info = self.outbox.info();
        let frame =
            frames::track_event(pipe.as_str(), event, info.user_id.0, &info.uuid, unix_now());
        ctx.hub.publish(Publication {
            dev_id: self.dev_id,
            pipe: pipe.clone(),
            frame: shared(frame),
            except: Some(self.conn()),
        });
    }

    /// The durable users_time value: 0 while online, the disconnect time after.
    pub async fn record_status(&self, ctx: &Ctx, online: bool) {
        let time = if online { 0 } else { unix_now() };
        if let Err(e) = ctx
            .storage
            .set_last_online(self.dev_id, self.user, time)
            .await
        {
            tracing::error!(error = %e, "could not record users_time");
        }
    }
}

/// `online` / `offline` on `user_status_<id>`. Called by the hub under its users lock, so that the
/// announcements of one user keep their order.
pub fn announce_status(hub: &Hub, dev_id: DevId, user: UserId, online: bool) {
    let frame = if online {
        frames::user_online(user.0)
    } else {
        frames::user_offline(user.0)
    };
    if let Ok(pipe) = PipeName::parse_subscription(frame.pipe()) {
        hub.publish(Publication {
            dev_id,
            pipe,
            frame: shared(frame),
            except: None,
        });
    }
}

fn internal(e: impl std::fmt::Display) -> Answer {
    tracing::error!(error = %e, "a WebSocket command failed");
    Answer::one(frames::command_error("Internal server error", unix_now()))
}
