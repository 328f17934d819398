//! Who may open a connection, decided when it is accepted on either port, before a byte is read: at most
//! `connections_per_ip` open at once from one address (an IPv6 client: its /64), the address's rate of new
//! connections, and the server's total as a last resort. A refused socket is closed at once, so an address
//! at its limit holds no more than its share of sockets and request buffers, and everyone else is served.
//!
//! Refusals are counted by reason in the node's `Stats` (shown by `/metrics`), and so are the open sockets; the log gets one summary line per reason and interval
//! instead of a line per refusal (under a flood, per-refusal lines would be the attack's amplifier).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::ids::ClientIp;
use crate::stats::{AcceptRefusal, Stats};
use crate::tenant::limits::{Limit, Limits};

/// Distinct addresses remembered per reason and interval for the summary; past it the line says "at least".
const MAX_ADDRESSES: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The limits that refuse a connection at accept, in the order the log summary lists them, with the reason
/// `Stats` counts them under.
const REFUSING: [(Limit, AcceptRefusal); 3] = [
    (Limit::TotalConnections, AcceptRefusal::ServerConnections),
    (Limit::IpOpenConnections, AcceptRefusal::IpConnections),
    (Limit::IpConnections, AcceptRefusal::IpNewConnections),
];

/// Open sockets across both listeners, in total (`Stats::open_sockets`) and per client address.
#[derive(Default, Debug)]
pub struct OpenSockets {
    /// Holds the total: the node's one count of open sockets.
    stats: Stats,
    /// Only addresses with an open socket have an entry, so the map is bounded by the open sockets.
    per_ip: Mutex<HashMap<ClientIp, usize>>,
}

/// One open socket; the counts drop when the last clone is gone (a WebSocket task keeps a clone).
#[derive(Debug)]
pub struct SocketGuard {
    sockets: Arc<OpenSockets>,
    ip: ClientIp,
}

impl OpenSockets {
    pub fn new(stats: Stats) -> OpenSockets {
        OpenSockets {
            stats,
            per_ip: Mutex::default(),
        }
    }

    /// Counts a new socket from `ip`, unless `max_per_ip` are open from that address or `max` in all.
    pub fn open(
        self: &Arc<Self>,
        ip: IpAddr,
        max: usize,
        max_per_ip: usize,
    ) -> Result<SocketGuard, Limit> {
        let ip = ClientIp::from(ip);
        // Both counts change under this lock (the total is atomic for readers only): a short critical
        // section per accept and per close.
        let mut per_ip = lock(&self.per_ip);
        let from_ip = per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= max_per_ip {
            return Err(Limit::IpOpenConnections);
        }
        if self.stats.open_sockets.load(Ordering::Relaxed) >= max {
            return Err(Limit::TotalConnections);
        }
        per_ip.insert(ip, from_ip + 1);
        self.stats.open_sockets.fetch_add(1, Ordering::Relaxed);
        Ok(SocketGuard {
            sockets: self.clone(),
            ip,
        })
    }

    #[cfg(test)]
    fn count(&self) -> usize {
        self.stats.open_sockets.load(Ordering::Relaxed)
    }

    /// Sockets open from `ip`'s address (its /64 for IPv6).
    #[cfg(test)]
    fn count_from(&self, ip: IpAddr) -> usize {
        lock(&self.per_ip)
            .get(&ClientIp::from(ip))
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let mut per_ip = lock(&self.sockets.per_ip);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        self.sockets
            .stats
            .open_sockets
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The accept-time checks shared by both listeners.
pub struct Admission {
    sockets: Arc<OpenSockets>,
    limits: Arc<Limits>,
    log: RefusalLog,
}

impl Admission {
    /// Refusals are counted in the `Stats` the sockets are counted in.
    pub fn new(sockets: Arc<OpenSockets>, limits: Arc<Limits>) -> Admission {
        Admission {
            sockets,
            limits,
            log: RefusalLog::default(),
        }
    }

    /// A new connection from `ip`: its guard, or the limit that refuses it (counted and logged in summary).
    /// The counts come before the rate, so that a connection refused for the count costs no rate budget.
    pub fn admit(&self, ip: IpAddr) -> Result<SocketGuard, Limit> {
        let config = self.limits.config();
        let admitted = self
            .sockets
            .open(ip, config.max_connections, config.connections_per_ip)
            .and_then(|guard| match self.limits.new_connection(ip) {
                Ok(()) => Ok(guard),
                Err(refused) => Err(refused.limit),
            });
        if let Err(limit) = admitted {
            if let Some((_, why)) = REFUSING.iter().find(|(l, _)| *l == limit) {
                self.sockets.stats.connections_refused.add(*why);
            }
            self.log.record(limit, ip);
        }
        admitted
    }

    /// Logs the refusals of each interval as one line per reason, until shutdown.
    pub async fn log_refusals(
        self: Arc<Self>,
        every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            for line in self.log.take_summary(every) {
                tracing::warn!("{line}");
            }
        }
    }
}

/// Refusals since the last summary, per reason.
#[derive(Default)]
struct RefusalLog(Mutex<HashMap<Limit, Pending>>);

#[derive(Default)]
struct Pending {
    refused: u64,
    addresses: HashSet<ClientIp>,
}

impl RefusalLog {
    fn record(&self, limit: Limit, ip: IpAddr) {
        let mut pending = lock(&self.0);
        let p = pending.entry(limit).or_default();
        p.refused += 1;
        if p.addresses.len() < MAX_ADDRESSES {
            p.addresses.insert(ClientIp::from(ip));
        }
    }

