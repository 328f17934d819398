//! Channel names and what their prefix makes of them.
//!
//! The prefix is the channel's whole contract: `private-` needs a signed subscription, `presence-` a signed
//! one with member data, `private-encrypted-` carries payloads the server cannot read (so no client events),
//! `cache-` (in any of the four) keeps the last event for late subscribers, and `#server-to-user-<id>` is a
//! signed-in user's own channel. Nothing else about a name means anything.

use super::error::ChannelError;
use super::limits::CHANNEL_NAME_MAX;

/// The channel a signed-in user subscribes to for `sendToUser` (pusher-js names it this way after
/// `pusher:signin_success`).
pub const USER_CHANNEL_PREFIX: &str = "#server-to-user-";

/// What kind of channel a name is, from its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    Public,
    Private,
    Presence,
    PrivateEncrypted,
    /// `#server-to-user-<id>`: only the connection signed in as `<id>` may subscribe.
    User,
}

/// A valid channel name, with its kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Channel {
    name: String,
    kind: ChannelKind,
    cache: bool,
}

/// Prefixes in the order they must be tried (longest first where one starts another).
const PREFIXES: &[(&str, ChannelKind, bool)] = &[
    (
        "private-encrypted-cache-",
        ChannelKind::PrivateEncrypted,
        true,
    ),
    ("private-encrypted-", ChannelKind::PrivateEncrypted, false),
    ("private-cache-", ChannelKind::Private, true),
    ("private-", ChannelKind::Private, false),
    ("presence-cache-", ChannelKind::Presence, true),
    ("presence-", ChannelKind::Presence, false),
    ("cache-", ChannelKind::Public, true),
];

/// Whether a name is a `cache-` channel's (of any kind), without parsing it: the publish path asks this of
/// every pipe.
pub fn is_cache_name(name: &str) -> bool {
    PREFIXES
        .iter()
        .any(|(prefix, _, cache)| *cache && name.starts_with(prefix))
}

/// `[A-Za-z0-9_\-=@,.;]`, the bytes Pusher allows in channel names.
pub fn is_channel_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
}

impl Channel {
    pub fn parse(name: &str) -> Result<Channel, ChannelError> {
        if name.is_empty() {
            return Err(ChannelError::Empty);
        }
        if name.len() > CHANNEL_NAME_MAX {
            return Err(ChannelError::TooLong);
        }
        if let Some(user) = name.strip_prefix(USER_CHANNEL_PREFIX) {
            if user.is_empty() {
                return Err(ChannelError::NoUser);
            }
            if !user.bytes().all(is_channel_byte) {
                return Err(ChannelError::InvalidChars);
            }
            return Ok(Channel {
                name: name.to_owned(),
                kind: ChannelKind::User,
                cache: false,
            });
        }
        if !name.bytes().all(is_channel_byte) {
            return Err(ChannelError::InvalidChars);
        }
        let (kind, cache) = PREFIXES
            .iter()
            .find(|(prefix, _, _)| name.starts_with(prefix))
            .map_or((ChannelKind::Public, false), |&(_, kind, cache)| {
                (kind, cache)
            });
        Ok(Channel {
            name: name.to_owned(),
            kind,
            cache,
        })
    }

    /// The user channel of a signed-in user.
    pub fn for_user(user_id: &str) -> Result<Channel, ChannelError> {
        Channel::parse(&format!("{USER_CHANNEL_PREFIX}{user_id}"))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// A `cache-` channel of any kind: the last event is kept and sent to each new subscriber.
    pub fn is_cache(&self) -> bool {
        self.cache
    }

    /// A subscription needs a signature (`auth`): every kind but public. A user channel is authorized by
    /// the connection's sign-in instead.
    pub fn needs_signature(&self) -> bool {
        matches!(
            self.kind,
            ChannelKind::Private | ChannelKind::Presence | ChannelKind::PrivateEncrypted
        )
    }

    /// Clients may trigger `client-*` events here: private and presence channels only (on an encrypted
    /// channel the server could not check what it forwards, and Pusher refuses them there too).
    pub fn allows_client_events(&self) -> bool {
        matches!(self.kind, ChannelKind::Private | ChannelKind::Presence)
    }

    /// The user a `#server-to-user-` channel belongs to.
    pub fn user(&self) -> Option<&str> {
        match self.kind {
            ChannelKind::User => self.name.strip_prefix(USER_CHANNEL_PREFIX),
            _ => None,
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str) -> (ChannelKind, bool) {
        let c = Channel::parse(name).unwrap();
        (c.kind(), c.is_cache())
    }

    #[test]
    fn the_prefix_makes_the_kind() {
        use ChannelKind::*;
        assert_eq!(kind("news"), (Public, false));
        assert_eq!(kind("cache-news"), (Public, true));
        assert_eq!(kind("private-orders.1"), (Private, false));
        assert_eq!(kind("private-cache-x"), (Private, true));
        assert_eq!(kind("presence-room"), (Presence, false));
        assert_eq!(kind("presence-cache-room"), (Presence, true));
        assert_eq!(kind("private-encrypted-x"), (PrivateEncrypted, false));
        assert_eq!(kind("private-encrypted-cache-x"), (PrivateEncrypted, true));
        assert_eq!(kind("#server-to-user-42"), (User, false));
        // A prefix without its dash is just a name.
        assert_eq!(kind("privatechat"), (Public, false));
        for name in [
            "cache-a",
            "private-cache-a",
            "presence-cache-a",
            "private-encrypted-cache-a",
        ] {
            assert!(is_cache_name(name), "{name}");
        }
        for name in ["cachea", "private-a", "a-cache-b", "presence-a"] {
            assert!(!is_cache_name(name), "{name}");
        }
        assert_eq!(kind("presence"), (Public, false));
    }

    #[test]
    fn what_each_kind_allows() {
        let private = Channel::parse("private-a").unwrap();
        assert!(private.needs_signature() && private.allows_client_events());
        let presence = Channel::parse("presence-a").unwrap();
        assert!(presence.needs_signature() && presence.allows_client_events());
        let encrypted = Channel::parse("private-encrypted-a").unwrap();
        assert!(encrypted.needs_signature() && !encrypted.allows_client_events());
        let public = Channel::parse("a").unwrap();
        assert!(!public.needs_signature() && !public.allows_client_events());
        let user = Channel::for_user("u-7").unwrap();
        assert_eq!(user.name(), "#server-to-user-u-7");
        assert_eq!(user.user(), Some("u-7"));
        assert!(!user.needs_signature() && !user.allows_client_events());
        assert_eq!(private.user(), None);
    }

    #[test]
    fn names_are_bounded_and_spelled_from_the_allowed_bytes() {
        assert!(Channel::parse("a-Z_0=9@x,y.z;").is_ok());
        assert_eq!(Channel::parse(""), Err(ChannelError::Empty));
        assert!(Channel::parse(&"a".repeat(200)).is_ok());
        assert_eq!(Channel::parse(&"a".repeat(201)), Err(ChannelError::TooLong));
        for bad in ["a b", "a/b", "a#b", "é", "a\0", "a\"b", "a:b", "a*"] {
            assert_eq!(
                Channel::parse(bad),
                Err(ChannelError::InvalidChars),
                "{bad:?}"
            );
        }
        assert_eq!(
            Channel::parse("#server-to-user-"),
            Err(ChannelError::NoUser)
        );
        assert_eq!(
            Channel::parse("#server-to-user-a b"),
            Err(ChannelError::InvalidChars)
        );
        assert_eq!(Channel::parse("#other-1"), Err(ChannelError::InvalidChars));
    }
}
