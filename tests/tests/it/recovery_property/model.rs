//! The two models the driver keeps beside the real server: a client that processes frames as the SDK does
//! (sdk-js/src/positions.js: a `subscribed` frame sets the pipe's position, a frame whose offset is not above
//! it is a repeat and ignored), with what it saw written down per pipe; and what the server's streams must
//! answer a position with, when the case's settings make that certain. `check` is the property itself.

use std::collections::HashMap;

use serde_json::Value;

use super::cases::Case;

/// What a client saw of one pipe, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// `subscribed` with `recovered:false`: everything up to `top` of `epoch` is declared lost.
    Lost { epoch: String, top: u64 },
    /// `subscribed` with `recovered:true`.
    Recovered { epoch: String, top: u64 },
    /// A `gap` frame.
    Gap,
    /// A message accepted: its offset and its index in the pipe's publish log.
    Message { offset: u64, index: usize },
    /// A message ignored as a repeat (offset not above the position).
    Repeat { offset: u64 },
}

/// Every message published, per pipe, in publish order; payloads are unique to the case, pipe and index.
#[derive(Default)]
pub struct Published {
    pub per_pipe: Vec<Vec<String>>,
    index: HashMap<String, (usize, usize)>,
}

impl Published {
    pub fn new(pipes: usize) -> Published {
        Published {
            per_pipe: vec![Vec::new(); pipes],
            index: HashMap::new(),
        }
    }

    /// The payload of the next message of `pipe`, recorded.
    pub fn next(&mut self, seed: u64, pipe: usize) -> String {
        let index = self.per_pipe[pipe].len();
        let payload = format!("s{seed}-p{pipe}-m{index}");
        self.index.insert(payload.clone(), (pipe, index));
        self.per_pipe[pipe].push(payload.clone());
        payload
    }
}

/// A `subscribed` frame as read.
#[derive(Debug, Clone)]
pub struct Subscribed {
    pub pipe: usize,
    pub epoch: String,
    pub top: u64,
    pub recovered: bool,
}

/// The client: its positions and what it saw, per pipe.
pub struct Client {
    pub pipes: Vec<usize>,
    pub positions: HashMap<usize, (String, u64)>,
    pub seen: Vec<Vec<Seen>>,
    /// A `gap` arrived: the SDK resubscribes with its positions.
    pub wants_resubscribe: bool,
    /// This connection already sent `subscription2`.
    joined: bool,
    /// ... and sent it again: only then may a frame come twice (one on its way live, again in the replay).
    may_repeat: bool,
}

impl Client {
    pub fn new(pipes: Vec<usize>, pipe_count: usize) -> Client {
        Client {
            pipes,
            positions: HashMap::new(),
            seen: vec![Vec::new(); pipe_count],
            wants_resubscribe: false,
            joined: false,
            may_repeat: false,
        }
    }

    /// A new connection: nothing was sent on it yet.
    pub fn new_connection(&mut self) {
        self.joined = false;
        self.may_repeat = false;
    }

    /// `subscription2` is about to be sent on the connection.
    pub fn resubscribing(&mut self) {
        self.may_repeat |= self.joined;
        self.joined = true;
    }

    /// Processes one frame; returns the `subscribed` frame it was, if it was one. `names` are the pipes'
    /// names. A frame no client should get (another pipe, a payload never published) is an error.
    pub fn process(
        &mut self,
        text: &str,
        names: &[String],
        published: &Published,
    ) -> Result<Option<Subscribed>, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e}): {text}"))?;
        let Some(name) = v["pipe"].as_str() else {
            return Ok(None);
        };
        if name == "sys" || name.starts_with("user_status_") {
            return Ok(None);
        }
        let pipe = names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| format!("a frame of a pipe never subscribed: {text}"))?;
        if !self.pipes.contains(&pipe) {
            return Err(format!("a frame of a pipe not in the set: {text}"));
        }
        let seen = &mut self.seen[pipe];
        match v["event"].as_str() {
            Some("subscribed") if v.get("offset").is_none() => {
                let d = &v["data"];
                let s = Subscribed {
                    pipe,
                    epoch: d["epoch"]
                        .as_str()
                        .ok_or(format!("no epoch: {text}"))?
                        .into(),
                    top: d["offset"].as_u64().ok_or(format!("no offset: {text}"))?,
                    recovered: d["recovered"]
                        .as_bool()
                        .ok_or(format!("no recovered: {text}"))?,
                };
                if s.recovered {
                    // recovered:true says the replay brought the client up to the pipe's top.
                    let at = self.positions.get(&pipe);
                    if at != Some(&(s.epoch.clone(), s.top)) {
                        return Err(format!(
                            "recovered:true at {}:{} but the client processed up to {at:?}",
                            s.epoch, s.top
                        ));
                    }
                    seen.push(Seen::Recovered {
                        epoch: s.epoch.clone(),
                        top: s.top,
                    });
                } else {
                    seen.push(Seen::Lost {
                        epoch: s.epoch.clone(),
                        top: s.top,
                    });
                }
                self.positions.insert(pipe, (s.epoch.clone(), s.top));
                Ok(Some(s))
            }
            Some("gap") if v.get("offset").is_none() => {
                seen.push(Seen::Gap);
                self.wants_resubscribe = true;
                Ok(None)
            }
            _ => {
                let offset = v["offset"]
                    .as_u64()
                    .ok_or_else(|| format!("a message without an offset: {text}"))?;
                let data = v["data"].as_str().unwrap_or_default();
                let &(of, index) = published
                    .index
                    .get(data)
                    .ok_or_else(|| format!("a payload never published: {text}"))?;
                if of != pipe {
                    return Err(format!("a message of pipe {of} arrived on {name}: {text}"));
                }
                let position = self.positions.get_mut(&pipe).ok_or_else(|| {
                    format!("a message before the pipe's subscribed frame: {text}")
                })?;
                if offset <= position.1 {
                    // After a `gap` the pipe may be numbered anew (a cluster's Redis restarted): its
                    // first offsets are not above the old position, and the SDK ignores them until it
                    // has asked again.
                    if !self.may_repeat && !self.wants_resubscribe {
                        // A replay starts after the position given: a repeat on a connection that
                        // subscribed once means the server sent something the client had.
                        return Err(format!(
                            "a repeat on a connection that never resubscribed: {text}"
                        ));
                    }
                    seen.push(Seen::Repeat { offset });
                } else {
                    position.1 = offset;
                    seen.push(Seen::Message { offset, index });
                }
                Ok(None)
            }
        }
    }

    /// The `subscription2` command with the client's positions.
    pub fn subscription2(&self, names: &[String]) -> String {
        let lines: Vec<String> = self
            .pipes
            .iter()
            .map(|&p| match self.positions.get(&p) {
                Some((epoch, offset)) => format!("{}\t{epoch}\t{offset}", names[p]),
                None => names[p].clone(),
            })
            .collect();
        format!("subscription2\n{}", lines.join("\n"))
    }
}

