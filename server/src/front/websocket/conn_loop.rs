//! One WebSocket connection's socket loop: it reads client commands, writes what the outbox could not write
//! in place (see `hub::Outbox`), pings idle peers and closes on request (slow consumer, shutdown, revoked
//! user). The connection's setup and teardown are in `websocket.rs`.
//!
//! The loop is one hand-written poll over the outbox, the socket's read readiness and the ping timer
//! rather than a `select!` of futures: an idle connection's task keeps no future state beyond its fields,
//! and a delivery that the publisher wrote in place never wakes it.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::{interval_at, sleep_until, Instant, Interval, MissedTickBehavior, Sleep};

use super::budget::{self, CommandBudget, Verdict};
use super::session::{Answer, Session};
use crate::browser::frames::{self, Frame};
use crate::browser::parse_command;
use crate::browser::wsframe::{self, FrameDecoder, Incoming};
use crate::commands::history::Log;
use crate::commands::users_messages::{self, QueueSink};
use crate::commands::Ctx;
use crate::hub::{CloseReason, Era, Flush, OutboxRx};
use crate::tenant::unix_now;

/// Time given to the close frame (after whatever is still queued) before the socket is dropped.
pub(super) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The connection's own frames (answers, history) the client has not taken, past which it runs no more
/// commands until they are written: a client that sends commands and reads nothing holds at most this
/// much of the server's memory (plus one frame), however large the answers.
pub(super) const OWN_BACKLOG: usize = 256 * 1024;

pub(super) struct ConnLoop<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) session: Session,
    pub(super) era: Era,
    pub(super) decoder: FrameDecoder,
    pub(super) rbuf: BytesMut,
    pub(super) write_timeout: Duration,
    pub(super) budget: CommandBudget,
    /// A `pipe_log` answer not sent yet, from its next entry on.
    pub(super) history: Option<Log>,
    /// Commands (or history) wait in `rbuf` (or `history`) until the backlog is written.
    pub(super) held: bool,
}

/// What the connection does after handling input.
enum Next {
    Continue,
    /// The server closes (a flood, an invalid command): it then lingers for the client's close.
    Close(u16, &'static str),
    /// The client closed; the answer echoes its code.
    Closed(u16),
}

/// What woke the socket task.
pub(super) enum Event {
    Close(CloseReason),
    Input,
    /// The backlog is written: held commands may run.
    Resume,
    Tick,
    /// The socket is broken, or took nothing for `write_timeout`.
    Gone,
}

/// The socket task's timers: pings, and the deadline of a write the client is not taking.
pub(super) struct Timers {
    pub(super) ticker: Interval,
    /// Boxed and only while the socket is full: an idle connection carries no second timer.
    pub(super) stuck: Option<Pin<Box<Sleep>>>,
    pub(super) write_timeout: Duration,
}

impl Timers {
    pub(super) fn poll_event(
        &mut self,
        rx: &OutboxRx,
        held: bool,
        cx: &mut Context<'_>,
    ) -> Poll<Event> {
        if let Some(reason) = rx.closing() {
            return Poll::Ready(Event::Close(reason));
        }
        match rx.poll_flush(cx) {
            Err(_) => return Poll::Ready(Event::Gone),
            Ok(Flush::Done) if held => {
                self.stuck = None;
                return Poll::Ready(Event::Resume);
            }
            Ok(Flush::Done) => self.stuck = None,
            Ok(Flush::Blocked { progressed }) => {
                let deadline = Instant::now() + self.write_timeout;
                let stuck = match &mut self.stuck {
                    Some(s) => {
                        if progressed {
                            s.as_mut().reset(deadline);
                        }
                        s
                    }
                    None => self.stuck.insert(Box::pin(sleep_until(deadline))),
                };
                if stuck.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Gone);
                }
            }
        }
        // Input is read only once our own writes are out: a client that does not read cannot make the
        // server queue answers for it without bound.
        if self.stuck.is_none() && rx.poll_read_ready(cx).is_ready() {
            return Poll::Ready(Event::Input);
        }
        if self.ticker.poll_tick(cx).is_ready() {
            return Poll::Ready(Event::Tick);
        }
        Poll::Pending
    }
}

