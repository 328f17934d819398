//! Login throttling (docs/compatibility.md §5): 5 attempts a minute per client IP and per email, then HTTP 429 with
//! Retry-After. An attempt is counted before the password is checked, so a throttled caller learns nothing
//! about the password; a successful login uses one of the five too (a person needs one). A password change
//! checks the current password with the same quota, counted apart (per IP and per account), so that a stolen
//! session cannot guess the password at speed either.

use std::net::IpAddr;
use std::num::NonZeroU32;

use axum::http::StatusCode;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use crate::ids::{ClientIp, DevId};

pub(super) const LOGINS_PER_MINUTE: u32 = 5;
/// Each sign-up creates a tenant and runs argon2 (about 19 MiB, a blocking thread): bounded per address.
pub(super) const SIGNUPS_PER_MINUTE: u32 = 10;
/// Past this many remembered keys, entries that have fully recovered are dropped.
const MAX_KEYS: usize = 10_000;

pub(super) struct Throttle {
    by_ip: DefaultKeyedRateLimiter<ClientIp>,
    by_email: DefaultKeyedRateLimiter<String>,
    signups: DefaultKeyedRateLimiter<ClientIp>,
    password_by_ip: DefaultKeyedRateLimiter<ClientIp>,
    password_by_account: DefaultKeyedRateLimiter<DevId>,
    clock: DefaultClock,
}

impl Default for Throttle {
    fn default() -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(LOGINS_PER_MINUTE).expect("non-zero"));
        Throttle {
            by_ip: RateLimiter::keyed(quota),
            by_email: RateLimiter::keyed(quota),
            signups: RateLimiter::keyed(Quota::per_minute(
                NonZeroU32::new(SIGNUPS_PER_MINUTE).expect("non-zero"),
            )),
            password_by_ip: RateLimiter::keyed(quota),
            password_by_account: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }
}

impl Throttle {
    /// Counts one sign-up from `ip`; 429 past the per-address quota.
    pub(super) fn sign_up_attempt(&self, ip: IpAddr) -> Result<(), ApiError> {
        if self.signups.len() > MAX_KEYS {
            self.signups.retain_recent();
        }
        self.signups.check_key(&ClientIp::from(ip)).map_err(|n| {
            let secs = n.wait_time_from(self.clock.now()).as_secs() + 1;
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!("Too many sign-ups from this address. Please wait {secs} seconds and try again."),
            );
            e.retry_after = Some(secs);
            e
        })
    }

    /// Counts one login attempt from `ip` for `email` (normalized); 429 when either has used its quota.
    pub(super) fn login_attempt(&self, ip: IpAddr, email: &str) -> Result<(), ApiError> {
        if self.by_email.len() > MAX_KEYS {
            self.by_email.retain_recent();
        }
        if self.by_ip.len() > MAX_KEYS {
            self.by_ip.retain_recent();
        }
        let ip_wait = self.by_ip.check_key(&ClientIp::from(ip)).err();
        let email_wait = self.by_email.check_key(&email.to_owned()).err();
        self.refuse_past(ip_wait, email_wait, "login")
    }

    /// Counts one check of the current password (a password change) from `ip` on `account`.
    pub(super) fn password_attempt(&self, ip: IpAddr, account: DevId) -> Result<(), ApiError> {
        if self.password_by_account.len() > MAX_KEYS {
            self.password_by_account.retain_recent();
        }
        if self.password_by_ip.len() > MAX_KEYS {
            self.password_by_ip.retain_recent();
        }
        let ip_wait = self.password_by_ip.check_key(&ClientIp::from(ip)).err();
        let account_wait = self.password_by_account.check_key(&account).err();
        self.refuse_past(ip_wait, account_wait, "password")
    }

    fn refuse_past(
        &self,
        a: Option<governor::NotUntil<governor::clock::QuantaInstant>>,
        b: Option<governor::NotUntil<governor::clock::QuantaInstant>>,
        what: &str,
    ) -> Result<(), ApiError> {
        let now = self.clock.now();
        let wait = [a, b]
            .into_iter()
            .flatten()
            .map(|n| n.wait_time_from(now))
            .max();
        match wait {
            None => Ok(()),
            Some(wait) => {
                let secs = wait.as_secs() + 1;
                let mut e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_attempts",
                    format!("Too many {what} attempts. Please wait {secs} seconds and try again."),
                );
                e.retry_after = Some(secs);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_ups_are_bounded_per_address() {
        let t = Throttle::default();
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        for _ in 0..SIGNUPS_PER_MINUTE {
            t.sign_up_attempt(ip).unwrap();
        }
        let e = t.sign_up_attempt(ip).unwrap_err();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(t.sign_up_attempt("10.0.0.10".parse().unwrap()).is_ok());
    }

    #[test]
    fn five_a_minute_per_ip_and_per_email() {
        let t = Throttle::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for i in 0..LOGINS_PER_MINUTE {
            t.login_attempt(ip, &format!("u{i}@example.com")).unwrap();
        }
        let e = t.login_attempt(ip, "new@example.com").unwrap_err();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(e.retry_after.unwrap() >= 1);
        // Another IP is not affected, but the same email from many IPs is.
        for i in 0..LOGINS_PER_MINUTE {
            t.login_attempt(format!("10.0.1.{i}").parse().unwrap(), "a@example.com")
                .unwrap();
        }
        assert!(t
            .login_attempt("10.0.2.1".parse().unwrap(), "a@example.com")
            .is_err());
        assert!(t
            .login_attempt("10.0.2.1".parse().unwrap(), "b@example.com")
            .is_ok());
    }

    #[test]
    fn password_checks_have_their_own_quota_per_ip_and_account() {
        let t = Throttle::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..LOGINS_PER_MINUTE {
            t.login_attempt(ip, "a@example.com").unwrap();
        }
        for i in 0..LOGINS_PER_MINUTE {
            t.password_attempt(ip, DevId(u64::from(i) + 1)).unwrap();
        }
        let e = t.password_attempt(ip, DevId(99)).unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts")
        );
        assert!(e.message.contains("password attempts"), "{}", e.message);
        // One account from many addresses is bounded too.
        for i in 0..LOGINS_PER_MINUTE {
            t.password_attempt(format!("10.0.1.{i}").parse().unwrap(), DevId(7))
                .unwrap();
        }
        assert!(t
            .password_attempt("10.0.2.1".parse().unwrap(), DevId(7))
            .is_err());
    }
}