/// What the server's stream of a pipe must be, as far as the driver can know.
#[derive(Debug, Clone, Default)]
struct StreamModel {
    /// Learnt from the first `subscribed` frame of the stream.
    epoch: Option<String>,
    top: u64,
    /// The top when the last `Age` step ended: messages up to it have aged out.
    aged_through: u64,
}

/// What a `subscribed` frame must say; `None` where the case cannot know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub recovered: Option<bool>,
    pub top: Option<u64>,
    pub epoch: Option<String>,
}

impl Expect {
    pub fn met_by(&self, s: &Subscribed) -> bool {
        self.recovered.is_none_or(|r| r == s.recovered)
            && self.top.is_none_or(|t| t == s.top)
            && self.epoch.as_ref().is_none_or(|e| *e == s.epoch)
    }
}

/// The server's streams: None until a `subscription2` makes one, and after a restart.
///
/// Durable history (a pipe with `pipes_settings`, recovered across restarts) fits here as a kind of pipe:
/// the case marks some pipes durable (and the world sets their `pipes_settings` length before the first
/// step); `restarted` keeps such a pipe's epoch and top instead of dropping its stream, and `expect` bounds
/// what it can replay by the history's length rather than the window. `check` and the client need nothing
/// new: a durable pipe only turns some `recovered:false` into `true`.
pub struct Streams {
    streams: Vec<Option<StreamModel>>,
    window_messages: u64,
    replay_max: u64,
    /// Messages age (and idle streams are swept) within the case: only a `false` can be predicted.
    ageing: bool,
    /// A cluster: a pipe is numbered in Redis from its first publish, subscribed or not, and the driver
    /// reads each stream's epoch and top there (`learn_at`). A node joins a client where its own
    /// deliveries stand, which may be behind that top (the messages on their way come after the
    /// `subscribed` frame), so the frame's top is not predicted, nor a `recovered:false` that the
    /// node's own window might still have turned into `true`.
    numbered_by_redis: bool,
}

impl Streams {
    pub fn new(case: &Case, numbered_by_redis: bool) -> Streams {
        Streams {
            streams: vec![None; case.pipes],
            window_messages: case.window_messages as u64,
            replay_max: case.replay_max,
            ageing: case.window_secs.is_some(),
            numbered_by_redis,
        }
    }

    pub fn published(&mut self, pipe: usize) {
        if let Some(s) = &mut self.streams[pipe] {
            s.top += 1;
        }
    }

    pub fn restarted(&mut self) {
        self.streams.iter_mut().for_each(|s| *s = None);
    }

    pub fn aged(&mut self) {
        for s in self.streams.iter_mut().flatten() {
            s.aged_through = s.top;
        }
    }

