//! What Redis did for a cluster target, read from Redis itself: a minimal RESP client (blocking, loopback,
//! a few commands per scenario: INFO, CONFIG RESETSTAT, PUBSUB) and the parsers of its answers. A snapshot of
//! `INFO commandstats` and `INFO stats` before and after a phase gives the commands (by name) and the bytes
//! in and out that phase cost; the load tool's own INFO/CONFIG/PUBSUB commands are left out of the counts.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl Reply {
    /// The text of a simple or bulk string reply.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// A command as RESP (an array of bulk strings).
pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("RESP: {what}"))
}

/// Reads one reply from `r`.
pub fn read_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "Redis closed"));
    }
    let line = line
        .strip_suffix("\r\n")
        .ok_or_else(|| bad("a line without CRLF"))?;
    let (kind, rest) = line.split_at(line.len().min(1));
    let number = || rest.parse::<i64>().map_err(|_| bad("a bad length"));
    Ok(match kind {
        "+" => Reply::Simple(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Int(number()?),
        "$" => match number()? {
            n if n < 0 => Reply::Bulk(None),
            n => {
                let mut buf = vec![0; n as usize + 2];
                r.read_exact(&mut buf)?;
                if !buf.ends_with(b"\r\n") {
                    return Err(bad("a bulk string without CRLF"));
                }
                buf.truncate(n as usize);
                Reply::Bulk(Some(buf))
            }
        },
        "*" => match number()? {
            n if n < 0 => Reply::Array(Vec::new()),
            n => (0..n)
                .map(|_| read_reply(r))
                .collect::<io::Result<_>>()
                .map(Reply::Array)?,
        },
        _ => return Err(bad("an unknown reply type")),
    })
}

/// One connection to the benchmark's own Redis.
pub struct RedisConn {
    reader: BufReader<TcpStream>,
}

impl RedisConn {
    pub fn connect(addr: SocketAddr) -> io::Result<RedisConn> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_nodelay(true)?;
        Ok(RedisConn {
            reader: BufReader::new(s),
        })
    }

    pub fn command(&mut self, args: &[&str]) -> io::Result<Reply> {
        self.reader.get_mut().write_all(&encode(args))?;
        match read_reply(&mut self.reader)? {
            Reply::Error(e) => Err(io::Error::other(format!("Redis: {e}"))),
            r => Ok(r),
        }
    }

    fn text(&mut self, args: &[&str]) -> io::Result<String> {
        self.command(args)?
            .text()
            .ok_or_else(|| bad("expected a string"))
    }

    /// Commands by name and the bytes in and out so far.
    pub fn snapshot(&mut self) -> io::Result<Snapshot> {
        let commands = parse_commandstats(&self.text(&["INFO", "commandstats"])?);
        let stats = self.text(&["INFO", "stats"])?;
        let memory = self.text(&["INFO", "memory"])?;
        Ok(Snapshot {
            commands,
            net_in: info_field(&stats, "total_net_input_bytes").unwrap_or(0),
            net_out: info_field(&stats, "total_net_output_bytes").unwrap_or(0),
            used_memory: info_field(&memory, "used_memory").unwrap_or(0),
        })
    }

    /// The number of channels that have at least one subscriber.
    pub fn channels(&mut self) -> io::Result<u64> {
        match self.command(&["PUBSUB", "CHANNELS"])? {
            Reply::Array(a) => Ok(a.len() as u64),
            _ => Err(bad("PUBSUB CHANNELS: expected an array")),
        }
    }
}

/// A command's counters in `INFO commandstats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CmdStat {
    pub calls: u64,
    pub usec: u64,
}

/// `cmdstat_evalsha:calls=12,usec=340,usec_per_call=28.33,rejected_calls=0,failed_calls=0` lines: (name,
/// counters), names lower case as Redis prints them (`client|setname` for subcommands).
pub fn parse_commandstats(text: &str) -> Vec<(String, CmdStat)> {
    text.lines()
        .filter_map(|l| {
            let (name, fields) = l.trim_end().strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |key: &str| {
                fields.split(',').find_map(|f| {
                    let (k, v) = f.split_once('=')?;
                    (k == key).then(|| v.parse::<u64>().ok())?
                })
            };
            Some((
                name.to_owned(),
                CmdStat {
                    calls: field("calls")?,
                    usec: field("usec").unwrap_or(0),
                },
            ))
        })
        .collect()
}

/// A `name:value` line of an INFO section, as a number.
pub fn info_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.trim_end()
            .strip_prefix(name)?
            .strip_prefix(':')?
            .parse()
            .ok()
    })
}

/// The load tool's own commands, not counted.
const OURS: [&str; 4] = ["info", "config|resetstat", "pubsub|channels", "config"];

/// Redis's counters at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub commands: Vec<(String, CmdStat)>,
    pub net_in: u64,
    pub net_out: u64,
    pub used_memory: u64,
}

/// What happened between two snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Commands by name, most called first (the load tool's own left out).
    pub commands: Vec<(String, CmdStat)>,
    pub net_in: u64,
    pub net_out: u64,
}

