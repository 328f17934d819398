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

use bytes::Bytes;

use super::{ConnId, Frame, Outbox, Pushed, ERAS};

/// Below this many subscribers, handing a share to another thread costs more than it saves.
pub(super) const PARALLEL_MIN: usize = 256;

/// Most publications to one pipe sent together (see `Registry::deliver`).
pub(super) const MAX_BATCH: usize = 32;

/// One publication on its way: its frame, and the connection that must not get it (a web_pipe2 sender).
#[derive(Clone)]
pub(super) struct Item {
    pub frame: Frame,
    pub except: Option<ConnId>,
}

/// What a share of a delivery came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tally {
    pub delivered: usize,
    pub slow: u64,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.delivered += other.delivered;
        self.slow += other.slow;
    }
}

/// Sends each item of `batch` (at most `MAX_BATCH`) to each outbox but its `except`, in order, encoding
/// each dialect of each item at most once. Several items go to a socket in one vectored send.
pub(super) fn deliver_all<'a>(
    outboxes: impl IntoIterator<Item = &'a Outbox>,
    batch: &[Item],
) -> Vec<Tally> {
    debug_assert!(batch.len() <= MAX_BATCH, "callers batch at most MAX_BATCH");
    let batch = &batch[..batch.len().min(MAX_BATCH)];
    if let [item] = batch {
        return vec![deliver_one(outboxes, item)];
    }
    let mut tallies = vec![Tally::default(); batch.len()];
    // The batch encoded for each dialect (legacy, modern, pusher), on first need.
    let mut encoded: [Vec<Bytes>; ERAS] = Default::default();
    static EMPTY: Bytes = Bytes::new();
    let mut items = [0usize; MAX_BATCH];
    for outbox in outboxes {
        let era = outbox.era();
        let dialect = &mut encoded[era as usize];
        if dialect.is_empty() {
            *dialect = batch.iter().map(|item| item.frame.wire(era)).collect();
        }
        let dialect = &encoded[era as usize];
        let mut frames = [&EMPTY; MAX_BATCH];
        let mut n = 0;
        for (i, item) in batch.iter().enumerate() {
            if Some(outbox.conn()) == item.except {
                continue;
            }
            frames[n] = &dialect[i];
            items[n] = i;
            n += 1;
        }
        if n == 1 {
            match outbox.push(frames[0]) {
                Pushed::Accepted => tallies[items[0]].delivered += 1,
                Pushed::Overflowed => tallies[items[0]].slow += 1,
                Pushed::Dropped => {}
            }
        } else if n > 1 {
            let (taken, overflowed) = outbox.push_many(&frames[..n]);
            for &i in &items[..taken] {
                tallies[i].delivered += 1;
            }
            if overflowed {
                tallies[items[taken]].slow += 1;
            }
        }
    }
    tallies
}

/// The common case, one publication: one send per outbox, nothing to gather.
fn deliver_one<'a>(outboxes: impl IntoIterator<Item = &'a Outbox>, item: &Item) -> Tally {
    let mut tally = Tally::default();
    let mut encoded: [Option<Bytes>; ERAS] = Default::default();
    for outbox in outboxes {
        if Some(outbox.conn()) == item.except {
            continue;
        }
        let era = outbox.era();
        let cache = &mut encoded[era as usize];
        match outbox.push(cache.get_or_insert_with(|| item.frame.wire(era))) {
            Pushed::Accepted => tally.delivered += 1,
            Pushed::Overflowed => tally.slow += 1,
            Pushed::Dropped => {}
        }
    }
    tally
}

struct Job {
    outboxes: Vec<Outbox>,
    batch: Vec<Item>,
    done: SyncSender<Vec<Tally>>,
}

/// Helper threads, one per core beyond the first, started on the first big delivery and stopped when the
/// registry is dropped (their queues close).
#[derive(Default)]
pub(super) struct Helpers {
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

