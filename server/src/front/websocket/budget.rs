//! A connection's command budget: how many commands a browser may send, and how many of them may read
//! storage (`pipe_log`, `user_data`, `user_status`), before the server stops doing what they ask.
//!
//! Without it one anonymous socket could turn 20-byte frames into database reads (16 sockets pulled 9 GB
//! of history in 22 s) or into work for every other subscriber, as fast as it could write. Two `governor`
//! GCRA limiters per connection, both checked before a command runs: every text frame spends one of the
//! command budget, a storage read one of the (smaller) read budget as well.
//!
//! Past a budget the command is not run. The first refusal of a run of refusals gets one error frame
//! naming the budget and the wait (later ones get nothing, so a flood is not answered frame for frame);
//! a client that keeps sending through a whole burst's worth of refusals is closed (1008 on the comet
//! door). The Pusher door spends the same command budget per frame and words its own error and close.

use std::num::NonZeroU32;

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::browser::Command;
use crate::config::WebsocketConfig;

/// The close reason of a connection that ignored its refusals (with code 1008).
pub(super) const CLOSE_REASON: &str = "command rate limit exceeded";

/// A direct limiter on the zero-sized std clock: 40 bytes, against 72 with governor's default clock, on
/// every connection twice.
type Limiter =
    RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<std::time::Instant>>;

pub(super) struct CommandBudget {
    commands: Limiter,
    reads: Limiter,
    /// Commands refused since the last one that ran.
    refused: u32,
    /// Refusals in a row after which the connection is closed.
    close_after: u32,
}

/// What to do with a command.
pub(super) enum Verdict {
    Run,
    /// Not run; what to say, for the first refusal of a run.
    Refuse(Option<Refused>),
    /// Not run, and the connection is closed (1008, `CLOSE_REASON`).
    Close,
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

/// Whether a command reads storage (and spends the read budget as well).
pub(super) fn reads_storage(command: &Command<'_>) -> bool {
    matches!(
        command,
        Command::PipeLog { .. } | Command::UserData { .. } | Command::UserStatus { .. }
    )
}

impl CommandBudget {
    pub(super) fn new(config: &WebsocketConfig) -> CommandBudget {
        CommandBudget {
            commands: RateLimiter::direct_with_clock(
                quota(config.commands_per_sec, config.command_burst),
                MonotonicClock,
            ),
            reads: RateLimiter::direct_with_clock(
                quota(config.storage_reads_per_sec, config.storage_read_burst),
                MonotonicClock,
            ),
            refused: 0,
            close_after: config.command_burst.max(1),
        }
    }

    /// Spends one command (and one read when `reads_storage`).
    pub(super) fn spend(&mut self, reads_storage: bool) -> Verdict {
        let refusal = match self.commands.check() {
            Err(nu) => Some(("commands per connection", nu)),
            Ok(()) if reads_storage => self
                .reads
                .check()
                .err()
                .map(|nu| ("storage reads per connection", nu)),
            Ok(()) => None,
        };
        let Some((what, not_until)) = refusal else {
            self.refused = 0;
            return Verdict::Run;
        };
        self.refused = self.refused.saturating_add(1);
        if self.refused > self.close_after {
            return Verdict::Close;
        }
        if self.refused > 1 {
            return Verdict::Refuse(None);
        }
        let wait = not_until.wait_time_from(MonotonicClock.now());
        Verdict::Refuse(Some(Refused {
            what,
            wait_ms: wait.as_millis().max(1),
        }))
    }
}

/// The budget a command was refused by, and how long until it would run.
pub(super) struct Refused {
    what: &'static str,
    wait_ms: u128,
}

impl Refused {
    /// The sentence both doors send.
    pub(super) fn text(&self) -> String {
        format!(
            "Rate limit exceeded: {} (retry in {} ms)",
            self.what, self.wait_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser::frames::{self, ApiEra};

    fn config(commands: u32, reads: u32) -> WebsocketConfig {
        WebsocketConfig {
            commands_per_sec: 1,
            command_burst: commands,
            storage_reads_per_sec: 1,
            storage_read_burst: reads,
            ..WebsocketConfig::default()
        }
    }

    fn refusal_text(v: Verdict) -> String {
        match v {
            Verdict::Refuse(Some(r)) => frames::command_error(&r.text(), 5).json(ApiEra::Modern),
            Verdict::Refuse(None) => "silent".into(),
            Verdict::Run => "run".into(),
            Verdict::Close => "close".into(),
        }
    }

    #[test]
    fn reads_have_their_own_smaller_budget() {
        let mut b = CommandBudget::new(&config(10, 2));
        assert!(matches!(b.spend(true), Verdict::Run));
        assert!(matches!(b.spend(true), Verdict::Run));
        let first = refusal_text(b.spend(true));
        assert!(
            first.starts_with(
                r#"{"data":{"error":"Rate limit exceeded: storage reads per connection (retry in "#
            ) && first.ends_with(
                r#" ms)","number_messages":-1},"event":"error","message_send_time":5,"pipe":"sys"}"#
            ),
            "{first}"
        );
        assert!(
            matches!(b.spend(false), Verdict::Run),
            "other commands still run"
        );
    }

    #[test]
    fn one_frame_per_run_of_refusals_then_close() {
        let mut b = CommandBudget::new(&config(3, 3));
        for _ in 0..3 {
            assert!(matches!(b.spend(false), Verdict::Run));
        }
        assert!(refusal_text(b.spend(false)).contains("commands per connection"));
        for _ in 0..2 {
            assert_eq!(refusal_text(b.spend(false)), "silent");
        }
        assert_eq!(refusal_text(b.spend(false)), "close");
    }

    #[test]
    fn which_commands_read_storage() {
        use crate::browser::parse_command;
        for (text, reads) in [
            ("pipe_log\nweb_a\nm", true),
            ("user_data\nm\n5", true),
            ("user_status\n5", true),
            ("subscription\nweb_a", false),
            ("pipe_count\nweb_a\nm", false),
            ("track_pipe_users\ntrack_a\nm", false),
            ("web_pipe2\nweb_a\nev\n*\nhi", false),
        ] {
            assert_eq!(
                reads_storage(&parse_command(text).unwrap()),
                reads,
                "{text}"
            );
        }
    }
}
