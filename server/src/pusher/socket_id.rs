//! Socket ids: `digits.digits`, the name a connection signs its subscriptions with and the HTTP API
//! excludes (`socket_id`, Laravel's `->toOthers()`).
//!
//! An id is random, not a counter: it appears in signatures the tenant's auth endpoint makes, and a
//! guessable one would let a page predict another connection's id. The random source is passed in, so the
//! codec does no I/O and tests are repeatable.

use rand::RngCore;
use thiserror::Error;

/// Digits on each side of the dot a parsed id may have (a `u64` has 20).
const SIDE_MAX: usize = 20;

/// A valid socket id, kept as the text it was given: signatures are made over that text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SocketId(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("Invalid socket id: expected digits.digits")]
pub struct SocketIdError;

impl SocketId {
    /// A new id from `rng`: two random `u32`s, the shape Pusher's own ids have (`123456.7890123`).
    pub fn generate(rng: &mut impl RngCore) -> SocketId {
        SocketId(format!("{}.{}", rng.next_u32(), rng.next_u32()))
    }

    pub fn parse(text: &str) -> Result<SocketId, SocketIdError> {
        let (a, b) = text.split_once('.').ok_or(SocketIdError)?;
        let side =
            |s: &str| (1..=SIDE_MAX).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_digit());
        if side(a) && side(b) {
            Ok(SocketId(text.to_owned()))
        } else {
            Err(SocketIdError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SocketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::mock::StepRng;

    #[test]
    fn generated_ids_parse_and_come_from_the_source() {
        let mut rng = StepRng::new(7, 1);
        let a = SocketId::generate(&mut rng);
        assert_eq!(a.as_str(), "7.8");
        assert_eq!(SocketId::parse(a.as_str()).unwrap(), a);
        let mut os = rand::rngs::OsRng;
        let b = SocketId::generate(&mut os);
        assert!(SocketId::parse(b.as_str()).is_ok());
    }

    #[test]
    fn only_digits_dot_digits() {
        assert!(SocketId::parse("1234.1234").is_ok());
        assert!(SocketId::parse("0.0").is_ok());
        assert!(SocketId::parse(&format!("{0}.{0}", "9".repeat(20))).is_ok());
        for bad in [
            "", ".", "1.", ".1", "1", "1.2.3", "a.1", "1.1 ", " 1.1", "-1.1", "+1.1", "1,1", "１.1",
        ] {
            assert_eq!(SocketId::parse(bad), Err(SocketIdError), "{bad:?}");
        }
        assert!(SocketId::parse(&format!("{}.1", "9".repeat(21))).is_err());
    }
}