    /// Delivers `batch` to every outbox of `subscribers`, sharing the sends with the helpers when there are
    /// many. One tally per item.
    pub(super) fn deliver<'a, I>(&self, subscribers: I, batch: &[Item]) -> Vec<Tally>
    where
        I: ExactSizeIterator<Item = &'a Outbox>,
    {
        if subscribers.len() < PARALLEL_MIN {
            return deliver_all(subscribers, batch);
        }
        let queues = self.queues();
        if queues.is_empty() {
            return deliver_all(subscribers, batch);
        }
        let share = subscribers.len().div_ceil(queues.len() + 1);
        let mut subscribers = subscribers;
        let mut waiting = Vec::with_capacity(queues.len());
        for queue in queues {
            let outboxes: Vec<Outbox> = subscribers.by_ref().take(share).cloned().collect();
            let (done, result) = sync_channel(1);
            let job = Job {
                outboxes,
                batch: batch.to_vec(),
                done,
            };
            let sent = queue.lock().unwrap_or_else(|e| e.into_inner()).send(job);
            match sent {
                Ok(()) => waiting.push(result),
                // A helper that died: its share is sent here instead.
                Err(returned) => {
                    let job = returned.0;
                    waiting.push(finished(deliver_all(&job.outboxes, batch)));
                }
            }
        }
        let mut tallies = deliver_all(subscribers, batch);
        for result in waiting {
            let theirs = result.recv().unwrap_or_default();
            for (mine, theirs) in tallies.iter_mut().zip(theirs) {
                mine.add(theirs);
            }
        }
        tallies
    }
}

fn finished(tallies: Vec<Tally>) -> Receiver<Vec<Tally>> {
    let (tx, rx) = sync_channel(1);
    let _ = tx.send(tallies);
    rx
}

fn serve(jobs: Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        let tallies = deliver_all(&job.outboxes, &job.batch);
        let _ = job.done.send(tallies);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::registry::tests::outbox;
    use crate::hub::{Encoded, Era, OutboxRx};
    use bytes::Bytes;
    use std::sync::Arc;

    struct Fixed(Bytes);
    impl Encoded for Fixed {
        fn wire(&self, _: Era) -> Bytes {
            self.0.clone()
        }
    }

    fn item(bytes: &'static [u8], except: Option<ConnId>) -> Item {
        Item {
            frame: Arc::new(Fixed(Bytes::from_static(bytes))),
            except,
        }
    }

    #[test]
    fn a_big_delivery_reaches_everyone_once_in_order() {
        let helpers = Helpers::default();
        let n = PARALLEL_MIN * 3 + 7;
        let (outboxes, mut rxs): (Vec<Outbox>, Vec<OutboxRx>) =
            (0..n as u64).map(|i| outbox(i, 8)).unzip();
        for message in [&b"one"[..], b"two", b"three"] {
            let tally = helpers.deliver(outboxes.iter(), &[item(message, Some(ConnId(5)))]);
            let want = Tally {
                delivered: n - 1,
                slow: 0,
            };
            assert_eq!(tally, [want]);
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
    fn a_batch_keeps_its_order_and_counts_each_item() {
        let helpers = Helpers::default();
        let n = PARALLEL_MIN + 10;
        // Room for two frames each: the third item overflows every outbox but the one it skips.
        let (outboxes, mut rxs): (Vec<Outbox>, Vec<OutboxRx>) =
            (0..n as u64).map(|i| outbox(i, 2)).unzip();
        let batch = [
            item(b"a", None),
            item(b"b", Some(ConnId(3))),
            item(b"c", None),
        ];
        let tallies = helpers.deliver(outboxes.iter(), &batch);
        let t = |delivered, slow| Tally { delivered, slow };
        assert_eq!(tallies, [t(n, 0), t(n - 1, 0), t(1, n as u64 - 1)]);
        for (i, rx) in rxs.iter_mut().enumerate() {
            let got: Vec<Bytes> = std::iter::from_fn(|| rx.try_recv()).collect();
            let want: &[&[u8]] = if i == 3 { &[b"a", b"c"] } else { &[b"a", b"b"] };
            assert_eq!(got, want, "subscriber {i}");
        }
    }

    #[test]
    fn slow_consumers_are_counted_from_every_share() {
        let helpers = Helpers::default();
        let n = PARALLEL_MIN * 2;
        let (outboxes, _rxs): (Vec<Outbox>, Vec<OutboxRx>) =
            (0..n as u64).map(|i| outbox(i, 1)).unzip();
        helpers.deliver(outboxes.iter(), &[item(b"x", None)]);
        let second = helpers.deliver(outboxes.iter(), &[item(b"x", None)]);
        let want = Tally {
            delivered: 0,
            slow: n as u64,
        };
        assert_eq!(second, [want]);
    }
}
