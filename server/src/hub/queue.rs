//! A connection's outbox queue: frames from any thread, one receiver (the socket task). Ours rather than a
//! tokio mpsc channel because an idle connection should cost nothing here: tokio allocates a 32-slot block
//! per channel up front (about 1.5 KB per connection, BENCHMARKS.md), this allocates only while frames wait,
//! and the receiver drains a burst under one lock.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

#[derive(Default)]
struct State {
    frames: VecDeque<Bytes>,
    waker: Option<Waker>,
    receiver_gone: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Queued,
    Full,
    ReceiverGone,
}

pub struct Queue {
    capacity: usize,
    state: Mutex<State>,
}

impl Queue {
    pub fn new(capacity: usize) -> Queue {
        Queue {
            capacity,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn offer(&self, frame: Bytes) -> Offer {
        let mut s = self.lock();
        if s.receiver_gone {
            return Offer::ReceiverGone;
        }
        if s.frames.len() >= self.capacity {
            return Offer::Full;
        }
        s.frames.push_back(frame);
        let waker = s.waker.take();
        drop(s);
        // Woken outside the lock so the receiver never contends with us for it.
        if let Some(w) = waker {
            w.wake();
        }
        Offer::Queued
    }

    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Bytes> {
        let mut s = self.lock();
        if let Some(f) = s.frames.pop_front() {
            return Poll::Ready(f);
        }
        if s.frames.capacity() > 16 {
            // Give a burst's buffer back: idle connections stay small.
            s.frames = VecDeque::new();
        }
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    pub fn try_recv(&self) -> Option<Bytes> {
        self.lock().frames.pop_front()
    }

    /// The receiver is gone: frames queued later are refused and those waiting are freed.
    pub fn close(&self) {
        let mut s = self.lock();
        s.receiver_gone = true;
        s.frames = VecDeque::new();
        s.waker = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn bounded_fifo_then_closed() {
        let q = Queue::new(2);
        assert_eq!(q.offer(Bytes::from_static(b"a")), Offer::Queued);
        assert_eq!(q.offer(Bytes::from_static(b"b")), Offer::Queued);
        assert_eq!(q.offer(Bytes::from_static(b"c")), Offer::Full);
        assert_eq!(q.try_recv().as_deref(), Some(&b"a"[..]));
        assert_eq!(q.try_recv().as_deref(), Some(&b"b"[..]));
        assert_eq!(q.try_recv(), None);
        q.close();
        assert_eq!(q.offer(Bytes::from_static(b"d")), Offer::ReceiverGone);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_receiver_is_woken_by_another_thread() {
        let q = Arc::new(Queue::new(1024));
        let rx = q.clone();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < 1000 {
                got.push(std::future::poll_fn(|cx| rx.poll_recv(cx)).await);
            }
            got
        });
        for i in 0..1000u32 {
            while q.offer(Bytes::from(i.to_be_bytes().to_vec())) == Offer::Full {
                tokio::task::yield_now().await;
            }
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), reader)
            .await
            .expect("the reader is woken")
            .expect("reader task");
        let want: Vec<Bytes> = (0..1000u32)
            .map(|i| Bytes::from(i.to_be_bytes().to_vec()))
            .collect();
        assert_eq!(got, want, "every frame, in order, none lost");
    }
}
