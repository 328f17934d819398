//! Private-message windows: per user, the newest private messages sent to any of their connections (live
//! or drained from the queue), kept so that a connection that reconnects with the id of the last message
//! it processed (`msg_after`) gets the ones it missed, even when another device of the user drained the
//! queue first or the socket died with messages written but unread.
//!
//! A message's id is its uuid (v7), unique across nodes and restarts, so the id alone says where a client
//! stands: an id the window does not know (too old, from before a restart, forged) is never honoured, and
//! nothing from the window is replayed then (never a partial replay). The node's windows keep nothing
//! across a restart; only the database queue does.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::registry::lock;
use super::WindowLimits;
use crate::browser::frames::Frame;
use crate::ids::{DevId, UserId};

const SHARDS: usize = 64;

type Key = (DevId, UserId);

/// How much the private windows hold: per user the newest `messages` for `max_age`, and `max_bytes`
/// across every user of the node (a budget of its own, next to the pipe windows').
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct InboxLimits {
    pub(super) messages: usize,
    pub(super) max_age: Duration,
    pub(super) max_bytes: usize,
}

impl From<&WindowLimits> for InboxLimits {
    fn from(w: &WindowLimits) -> Self {
        InboxLimits {
            messages: w.messages,
            max_age: w.max_age,
            max_bytes: w.max_bytes,
        }
    }
}

pub(super) struct Inboxes {
    shards: Box<[Mutex<HashMap<Key, Inbox>>]>,
    hasher: RandomState,
    limits: InboxLimits,
    bytes: AtomicUsize,
}

struct Kept {
    id: String,
    at: Instant,
    frame: Frame,
    size: usize,
}

/// One user's window.
#[derive(Default)]
struct Inbox {
    kept: VecDeque<Kept>,
    /// The id of the newest message sent, kept or not, and when: a client that processed it missed
    /// nothing even once the window has aged out.
    newest: Option<(String, Instant)>,
    /// The id of the message just before the first kept one (the last one given up), while every message
    /// after it is kept: a client that processed it gets them all.
    before: Option<String>,
}

/// Bookkeeping per kept message beyond its encoded bytes (the entry, the id, the frame's fields).
const KEPT_OVERHEAD: usize = 192;