impl Delta {
    pub fn between(before: &Snapshot, after: &Snapshot) -> Delta {
        let mut commands: Vec<(String, CmdStat)> = after
            .commands
            .iter()
            .filter(|(name, _)| !OURS.contains(&name.as_str()))
            .filter_map(|(name, a)| {
                let b = before
                    .commands
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(CmdStat::default(), |x| x.1);
                let d = CmdStat {
                    calls: a.calls.saturating_sub(b.calls),
                    usec: a.usec.saturating_sub(b.usec),
                };
                (d.calls > 0).then(|| (name.clone(), d))
            })
            .collect();
        commands.sort_by(|a, b| b.1.calls.cmp(&a.1.calls).then(a.0.cmp(&b.0)));
        Delta {
            commands,
            net_in: after.net_in.saturating_sub(before.net_in),
            net_out: after.net_out.saturating_sub(before.net_out),
        }
    }

    /// Every command counted, those that scripts ran included (Redis counts them in commandstats too).
    pub fn calls(&self) -> u64 {
        self.commands.iter().map(|c| c.1.calls).sum()
    }

    pub fn calls_of(&self, name: &str) -> u64 {
        self.commands
            .iter()
            .find(|c| c.0 == name)
            .map_or(0, |c| c.1.calls)
    }

    /// What a client sent: scripts (EVALSHA, EVAL) and commands of its own; inside a script Redis counts
    /// each command the script ran under its own name too, so this is the round-trip count only when the
    /// scripts' own commands are known: see `per`.
    pub fn scripts(&self) -> u64 {
        ["evalsha", "eval", "fcall", "evalsha_ro", "eval_ro"]
            .iter()
            .map(|n| self.calls_of(n))
            .sum()
    }

    /// `name=calls/unit` for every command, most called first: the breakdown printed with a record.
    pub fn per(&self, unit: f64, label: &str) -> String {
        let parts: Vec<String> = self
            .commands
            .iter()
            .map(|(n, s)| format!("{n}={:.2}", s.calls as f64 / unit.max(1.0)))
            .collect();
        format!("redis per {label}: {}", parts.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATS: &str = "# Commandstats\r\n\
        cmdstat_evalsha:calls=1000,usec=25000,usec_per_call=25.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_publish:calls=1010,usec=3030,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_client|setname:calls=2,usec=1,usec_per_call=0.50,rejected_calls=0,failed_calls=0\r\n\
        cmdstat_info:calls=7,usec=700,usec_per_call=100.00,rejected_calls=0,failed_calls=0\r\n\
        garbage line\r\n";

    #[test]
    fn commandstats_lines() {
        let s = parse_commandstats(STATS);
        assert_eq!(s.len(), 4);
        assert_eq!(
            s[0],
            (
                "evalsha".into(),
                CmdStat {
                    calls: 1000,
                    usec: 25000
                }
            )
        );
        assert_eq!(s[2].0, "client|setname");
        assert_eq!(
            parse_commandstats("cmdstat_get:calls=x,usec=1\r\ncmdstat_set:usec=3\r\n"),
            vec![]
        );
    }

    #[test]
    fn delta_leaves_out_our_commands_and_sorts() {
        let before = Snapshot {
            commands: parse_commandstats(
                "cmdstat_evalsha:calls=400,usec=10000\r\ncmdstat_info:calls=3,usec=1\r\n",
            ),
            net_in: 100,
            net_out: 1000,
            used_memory: 0,
        };
        let after = Snapshot {
            commands: parse_commandstats(STATS),
            net_in: 600,
            net_out: 9000,
            used_memory: 0,
        };
        let d = Delta::between(&before, &after);
        let names: Vec<&str> = d.commands.iter().map(|c| c.0.as_str()).collect();
        assert_eq!(names, ["publish", "evalsha", "client|setname"]);
        assert_eq!(d.calls_of("evalsha"), 600);
        assert_eq!(d.calls(), 1010 + 600 + 2);
        assert_eq!(d.scripts(), 600);
        assert_eq!((d.net_in, d.net_out), (500, 8000));
        assert_eq!(
            d.per(600.0, "publish"),
            "redis per publish: publish=1.68 evalsha=1.00 client|setname=0.00"
        );
    }

    #[test]
    fn info_fields() {
        let stats = "# Stats\r\ntotal_net_input_bytes:12345\r\ntotal_net_output_bytes:678\r\n";
        assert_eq!(info_field(stats, "total_net_input_bytes"), Some(12345));
        assert_eq!(info_field(stats, "total_net_output_bytes"), Some(678));
        assert_eq!(info_field(stats, "total_net"), None);
    }

    #[test]
    fn replies() {
        let mut r: &[u8] =
            b"+OK\r\n-ERR no\r\n:42\r\n$5\r\nab\r\nc\r\n$-1\r\n*2\r\n$1\r\na\r\n:1\r\n*0\r\n";
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Simple("OK".into()));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Error("ERR no".into()));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Int(42));
        let bulk = read_reply(&mut r).unwrap();
        assert_eq!(bulk.text().as_deref(), Some("ab\r\nc"));
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Bulk(None));
        assert_eq!(
            read_reply(&mut r).unwrap(),
            Reply::Array(vec![Reply::Bulk(Some(b"a".to_vec())), Reply::Int(1)])
        );
        assert_eq!(read_reply(&mut r).unwrap(), Reply::Array(vec![]));
        assert!(read_reply(&mut r).is_err(), "end of input");
        let mut short: &[u8] = b"$5\r\nab\r\n";
        assert!(read_reply(&mut short).is_err());
        let mut odd: &[u8] = b"?x\r\n";
        assert!(read_reply(&mut odd).is_err());
    }

    #[test]
    fn commands_encode_as_arrays() {
        assert_eq!(
            encode(&["INFO", "commandstats"]),
            b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n"
        );
    }
}
