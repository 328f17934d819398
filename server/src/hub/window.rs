//! A pipe's positions and its recovery window: the epoch and the last offset given, and the newest frames
//! (already carrying their `offset`) kept so that a client that reconnects with its last position gets
//! what it missed. A pipe has one only once a connection asked for positions (`subscription2`); every other
//! pipe publishes as before, with no offset and nothing kept.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Era, Frame, Publication};
use crate::ids::DevId;

/// How much a window holds; the whole node's windows share `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    /// Messages kept per pipe.
    pub messages: usize,
    /// Age past which a message is no longer kept.
    pub max_age: Duration,
    /// Bytes of kept frames across every pipe of the node.
    pub max_bytes: usize,
    /// Most messages one resubscribe replays; a client further behind is told `recovered:false`.
    pub replay_max: u64,
}

impl Default for WindowLimits {
    fn default() -> Self {
        WindowLimits {
            messages: 100,
            max_age: Duration::from_secs(120),
            max_bytes: 64 * 1024 * 1024,
            replay_max: 300,
        }
    }
}

/// What one tenant's windows may hold: its own window (its `tenant_limits` override, else the node's) and
/// the bytes its history quota leaves free, so that what a tenant keeps in windows counts in its storage
/// quota and one tenant cannot take the node's whole budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantWindow {
    pub messages: usize,
    pub max_age: Duration,
    pub max_bytes: usize,
}

/// A tenant's share of the windows: its limits (set by the command layer, read at every keep) and the
/// bytes its streams hold.
#[derive(Debug)]
pub(super) struct Share {
    messages: AtomicUsize,
    max_age_ms: AtomicU64,
    max_bytes: AtomicUsize,
    bytes: AtomicUsize,
}

impl Share {
    pub(super) fn new(w: TenantWindow) -> Share {
        let share = Share {
            messages: AtomicUsize::new(0),
            max_age_ms: AtomicU64::new(0),
            max_bytes: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
        };
        share.set(w);
        share
    }

    fn set(&self, w: TenantWindow) {
        self.messages.store(w.messages, Ordering::Relaxed);
        let ms = u64::try_from(w.max_age.as_millis()).unwrap_or(u64::MAX);
        self.max_age_ms.store(ms, Ordering::Relaxed);
        self.max_bytes.store(w.max_bytes, Ordering::Relaxed);
    }

    pub(super) fn messages(&self) -> usize {
        self.messages.load(Ordering::Relaxed)
    }

    pub(super) fn max_age(&self) -> Duration {
        Duration::from_millis(self.max_age_ms.load(Ordering::Relaxed))
    }

