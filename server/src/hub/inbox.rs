//! Private-message windows: per user, the newest private messages sent to any of their connections (live
//! or drained from the queue), kept so that a connection that reconnects with the id of the last message
//! it processed (`msg_after`) gets the ones it missed, even when another device of the user drained the
//! queue first or the socket died with messages written but unread.
//!
//! A message's id is its uuid (v7), unique across nodes and restarts, so the id alone says where a client
//! stands: an id the window does not know (too old, from before a restart, forged) is never honoured, and
//! nothing from the window is replayed then (never a partial replay). The node's windows keep nothing
//! across a restart; only the database queue does.
//!
//! A user's window follows their tenant's window (count and age: its `tenant_limits` override, else the
//! node's `[recovery]` values) and its bytes count in the tenant's share with its pipes' windows, so they
//! count in the tenant's storage quota too; the node's private windows together have a budget of their own.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::registry::lock;
use super::window::Share;
use crate::browser::frames::Frame;
use crate::ids::{DevId, UserId};

const SHARDS: usize = 64;

type Key = (DevId, UserId);

pub(super) struct Inboxes {
    shards: Box<[Mutex<HashMap<Key, Inbox>>]>,
    hasher: RandomState,
    /// Bytes every private window of the node holds together (a budget of its own, next to the pipe
    /// windows').
    max_bytes: usize,
    bytes: AtomicUsize,
}

struct Kept {
    id: String,
    at: Instant,
    frame: Frame,
    size: usize,
}

/// One user's window.
struct Inbox {
    /// The tenant's window limits, and where its bytes count.
    share: Arc<Share>,
    kept: VecDeque<Kept>,
    /// The id of the newest message sent, kept or not, and when: a client that processed it missed
    /// nothing even once the window has aged out.
    newest: Option<(String, Instant)>,
    /// The id of the message just before the first kept one (the last one given up), while every message
    /// after it is kept: a client that processed it gets them all.
    before: Option<String>,
}

/// Bookkeeping per kept message beyond its text (the entry, the id, the frame's fields and encodings):
/// the overhead measured for a kept pipe frame (`hub/window.rs`), which has the same shape.
const KEPT_OVERHEAD: usize = 768;

impl Inboxes {
    pub(super) fn new(max_bytes: usize) -> Inboxes {
        Inboxes {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            max_bytes,
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
    /// begins after this message: never a partial replay). The same for the tenant's share. `share` is
    /// asked for only when the user has no window yet.
    pub(super) fn keep(
        &self,
        key: Key,
        id: &str,
        frame: Frame,
        now: Instant,
        share: impl FnOnce() -> Arc<Share>,
    ) {
        let size = frame.size_hint() + id.len() + KEPT_OVERHEAD;
        let mut shard = lock(self.shard(&key));
        let inbox = shard.entry(key).or_insert_with(|| Inbox {
            share: share(),
            kept: VecDeque::new(),
            newest: None,
            before: None,
        });
        self.trim(inbox, now);
        if inbox.kept.iter().any(|k| k.id == id) {
            return;
        }
        inbox.newest = Some((id.to_string(), now));
        let messages = inbox.share.messages();
        let over = |inbox: &Inbox| {
            self.bytes() + size > self.max_bytes
                || inbox.share.bytes() + size > inbox.share.max_bytes()
        };
        while inbox.kept.len() >= messages.max(1) {
            self.pop(inbox);
        }
        while over(inbox) && !inbox.kept.is_empty() {
            self.pop(inbox);
        }
        if messages == 0 || over(inbox) {
            while !inbox.kept.is_empty() {
                self.pop(inbox);
            }
            inbox.before = None;
            return;
        }
        self.bytes.fetch_add(size, Ordering::Relaxed);
        inbox.share.add(size);
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
                let max_age = inbox.share.max_age();
                inbox
                    .newest
                    .as_ref()
                    .is_some_and(|(_, at)| now.saturating_duration_since(*at) <= max_age)
            });
        }
    }

    fn trim(&self, inbox: &mut Inbox, now: Instant) {
        let max_age = inbox.share.max_age();
        while inbox
            .kept
            .front()
            .is_some_and(|k| now.saturating_duration_since(k.at) > max_age)
        {
            self.pop(inbox);
        }
        while inbox.kept.len() > inbox.share.messages() {
            self.pop(inbox);
        }
        if inbox
            .newest
            .as_ref()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) > max_age)
        {
            inbox.newest = None;
        }
    }

    fn pop(&self, inbox: &mut Inbox) {
        if let Some(k) = inbox.kept.pop_front() {
            self.bytes.fetch_sub(k.size, Ordering::Relaxed);
            inbox.share.sub(k.size);
            inbox.before = Some(k.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser::frames;
    use crate::hub::TenantWindow;
    use std::time::Duration;

    const KEY: Key = (DevId(1), UserId(5));

    fn kept(inboxes: &Inboxes, share: &Arc<Share>, n: std::ops::Range<u32>, now: Instant) {
        for i in n {
            let id = format!("id{i}");
            let message = frames::private_message("e", &id);
            inboxes.keep(KEY, &id, message, now, || share.clone());
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

    fn share(messages: usize, max_bytes: usize) -> Arc<Share> {
        Arc::new(Share::new(TenantWindow {
            messages,
            max_age: Duration::from_secs(120),
            max_bytes,
        }))
    }

    #[test]
    fn replays_exactly_what_follows_a_kept_id_and_nothing_for_an_unknown_one() {
        let w = Inboxes::new(1 << 20);
        let s = share(5, usize::MAX);
        let now = Instant::now();
        kept(&w, &s, 0..8, now);
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
        kept(&w, &s, 6..7, now);
        assert_eq!(texts(w.resume(KEY, "id5", now)), ids(6..8), "kept once");
        assert_eq!(s.bytes(), w.bytes(), "counted in the tenant's share");
    }

    #[test]
    fn age_and_bytes_bound_the_windows_and_the_newest_id_outlives_its_message_for_a_while() {
        let t0 = Instant::now();
        for (node, tenant) in [(4_000, usize::MAX), (1 << 20, 4_000)] {
            let w = Inboxes::new(node);
            let s = share(100, tenant);
            kept(&w, &s, 0..100, t0);
            assert!(w.bytes() <= 4_000, "the budget holds");
            assert!(s.bytes() <= 4_000, "the tenant's budget holds");
            assert_eq!(texts(w.resume(KEY, "id0", t0)), None, "given up for bytes");
            assert_eq!(texts(w.resume(KEY, "id98", t0)), ids(99..100));
        }
        let w = Inboxes::new(1 << 20);
        let s = share(10, usize::MAX);
        kept(&w, &s, 0..3, t0);
        let t1 = t0 + Duration::from_secs(60);
        kept(&w, &s, 3..4, t1);
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