impl ConnLoop<'_> {
    pub(super) async fn serve(&mut self, rx: OutboxRx, shutting_down: bool) {
        if shutting_down {
            rx.close(CloseReason::Shutdown);
        }
        let period = self.ctx.config.websocket.ping_interval();
        let mut timers = Timers {
            ticker: interval_at(Instant::now() + period, period),
            stuck: None,
            write_timeout: self.write_timeout,
        };
        timers
            .ticker
            .set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        // Frames that came with the upgrade request are handled before waiting for more.
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
                        self.linger(&rx, deadline + CLOSE_GRACE).await;
                        return;
                    }
                }
                if self.rbuf.is_empty() && self.rbuf.capacity() > 4096 {
                    // Give back a large buffer once a big message is handled: idle connections stay small.
                    self.rbuf = BytesMut::new();
                }
            }
            let held = self.held;
            match std::future::poll_fn(|cx| timers.poll_event(&rx, held, cx)).await {
                Event::Close(reason) => {
                    let (code, text) = close_code(reason);
                    return close(&rx, code, text).await;
                }
                Event::Gone => return,
                Event::Resume => {
                    // The client took everything queued for it: it is alive, though we read none of
                    // its pongs meanwhile.
                    input = true;
                    last_heard = Instant::now();
                }
                Event::Input => match rx.try_read_buf(&mut self.rbuf) {
                    Ok(0) => return,
                    Ok(_) => {
                        input = true;
                        last_heard = Instant::now();
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                },
                Event::Tick => {
                    if last_heard.elapsed() >= period * 2 {
                        return;
                    }
                    rx.send(wsframe::encode_ping(b""));
                }
            }
        }
    }

    /// See [`linger`].
    async fn linger(&mut self, rx: &OutboxRx, deadline: Instant) {
        linger(&mut self.decoder, &mut self.rbuf, rx, deadline).await;
    }

    /// Runs the complete commands in `rbuf`, in order, while the connection's backlog is small; the rest
    /// waits in `rbuf` (`held`) until the backlog is written, and the client's next bytes are read only
    /// then (`Timers::poll_event`).
    async fn drain_input(&mut self, rx: &OutboxRx) -> Next {
        loop {
            self.held = !self.send_history(rx) || rx.backlog() >= OWN_BACKLOG;
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
                // Binary is read as text, as the reference does.
                Incoming::Binary(data) => match std::str::from_utf8(&data) {
                    Ok(text) => self.on_text(rx, text).await,
                    Err(_) => Next::Close(1007, "invalid UTF-8"),
                },
                Incoming::Ping(payload) => {
                    rx.send(wsframe::encode_pong(&payload));
                    Next::Continue
                }
                Incoming::Pong => Next::Continue,
                // RFC 6455 5.5.1: the reply echoes the client's code (the decoder let only valid ones
                // through); a close without a code gets 1000.
                Incoming::Close(code, _) => Next::Closed(code.unwrap_or(1000)),
            };
            if !matches!(next, Next::Continue) {
                return next;
            }
        }
    }

    async fn on_text(&mut self, rx: &OutboxRx, text: &str) -> Next {
        let parsed = parse_command(text);
        let reads = parsed.as_ref().is_ok_and(budget::reads_storage);
        match self.budget.spend(reads) {
            Verdict::Run => {}
            Verdict::Refuse(refused) => {
                self.ctx
                    .stats
                    .limit_refusals
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(refused) = refused {
                    let frame = frames::command_error(&refused.text(), unix_now());
                    rx.send(frame.encode(self.era.api()));
                }
                return Next::Continue;
            }
            Verdict::Close => {
                return Next::Close(wsframe::close_code::POLICY_VIOLATION, budget::CLOSE_REASON)
            }
        }
        let answer = match parsed {
            // Boxed: a command's future (database queries) is large and rare; inline, every idle
            // connection's task would carry its size.
            Ok(command) => Box::pin(self.session.handle(self.ctx, command)).await,
            Err(e) => Answer::refuse(e),
        };
        for frame in &answer.frames {
            rx.send(frame.encode(self.era.api()));
        }
        if let Some(log) = answer.history {
            self.history = Some(log);
        }
        if answer.close {
            return Next::Close(wsframe::close_code::POLICY_VIOLATION, "invalid command");
        }
        Next::Continue
    }

    /// Sends the pending `pipe_log` entries while the backlog is small; `true` once all are sent.
    fn send_history(&mut self, rx: &OutboxRx) -> bool {
        let Some(log) = &mut self.history else {
            return true;
        };
        loop {
            if rx.backlog() >= OWN_BACKLOG {
                return false;
            }
            let Some(frame) = log.next() else { break };
            rx.send(frame.encode(self.era.api()));
        }
        self.history = None;
        true
    }

    /// The user's queued private messages (`users_messages::drain`), written straight to the socket with
    /// back-pressure: only a client that takes nothing for `write_timeout` is dropped, never one that
    /// reads slowly. Everything drained goes out before anything the outbox holds, since the socket is
    /// attached to the outbox only afterwards. A connection that asked for ids (`msg_after`) first gets
    /// what it missed from the user's private-message window (`users_messages::on_connect`).
    pub(super) async fn deliver_queue<S>(
        &mut self,
        io: &mut S,
        msg_after: Option<&str>,
    ) -> std::io::Result<()>
    where
        S: AsyncWrite + Unpin + Send,
    {
        let (dev_id, user) = (self.session.dev_id, self.session.user);
        let conn = self.session.outbox.conn();
        let mut sink = SocketSink {
            io,
            era: self.era,
            write_timeout: self.write_timeout,
        };
        users_messages::on_connect(self.ctx, dev_id, user, conn, msg_after, &mut sink).await
    }
}

