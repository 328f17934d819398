//! How presence is spelled in Redis, encoded and decoded here only. Pure and total.
//!
//! A pipe member (the value of field `<node>/<conn>` in the pipe's members hash) is six lines: user id,
//! uuid, ip, user agent, origin, language, each with `\` and newline escaped (`\\`, `\n`). The presence
//! scripts copy it as it is into the body of a `track_` announcement (kind `p`, body `<time> - <event>\n
//! <member>`), so that a leave made by a survivor of a dead node says who left without knowing them.
//! What a node wrote is listed in its held set (`keys::held`): `m <dev> <pipe> <conn>` for a member,
//! `u <dev> <user>` for a user it counts connections of.

use crate::browser::frames::{self, Frame, TrackEvent};
use crate::browser::names::{is_track, USER_STATUS_PREFIX};
use crate::hub::{ConnInfo, Member};
use crate::ids::{ConnId, DevId, PipeName, UserId};

/// The longest member value decoded (a user agent is the only long part; headers are capped far below).
const MAX_MEMBER_BYTES: usize = 16 * 1024;

/// The hash field of a connection.
pub(super) fn field(node: &str, conn: ConnId) -> String {
    format!("{node}/{}", conn.0)
}

pub(super) fn encode(info: &ConnInfo) -> String {
    let parts = [
        info.user_id.0.to_string(),
        escape(&info.uuid),
        escape(&info.ip),
        escape(&info.user_agent),
        escape(&info.origin),
        escape(&info.language),
    ];
    parts.join("\n")
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '\\' => out.push('\\'),
            'n' => out.push('\n'),
            _ => return None,
        }
    }
    Some(out)
}

/// The user id and uuid of a member value (what a `track_` announcement carries).
fn who(value: &str) -> Option<(UserId, String)> {
    let mut lines = value.split('\n');
    let user = number(lines.next()?)?;
    let uuid = unescape(lines.next()?)?;
    Some((UserId(user), uuid))
}

/// A members hash entry; `None` for garbage (skipped by readers).
pub(super) fn decode(field: &str, value: &str) -> Option<Member> {
    if value.len() > MAX_MEMBER_BYTES {
        return None;
    }
    let (node, conn) = field.rsplit_once('/')?;
    if !crate::config::is_cluster_name(node) {
        return None;
    }
    let conn = number(conn)?;
    let mut lines = value.split('\n');
    let user_id = UserId(number(lines.next()?)?);
    let mut next = || lines.next().and_then(unescape);
    let (uuid, ip, user_agent, origin, language) = (next()?, next()?, next()?, next()?, next()?);
    if lines.next().is_some() {
        return None;
    }
    Some(Member {
        node: node.to_string(),
        conn,
        user_id,
        uuid,
        ip,
        user_agent,
        origin,
        language,
    })
}

/// What a node lists in its held set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Held {
    Member(DevId, PipeName, ConnId),
    User(DevId, UserId),
    /// A connection in a Pusher presence channel (`pusher.rs`).
    Pusher(DevId, PipeName, ConnId),
}

impl Held {
    pub(super) fn encode(&self) -> String {
        match self {
            Held::Member(d, p, c) => format!("m {} {} {}", d.0, p.as_str(), c.0),
            Held::User(d, u) => format!("u {} {}", d.0, u.0),
            Held::Pusher(d, p, c) => format!("x {} {} {}", d.0, p.as_str(), c.0),
        }
    }

    pub(super) fn decode(s: &str) -> Option<Held> {
        let mut f = s.split(' ');
        let held = match f.next()? {
            // Any pipe of the registry: a Pusher connection's channels are members too.
            "m" => {
                let dev = DevId(number(f.next()?)?);
                let pipe = super::wire::pipe_name(f.next()?)?;
                Held::Member(dev, pipe, ConnId(number(f.next()?)?))
            }
            "x" => {
                let dev = DevId(number(f.next()?)?);
                let pipe = super::wire::pipe_name(f.next()?)?;
                Held::Pusher(dev, pipe, ConnId(number(f.next()?)?))
            }
            "u" => Held::User(DevId(number(f.next()?)?), UserId(number(f.next()?)?)),
            _ => return None,
        };
        f.next().is_none().then_some(held)
    }
}

/// What a user's presence script did: the user came online or went offline cluster-wide, or neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transition {
    Online,
    Offline,
    None,
}

impl Transition {
    /// The script's answer: 1 (0 -> some connections), -1 (some -> 0), 0 (no change).
    pub(super) fn of(answer: i64) -> Transition {
        match answer {
            1 => Transition::Online,
            -1 => Transition::Offline,
            _ => Transition::None,
        }
    }
}

