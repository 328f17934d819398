//! One Pusher connection's socket loop: the comet loop's poll (outbox, socket, timer; see `conn_loop`) with
//! the Pusher protocol's frames and its activity check: a client silent for `activity_timeout` is sent
//! `pusher:ping`, and one that then stays silent for `pong_timeout` is closed with 4201. Every frame
//! spends the comet door's command budget (`budget.rs`): past it the frame is not acted on, the first
//! refusal of a run gets a `pusher:error` naming the budget, and a client that keeps sending through a
//! burst's worth of refusals is closed with 4100 (over capacity: back off, then reconnect).

use std::time::Duration;

use bytes::BytesMut;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

use super::budget::{self, CommandBudget, Verdict};
use super::conn_loop::{close, linger, Event, Timers, CLOSE_GRACE, OWN_BACKLOG};
use crate::browser::wsframe::{self, FrameDecoder, Incoming};
use crate::commands::channels::{PusherConn, Refusal};
use crate::commands::Ctx;
use crate::hub::outgoing::pusher_bytes;
use crate::hub::{CloseReason, OutboxRx};
use crate::pusher::{parse_client_frame, ClientFrame, ErrorCode, ServerFrame};

pub(super) struct PusherLoop<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) conn: PusherConn,
    pub(super) decoder: FrameDecoder,
    pub(super) rbuf: BytesMut,
    /// Frames wait in `rbuf` until the connection's own backlog is written.
    pub(super) held: bool,
    pub(super) budget: CommandBudget,
}

