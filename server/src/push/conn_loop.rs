//! One WebSocket connection's socket loop: it reads client commands, drains the connection's outbox into the
//! socket in vectored batches, pings idle peers and closes on request (slow consumer, shutdown, revoked
//! user). The connection's setup and teardown are in `websocket.rs`.

use std::io::IoSlice;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

use super::protocol::frames;
use super::protocol::parse_command;
use super::protocol::wsframe::{self, FrameDecoder, Incoming};
use super::session::{Answer, Session};
use crate::commands::users_messages::QUEUE_BATCH;
use crate::commands::Ctx;
use crate::hub::{CloseReason, Era, OutboxRx};
use crate::tenant::unix_now;

/// Frames written to the socket in one vectored write at most.
const WRITE_BATCH: usize = 64;

pub(super) struct ConnLoop<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) session: Session,
    pub(super) era: Era,
    pub(super) decoder: FrameDecoder,
    pub(super) rbuf: BytesMut,
    pub(super) write_timeout: Duration,
}

/// What the connection does after handling input.
enum Next {
    Continue,
    Close(u16, &'static str),
}

impl ConnLoop<'_> {
    pub(super) async fn serve<S>(
        &mut self,
        io: &mut S,
        mut rx: OutboxRx,
        mut shutdown: watch::Receiver<bool>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let period = self.ctx.config.websocket.ping_interval();
        let mut ticker = interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut batch: Vec<Bytes> = Vec::new();
        if *shutdown.borrow() {
            self.session.outbox.control().close(CloseReason::Shutdown);
        }
        loop {
            tokio::select! {
                biased;
                reason = self.session.outbox.control().closed() => {
                    let (code, text) = close_code(reason);
                    let _ = write_all(io, &wsframe::encode_close(code, text), Duration::from_secs(1)).await;
                    return;
                }
                changed = shutdown.changed() => {
                    // A dropped sender also means the server is going away.
                    if changed.is_err() || *shutdown.borrow() {
                        self.session.outbox.control().close(CloseReason::Shutdown);
                    }
                }
                frame = rx.recv() => {
                    batch.push(frame);
                    while batch.len() < WRITE_BATCH {
                        match rx.try_recv() {
                            Some(f) => batch.push(f),
                            None => break,
                        }
                    }
                    if write_batch(io, &mut batch, self.write_timeout).await.is_err() {
                        return;
                    }
                }
                read = io.read_buf(&mut self.rbuf) => {
                    match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    last_heard = Instant::now();
                    match self.drain_input(io).await {
                        Next::Continue => {}
                        Next::Close(code, text) => {
                            let _ = write_all(io, &wsframe::encode_close(code, text), Duration::from_secs(1)).await;
                            return;
                        }
                    }
                    if self.rbuf.is_empty() && self.rbuf.capacity() > 4096 {
                        // Give back a large buffer once a big message is handled: idle connections stay small.
                        self.rbuf = BytesMut::new();
                    }
                }
                _ = ticker.tick() => {
                    if last_heard.elapsed() >= period * 2 {
                        return;
                    }
                    if write_all(io, &wsframe::encode_ping(b""), self.write_timeout).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    async fn drain_input<S>(&mut self, io: &mut S) -> Next
    where
        S: AsyncWrite + Unpin,
    {
        loop {
            let incoming = match self.decoder.decode(&mut self.rbuf) {
                Ok(Some(i)) => i,
                Ok(None) => return Next::Continue,
                Err(e) => return Next::Close(e.close_code(), "protocol error"),
            };
            let next = match incoming {
                Incoming::Text(text) => self.on_text(io, &text).await,
                // Binary is read as text, as the reference does.
                Incoming::Binary(data) => match std::str::from_utf8(&data) {
                    Ok(text) => self.on_text(io, text).await,
                    Err(_) => Next::Close(1007, "invalid UTF-8"),
                },
                Incoming::Ping(payload) => {
                    if write_all(io, &wsframe::encode_pong(&payload), self.write_timeout)
                        .await
                        .is_err()
                    {
                        return Next::Close(1001, "");
                    }
                    Next::Continue
                }
                Incoming::Pong => Next::Continue,
                Incoming::Close(..) => Next::Close(1000, ""),
            };
            if !matches!(next, Next::Continue) {
                return next;
            }
        }
    }

    async fn on_text<S>(&mut self, io: &mut S, text: &str) -> Next
    where
        S: AsyncWrite + Unpin,
    {
        let answer = match parse_command(text) {
            Ok(command) => self.session.handle(self.ctx, command).await,
            Err(e) => Answer::refuse(e),
        };
        for frame in &answer.frames {
            if write_all(io, &frame.encode(self.era), self.write_timeout)
                .await
                .is_err()
            {
                return Next::Close(wsframe::close_code::GOING_AWAY, "");
            }
        }
        if answer.close {
            return Next::Close(wsframe::close_code::POLICY_VIOLATION, "invalid command");
        }
        Next::Continue
    }

    /// Private messages queued while the user was away, in order and all of them, written straight to
    /// the socket. Each message is claimed (removed from the queue) before it is written, so a sender
    /// racing with this drain never delivers it a second time; a batch that cannot be written goes back
    /// into the queue.
    pub(super) async fn deliver_queue<S>(&mut self, io: &mut S) -> std::io::Result<()>
    where
        S: AsyncWrite + Unpin,
    {
        let (ctx, dev_id, user) = (self.ctx, self.session.dev_id, self.session.user);
        loop {
            let batch = match ctx
                .storage
                .queued_messages(dev_id, user, unix_now(), QUEUE_BATCH)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "reading queued private messages failed");
                    return Ok(());
                }
            };
            let full = batch.len() as i64 == QUEUE_BATCH;
            let mut claimed = Vec::with_capacity(batch.len());
            for m in batch {
                match ctx.storage.claim_queued(dev_id, user, m.id).await {
                    Ok(true) => claimed.push(m),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "claiming a queued private message failed")
                    }
                }
            }
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
