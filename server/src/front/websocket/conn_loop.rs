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
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::{interval_at, sleep_until, Instant, Interval, MissedTickBehavior, Sleep};

use super::budget::{self, CommandBudget, Verdict};
use super::session::{history_frame, Answer, Session};
use crate::browser::frames;
use crate::browser::parse_command;
use crate::browser::wsframe::{self, FrameDecoder, Incoming};
use crate::commands::users_messages::QUEUE_BATCH;
use crate::commands::Ctx;
use crate::hub::{CloseReason, Era, Flush, OutboxRx};
use crate::storage::HistoryRow;
use crate::tenant::unix_now;

/// Time given to the close frame (after whatever is still queued) before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

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
    /// A `pipe_log` answer not sent yet: the cached rows and the next one to send.
    pub(super) history: Option<(Arc<[HistoryRow]>, usize)>,
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
enum Event {
    Close(CloseReason),
    Input,
    /// The backlog is written: held commands may run.
    Resume,
    Tick,
    /// The socket is broken, or took nothing for `write_timeout`.
    Gone,
}

/// The socket task's timers: pings, and the deadline of a write the client is not taking.
struct Timers {
    ticker: Interval,
    /// Boxed and only while the socket is full: an idle connection carries no second timer.
    stuck: Option<Pin<Box<Sleep>>>,
    write_timeout: Duration,
}

impl Timers {
    fn poll_event(&mut self, rx: &OutboxRx, held: bool, cx: &mut Context<'_>) -> Poll<Event> {
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

    /// After closing because of what the client sent (a flood, an invalid command): reads and drops what
    /// it still sends until its close frame, its end of stream or `deadline`. Dropping a socket with unread
    /// input makes the kernel reset the connection, and a reset can destroy the close frame (and the error
    /// frame before it) before the client reads them.
    async fn linger(&mut self, rx: &OutboxRx, deadline: Instant) {
        loop {
            match self.decoder.decode(&mut self.rbuf) {
                Ok(Some(Incoming::Close(..))) | Err(_) => return,
                Ok(Some(_)) => continue,
                Ok(None) => {}
            }
            let ready = std::future::poll_fn(|cx| rx.poll_read_ready(cx));
            match tokio::time::timeout_at(deadline, ready).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
            match rx.try_read_buf(&mut self.rbuf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
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
        match self.budget.spend(reads, unix_now()) {
            Verdict::Run => {}
            Verdict::Refuse(frame) => {
                self.ctx
                    .stats
                    .limit_refusals
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(frame) = frame {
                    rx.send(frame.encode(self.era));
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
            rx.send(frame.encode(self.era));
        }
        if let Some(rows) = answer.history {
            self.history = Some((rows, 0));
        }
        if answer.close {
            return Next::Close(wsframe::close_code::POLICY_VIOLATION, "invalid command");
        }
        Next::Continue
    }

    /// Sends the pending `pipe_log` entries while the backlog is small; `true` once all are sent.
    fn send_history(&mut self, rx: &OutboxRx) -> bool {
        let Some((rows, next)) = &mut self.history else {
            return true;
        };
        while let Some(row) = rows.get(*next) {
            if rx.backlog() >= OWN_BACKLOG {
                return false;
            }
            rx.send(history_frame(row).encode(self.era));
            *next += 1;
        }
        self.history = None;
        true
    }

    /// Private messages queued while the user was away, in order and all of them, written straight to
    /// the socket with back-pressure (a client that reads slowly slows the drain; only one that takes
    /// nothing for `write_timeout` is dropped, never one that reads). The connection was linked to its
    /// user *draining*: live messages sent meanwhile are queued behind these instead of piling up in the
    /// outbox (`hub::users`). Once a read finds the queue empty the connection stops draining, unless a
    /// sender queued a message meanwhile (it finds the user draining after committing it): then it reads
    /// the queue again, still draining, until a pass ends with nothing queued meanwhile. A sender that
    /// commits after that finds the user ready and delivers the message itself (`users_messages::send`).
    /// Each batch is claimed (removed from the queue, in one statement) before it is written, so whoever
    /// races with the drain never delivers a message a second time; a batch that cannot be written goes
    /// back into the queue. Everything drained goes out before anything the outbox holds, since the
    /// socket is attached to the outbox only afterwards.
    pub(super) async fn deliver_queue<S>(&mut self, io: &mut S) -> std::io::Result<()>
    where
        S: AsyncWrite + Unpin,
    {
        let (dev_id, user) = (self.session.dev_id, self.session.user);
        let conn = self.session.outbox.conn();
        loop {
            self.drain_queue(io).await?;
            if !self.ctx.hub.registry().drained(dev_id, user, conn) {
                return Ok(());
            }
        }
    }

    /// Writes the user's queue until a read finds less than a full batch.
    async fn drain_queue<S>(&mut self, io: &mut S) -> std::io::Result<()>
    where
        S: AsyncWrite + Unpin,
    {
        let (ctx, dev_id, user) = (self.ctx, self.session.dev_id, self.session.user);
        loop {
            let claimed = match ctx
                .storage
                .claim_queued_batch(dev_id, user, unix_now(), QUEUE_BATCH)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "claiming queued private messages failed");
                    return Ok(());
                }
            };
            let full = claimed.len() as i64 == QUEUE_BATCH;
            let mut frames: Vec<Bytes> = claimed
                .iter()
                .map(|m| {
                    frames::queued_private_message(&m.event, &m.message, m.sent_at).encode(self.era)
                })
                .collect();
            if let Err(e) = write_batch(io, &mut frames, self.write_timeout).await {
                let ttl = ctx
                    .limits
                    .queue_ttl_secs(dev_id, ctx.config.messages.queue_ttl_secs);
                let expires = unix_now() + ttl as i64;
                for m in &claimed {
                    if let Err(e) = ctx.storage.enqueue_message(dev_id, user, m, expires).await {
                        tracing::error!(error = %e, "re-queuing an undelivered private message failed");
                    }
                }
                return Err(e);
            }
            if !full {
                return Ok(());
            }
        }
    }
}

/// Sends the close frame after whatever is queued, and gives it `CLOSE_GRACE` to go out.
async fn close(rx: &OutboxRx, code: u16, text: &str) {
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
