//! A connection's outbox: it owns the connection's socket once attached (its writes, and the reads of the
//! connection's task), and frames come into it from any thread. The socket is a [`Socket`]: the TCP
//! socket itself, or TLS over it (`front::tls::TlsSocket`), whose records are sealed under the same lock.
//!
//! It is not a channel to the connection's task. When nothing is waiting, a frame is written to the
//! socket in place by the thread that delivers it, a publisher's (one non-blocking send, as a hand-written
//! fan-out would): a delivery to a client that keeps up costs one syscall on the publisher's thread and no
//! task wake-up. Only what the socket does not take at once is queued, bounded; the connection's task is
//! woken to write it, in vectored batches, when the socket drains. The queue is allocated only while frames
//! wait, so an idle connection costs nothing here.
//!
//! Before a socket is attached (the connection is still writing its greeting and the user's queued private
//! messages), and in tests, every frame queues. The state is one short mutex per connection, never held
//! across an await; holding it during the send is what keeps frames from different publishers whole and
//! in order. It also means a push waits for whatever write holds the outbox (another publisher's, or the
//! task's batch), so callers do not push while holding a lock other connections need (`registry`,
//! `users`).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};

use super::socket::Socket;
use super::ConnInfo;
use crate::ids::ConnId;

use super::Era;

/// Frames handed to one vectored write at most.
const WRITE_BATCH: usize = 64;

/// Why the server closes a connection; the socket task maps it to a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    SlowConsumer,
    Shutdown,
    Kicked,
    TooBig,
}

/// What became of a frame offered to a connection's outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Written to the socket or queued for it.
    Accepted,
    /// The outbox was full and this frame closed the connection as a slow consumer: counted once per
    /// connection, not once per frame it then misses.
    Overflowed,
    /// Not taken: the connection is already closing (a full outbox again) or gone.
    Dropped,
}

/// How far the socket task got with the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Everything is written; the task is woken when something queues again.
    Done,
    /// The socket is full; the task is woken when it drains. `progressed`: some bytes went out first.
    Blocked { progressed: bool },
}

#[derive(Default)]
struct State {
    /// Waiting to be written, in order; the front one may be partly written already.
    frames: VecDeque<Bytes>,
    /// Bytes of `frames` still to be written.
    bytes: usize,
    socket: Option<Box<dyn Socket>>,
    waker: Option<Waker>,
    closing: Option<CloseReason>,
    gone: bool,
}

struct Conn {
    info: ConnInfo,
    capacity: usize,
    state: Mutex<State>,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `capped`: frames from publishers are bounded by the outbox capacity; the socket task's own frames
    /// (answers, pings, the close frame) are not: it runs no more commands while its backlog (`bytes`)
    /// is large (`ConnLoop::drain_input`).
    fn offer(&self, frame: &Bytes, capped: bool) -> Pushed {
        let mut s = self.lock();
        if s.gone || (capped && s.closing.is_some()) {
            return Pushed::Dropped;
        }
        let was_empty = s.frames.is_empty();
        let mut written = 0;
        if was_empty {
            if let Some(socket) = s.socket.as_mut() {
                match socket.try_write(frame) {
                    // The common case costs no reference count: the shared frame is not cloned.
                    Ok(n) if n == frame.len() => {
                        if socket.pending() {
                            // Taken but not all sent (TLS): the task sends the rest when it can.
                            let waker = s.waker.take();
                            drop(s);
                            if let Some(w) = waker {
                                w.wake();
                            }
                        }
                        return Pushed::Accepted;
                    }
                    Ok(n) => written = n,
                    // WouldBlock, or a broken socket that the task finds when it writes the rest.
                    Err(_) => {}
                }
            }
        } else if capped && s.frames.len() >= self.capacity {
            s.closing = Some(CloseReason::SlowConsumer);
            let waker = s.waker.take();
            drop(s);
            if let Some(w) = waker {
                w.wake();
            }
            return Pushed::Overflowed;
        }
        s.bytes += frame.len() - written;
        s.frames.push_back(frame.slice(written..));
        // A task with frames already waiting is writing them or waiting for the socket: no wake-up.
        let waker = if was_empty { s.waker.take() } else { None };
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
        Pushed::Accepted
    }

