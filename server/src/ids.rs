//! Domain identifiers. Bare integers and strings never cross a module boundary as ids: a `PipeName` has been
//! validated once, a `DevId` is a tenant that can exist.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use crate::browser::names::{self, EventNameError, PipeNameError};

/// A tenant's public id (the CometQL user name and the browser's `dev_id`). Positive, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevId(pub u64);

/// A tenant's end user, as the tenant's backend numbers them (users_auth.id). 0 means anonymous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub u64);

/// One WebSocket connection, unique for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// The registry key's prefix for Pusher channels that are not comet pipes (private, presence, encrypted,
/// user channels, and public names a pipe cannot have). `:` is in no pipe name and no channel name, so
/// nothing a comet client or CometQL can name falls there.
pub const PUSHER_ONLY: &str = "pusher:";

/// A pipe (channel) name that passed validation; cheap to clone because the hub keys on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PipeName(Arc<str>);

/// An event name that passed validation (may be empty, as in the reference).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventName(Arc<str>);

impl PipeName {
    /// The CometQL rule (docs/reference-cppcomet.md 1.6): 3..=64 characters of `[A-Za-z0-9_-]`, checked in the
    /// reference's order.
    pub fn parse(s: &str) -> Result<Self, PipeNameError> {
        names::check_cometql_pipe(s)?;
        Ok(PipeName(Arc::from(s)))
    }

    /// The WebSocket subscription rule (docs/reference-cppcomet.md 2.5): 2..=63 characters.
    pub fn parse_subscription(s: &str) -> Result<Self, PipeNameError> {
        names::check_ws_pipe(s)?;
        Ok(PipeName(Arc::from(s)))
    }

    /// The registry key of a Pusher channel that is not a comet pipe (see [`PUSHER_ONLY`]): `channel` is a
    /// valid Pusher channel name, checked by the caller.
    pub fn pusher_only(channel: &str) -> Self {
        PipeName(Arc::from(format!("{PUSHER_ONLY}{channel}")))
    }

    /// A pipe named in a browser command (`web_pipe2`, `pipe_log`, ...).
    pub fn parse_command(s: &str) -> Result<Self, PipeNameError> {
        names::check_command_pipe(s)?;
        Ok(PipeName(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl EventName {
    pub fn parse(s: &str) -> Result<Self, EventNameError> {
        names::check_event(s)?;
        Ok(EventName(Arc::from(s)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl EventName {
    /// An event name from the Pusher protocol (`App\\Events\\OrderShipped`, `.shipped`): Pusher's rule
    /// (1..=200 characters, no control characters, not `pusher:`), wider than the comet one. Comet pages on
    /// a bridged pipe get it as it is.
    pub fn pusher(s: &str) -> Result<Self, crate::pusher::EventError> {
        crate::pusher::client::check_event_name(s)?;
        Ok(EventName(Arc::from(s)))
    }
}

impl fmt::Display for DevId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for PipeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The client a per-address limit counts: an IPv4 address, or an IPv6 client's /64 (one subscriber line
/// holds a whole /64, so a per-address limit keyed on the full IPv6 address is no limit at all). An
/// IPv4-mapped IPv6 address counts as the IPv4 address it maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientIp(IpAddr);

impl ClientIp {
    pub fn ip(self) -> IpAddr {
        self.0
    }
}

impl From<IpAddr> for ClientIp {
    fn from(ip: IpAddr) -> ClientIp {
        match ip {
            IpAddr::V4(v4) => ClientIp(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientIp(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    ClientIp(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

impl fmt::Display for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_rules_of_each_front_door() {
        assert_eq!(
            PipeName::parse(&"a".repeat(65)),
            Err(PipeNameError::TooLong)
        );
        assert_eq!(PipeName::parse("ab"), Err(PipeNameError::TooShort));
        assert_eq!(PipeName::parse("a.b"), Err(PipeNameError::InvalidChars));
        assert_eq!(PipeName::parse(&"a".repeat(64)).unwrap().as_str().len(), 64);
        assert_eq!(PipeName::parse_subscription("ab").unwrap().as_str(), "ab");
        assert!(PipeName::parse_subscription(&"a".repeat(64)).is_err());
        assert_eq!(EventName::parse("").unwrap().as_str(), "");
        assert_eq!(EventName::parse("é"), Err(EventNameError::InvalidChars));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = ClientIp::from(ip("2001:db8:1:2:aaaa::1"));
        let b = ClientIp::from(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        let other = ClientIp::from(ip("2001:db8:1:3::1"));
        assert_eq!(a, b, "one /64 is one client");
        assert_ne!(a, other);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_eq!(ClientIp::from(ip("10.0.0.1")).ip(), ip("10.0.0.1"));
        assert_eq!(
            ClientIp::from(ip("::ffff:10.0.0.1")),
            ClientIp::from(ip("10.0.0.1"))
        );
        assert_ne!(
            ClientIp::from(ip("10.0.0.1")),
            ClientIp::from(ip("10.0.0.2"))
        );
    }
}