    pub(super) fn max_bytes(&self) -> usize {
        self.max_bytes.load(Ordering::Relaxed)
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Counts bytes kept elsewhere for the tenant (its users' private-message windows).
    pub(super) fn add(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn sub(&self, n: usize) {
        self.bytes.fetch_sub(n, Ordering::Relaxed);
    }
}

/// The window limits, the bytes every window of the node holds, and each tenant's share.
#[derive(Debug, Default)]
pub(super) struct Windows {
    pub(super) limits: WindowLimits,
    bytes: AtomicUsize,
    /// Tenants with streams (or whose window was set): bounded by the tenants that use positions, and
    /// pruned by the sweep once a tenant's streams are gone.
    tenants: Mutex<HashMap<DevId, Arc<Share>>>,
}

impl Windows {
    pub(super) fn new(limits: WindowLimits) -> Windows {
        Windows {
            limits,
            bytes: AtomicUsize::new(0),
            tenants: Mutex::default(),
        }
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The node's window for a tenant nobody set one for (its quota not applied yet: the command layer
    /// sets it before the tenant's first stream is made).
    fn default_window(&self) -> TenantWindow {
        TenantWindow {
            messages: self.limits.messages,
            max_age: self.limits.max_age,
            max_bytes: self.limits.max_bytes,
        }
    }

    /// The tenant's share, made with the node's window when it has none yet.
    pub(super) fn share(&self, dev_id: DevId) -> Arc<Share> {
        let mut tenants = super::registry::lock(&self.tenants);
        tenants
            .entry(dev_id)
            .or_insert_with(|| Arc::new(Share::new(self.default_window())))
            .clone()
    }

    /// Sets the tenant's window: kept frames over it go with the pipe's next publish or the sweep.
    pub(super) fn set_tenant(&self, dev_id: DevId, window: TenantWindow) {
        let mut tenants = super::registry::lock(&self.tenants);
        match tenants.get(&dev_id) {
            Some(share) => share.set(window),
            None => {
                tenants.insert(dev_id, Arc::new(Share::new(window)));
            }
        }
    }

    pub(super) fn tenant_bytes(&self, dev_id: DevId) -> usize {
        super::registry::lock(&self.tenants)
            .get(&dev_id)
            .map_or(0, |share| share.bytes())
    }

    /// The tenants that have a share (for the periodic refresh of their windows).
    pub(super) fn tenants(&self) -> Vec<DevId> {
        super::registry::lock(&self.tenants)
            .keys()
            .copied()
            .collect()
    }

    /// Forgets the shares no stream holds any more.
    pub(super) fn prune(&self) {
        super::registry::lock(&self.tenants)
            .retain(|_, share| Arc::strong_count(share) > 1 || share.bytes() > 0);
    }
}

struct Kept {
    offset: u64,
    at: Instant,
    frame: Frame,
    size: usize,
}

/// One pipe's stream: created with a fresh epoch, offsets from 1; or, for a pipe that keeps history
/// (durable), with the epoch and top offset the database holds, offsets given by its history writes.
pub(super) struct Stream {
    epoch: Arc<str>,
    /// The tenant's share: its window limits, and where this stream's bytes are counted too.
    share: Arc<Share>,
    top: u64,
    /// The epoch and offsets come from the database (`pipe_settings`), never from `next`.
    pub(super) durable: bool,
    kept: VecDeque<Kept>,
    bytes: usize,
    /// When the last connection that asked for positions left (or the stream began): a stream nobody
    /// listens to with positions is dropped one window age after that.
    pub(super) idle_since: Instant,
}

/// What a resubscribe gets: the missed frames (in order) when the position could be honoured.
pub(super) struct Resumed {
    pub(super) epoch: Arc<str>,
    pub(super) top: u64,
    pub(super) replay: Option<Vec<Frame>>,
}

impl Stream {
    /// The offset the publication takes in the pipe's stream (none: sent without one), and whether the
    /// stream's numbering broke (positioned subscribers get `gap` instead of the frame): a durable position of
    /// another epoch (history made anew) or not following the top (a stored message whose delivery never
    /// came), or a message with no durable position on a durable stream (history switched off: numbering
    /// goes back to memory, in a new epoch).
    pub(super) fn number(&mut self, windows: &Windows, p: &Publication) -> (Option<u64>, bool) {
        match (&p.position, self.durable) {
            (Some((epoch, offset)), _) => {
                let follows = self.durable && epoch == self.epoch() && *offset == self.top() + 1;
                if follows {
                    self.place(windows, *offset);
                } else {
                    self.reset(windows, epoch.clone(), *offset, true);
                }
                (Some(*offset), !follows)
            }
            (None, true) if p.presence => (None, false),
            (None, true) => {
                self.reset(windows, new_epoch().into(), 0, false);
                (Some(self.next()), true)
            }
            (None, false) => (Some(self.next()), false),
        }
    }

    /// A cluster's message the stream is already past: a positioned join read the shared numbering after it
    /// was published and before it arrived here (it is in the join's replay).
    pub(super) fn joined_after(&self, p: &Publication) -> bool {
        match &p.position {
            Some((epoch, offset)) => self.durable && epoch == self.epoch() && *offset <= self.top(),
            None => false,
        }
    }

    pub(super) fn new(now: Instant, share: Arc<Share>) -> Stream {
        Stream {
            epoch: new_epoch().into(),
            share,
            top: 0,
            durable: false,
            kept: VecDeque::new(),
            bytes: 0,
            idle_since: now,
        }
    }

    pub(super) fn epoch(&self) -> &Arc<str> {
        &self.epoch
    }

    pub(super) fn top(&self) -> u64 {
        self.top
    }

    /// Starts the stream again at `epoch`, `top`: what was kept is of another numbering.
    pub(super) fn reset(&mut self, windows: &Windows, epoch: Arc<str>, top: u64, durable: bool) {
        self.clear(windows);
        self.epoch = epoch;
        self.top = top;
        self.durable = durable;
    }

    /// The offset a durable write gave the message being published. One that does not follow the top
    /// (a publish whose delivery never came) leaves a hole: nothing before it may be replayed.
    pub(super) fn place(&mut self, windows: &Windows, offset: u64) {
        if offset != self.top + 1 {
            self.clear(windows);
        }
        self.top = offset;
    }

    /// True when `resume` would replay everything after `offset` of `epoch` from the window.
    pub(super) fn covers(
        &mut self,
        windows: &Windows,
        epoch: &str,
        offset: u64,
        now: Instant,
    ) -> bool {
        self.trim(windows, now);
        if epoch != &*self.epoch || offset > self.top {
            return false;
        }
        offset == self.top || self.kept.front().is_some_and(|k| k.offset <= offset + 1)
    }

    /// The next offset, for the message being published.
    pub(super) fn next(&mut self) -> u64 {
        self.top += 1;
        self.top
    }

    /// Keeps the frame of offset `self.top`, trimming the window to its tenant's limits first. The byte
    /// budgets (the node's, and the tenant's share of its quota) are shared between pipes: when one is
    /// spent, this pipe gives up its own oldest frames, and when that is not enough the frame is not kept
    /// (the window then ends before it, and a client that needs it is told `recovered:false`).
    pub(super) fn keep(&mut self, windows: &Windows, frame: Frame, now: Instant) {
        // The encoded frame, and about as much again for the message text the frame still holds.
        let size = 2 * frame.wire(Era::Modern).len() + KEPT_OVERHEAD;
        let messages = self.share.messages();
        let over = |s: &Stream| {
            windows.bytes() + size > windows.limits.max_bytes
                || s.share.bytes() + size > s.share.max_bytes()
        };
        self.trim(windows, now);
        while self.kept.len() >= messages.max(1) {
            self.pop(windows);
        }
        while over(self) && !self.kept.is_empty() {
            self.pop(windows);
        }
        if messages == 0 || over(self) {
            // Not kept: nothing before it may be replayed either (never a partial replay).
            self.clear(windows);
            return;
        }
        windows.bytes.fetch_add(size, Ordering::Relaxed);
        self.share.bytes.fetch_add(size, Ordering::Relaxed);
        self.bytes += size;
        self.kept.push_back(Kept {
            offset: self.top,
            at: now,
            frame,
            size,
        });
    }

    /// Drops the messages older than the window's age, and those past its count when the tenant's window
    /// was made smaller.
    pub(super) fn trim(&mut self, windows: &Windows, now: Instant) {
        let max_age = self.share.max_age();
        while self
            .kept
            .front()
            .is_some_and(|k| now.saturating_duration_since(k.at) > max_age)
        {
            self.pop(windows);
        }
        while self.kept.len() > self.share.messages() {
            self.pop(windows);
        }
    }

    fn pop(&mut self, windows: &Windows) {
        if let Some(k) = self.kept.pop_front() {
            self.bytes -= k.size;
            windows.bytes.fetch_sub(k.size, Ordering::Relaxed);
            self.share.bytes.fetch_sub(k.size, Ordering::Relaxed);
        }
    }

    /// Gives back every kept byte (the stream is dropped).
    pub(super) fn clear(&mut self, windows: &Windows) {
        while !self.kept.is_empty() {
            self.pop(windows);
        }
    }

    /// Where a client that processed up to `position` stands: the frames after it when the epoch is this
    /// stream's, every one of them is still kept and there are at most `replay_max`; none otherwise.
    pub(super) fn resume(
        &mut self,
        windows: &Windows,
        position: Option<(&str, u64)>,
        now: Instant,
    ) -> Resumed {
        self.trim(windows, now);
        let replay = position.and_then(|(epoch, offset)| {
            if epoch != &*self.epoch || offset > self.top {
                return None;
            }
            let missed = self.top - offset;
            if missed > windows.limits.replay_max {
                return None;
            }
            if missed == 0 {
                return Some(Vec::new());
            }
            let first = self.kept.front()?.offset;
            if first > offset + 1 {
                return None;
            }
            let skip = (offset + 1 - first) as usize;
            Some(
                self.kept
                    .iter()
                    .skip(skip)
                    .map(|k| k.frame.clone())
                    .collect(),
            )
        });
        Resumed {
            epoch: self.epoch.clone(),
            top: self.top,
            replay,
        }
    }

    /// True when the stream holds nothing and nobody with positions listened for a window's age.
    pub(super) fn expired(&mut self, windows: &Windows, now: Instant) -> bool {
        self.trim(windows, now);
        now.saturating_duration_since(self.idle_since) > self.share.max_age()
    }
}

/// What a kept frame costs beyond twice its encoding (the entry, the frame's `Arc`, its fields' allocations,
/// the spare capacity of its buffer), so that `max_bytes` bounds what windows really hold. Measured
/// (`windows-10k`, release build): a kept 100-byte message took 1,117 resident bytes, 2 x 175 + 768.
const KEPT_OVERHEAD: usize = 768;

/// An opaque string unique to this stream: random, so that two runs of the node (or a stream dropped and
/// made again) never share one.
pub fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Encoded;
    use bytes::Bytes;

    struct Fixed(Bytes);
    impl Encoded for Fixed {
        fn wire(&self, _: Era) -> Bytes {
            self.0.clone()
        }
    }

    fn frame(n: u64) -> Frame {
        Arc::new(Fixed(Bytes::from(n.to_string())))
    }

    fn publish(s: &mut Stream, w: &Windows, n: usize, now: Instant) {
        for _ in 0..n {
            let offset = s.next();
            s.keep(w, frame(offset), now);
        }
    }

    fn offsets(r: &Resumed) -> Option<Vec<u64>> {
        r.replay.as_ref().map(|frames| {
            frames
                .iter()
                .map(|f| {
                    String::from_utf8_lossy(&f.wire(Era::Modern))
                        .parse()
                        .unwrap()
                })
                .collect()
        })
    }

    #[test]
    fn replays_exactly_what_follows_a_kept_position() {
        let w = Windows::new(WindowLimits {
            messages: 5,
            ..WindowLimits::default()
        });
        let now = Instant::now();
        let mut s = Stream::new(now, w.share(DevId(1)));
        publish(&mut s, &w, 8, now);
        let epoch = s.epoch.clone();
        let r = s.resume(&w, Some((&epoch, 5)), now);
        assert_eq!((r.top, offsets(&r)), (8, Some(vec![6, 7, 8])));
        assert_eq!(
            offsets(&s.resume(&w, Some((&epoch, 3)), now)),
            Some(vec![4, 5, 6, 7, 8])
        );
        assert_eq!(offsets(&s.resume(&w, Some((&epoch, 8)), now)), Some(vec![]));
        // 3 is gone: never a partial replay.
        assert_eq!(offsets(&s.resume(&w, Some((&epoch, 2)), now)), None);
        assert_eq!(offsets(&s.resume(&w, Some(("other", 5)), now)), None);
        assert_eq!(
            offsets(&s.resume(&w, Some((&epoch, 9)), now)),
            None,
            "ahead of top"
        );
        assert_eq!(offsets(&s.resume(&w, None, now)), None);
    }

    #[test]
    fn age_count_cap_and_bytes_bound_the_window() {
        let w = Windows::new(WindowLimits {
            messages: 100,
            max_age: Duration::from_secs(120),
            max_bytes: 10 * (KEPT_OVERHEAD + 2),
            replay_max: 3,
        });
        let t0 = Instant::now();
        let mut s = Stream::new(t0, w.share(DevId(1)));
        publish(&mut s, &w, 9, t0);
        let epoch = s.epoch.clone();
        assert_eq!(w.bytes(), 9 * (KEPT_OVERHEAD + 2));
        assert_eq!(
            offsets(&s.resume(&w, Some((&epoch, 5)), t0)),
            None,
            "past the replay cap"
        );
        assert_eq!(
            offsets(&s.resume(&w, Some((&epoch, 6)), t0)),
            Some(vec![7, 8, 9])
        );
        publish(&mut s, &w, 3, t0);
        assert!(w.bytes() <= w.limits.max_bytes, "the byte budget holds");
        let later = t0 + Duration::from_secs(121);
        assert_eq!(
            offsets(&s.resume(&w, Some((&epoch, 11)), later)),
            None,
            "too old"
        );
        assert_eq!(
            offsets(&s.resume(&w, Some((&epoch, 12)), later)),
            Some(vec![])
        );
        assert_eq!(w.bytes(), 0, "aged out frames give their bytes back");
        assert!(s.expired(&w, later));
    }

    #[test]
    fn a_tenant_window_bounds_its_streams_and_its_bytes() {
        let w = Windows::new(WindowLimits::default());
        // What a kept frame of offset `n` counts (its text is the offset's digits).
        let size_of = |n: u64| 2 * n.to_string().len() + KEPT_OVERHEAD;
        let size = size_of(1);
        w.set_tenant(
            DevId(1),
            TenantWindow {
                messages: 3,
                max_age: Duration::from_secs(10),
                max_bytes: 5 * size,
            },
        );
        let t0 = Instant::now();
        let mut a = Stream::new(t0, w.share(DevId(1)));
        let mut b = Stream::new(t0, w.share(DevId(1)));
        let mut other = Stream::new(t0, w.share(DevId(2)));
        publish(&mut a, &w, 5, t0);
        let ea = a.epoch.clone();
        assert_eq!(
            offsets(&a.resume(&w, Some((&ea, 2)), t0)),
            Some(vec![3, 4, 5])
        );
        assert_eq!(offsets(&a.resume(&w, Some((&ea, 1)), t0)), None, "count");
        publish(&mut b, &w, 3, t0);
        assert!(
            w.tenant_bytes(DevId(1)) <= 5 * size,
            "the tenant's bytes hold"
        );
        assert_eq!(w.tenant_bytes(DevId(1)), 5 * size);
        // The other tenant has the node's window: 50 kept.
        publish(&mut other, &w, 50, t0);
        let fifty: usize = (1..=50).map(size_of).sum();
        assert_eq!(w.tenant_bytes(DevId(2)), fifty);
        assert_eq!(w.bytes(), 5 * size + fifty);
        // Made smaller: the next trim gives the bytes back.
        w.set_tenant(
            DevId(2),
            TenantWindow {
                messages: 10,
                max_age: Duration::from_secs(120),
                max_bytes: usize::MAX,
            },
        );
        other.trim(&w, t0);
        assert_eq!(
            w.tenant_bytes(DevId(2)),
            (41..=50).map(size_of).sum::<usize>()
        );
        // The tenant's own age.
        let later = t0 + Duration::from_secs(11);
        a.trim(&w, later);
        b.trim(&w, later);
        assert_eq!(w.tenant_bytes(DevId(1)), 0);
        drop((a, b));
        w.prune();
        assert_eq!(w.tenants(), vec![DevId(2)]);
    }
}