    /// Several publishers' frames at once, in order, with one vectored send when nothing is waiting.
    /// Returns how many were taken (a prefix) and whether the next one overflowed the outbox.
    fn offer_many(&self, frames: &[&Bytes]) -> (usize, bool) {
        let mut s = self.lock();
        if s.gone || s.closing.is_some() {
            return (0, false);
        }
        let was_empty = s.frames.is_empty();
        // Frames fully written, and bytes written of the next one.
        let (mut sent, mut offset) = (0, 0);
        let mut pending = false;
        if was_empty {
            if let Some(socket) = s.socket.as_mut() {
                let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
                let n = frames.len().min(WRITE_BATCH);
                for (slot, frame) in slices.iter_mut().zip(frames) {
                    *slot = IoSlice::new(frame);
                }
                if let Ok(mut written) = socket.try_write_vectored(&slices[..n]) {
                    while sent < frames.len() && written >= frames[sent].len() {
                        written -= frames[sent].len();
                        sent += 1;
                    }
                    offset = written;
                }
                pending = socket.pending();
            }
        }
        let rest = frames.len() - sent;
        if rest == 0 {
            if pending {
                let waker = s.waker.take();
                drop(s);
                if let Some(w) = waker {
                    w.wake();
                }
            }
            return (sent, false);
        }
        let fits = rest.min(
            self.capacity
                .saturating_sub(s.frames.len())
                .max(usize::from(was_empty)),
        );
        for (k, frame) in frames[sent..sent + fits].iter().enumerate() {
            s.bytes += frame.len() - if k == 0 { offset } else { 0 };
            s.frames.push_back(if k == 0 {
                frame.slice(offset..)
            } else {
                (*frame).clone()
            });
        }
        let overflowed = fits < rest;
        if overflowed {
            s.closing = Some(CloseReason::SlowConsumer);
        }
        let waker = if (was_empty && fits > 0) || overflowed || pending {
            s.waker.take()
        } else {
            None
        };
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
        (sent + fits, overflowed)
    }

    fn close(&self, reason: CloseReason) -> bool {
        let mut s = self.lock();
        if s.closing.is_some() || s.gone {
            return false;
        }
        s.closing = Some(reason);
        let waker = s.waker.take();
        drop(s);
        if let Some(w) = waker {
            w.wake();
        }
        true
    }
}

fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// The delivering side of one connection, as stored in the registry. One pointer: every pipe a
/// connection subscribes to costs the registry one `Arc` clone.
#[derive(Clone)]
pub struct Outbox(Arc<Conn>);

impl Outbox {
    /// A new outbox of `capacity` frames, with no socket yet; the receiver belongs to the socket task.
    pub fn new(info: ConnInfo, capacity: usize) -> (Outbox, OutboxRx) {
        let conn = Arc::new(Conn {
            info,
            capacity,
            state: Mutex::new(State::default()),
        });
        (Outbox(conn.clone()), OutboxRx(conn))
    }

    pub fn conn(&self) -> ConnId {
        self.0.info.conn
    }

    pub fn era(&self) -> Era {
        self.0.info.era
    }

    pub fn info(&self) -> &ConnInfo {
        &self.0.info
    }

    /// Delivers a frame without waiting. A full outbox means the client stopped reading: it is closed
    /// (1008) rather than allowed to slow the publisher or anyone else.
    pub fn push(&self, frame: &Bytes) -> Pushed {
        self.0.offer(frame, true)
    }

    /// Delivers several frames in order (publishes to one pipe sent together); see `Conn::offer_many`.
    pub fn push_many(&self, frames: &[&Bytes]) -> (usize, bool) {
        self.0.offer_many(frames)
    }

    /// Asks the socket task to close the connection. The first reason wins; `true` when this call was it.
    pub fn close(&self, reason: CloseReason) -> bool {
        self.0.close(reason)
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        self.0.lock().closing
    }

    /// Holds the outbox as a delivery writing to its socket does, until the guard is dropped: tests stand
    /// for a write in place that takes long with it.
    #[cfg(test)]
    pub(crate) fn busy(&self) -> impl Drop + '_ {
        self.0.lock()
    }
}