/// The frame a presence announcement (kind `p`) makes on `pipe`; `None` for one that does not fit its
/// pipe (dropped).
pub(super) fn frame(pipe: &PipeName, event: &str, time: i64, text: &str) -> Option<Frame> {
    match event {
        "subscription" | "unsubscription" if is_track(pipe.as_str()) => {
            let (user, uuid) = who(text)?;
            let ev = if event == "subscription" {
                TrackEvent::Subscription
            } else {
                TrackEvent::Unsubscription
            };
            Some(frames::track_event(pipe.as_str(), ev, user.0, &uuid, time))
        }
        "online" | "offline" => {
            let user = number(pipe.as_str().strip_prefix(USER_STATUS_PREFIX)?)?;
            Some(if event == "online" {
                frames::user_online(user)
            } else {
                frames::user_offline(user)
            })
        }
        _ => None,
    }
}

/// A decimal u64: digits only, at most 20, no overflow.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Era;

    fn info() -> ConnInfo {
        ConnInfo {
            conn: ConnId(9),
            era: Era::Modern,
            user_id: UserId(42),
            uuid: "u-1".into(),
            ip: "10.0.0.1".into(),
            user_agent: "Mozilla\\5.0\nX".into(),
            origin: "https://a.example".into(),
            language: "fr".into(),
            msg_ids: false,
        }
    }

    #[test]
    fn a_member_is_six_escaped_lines_and_decodes_back() {
        let v = encode(&info());
        assert_eq!(
            v,
            "42\nu-1\n10.0.0.1\nMozilla\\\\5.0\\nX\nhttps://a.example\nfr"
        );
        let m = decode(&field("node-a", ConnId(9)), &v).unwrap();
        assert_eq!(
            (m.node.as_str(), m.conn, m.user_id),
            ("node-a", 9, UserId(42))
        );
        assert_eq!(m.user_agent, "Mozilla\\5.0\nX");
        assert_eq!((m.uuid.as_str(), m.language.as_str()), ("u-1", "fr"));
        assert_eq!(who(&v), Some((UserId(42), "u-1".into())));
    }

    #[test]
    fn garbled_members_are_none() {
        let v = encode(&info());
        for (f, v) in [
            ("node-a9", v.as_str()),
            ("node a/9", v.as_str()),
            ("node-a/x", v.as_str()),
            ("node-a/9", "42\nu"),
            ("node-a/9", "x\nu\n\n\n\n"),
            ("node-a/9", "1\nu\n\n\n\n\nextra"),
            ("node-a/9", "1\nbad\\q\n\n\n\n"),
            ("node-a/9", "1\nend\\\n\n\n\n"),
        ] {
            assert_eq!(decode(f, v), None, "{f} {v:?}");
        }
        assert!(decode("n/1", "1\n\n\n\n\n").is_some());
        assert_eq!(decode("n/1", &"1".repeat(MAX_MEMBER_BYTES + 1)), None);
    }

    #[test]
    fn held_entries_round_trip() {
        let p = PipeName::parse_command("track_room").unwrap();
        for h in [
            Held::Member(DevId(3), p, ConnId(17)),
            Held::User(DevId(3), UserId(5)),
            Held::Pusher(DevId(3), PipeName::pusher_only("presence-room"), ConnId(8)),
            Held::Member(DevId(3), PipeName::pusher_only("private-a.1"), ConnId(9)),
        ] {
            assert_eq!(Held::decode(&h.encode()), Some(h.clone()));
        }
        assert_eq!(
            Held::Pusher(DevId(3), PipeName::pusher_only("presence-room"), ConnId(8)).encode(),
            "x 3 pusher:presence-room 8"
        );
        assert_eq!(
            Held::decode("m 3 track_room 17"),
            Some(Held::Member(
                DevId(3),
                PipeName::parse_command("track_room").unwrap(),
                ConnId(17)
            ))
        );
        for bad in [
            "",
            "m 3 track_room",
            "u 3",
            "u 3 5 6",
            "x 1 2",
            "x 1 pusher: 2",
            "u -3 5",
            "m 3 a{b} 1",
        ] {
            assert_eq!(Held::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn script_answers_decode() {
        assert_eq!(Transition::of(1), Transition::Online);
        assert_eq!(Transition::of(-1), Transition::Offline);
        assert_eq!(Transition::of(0), Transition::None);
    }

    #[test]
    fn announcements_make_the_single_node_frames() {
        let track = PipeName::parse_command("track_room").unwrap();
        let f = frame(&track, "subscription", 1_700_000_000, &encode(&info())).unwrap();
        assert_eq!(
            f,
            frames::track_event(
                "track_room",
                TrackEvent::Subscription,
                42,
                "u-1",
                1_700_000_000
            )
        );
        assert!(frame(&track, "unsubscription", 1, &encode(&info())).is_some());
        assert!(frame(&track, "online", 1, "").is_none());
        assert!(frame(&track, "subscription", 1, "garbage").is_none());
        let web = PipeName::parse_command("web_room").unwrap();
        assert!(frame(&web, "subscription", 1, &encode(&info())).is_none());
        let status = PipeName::parse_command("user_status_42").unwrap();
        assert_eq!(
            frame(&status, "online", 1, ""),
            Some(frames::user_online(42))
        );
        assert_eq!(
            frame(&status, "offline", 1, ""),
            Some(frames::user_offline(42))
        );
        assert!(frame(&status, "subscription", 1, "").is_none());
    }
}
