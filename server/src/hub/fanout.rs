//! Delivering one publication to a pipe's subscribers, on every core when the pipe is big.
//!
//! A delivery is one non-blocking send (see `Outbox`), about 5–10 µs of kernel time on loopback, so a
//! publish to 1,000 subscribers keeps one core busy for several milliseconds and its last subscriber waits
//! for all of them. Past `PARALLEL_MIN` subscribers the list is split: helper threads take a share each
//! while the publisher sends its own, and the publish returns once every share is sent. Returning only then
//! keeps the order of a pipe's messages for every subscriber, as when one thread sends them all.

use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Mutex, OnceLock};
use std::thread;

use super::{ConnId, Era, Frame, Outbox, Pushed};

/// Below this many subscribers, handing a share to another thread costs more than it saves.
pub const PARALLEL_MIN: usize = 256;

/// What a share of a delivery came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub delivered: usize,
    pub slow: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.delivered += other.delivered;
        self.slow += other.slow;
    }
}

/// Sends `frame` to each outbox but `except`'s, encoding each dialect at most once.
pub fn deliver_all<'a>(
    outboxes: impl IntoIterator<Item = &'a Outbox>,
    frame: &Frame,
    except: Option<ConnId>,
) -> Tally {
    let mut tally = Tally::default();
    let (mut modern, mut legacy) = (None, None);
    for outbox in outboxes {
        if Some(outbox.conn()) == except {
            continue;
        }
        let cache = match outbox.era() {
            Era::Modern => &mut modern,
            Era::Legacy => &mut legacy,
        };
        let bytes = cache.get_or_insert_with(|| frame.wire(outbox.era()));
        match outbox.push(bytes) {
            Pushed::Accepted => tally.delivered += 1,
            Pushed::Overflowed => tally.slow += 1,
            Pushed::Dropped => {}
        }
    }
    tally
}

struct Job {
    outboxes: Vec<Outbox>,
    frame: Frame,
    except: Option<ConnId>,
    done: SyncSender<Tally>,
}

/// Helper threads, one per core beyond the first, started on the first big delivery and stopped when the
/// registry is dropped (their queues close).
#[derive(Default)]
pub struct Helpers {
    queues: OnceLock<Vec<Mutex<Sender<Job>>>>,
}

impl Helpers {
    fn queues(&self) -> &[Mutex<Sender<Job>>] {
        self.queues.get_or_init(|| {
            let extra = thread::available_parallelism().map_or(1, |n| n.get()) - 1;
            (0..extra)
                .filter_map(|i| {
                    let (tx, rx) = channel::<Job>();
                    thread::Builder::new()
                        .name(format!("halley-fanout-{i}"))
                        .spawn(move || serve(rx))
                        .map_err(|e| tracing::warn!(error = %e, "no fan-out helper thread"))
                        .ok()
                        .map(|_| Mutex::new(tx))
                })
                .collect()
        })
    }

    /// Delivers to every outbox of `subscribers`, sharing the sends with the helpers when there are many.
    pub fn deliver<'a, I>(&self, subscribers: I, frame: &Frame, except: Option<ConnId>) -> Tally
    where
        I: ExactSizeIterator<Item = &'a Outbox>,
    {
        if subscribers.len() < PARALLEL_MIN {
            return deliver_all(subscribers, frame, except);
        }
        let queues = self.queues();
        if queues.is_empty() {
            return deliver_all(subscribers, frame, except);
        }
        let share = subscribers.len().div_ceil(queues.len() + 1);
        let mut subscribers = subscribers;
        let mut waiting = Vec::with_capacity(queues.len());
        for queue in queues {
            let outboxes: Vec<Outbox> = subscribers.by_ref().take(share).cloned().collect();
            let (done, result) = sync_channel(1);
            let job = Job {
                outboxes,
                frame: frame.clone(),
                except,
                done,
            };
            let sent = queue.lock().unwrap_or_else(|e| e.into_inner()).send(job);
            match sent {
                Ok(()) => waiting.push(result),
                // A helper that died: its share is sent here instead.
                Err(returned) => {
                    let job = returned.0;
                    waiting.push(finished(deliver_all(&job.outboxes, frame, except)));
                }
            }
        }
        let mut tally = deliver_all(subscribers, frame, except);
        for result in waiting {
            tally.add(result.recv().unwrap_or_default());
        }
        tally
    }
}

fn finished(tally: Tally) -> Receiver<Tally> {
    let (tx, rx) = sync_channel(1);
    let _ = tx.send(tally);
    rx
}

fn serve(jobs: Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        let tally = deliver_all(&job.outboxes, &job.frame, job.except);
        let _ = job.done.send(tally);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::registry::tests::outbox;
    use crate::hub::{Encoded, OutboxRx};
    use bytes::Bytes;
    use std::sync::Arc;

    struct Fixed(Bytes);
    impl Encoded for Fixed {
        fn wire(&self, _: Era) -> Bytes {
            self.0.clone()
        }
    }

    #[test]
    fn a_big_delivery_reaches_everyone_once_in_order() {
        let helpers = Helpers::default();
        let n = PARALLEL_MIN * 3 + 7;
        let (outboxes, mut rxs): (Vec<Outbox>, Vec<OutboxRx>) =
            (0..n as u64).map(|i| outbox(i, 8)).unzip();
        for message in [&b"one"[..], b"two", b"three"] {
            let frame: Frame = Arc::new(Fixed(Bytes::from_static(message)));
            let tally = helpers.deliver(outboxes.iter(), &frame, Some(ConnId(5)));
            assert_eq!(
                tally,
                Tally {
                    delivered: n - 1,
                    slow: 0
                }
            );
        }
        for (i, rx) in rxs.iter_mut().enumerate() {
            let got: Vec<Bytes> = std::iter::from_fn(|| rx.try_recv()).collect();
            if i == 5 {
                assert!(got.is_empty(), "the excluded connection gets nothing");
            } else {
                assert_eq!(got, [&b"one"[..], b"two", b"three"], "subscriber {i}");
            }
        }
    }

    #[test]
    fn slow_consumers_are_counted_from_every_share() {
        let helpers = Helpers::default();
        let n = PARALLEL_MIN * 2;
        let (outboxes, _rxs): (Vec<Outbox>, Vec<OutboxRx>) =
            (0..n as u64).map(|i| outbox(i, 1)).unzip();
        let frame: Frame = Arc::new(Fixed(Bytes::from_static(b"x")));
        helpers.deliver(outboxes.iter(), &frame, None);
        let second = helpers.deliver(outboxes.iter(), &frame, None);
        assert_eq!(
            second,
            Tally {
                delivered: 0,
                slow: n as u64
            }
        );
    }
}