/// The socket of a connection not yet attached to its outbox, as the queue drain writes to it.
struct SocketSink<'a, S> {
    io: &'a mut S,
    era: Era,
    write_timeout: Duration,
}

impl<S: AsyncWrite + Unpin + Send> QueueSink for SocketSink<'_, S> {
    type Error = std::io::Error;

    async fn deliver(&mut self, batch: Vec<Frame>) -> std::io::Result<()> {
        let mut bytes: Vec<Bytes> = batch.iter().map(|f| f.encode(self.era.api())).collect();
        drop(batch);
        write_batch(self.io, &mut bytes, self.write_timeout).await
    }
}

/// After closing because of what the client sent (a flood, an invalid command): reads and drops what
/// it still sends until its close frame, its end of stream or `deadline`. Dropping a socket with unread
/// input makes the kernel reset the connection, and a reset can destroy the close frame (and the error
/// frame before it) before the client reads them.
pub(super) async fn linger(
    decoder: &mut FrameDecoder,
    rbuf: &mut BytesMut,
    rx: &OutboxRx,
    deadline: Instant,
) {
    loop {
        match decoder.decode(rbuf) {
            Ok(Some(Incoming::Close(..))) | Err(_) => return,
            Ok(Some(_)) => continue,
            Ok(None) => {}
        }
        let ready = std::future::poll_fn(|cx| rx.poll_read_ready(cx));
        match tokio::time::timeout_at(deadline, ready).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return,
        }
        match rx.try_read_buf(rbuf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// Sends the close frame after whatever is queued, and gives it `CLOSE_GRACE` to go out.
pub(super) async fn close(rx: &OutboxRx, code: u16, text: &str) {
    rx.send(wsframe::encode_close(code, text));
    let flushed = std::future::poll_fn(|cx| match rx.poll_flush(cx) {
        Ok(Flush::Blocked { .. }) => Poll::Pending,
        Ok(Flush::Done) | Err(_) => Poll::Ready(()),
    });
    let _ = tokio::time::timeout(CLOSE_GRACE, flushed).await;
}

/// The one place close reasons become WebSocket close codes.
fn close_code(reason: CloseReason) -> (u16, &'static str) {
    match reason {
        CloseReason::SlowConsumer => (1008, "slow consumer: outbox overflow"),
        CloseReason::Shutdown => (1001, "server shutting down"),
        CloseReason::Kicked => (1008, "closed by the server"),
        CloseReason::TooBig => (1009, "message too big"),
    }
}

pub(super) async fn write_all<S: AsyncWrite + Unpin>(
    io: &mut S,
    bytes: &[u8],
    limit: Duration,
) -> std::io::Result<()> {
    match tokio::time::timeout(limit, io.write_all(bytes)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Writes queued frames with vectored writes; a socket that accepts nothing for `limit` is given up on.
pub(super) async fn write_batch<S: AsyncWrite + Unpin>(
    io: &mut S,
    batch: &mut Vec<Bytes>,
    limit: Duration,
) -> std::io::Result<()> {
    let work = async {
        let mut start = 0;
        while start < batch.len() {
            let slices: Vec<IoSlice<'_>> = batch[start..].iter().map(|b| IoSlice::new(b)).collect();
            let mut n = io.write_vectored(&slices).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            while start < batch.len() && n >= batch[start].len() {
                n -= batch[start].len();
                start += 1;
            }
            if n > 0 {
                batch[start].advance(n);
            }
        }
        io.flush().await
    };
    let result = match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    };
    batch.clear();
    result
}
