//! One browser connection's state and what its commands do. No I/O here and no rule either: handling a
//! command calls `commands` and turns its answer into the frames to send; the socket task writes them.

use crate::browser::frames::{self, Frame};
use crate::browser::names::is_webauth;
use crate::browser::{Command, CommandError};
use crate::commands::history::Log;
use crate::commands::pipes_messages::{self, Message};
use crate::commands::presence::{self, Subscriptions, Wanted};
use crate::commands::{users_data, users_time, Caller, Client, Ctx, ErrorCode};
use crate::hub::Outbox;
use crate::ids::{ConnId, DevId, PipeName, UserId};
use crate::tenant::unix_now;

/// What handling a command asks the socket task to do.
pub(super) struct Answer {
    pub frames: Vec<Frame>,
    /// History entries to send after `frames`, made frames one by one as the client takes them
    /// (`ConnLoop::drain_input`).
    pub history: Option<Log>,
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
    pub(super) fn refuse(e: CommandError) -> Answer {
        Answer {
            frames: vec![e.frame(unix_now())],
            history: None,
            close: e.closes_connection(),
        }
    }
}

pub(super) struct Session {
    pub dev_id: DevId,
    /// UserId(0) unless authorized.
    pub user: UserId,
    pub outbox: Outbox,
    subscriptions: Subscriptions,
}

impl Session {
    pub(super) fn new(dev_id: DevId, user: UserId, outbox: Outbox) -> Session {
        Session {
            dev_id,
            user,
            outbox,
            subscriptions: Subscriptions::default(),
        }
    }

    fn authorized(&self) -> bool {
        self.client().authorized()
    }

    fn conn(&self) -> ConnId {
        self.outbox.conn()
    }

    fn client(&self) -> Client {
        Client {
            dev_id: self.dev_id,
            user: self.user,
        }
    }

    fn caller(&self) -> Caller {
        self.client().caller()
    }

    pub(super) async fn handle(&mut self, ctx: &Ctx, command: Command<'_>) -> Answer {
        let now = unix_now();
        match command {
            Command::Subscription(sub) => {
                self.subscriptions
                    .replace(ctx, self.client(), &self.outbox, &sub.pipes)
                    .await;
                sub.notice.map_or_else(Answer::none, Answer::refuse)
            }
            Command::Subscription2(sub) => {
                let wanted: Vec<Wanted<'_>> = sub
                    .pipes
                    .iter()
                    .map(|p| Wanted {
                        name: p.pipe,
                        position: p.position,
                    })
                    .collect();
                self.subscriptions
                    .replace_positioned(ctx, self.client(), &self.outbox, &wanted)
                    .await;
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
                let offsets = self.subscriptions.positioned(&pipe);
                match pipes_messages::log(ctx, self.client(), &pipe, offsets).await {
                    Ok(log) => Answer {
                        frames: Vec::new(),
                        history: Some(log),
                        close: false,
                    },
                    Err(e) if e.code == ErrorCode::AccessDenied => {
                        Answer::refuse(CommandError::PrivateAnonymous)
                    }
                    Err(e) => internal(e),
                }
            }
            Command::PipeCount { pipe, marker } => {
                let Ok(pipe) = PipeName::parse_command(pipe) else {
                    return Answer::refuse(CommandError::InvalidPipeName);
                };
                match presence::pipe_count(ctx, self.dev_id, &pipe).await {
                    Ok(n) => Answer::one(frames::pipe_count_answer(marker, n, now)),
                    Err(e) => internal(e),
                }
            }
            Command::TrackPipeUsers { pipe, marker } => {
                let Ok(pipe) = PipeName::parse_command(pipe) else {
                    return Answer::refuse(CommandError::InvalidPipeName);
                };
                match presence::track_users(ctx, self.dev_id, &pipe).await {
                    Ok(members) => {
                        let users = members.iter().map(|m| (m.user_id.0, m.uuid.as_str()));
                        Answer::one(frames::track_pipe_users_answer(marker, users, now))
                    }
                    Err(e) => internal(e),
                }
            }
            Command::UserStatus { user_id } => {
                match users_time::last_online(ctx, self.dev_id, UserId(user_id)).await {
                    Ok(t) => Answer::one(frames::user_status_answer(user_id, t, now)),
                    Err(e) => internal(e),
                }
            }
            Command::UserData { marker, user_id } => {
                match users_data::get(ctx, self.caller(), UserId(user_id)).await {
                    Ok(data) => Answer::one(frames::user_data_answer(marker, user_id, &data, now)),
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
            Ok(published) => Answer::one(frames::web_pipe_answer(
                pipe.as_str(),
                message,
                published.delivered as u64,
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

    /// Leaves every pipe: the connection is going.
    pub(super) fn unsubscribe_all(&mut self, ctx: &Ctx) {
        self.subscriptions.clear(ctx, self.client(), &self.outbox);
    }
}

fn internal(e: impl std::fmt::Display) -> Answer {
    tracing::error!(error = %e, "a WebSocket command failed");
    Answer::one(frames::command_error("Internal server error", unix_now()))
}
