//! Who may open a connection, decided when it is accepted on either port, before a byte is read: at most
//! `connections_per_ip` open at once from one address (an IPv6 client: its /64), the address's rate of new
//! connections, and the server's total as a last resort. A refused socket is closed at once, so an address
//! at its limit holds no more than its share of sockets and request buffers, and everyone else is served.
//!
//! A peer in `trusted_proxies` is a balancer speaking for many clients: at accept its socket counts in the
//! total only, and the per-IP checks wait for the client it names (its PROXY header: [`Admission::rekey`];
//! an HTTP request's forwarding headers: [`Admission::admit_request`]).
//!
//! Refusals are counted by reason in the node's `Stats` (shown by `/metrics`), and so are the open sockets; the log gets one summary line per reason and interval
//! instead of a line per refusal (under a flood, per-refusal lines would be the attack's amplifier).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::cidr::{self, Cidr};
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

/// One open socket, or one request through a trusted proxy; the counts drop when the last clone is gone
/// (a WebSocket task keeps a clone).
#[derive(Debug)]
pub struct SocketGuard {
    sockets: Arc<OpenSockets>,
    /// The address counted; None for a trusted proxy's socket while it names no client.
    ip: Option<ClientIp>,
    /// Whether this guard holds a place in the total: a socket's does, a request's does not.
    socket: bool,
    /// A request's guard keeps its connection's socket counted (a WebSocket outlives the HTTP connection).
    _connection: Option<Arc<SocketGuard>>,
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
        self.count(Some((ClientIp::from(ip), max_per_ip)), Some(max), None)
    }

    /// Counts a trusted proxy's socket in the total only (at most `max` open).
    fn open_unkeyed(self: &Arc<Self>, max: usize) -> Result<SocketGuard, Limit> {
        self.count(None, Some(max), None)
    }

    /// Counts one request from `ip` through `connection` (a trusted proxy's), in the address's count only.
    fn open_request(
        self: &Arc<Self>,
        ip: IpAddr,
        max_per_ip: usize,
        connection: Arc<SocketGuard>,
    ) -> Result<SocketGuard, Limit> {
        let key = (ClientIp::from(ip), max_per_ip);
        self.count(Some(key), None, Some(connection))
    }

    /// Counts a new guard: in `ip`'s count unless `max_per_ip` are open from it, in the total unless `max`
    /// are open in all.
    fn count(
        self: &Arc<Self>,
        ip: Option<(ClientIp, usize)>,
        total: Option<usize>,
        connection: Option<Arc<SocketGuard>>,
    ) -> Result<SocketGuard, Limit> {
        // Both counts change under this lock (the total is atomic for readers only): a short critical
        // section per accept and per close.
        let mut per_ip = lock(&self.per_ip);
        if let Some((ip, max_per_ip)) = ip {
            if per_ip.get(&ip).copied().unwrap_or(0) >= max_per_ip {
                return Err(Limit::IpOpenConnections);
            }
        }
        if let Some(max) = total {
            if self.stats.open_sockets.load(Ordering::Relaxed) >= max {
                return Err(Limit::TotalConnections);
            }
            self.stats.open_sockets.fetch_add(1, Ordering::Relaxed);
        }
        if let Some((ip, _)) = ip {
            *per_ip.entry(ip).or_default() += 1;
        }
        Ok(SocketGuard {
            sockets: self.clone(),
            ip: ip.map(|(ip, _)| ip),
            socket: total.is_some(),
            _connection: connection,
        })
    }

    /// Counts an unkeyed socket's guard under `ip` from now on, unless `max_per_ip` are open from it.
    fn key(&self, guard: &mut SocketGuard, ip: IpAddr, max_per_ip: usize) -> Result<(), Limit> {
        debug_assert!(guard.ip.is_none(), "a guard is keyed once");
        let ip = ClientIp::from(ip);
        let mut per_ip = lock(&self.per_ip);
        let from_ip = per_ip.entry(ip).or_default();
        if *from_ip >= max_per_ip {
            if *from_ip == 0 {
                per_ip.remove(&ip);
            }
            return Err(Limit::IpOpenConnections);
        }
        *from_ip += 1;
        guard.ip = Some(ip);
        Ok(())
    }

    #[cfg(test)]
    fn total(&self) -> usize {
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

impl SocketGuard {
    /// Whether this socket is counted under a client's address (false: a trusted proxy's, naming none).
    pub(crate) fn is_keyed(&self) -> bool {
        self.ip.is_some()
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let mut per_ip = lock(&self.sockets.per_ip);
        if let Some(ip) = &self.ip {
            if let Some(n) = per_ip.get_mut(ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(ip);
                }
            }
        }
        if self.socket {
            self.sockets
                .stats
                .open_sockets
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The accept-time checks shared by both listeners.
pub struct Admission {
    sockets: Arc<OpenSockets>,
    limits: Arc<Limits>,
    log: RefusalLog,
    trusted_proxies: Vec<Cidr>,
}

impl Admission {
    /// Refusals are counted in the `Stats` the sockets are counted in.
    pub fn new(sockets: Arc<OpenSockets>, limits: Arc<Limits>) -> Admission {
        Admission {
            sockets,
            limits,
            log: RefusalLog::default(),
            trusted_proxies: Vec::new(),
        }
    }

    /// Peers whose word on the client's address is taken (`trusted_proxies`).
    pub fn with_trusted_proxies(mut self, nets: Vec<Cidr>) -> Admission {
        self.trusted_proxies = nets;
        self
    }

    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        cidr::any_contains(&self.trusted_proxies, ip)
    }

    /// A new connection from `ip`: its guard, or the limit that refuses it (counted and logged in summary).
    /// The counts come before the rate, so that a connection refused for the count costs no rate budget.
    /// A trusted proxy's connection is counted in the total only, and unkeyed until it names its client.
    pub fn admit(&self, ip: IpAddr) -> Result<SocketGuard, Limit> {
        let config = self.limits.config();
        let admitted = if self.is_trusted(ip) {
            self.sockets.open_unkeyed(config.max_connections)
        } else {
            self.sockets
                .open(ip, config.max_connections, config.connections_per_ip)
                .and_then(|guard| self.new_connection(ip).map(|()| guard))
        };
        self.refused(admitted, ip)
    }

    /// A trusted proxy's connection names its client `ip` (its PROXY header): the per-IP checks of
    /// [`Admission::admit`] apply to `ip` now, and the socket counts under it until it closes.
    pub fn rekey(&self, guard: &mut SocketGuard, ip: IpAddr) -> Result<(), Limit> {
        let config = self.limits.config();
        let keyed = self
            .sockets
            .key(guard, ip, config.connections_per_ip)
            .and_then(|()| self.new_connection(ip));
        if keyed.is_err() {
            // Refused: the guard is closed with its socket, so its key no longer matters.
            if let Some(key) = guard.ip.take() {
                let mut per_ip = lock(&self.sockets.per_ip);
                if let Some(n) = per_ip.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        per_ip.remove(&key);
                    }
                }
            }
        }
        self.refused(keyed, ip)
    }

    /// One HTTP request from client `ip` on `connection`, a trusted proxy's connection that names no client
    /// itself: admitted as a new connection from `ip` would be (open count and rate), counted under `ip` for
    /// as long as the guard lives (a WebSocket keeps it), without a second place in the total.
    pub fn admit_request(
        &self,
        ip: IpAddr,
        connection: &Arc<SocketGuard>,
    ) -> Result<SocketGuard, Limit> {
        let config = self.limits.config();
        let admitted = self
            .sockets
            .open_request(ip, config.connections_per_ip, connection.clone())
            .and_then(|guard| self.new_connection(ip).map(|()| guard));
        self.refused(admitted, ip)
    }

    fn new_connection(&self, ip: IpAddr) -> Result<(), Limit> {
        self.limits
            .new_connection(ip)
            .map_err(|refused| refused.limit)
    }

    /// Counts and logs a refusal.
    fn refused<T>(&self, admitted: Result<T, Limit>, ip: IpAddr) -> Result<T, Limit> {
        if let Err(limit) = &admitted {
            if let Some((_, why)) = REFUSING.iter().find(|(l, _)| l == limit) {
                self.sockets.stats.connections_refused.add(*why);
            }
            self.log.record(*limit, ip);
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
        assert_eq!((s.total(), s.count_from(ip("10.0.0.1"))), (3, 2));
        drop(a);
        assert_eq!((s.total(), s.count_from(ip("10.0.0.1"))), (2, 1));
        let again = s.open(ip("10.0.0.1"), 3, 2).unwrap();
        drop((b, c, again));
        assert_eq!(s.total(), 0);
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
        assert_eq!(adm.sockets.total(), 1);
    }

    #[test]
    fn a_trusted_proxy_counts_in_the_total_and_its_clients_per_address() {
        let stats = Stats::default();
        let limits = Arc::new(Limits::new(
            LimitsConfig {
                connections_per_ip: 2,
                max_connections: 10,
                ..LimitsConfig::default()
            },
            stats.clone(),
        ));
        let adm = Admission::new(Arc::new(OpenSockets::new(stats.clone())), limits)
            .with_trusted_proxies(vec!["10.0.0.0/8".parse().unwrap()]);
        let proxy = ip("10.0.0.1");
        // More sockets from the proxy than one address may hold: none is counted under its address.
        let mut conns: Vec<SocketGuard> = (0..4).map(|_| adm.admit(proxy).unwrap()).collect();
        assert!(conns.iter().all(|g| !g.is_keyed()));
        assert_eq!((adm.sockets.total(), adm.sockets.count_from(proxy)), (4, 0));

        // Each names its client (a PROXY header): the per-address count applies to the client.
        let client = ip("203.0.113.7");
        adm.rekey(&mut conns[0], client).unwrap();
        adm.rekey(&mut conns[1], client).unwrap();
        assert_eq!(
            adm.rekey(&mut conns[2], client),
            Err(Limit::IpOpenConnections)
        );
        assert!(!conns[2].is_keyed());
        assert_eq!(adm.sockets.count_from(client), 2);
        adm.rekey(&mut conns[2], ip("203.0.113.8")).unwrap();

        // Requests on a connection that names no client: counted per address, not in the total.
        let shared = Arc::new(conns.pop().unwrap());
        let other = ip("198.51.100.1");
        let r1 = adm.admit_request(other, &shared).unwrap();
        let r2 = adm.admit_request(other, &shared).unwrap();
        assert_eq!(
            adm.admit_request(other, &shared).unwrap_err(),
            Limit::IpOpenConnections
        );
        assert_eq!((adm.sockets.total(), adm.sockets.count_from(other)), (4, 2));
        // A request's guard keeps its connection counted after the connection lets go (a WebSocket).
        drop((shared, r1));
        assert_eq!((adm.sockets.total(), adm.sockets.count_from(other)), (4, 1));
        drop(r2);
        assert_eq!(adm.sockets.total(), 3);
        drop(conns);
        assert_eq!(adm.sockets.total(), 0);
        assert!(lock(&adm.sockets.per_ip).is_empty());
        assert_eq!(
            stats.connections_refused.get(AcceptRefusal::IpConnections),
            2
        );

        // An untrusted peer is counted under its own address at accept, as before.
        assert!(adm.admit(ip("192.0.2.1")).unwrap().is_keyed());
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
