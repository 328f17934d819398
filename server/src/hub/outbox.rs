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
mod tests {
    use super::*;
    use crate::hub::registry::tests::outbox;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (server, client)
    }

    /// Flushes until everything is written, as the socket task does.
    async fn flush(rx: &OutboxRx) {
        std::future::poll_fn(|cx| match rx.poll_flush(cx) {
            Ok(Flush::Done) => Poll::Ready(()),
            Ok(Flush::Blocked { .. }) => Poll::Pending,
            Err(e) => panic!("flush failed: {e}"),
        })
        .await
    }

    #[test]
    fn bounded_fifo_then_gone() {
        let (o, mut rx) = outbox(1, 2);
        assert_eq!(o.push(&Bytes::from_static(b"a")), Pushed::Accepted);
        assert_eq!(o.push(&Bytes::from_static(b"b")), Pushed::Accepted);
        assert_eq!(o.push(&Bytes::from_static(b"c")), Pushed::Overflowed);
        assert_eq!(o.close_reason(), Some(CloseReason::SlowConsumer));
        assert_eq!(
            o.push(&Bytes::from_static(b"d")),
            Pushed::Dropped,
            "counted once"
        );
        assert_eq!(rx.try_recv().as_deref(), Some(&b"a"[..]));
        assert_eq!(rx.try_recv().as_deref(), Some(&b"b"[..]));
        assert_eq!(rx.try_recv(), None);
        drop(rx);
        assert_eq!(o.push(&Bytes::from_static(b"e")), Pushed::Dropped);
    }

    #[test]
    fn the_backlog_counts_queued_bytes_of_every_frame() {
        let (o, mut rx) = outbox(1, 4);
        assert_eq!(rx.backlog(), 0);
        o.push(&Bytes::from_static(b"abc"));
        rx.send(Bytes::from_static(b"answer"));
        o.push_many(&[&Bytes::from_static(b"de"), &Bytes::from_static(b"f")]);
        assert_eq!(rx.backlog(), 12, "publishers' frames and the task's own");
        rx.try_recv();
        assert_eq!(rx.backlog(), 9);
        drop(rx);
        assert_eq!(o.0.lock().bytes, 0, "freed with the frames");
    }

    #[test]
    fn the_first_close_reason_wins() {
        let (o, rx) = outbox(1, 2);
        assert!(o.close(CloseReason::Kicked));
        assert!(!o.close(CloseReason::Shutdown));
        assert_eq!(rx.closing(), Some(CloseReason::Kicked));
        // The task's own frames (its close frame) still go out once closing; publishers' do not.
        rx.send(Bytes::from_static(b"bye"));
        assert_eq!(o.push(&Bytes::from_static(b"x")), Pushed::Dropped);
    }

    #[tokio::test]
    async fn frames_queued_before_the_socket_go_first_then_in_place() {
        let (server, mut client) = pair().await;
        let (o, rx) = outbox(1, 8);
        o.push(&Bytes::from_static(b"one "));
        o.push(&Bytes::from_static(b"two "));
        rx.attach(Box::new(server));
        // Something is waiting, so this one queues behind it rather than overtaking it.
        o.push(&Bytes::from_static(b"three "));
        flush(&rx).await;
        o.push(&Bytes::from_static(b"four"));
        let mut got = vec![0; 18];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"one two three four");
    }

    /// Frame `i` of a late-reading client's stream: 4 KB, numbered.
    fn numbered(i: u32) -> Bytes {
        Bytes::from(format!("{i:08}").repeat(512))
    }

    /// Runs `publish` on another thread against an outbox whose client reads only while it runs (far more
    /// than the socket buffers take: most of it queues, some of it partly written), then checks that the
    /// client got frames 0..2000, whole and in order.
    async fn late_reader_gets_everything(publish: impl FnOnce(&Outbox) + Send + 'static) {
        let (server, mut client) = pair().await;
        let (o, rx) = outbox(1, 1 << 20);
        rx.attach(Box::new(server));
        let publisher = std::thread::spawn(move || {
            publish(&o);
            o
        });
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = vec![0; 64 * 1024];
            while got.len() < 2000 * 4096 {
                let n = client.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed early");
                got.extend_from_slice(&buf[..n]);
            }
            got
        });
        let _o = publisher.join().unwrap();
        tokio::time::timeout(Duration::from_secs(20), flush(&rx))
            .await
            .expect("flushed");
        let got = reader.await.unwrap();
        let want: Vec<u8> = (0..2000).flat_map(|i| numbered(i).to_vec()).collect();
        assert!(got == want, "every frame, whole and in order");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_reads_late_gets_everything_in_order() {
        late_reader_gets_everything(|o| {
            for i in 0..2000 {
                assert_eq!(o.push(&numbered(i)), Pushed::Accepted);
            }
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_sent_together_arrive_whole_and_in_order() {
        late_reader_gets_everything(|o| {
            // Batches of 5: one vectored send each while nothing waits.
            for start in (0..2000).step_by(5) {
                let frames: Vec<Bytes> = (start..start + 5).map(numbered).collect();
                let refs: Vec<&Bytes> = frames.iter().collect();
                assert_eq!(o.push_many(&refs), (5, false));
            }
        })
        .await;
    }

    #[tokio::test]
    async fn a_waiting_task_is_woken_by_a_frame_that_did_not_fit() {
        let (server, mut client) = pair().await;
        let (o, rx) = outbox(1, 1 << 20);
        rx.attach(Box::new(server));
        // Fill the socket's buffers without reading.
        let big = Bytes::from(vec![7u8; 1 << 20]);
        let mut waiting = false;
        for _ in 0..64 {
            o.push(&big);
            if matches!(
                std::future::poll_fn(|cx| Poll::Ready(rx.poll_flush(cx))).await,
                Ok(Flush::Blocked { .. })
            ) {
                waiting = true;
                break;
            }
        }
        assert!(waiting, "the socket filled up");
        let drain = tokio::spawn(async move {
            let mut buf = vec![0; 1 << 16];
            loop {
                if client.read(&mut buf).await.unwrap() == 0 {
                    break;
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(20), flush(&rx))
            .await
            .expect("woken when the socket drained, and flushed");
        drop(rx);
        drop(o);
        drain.await.unwrap();
    }

    #[tokio::test]
    async fn dropping_the_receiver_closes_the_socket() {
        let (server, mut client) = pair().await;
        let (o, rx) = outbox(1, 8);
        rx.attach(Box::new(server));
        drop(rx);
        let mut buf = [0; 8];
        assert_eq!(client.read(&mut buf).await.unwrap(), 0, "EOF");
        assert_eq!(o.push(&Bytes::from_static(b"late")), Pushed::Dropped);
        client.write_all(b"x").await.ok();
    }
}
