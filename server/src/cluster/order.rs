//! A pipe's delivery order on this node: what the last delivered position is, and what an arriving
//! message is to it. Pure; the receiver (`receiver.rs`) acts on the answer.

/// What to do with a message of (`epoch`, `offset`) after the pipe's last delivered position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// The next one (or the first this node sees): deliver.
    Deliver,
    /// At or before the last delivered: already delivered, or in a join's replay. Dropped.
    Duplicate,
    /// Offsets `from..=to` are missing before it: read them from the window and deliver them first.
    Gap { from: u64, to: u64 },
    /// Another numbering (Redis lost the pipe's keys, or a durable pipe's history was made anew): deliver,
    /// positioned subscribers are told `gap` by the registry.
    NewEpoch,
}

pub(super) fn step(last: Option<(&str, u64)>, epoch: &str, offset: u64) -> Step {
    match last {
        None => Step::Deliver,
        Some((e, _)) if e != epoch => Step::NewEpoch,
        Some((_, l)) if offset <= l => Step::Duplicate,
        Some((_, l)) if offset == l + 1 => Step::Deliver,
        Some((_, l)) => Step::Gap {
            from: l + 1,
            to: offset - 1,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        assert_eq!(step(None, "e", 9), Step::Deliver);
        assert_eq!(step(Some(("e", 8)), "e", 9), Step::Deliver);
        assert_eq!(step(Some(("e", 9)), "e", 9), Step::Duplicate);
        assert_eq!(step(Some(("e", 9)), "e", 3), Step::Duplicate);
        assert_eq!(step(Some(("e", 6)), "e", 9), Step::Gap { from: 7, to: 8 });
        assert_eq!(step(Some(("e", 0)), "e", 2), Step::Gap { from: 1, to: 1 });
        assert_eq!(step(Some(("e", 6)), "f", 1), Step::NewEpoch);
        assert_eq!(
            step(Some(("e", u64::MAX - 2)), "e", u64::MAX),
            Step::Gap {
                from: u64::MAX - 1,
                to: u64::MAX - 1
            }
        );
    }
}