impl Inboxes {
    pub(super) fn new(limits: InboxLimits) -> Inboxes {
        Inboxes {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            limits,
            bytes: AtomicUsize::new(0),
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<HashMap<Key, Inbox>> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Keeps `frame` (carrying its `id`) as the user's newest message. A message kept already (a batch put
    /// back into the queue and drained again) stays where it was. When the node's budget is spent the
    /// user gives up their oldest messages, and when that is not enough the window is emptied (it then
    /// begins after this message: never a partial replay).
    pub(super) fn keep(&self, key: Key, id: &str, frame: Frame, now: Instant) {
        let size = frame.size_hint() + id.len() + KEPT_OVERHEAD;
        let limits = &self.limits;
        let mut shard = lock(self.shard(&key));
        let inbox = shard.entry(key).or_default();
        self.trim(inbox, now);
        if inbox.kept.iter().any(|k| k.id == id) {
            return;
        }
        inbox.newest = Some((id.to_string(), now));
        while inbox.kept.len() >= limits.messages.max(1) {
            self.pop(inbox);
        }
        while self.bytes() + size > limits.max_bytes && !inbox.kept.is_empty() {
            self.pop(inbox);
        }
        if limits.messages == 0 || self.bytes() + size > limits.max_bytes {
            while !inbox.kept.is_empty() {
                self.pop(inbox);
            }
            inbox.before = None;
            return;
        }
        self.bytes.fetch_add(size, Ordering::Relaxed);
        inbox.kept.push_back(Kept {
            id: id.to_string(),
            at: now,
            frame,
            size,
        });
    }

    /// What a client that processed up to the message `after` missed, in order: `Some` when the window
    /// holds everything after it (empty when it is the newest), `None` when it cannot tell.
    pub(super) fn resume(&self, key: Key, after: &str, now: Instant) -> Option<Vec<Frame>> {
        let mut shard = lock(self.shard(&key));
        let inbox = shard.get_mut(&key)?;
        self.trim(inbox, now);
        if inbox.newest.as_ref().is_some_and(|(id, _)| id == after) {
            return Some(Vec::new());
        }
        let at = if inbox.before.as_deref() == Some(after) {
            0
        } else {
            inbox.kept.iter().position(|k| k.id == after)? + 1
        };
        Some(
            inbox
                .kept
                .iter()
                .skip(at)
                .map(|k| k.frame.clone())
                .collect(),
        )
    }

    /// Drops aged-out messages, and the users whose newest message is older than the window's age.
    pub(super) fn sweep(&self, now: Instant) {
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.retain(|_, inbox| {
                self.trim(inbox, now);
                inbox.newest.as_ref().is_some_and(|(_, at)| {
                    now.saturating_duration_since(*at) <= self.limits.max_age
                })
            });
        }
    }

    fn trim(&self, inbox: &mut Inbox, now: Instant) {
        while inbox
            .kept
            .front()
            .is_some_and(|k| now.saturating_duration_since(k.at) > self.limits.max_age)
        {
            self.pop(inbox);
        }
        if inbox
            .newest
            .as_ref()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) > self.limits.max_age)
        {
            inbox.newest = None;
        }
    }

    fn pop(&self, inbox: &mut Inbox) {
        if let Some(k) = inbox.kept.pop_front() {
            self.bytes.fetch_sub(k.size, Ordering::Relaxed);
            inbox.before = Some(k.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser::frames;

    const KEY: Key = (DevId(1), UserId(5));

    fn kept(inboxes: &Inboxes, n: std::ops::Range<u32>, now: Instant) {
        for i in n {
            let id = format!("id{i}");
            inboxes.keep(KEY, &id, frames::private_message("e", &id), now);
        }
    }

    fn texts(frames: Option<Vec<Frame>>) -> Option<Vec<String>> {
        frames.map(|fs| {
            fs.iter()
                .map(|f| match f.get("data") {
                    Some(crate::browser::json::Value::Str(s)) => s.clone(),
                    _ => panic!("a message"),
                })
                .collect()
        })
    }

    fn ids(n: std::ops::Range<u32>) -> Option<Vec<String>> {
        Some(n.map(|i| format!("id{i}")).collect())
    }

    fn limits(messages: usize) -> InboxLimits {
        InboxLimits {
            messages,
            max_age: Duration::from_secs(120),
            max_bytes: 1 << 20,
        }
    }

    #[test]
    fn replays_exactly_what_follows_a_kept_id_and_nothing_for_an_unknown_one() {
        let w = Inboxes::new(limits(5));
        let now = Instant::now();
        kept(&w, 0..8, now);
        assert_eq!(texts(w.resume(KEY, "id4", now)), ids(5..8));
        assert_eq!(texts(w.resume(KEY, "id3", now)), ids(4..8));
        assert_eq!(texts(w.resume(KEY, "id7", now)), ids(8..8), "the newest");
        assert_eq!(
            texts(w.resume(KEY, "id2", now)),
            ids(3..8),
            "just before the window"
        );
        assert_eq!(texts(w.resume(KEY, "id1", now)), None, "gone: no partial");
        assert_eq!(texts(w.resume(KEY, "other", now)), None);
        assert_eq!(texts(w.resume((DevId(1), UserId(6)), "id7", now)), None);
        kept(&w, 6..7, now);
        assert_eq!(texts(w.resume(KEY, "id5", now)), ids(6..8), "kept once");
    }

    #[test]
    fn age_and_bytes_bound_the_windows_and_the_newest_id_outlives_its_message_for_a_while() {
        let w = Inboxes::new(InboxLimits {
            max_bytes: 4_000,
            ..limits(100)
        });
        let t0 = Instant::now();
        kept(&w, 0..100, t0);
        assert!(w.bytes() <= 4_000, "the budget holds");
        assert_eq!(texts(w.resume(KEY, "id0", t0)), None, "given up for bytes");
        assert_eq!(texts(w.resume(KEY, "id98", t0)), ids(99..100));
        let w = Inboxes::new(InboxLimits {
            messages: 10,
            max_age: Duration::from_secs(120),
            max_bytes: 1 << 20,
        });
        kept(&w, 0..3, t0);
        let t1 = t0 + Duration::from_secs(60);
        kept(&w, 3..4, t1);
        let t2 = t0 + Duration::from_secs(121);
        assert_eq!(
            texts(w.resume(KEY, "id1", t2)),
            None,
            "its successor aged out"
        );
        assert_eq!(texts(w.resume(KEY, "id2", t2)), ids(3..4));
        let t3 = t1 + Duration::from_secs(121);
        w.sweep(t3);
        assert_eq!(w.bytes(), 0, "aged-out messages give their bytes back");
        assert_eq!(
            texts(w.resume(KEY, "id3", t3)),
            None,
            "the user is forgotten"
        );
    }
}