/// The socket task's side: it owns the socket's reads and writes what could not be written in place.
pub struct OutboxRx(Arc<Conn>);

impl OutboxRx {
    /// From now on frames go straight to `socket` when nothing is waiting. Frames queued before are
    /// written first, by the next `poll_flush`.
    pub fn attach(&self, socket: Box<dyn Socket>) {
        self.0.lock().socket = Some(socket);
    }

    /// Queues or writes one of the task's own frames, after everything already delivered.
    pub fn send(&self, frame: Bytes) {
        self.0.offer(&frame, false);
    }

    /// The close asked for, if any. Checked on every wake-up (`close` wakes the task).
    pub fn closing(&self) -> Option<CloseReason> {
        self.0.lock().closing
    }

    /// Asks for a close from the task itself (shutdown seen at start).
    pub fn close(&self, reason: CloseReason) {
        self.0.close(reason);
    }

    /// Writes what is queued, in batches, until the socket is full or nothing is left. Registers the
    /// task to be woken for new frames, a close request, or the socket draining.
    pub fn poll_flush(&self, cx: &mut Context<'_>) -> io::Result<Flush> {
        let mut s = self.0.lock();
        register(&mut s.waker, cx);
        let mut progressed = false;
        loop {
            let state = &mut *s;
            // Bytes a socket took earlier go before any frame (TLS records partly sent).
            if let Some(socket) = state.socket.as_mut().filter(|s| s.pending()) {
                match socket.try_flush() {
                    Ok(()) => progressed = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        match socket.poll_write_ready(cx) {
                            Poll::Ready(Ok(())) => continue,
                            Poll::Ready(Err(e)) => return Err(e),
                            Poll::Pending => return Ok(Flush::Blocked { progressed }),
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            if state.frames.is_empty() {
                if state.frames.capacity() > 16 {
                    // Give a burst's buffer back: idle connections stay small.
                    state.frames = VecDeque::new();
                }
                return Ok(Flush::Done);
            }
            let Some(socket) = state.socket.as_mut() else {
                return Ok(Flush::Blocked { progressed });
            };
            let mut slices = [IoSlice::new(&[]); WRITE_BATCH];
            let n = state.frames.len().min(WRITE_BATCH);
            for (slot, frame) in slices.iter_mut().zip(state.frames.iter()) {
                *slot = IoSlice::new(frame);
            }
            match socket.try_write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(mut written) => {
                    progressed = true;
                    state.bytes -= written;
                    while let Some(front) = state.frames.front_mut() {
                        if written >= front.len() {
                            written -= front.len();
                            state.frames.pop_front();
                        } else {
                            front.advance(written);
                            break;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match socket.poll_write_ready(cx) {
                        // Drained in the meantime: write again.
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(e)) => return Err(e),
                        Poll::Pending => return Ok(Flush::Blocked { progressed }),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Bytes queued and not yet written: the task's own answers count too, so that it can stop running
    /// commands while a client does not read them.
    pub fn backlog(&self) -> usize {
        self.0.lock().bytes
    }

    /// Whether the client sent something (or hung up); registers the task for it otherwise.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.0.lock().socket {
            Some(socket) => socket.poll_read_ready(cx),
            None => Poll::Pending,
        }
    }

    /// Reads what the socket has without waiting; `WouldBlock` when nothing.
    pub fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self.0.lock().socket.as_mut() {
            Some(socket) => socket.try_read_buf(buf),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// The next queued frame, for a receiver without a socket (tests, benchmarks).
    pub fn try_recv(&mut self) -> Option<Bytes> {
        let mut s = self.0.lock();
        let frame = s.frames.pop_front()?;
        s.bytes -= frame.len();
        Some(frame)
    }
}

impl Drop for OutboxRx {
    /// The connection is over: later frames are refused, waiting ones freed, and the socket closed now
    /// even if the registry still holds the outbox for a moment.
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.gone = true;
        s.frames = VecDeque::new();
        s.bytes = 0;
        s.waker = None;
        s.socket = None;
    }
}

#[cfg(test)]
mod tests;