    /// One line per reason refused since the last call, and a fresh start.
    fn take_summary(&self, every: Duration) -> Vec<String> {
        let pending = std::mem::take(&mut *lock(&self.0));
        REFUSING
            .iter()
            .filter_map(|(limit, _)| {
                let p = pending.get(limit)?;
                let n = p.addresses.len();
                let from = match (n, n >= MAX_ADDRESSES) {
                    (_, true) => format!("at least {n} addresses"),
                    (1, false) => "1 address".to_string(),
                    (n, false) => format!("{n} addresses"),
                };
                Some(format!(
                    "refused {} connection{} from {from} in the last {} s: {}",
                    p.refused,
                    if p.refused == 1 { "" } else { "s" },
                    every.as_secs(),
                    limit.describe(),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LimitsConfig;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn open_sockets_are_capped_in_total_and_per_address() {
        let s = Arc::new(OpenSockets::default());
        let a = s.open(ip("10.0.0.1"), 3, 2).unwrap();
        let b = s.open(ip("10.0.0.1"), 3, 2).unwrap();
        assert_eq!(
            s.open(ip("10.0.0.1"), 3, 2).unwrap_err(),
            Limit::IpOpenConnections
        );
        let c = s.open(ip("10.0.0.2"), 3, 2).unwrap();
        assert_eq!(
            s.open(ip("10.0.0.3"), 3, 2).unwrap_err(),
            Limit::TotalConnections
        );
        assert_eq!((s.count(), s.count_from(ip("10.0.0.1"))), (3, 2));
        drop(a);
        assert_eq!((s.count(), s.count_from(ip("10.0.0.1"))), (2, 1));
        let again = s.open(ip("10.0.0.1"), 3, 2).unwrap();
        drop((b, c, again));
        assert_eq!(s.count(), 0);
        assert!(lock(&s.per_ip).is_empty(), "closed addresses are forgotten");
    }

    #[test]
    fn an_ipv6_64_is_one_address() {
        let s = Arc::new(OpenSockets::default());
        let _a = s.open(ip("2001:db8:0:1::1"), 10, 2).unwrap();
        let _b = s.open(ip("2001:db8:0:1::2"), 10, 2).unwrap();
        assert_eq!(
            s.open(ip("2001:db8:0:1:ffff::3"), 10, 2).unwrap_err(),
            Limit::IpOpenConnections
        );
        let _other = s.open(ip("2001:db8:0:2::1"), 10, 2).unwrap();
    }

    #[test]
    fn admission_checks_the_count_then_the_rate_and_counts_refusals() {
        let stats = Stats::default();
        let limits = Arc::new(Limits::new(
            LimitsConfig {
                connections_per_ip: 2,
                new_connections_per_ip_per_sec: 1,
                new_connections_per_ip_burst: 3,
                ..LimitsConfig::default()
            },
            stats.clone(),
        ));
        let adm = Admission::new(Arc::new(OpenSockets::new(stats.clone())), limits);
        let a = ip("10.0.0.1");
        let first = adm.admit(a).unwrap();
        let _second = adm.admit(a).unwrap();
        assert_eq!(adm.admit(a).unwrap_err(), Limit::IpOpenConnections);
        drop(first);
        // The refusal for the count spent no rate budget: the third of the burst is still there.
        let _third = adm.admit(a).unwrap();
        drop(_third);
        assert_eq!(adm.admit(a).unwrap_err(), Limit::IpConnections);
        let refused = &stats.connections_refused;
        assert_eq!(refused.get(AcceptRefusal::IpConnections), 1);
        assert_eq!(refused.get(AcceptRefusal::IpNewConnections), 1);
        assert_eq!(refused.get(AcceptRefusal::ServerConnections), 0);
        assert_eq!(adm.sockets.count(), 1);
    }

    #[test]
    fn the_log_summarizes_refusals_per_reason() {
        let log = RefusalLog::default();
        for i in 0..5 {
            log.record(Limit::IpOpenConnections, ip("10.0.0.1"));
            log.record(Limit::IpOpenConnections, ip(&format!("10.0.1.{i}")));
        }
        log.record(Limit::TotalConnections, ip("10.0.0.9"));
        let lines = log.take_summary(Duration::from_secs(10));
        assert_eq!(
            lines,
            [
                "refused 1 connection from 1 address in the last 10 s: connections per server",
                "refused 10 connections from 6 addresses in the last 10 s: open connections per IP address",
            ]
        );
        assert!(log.take_summary(Duration::from_secs(10)).is_empty());
        for i in 0..(MAX_ADDRESSES as u32 + 10) {
            log.record(Limit::IpConnections, IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(
            log.take_summary(Duration::from_secs(10)),
            [format!(
                "refused {} connections from at least {MAX_ADDRESSES} addresses in the last 10 s: \
                 new connections per IP address",
                MAX_ADDRESSES + 10
            )]
        );
    }
}