/// What the connection does after handling input.
enum Next {
    Continue,
    /// The server closes with this code (after a `pusher:error` saying why, when there is one).
    Close(u16, &'static str),
    /// The client closed; the answer echoes its code.
    Closed(u16),
}

/// The one place close reasons become the Pusher door's close codes, chosen for what the client should
/// do next (4000-4099 do not reconnect, 4100-4199 back off, 4200-4299 reconnect at once).
fn close_code(reason: CloseReason) -> ErrorCode {
    match reason {
        CloseReason::SlowConsumer => ErrorCode::OverCapacity,
        CloseReason::Shutdown | CloseReason::TooBig => ErrorCode::GenericReconnect,
        CloseReason::Kicked => ErrorCode::Unauthorized,
    }
}

fn error_frame(code: Option<ErrorCode>, message: &str) -> bytes::Bytes {
    pusher_bytes(&ServerFrame::Error { code, message })
}

impl PusherLoop<'_> {
    pub(super) async fn serve(&mut self, rx: OutboxRx, shutting_down: bool) {
        if shutting_down {
            rx.close(CloseReason::Shutdown);
        }
        let config = &self.ctx.config.pusher;
        let activity = Duration::from_secs(u64::from(config.activity_timeout_secs));
        let pong = Duration::from_secs(config.pong_timeout_secs);
        let period = activity.min(pong);
        let mut timers = Timers {
            ticker: interval_at(Instant::now() + period, period),
            stuck: None,
            write_timeout: self.ctx.config.websocket.write_timeout(),
        };
        timers
            .ticker
            .set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut pinged: Option<Instant> = None;
        let mut input = !self.rbuf.is_empty();
        loop {
            if input {
                input = false;
                match self.drain_input(&rx).await {
                    Next::Continue => {}
                    Next::Closed(code) => return close(&rx, code, "").await,
                    Next::Close(code, text) => {
                        let deadline = Instant::now() + CLOSE_GRACE;
                        close(&rx, code, text).await;
                        linger(
                            &mut self.decoder,
                            &mut self.rbuf,
                            &rx,
                            deadline + CLOSE_GRACE,
                        )
                        .await;
                        return;
                    }
                }
                if self.rbuf.is_empty() && self.rbuf.capacity() > 4096 {
                    self.rbuf = BytesMut::new();
                }
            }
            let held = self.held;
            match std::future::poll_fn(|cx| timers.poll_event(&rx, held, cx)).await {
                Event::Close(reason) => {
                    let code = close_code(reason);
                    rx.send(error_frame(Some(code), code.message()));
                    return close(&rx, code.code(), code.message()).await;
                }
                Event::Gone => return,
                Event::Resume => {
                    input = true;
                    last_heard = Instant::now();
                    pinged = None;
                }
                Event::Input => match rx.try_read_buf(&mut self.rbuf) {
                    Ok(0) => return,
                    Ok(_) => {
                        input = true;
                        last_heard = Instant::now();
                        pinged = None;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                },
                Event::Tick => match pinged {
                    Some(at) if at.elapsed() >= pong => {
                        let code = ErrorCode::PongNotReceived;
                        rx.send(error_frame(Some(code), code.message()));
                        return close(&rx, code.code(), code.message()).await;
                    }
                    Some(_) => {}
                    None if last_heard.elapsed() >= activity => {
                        rx.send(pusher_bytes(&ServerFrame::Ping));
                        pinged = Some(Instant::now());
                    }
                    None => {}
                },
            }
        }
    }

    /// Handles the complete frames in `rbuf`, in order, while the connection's own backlog is small.
    async fn drain_input(&mut self, rx: &OutboxRx) -> Next {
        loop {
            self.held = rx.backlog() >= OWN_BACKLOG;
            if self.held {
                return Next::Continue;
            }
            let incoming = match self.decoder.decode(&mut self.rbuf) {
                Ok(Some(i)) => i,
                Ok(None) => return Next::Continue,
                Err(e) => return Next::Close(e.close_code(), "protocol error"),
            };
            let next = match incoming {
                Incoming::Text(text) => self.on_text(rx, &text).await,
                Incoming::Binary(data) => match std::str::from_utf8(&data) {
                    Ok(text) => self.on_text(rx, text).await,
                    Err(_) => Next::Close(1007, "invalid UTF-8"),
                },
                Incoming::Ping(payload) => {
                    rx.send(wsframe::encode_pong(&payload));
                    Next::Continue
                }
                Incoming::Pong => Next::Continue,
                Incoming::Close(code, _) => Next::Closed(code.unwrap_or(1000)),
            };
            if !matches!(next, Next::Continue) {
                return next;
            }
        }
    }

    async fn on_text(&mut self, rx: &OutboxRx, text: &str) -> Next {
        match self.budget.spend(false) {
            Verdict::Run => {}
            Verdict::Refuse(refused) => {
                self.ctx
                    .stats
                    .limit_refusals
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some(refused) = refused {
                    rx.send(error_frame(None, &refused.text()));
                }
                return Next::Continue;
            }
            Verdict::Close => {
                let code = ErrorCode::OverCapacity;
                rx.send(error_frame(Some(code), budget::CLOSE_REASON));
                return Next::Close(code.code(), budget::CLOSE_REASON);
            }
        }
        let frame = match parse_client_frame(text) {
            Ok(frame) => frame,
            Err(e) => {
                rx.send(error_frame(e.code(), &e.to_string()));
                return match e.closes() {
                    true => Next::Close(
                        ErrorCode::GenericReconnect.code(),
                        ErrorCode::GenericReconnect.message(),
                    ),
                    false => Next::Continue,
                };
            }
        };
        let result = match frame {
            ClientFrame::Ping => {
                rx.send(pusher_bytes(&ServerFrame::Pong));
                Ok(())
            }
            ClientFrame::Pong => Ok(()),
            // Boxed: a subscription's future (a key read) is large and rare; inline, every idle
            // connection's task would carry its size.
            ClientFrame::Subscribe(s) => Box::pin(self.conn.subscribe(self.ctx, s)).await,
            ClientFrame::Unsubscribe { channel } => {
                self.conn.unsubscribe(self.ctx, &channel);
                Ok(())
            }
            ClientFrame::Signin(s) => Box::pin(self.conn.sign_in(self.ctx, s)).await,
            // Boxed like the others: paying from a cluster's budget may ask Redis.
            ClientFrame::ClientEvent(e) => Box::pin(self.conn.client_event(self.ctx, e)).await,
        };
        match result {
            Ok(()) => Next::Continue,
            Err(Refusal {
                code,
                message,
                close,
            }) => {
                rx.send(error_frame(code, &message));
                match (close, code) {
                    (true, Some(code)) => Next::Close(code.code(), code.message()),
                    (true, None) => Next::Close(
                        ErrorCode::GenericReconnect.code(),
                        ErrorCode::GenericReconnect.message(),
                    ),
                    (false, _) => Next::Continue,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_are_in_the_documented_ranges() {
        use crate::pusher::Reconnect;
        assert_eq!(
            close_code(CloseReason::SlowConsumer).reconnect(),
            Reconnect::BackOff
        );
        assert_eq!(
            close_code(CloseReason::Shutdown).reconnect(),
            Reconnect::Now
        );
        assert_eq!(close_code(CloseReason::Kicked).code(), 4009);
    }
}
