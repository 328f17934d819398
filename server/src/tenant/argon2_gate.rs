//! At most N argon2 computations at once, whatever the load. Each one needs about 19 MiB (the `argon2` crate's
//! default memory cost) on a blocking thread, so without a bound 64 concurrent wrong passwords cost 1.2 GB and
//! more. Callers past the permits wait in a bounded queue; past the queue they are refused at once (the API
//! answers 503 with Retry-After) rather than piling up as unbounded waiters.
//!
//! The gate also owns the memory: one buffer per permit, made once and reused. Letting argon2 allocate its
//! own was not enough even with two permits: glibc serves a freed 19 MiB block from the freeing thread's arena
//! next time, and each blocking thread has its own arena, so the peak grew with the number of threads that had
//! ever hashed (about 500 MB after 64 logins).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use argon2::Block;
use tokio::sync::Semaphore;

/// Too many password checks are waiting already.
#[derive(Debug, thiserror::Error)]
#[error("too many password checks are waiting")]
pub(crate) struct Busy;

#[derive(Debug)]
pub(crate) struct Argon2Gate {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    /// argon2's working memory, one buffer per permit at most (a holder of a permit takes one).
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
}

/// Counts a waiter for as long as it waits (also when its request is dropped while waiting).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Argon2Gate {
    pub(crate) fn new(concurrency: usize, max_waiting: usize) -> Argon2Gate {
        Argon2Gate {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting,
            buffers: Arc::default(),
        }
    }

    /// Runs `work` on a blocking thread once a permit is free, with the permit's reusable memory buffer. The
    /// permit moves into the blocking task, so a client that hangs up mid-hash does not free its slot first.
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<Option<T>, Busy>
    where
        F: FnOnce(&mut Vec<Block>) -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(Busy);
                }
                let _waiting = Waiting(&self.waiting);
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed")
            }
        };
        let buffers = self.buffers.clone();
        let result = tokio::task::spawn_blocking(move || {
            let taken = buffers.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut memory = taken.unwrap_or_default();
            let out = work(&mut memory);
            buffers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(memory);
            drop(permit);
            out
        })
        .await;
        Ok(result.ok())
    }
}

impl Default for Argon2Gate {
    fn default() -> Self {
        Argon2Gate::new(2, 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[tokio::test]
    async fn at_most_n_run_and_the_queue_is_bounded() {
        let gate = Arc::new(Argon2Gate::new(2, 3));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let release = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let (gate, running, peak, release) =
                (gate.clone(), running.clone(), peak.clone(), release.clone());
            tasks.push(tokio::spawn(async move {
                gate.run(move |_| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    // Hold the slot until the test lets go.
                    let (go, signal) = &*release;
                    let mut go = go.lock().unwrap();
                    while !*go {
                        go = signal.wait(go).unwrap();
                    }
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        // 2 running + 3 waiting: the sixth is refused without waiting.
        while gate.waiting.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(gate.run(|_| ()).await.is_err());
        *release.0.lock().unwrap() = true;
        release.1.notify_all();
        for t in tasks {
            assert!(t.await.unwrap().unwrap().is_some());
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!(gate.waiting.load(Ordering::SeqCst), 0);
        assert!(gate.run(|_| 7).await.unwrap() == Some(7));
        assert!(
            gate.buffers.lock().unwrap().len() <= 2,
            "one buffer per permit"
        );
    }
}