    /// What a subscribe of `pipe` at `position` must answer, as far as certain. Makes the stream when
    /// there is none, as the server does.
    pub fn expect(&mut self, pipe: usize, position: Option<&(String, u64)>) -> Expect {
        let fresh = self.streams[pipe].is_none();
        let s = self.streams[pipe].get_or_insert_with(StreamModel::default);
        let mut want = Expect {
            recovered: None,
            // Ageing cases: an idle stream may have been swept and made again, unseen.
            top: (!self.ageing && !self.numbered_by_redis).then_some(s.top),
            epoch: s.epoch.clone().filter(|_| !self.ageing),
        };
        want.recovered = match position {
            None => Some(false),
            // A new stream has a new random epoch: no old position matches it.
            Some((epoch, offset))
                if fresh || s.epoch.as_deref() != Some(epoch.as_str()) || *offset > s.top =>
            {
                Some(false)
            }
            Some((_, offset)) => {
                let missed = s.top - offset;
                if missed > self.replay_max.min(self.window_messages)
                    || (missed > 0 && *offset < s.aged_through)
                {
                    (!self.numbered_by_redis).then_some(false)
                } else if self.ageing {
                    // The messages missed may have aged out since, or the stream been swept.
                    None
                } else {
                    Some(true)
                }
            }
        };
        want
    }

    /// `expect` for a subscribe made while `extra` messages are being published to `pipe`: the answer must
    /// hold with none of them before it and with all of them, else it is not certain; the top never is.
    pub fn expect_racing(
        &mut self,
        pipe: usize,
        position: Option<&(String, u64)>,
        extra: u64,
    ) -> Expect {
        let fresh = self.streams[pipe].is_none();
        let before = self.expect(pipe, position);
        let s = self.streams[pipe].as_mut().expect("made by expect");
        s.top += extra;
        let after = self.expect(pipe, position);
        let s = self.streams[pipe].as_mut().expect("made by expect");
        s.top -= extra;
        Expect {
            recovered: if fresh || before.recovered == after.recovered {
                before.recovered
            } else {
                None
            },
            top: None,
            epoch: before.epoch,
        }
    }

    /// The stream's top as far as certain: None when there is no stream or messages age in this case.
    pub fn top(&self, pipe: usize) -> Option<u64> {
        self.streams[pipe]
            .as_ref()
            .filter(|_| !self.ageing)
            .map(|s| s.top)
    }

    /// After a race on `pipe`: the client that subscribed during it read everything, so its position is the
    /// stream's top; with a stream before the race, that is the top before plus every message raced.
    pub fn settle(
        &mut self,
        pipe: usize,
        top: u64,
        before: Option<u64>,
        raced: u64,
    ) -> Result<(), String> {
        if let Some(b) = before.filter(|b| b + raced != top) {
            return Err(format!("top {top} after {raced} raced on {b}"));
        }
        self.streams[pipe]
            .get_or_insert_with(StreamModel::default)
            .top = top;
        Ok(())
    }

    /// The stream as a `subscribed` frame showed it.
    pub fn learn(&mut self, s: &Subscribed) {
        self.learn_at(s.pipe, &s.epoch, s.top);
    }

    /// The stream as it is (a cluster's Redis says), or none.
    pub fn learn_at(&mut self, pipe: usize, epoch: &str, top: u64) {
        let m = self.streams[pipe].get_or_insert_with(StreamModel::default);
        if m.epoch.as_deref() != Some(epoch) {
            m.aged_through = 0;
        }
        m.epoch = Some(epoch.to_string());
        m.top = top;
    }

    /// The pipe has no numbering (a cluster's Redis has none for it).
    pub fn forget(&mut self, pipe: usize) {
        self.streams[pipe] = None;
    }
}

/// The property, for one client and pipe: messages accepted are the pipe's published messages in order
/// without a repeat, and each one follows the previous without a hole unless a `recovered:false` or a
/// `gap` came between them; offsets follow the same rule (after a `subscribed` at N, the next is N+1). The
/// last accepted message is the case's final one (the sentinel), so no hole is left at the end either.
pub fn check(seen: &[Seen], published: &[String]) -> Result<(), String> {
    let mut last: Option<(usize, u64)> = None;
    let mut signalled = false;
    let mut next_offset: Option<u64> = None;
    for (i, s) in seen.iter().enumerate() {
        match s {
            Seen::Lost { top, .. } => {
                signalled = true;
                next_offset = Some(top + 1);
            }
            Seen::Recovered { top, .. } => next_offset = Some(top + 1),
            Seen::Gap => {
                signalled = true;
                next_offset = None;
            }
            Seen::Repeat { .. } => {}
            Seen::Message { offset, index } => {
                if let Some((prev, _)) = last {
                    if *index <= prev {
                        return Err(format!(
                            "step {i}: message {index} after {prev}: a repeat or out of order"
                        ));
                    }
                    if !signalled && *index != prev + 1 {
                        return Err(format!(
                            "step {i}: message {index} after {prev} with no recovered:false or gap between"
                        ));
                    }
                } else if !signalled {
                    return Err(format!(
                        "step {i}: a first message with no subscribed frame before it"
                    ));
                }
                if let Some(want) = next_offset {
                    if *offset != want {
                        return Err(format!("step {i}: offset {offset}, want {want}"));
                    }
                }
                last = Some((*index, *offset));
                signalled = false;
                next_offset = Some(offset + 1);
            }
        }
    }
    match last {
        Some((index, _)) if index + 1 == published.len() => Ok(()),
        other => Err(format!(
            "the last message accepted is {other:?}, not the final one ({} published)",
            published.len()
        )),
    }
}
