//! The recovery property (issue 14), over generated interleavings: several clients on 2-3 pipes, publishes
//! over CometQL, clean closes, dropped and reset sockets, reconnects and resubscribes with the clients'
//! last positions (`subscription2`), windows trimmed by a small message count (and, in some cases, by age),
//! and server restarts (a new epoch), and publishes from a second session racing a client's reconnect or
//! resubscribe. For every client and pipe: what the client accepted is the published
//! sequence with no repeat, and with no hole unless a `recovered:false` (or a `gap`) came before the first
//! message after it. Where the case's settings make it certain, each `subscribed` frame's `recovered`,
//! epoch and top offset are checked too, so a server that gave up when it could have recovered fails.
//!
//! The same property on a cluster, with Redis faults instead of server restarts, is in `faults.rs`.
//!
//! Cases come from seeds (`cases.rs`); the client and the checks are in `model.rs`. A failure prints the
//! seed, the case and what happened step by step. `HALLEY_PROPERTY_SEED=<n>` runs one case,
//! `HALLEY_PROPERTY_CASES=<n>` more (or fewer) of them.

mod cases;
mod faults;
mod model;

use std::collections::HashSet;
use std::time::Duration;

use halley_tests::browser::{url, uuid_of};
use halley_tests::cluster::RedisProcess;
use halley_tests::cometql::{insert_sql, multi_insert_sql};
use halley_tests::deploy::Deployment;
use halley_tests::mysql_raw::RawMysql;
use halley_tests::wait::WAIT;
use halley_tests::ws::WsClient;
use halley_tests::{on_both_backends, Backend, Tenant, TestServer};
use tokio::net::TcpStream;

use cases::{Case, Op};
use model::{check, Client, Published, Streams};

/// Cases per backend unless `HALLEY_PROPERTY_CASES` says otherwise.
const CASES: u64 = 30;

fn seeds(cases: u64) -> Vec<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    match var("HALLEY_PROPERTY_SEED") {
        Some(seed) => vec![seed],
        None => (1..=var("HALLEY_PROPERTY_CASES").unwrap_or(cases)).collect(),
    }
}

/// A browser connection, and a second handle on its socket so that it can be reset (SO_LINGER 0).
struct Conn {
    ws: WsClient,
    socket: std::net::TcpStream,
}

impl Conn {
    async fn open(server: &TestServer, tenant: &Tenant, tag: &str) -> Conn {
        let tcp = TcpStream::connect(server.http_addr())
            .await
            .expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let std = tcp.into_std().expect("a std socket");
        let socket = std.try_clone().expect("a second handle");
        let tcp = TcpStream::from_std(std).expect("a tokio socket");
        let url = url(server, tenant.dev_id, 0, "", "4.08", &uuid_of(tag));
        let mut ws = WsClient::over(tcp, &url).await.expect("WebSocket upgrade");
        let hello = ws.recv_text(WAIT).await.expect("the serverInfo frame");
        assert!(hello.contains(r#""event":"serverInfo""#), "{hello}");
        Conn { ws, socket }
    }

    /// Gone without a close frame: the last handle closed sends a FIN, or with `reset` an RST.
    fn abort(self, reset: bool) {
        if reset {
            socket2::SockRef::from(&self.socket)
                .set_linger(Some(Duration::ZERO))
                .expect("SO_LINGER 0");
        }
    }
}

/// One case against one real server, and the models beside it.
struct World<'a> {
    case: &'a Case,
    /// One server, or a cluster: client `c` is on node `c` modulo the nodes, the CometQL session on
    /// node 0 and the second one on the last node.
    d: Option<Deployment>,
    /// The cluster's own Redis, which the case breaks (`faults.rs`).
    redis: Option<&'a mut RedisProcess>,
    tenant: Tenant,
    q: Option<RawMysql>,
    /// A second session, for publishes that race a client's (re)subscribe.
    q2: Option<RawMysql>,
    names: Vec<String>,
    published: Published,
    streams: Streams,
    clients: Vec<Client>,
    conns: Vec<Option<Conn>>,
    /// Frames sent to each open connection and not read yet (publishes return once delivered).
    pending: Vec<usize>,
    trace: Vec<String>,
    tally: Tally,
}

/// What the cases exercised, so that a generator that stopped producing some situation is noticed.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    messages: usize,
    recovered: usize,
    /// `recovered:false` for a client that gave a position.
    lost: usize,
    /// Messages a `recovered:true` brought (replayed, or read just before it).
    caught_up: usize,
    repeats: usize,
    restarts: usize,
    /// `gap` frames seen.
    gaps: usize,
    kills: usize,
    redis_restarts: usize,
}

impl Tally {
    fn add(&mut self, o: Tally) {
        self.messages += o.messages;
        self.recovered += o.recovered;
        self.lost += o.lost;
        self.caught_up += o.caught_up;
        self.repeats += o.repeats;
        self.restarts += o.restarts;
        self.gaps += o.gaps;
        self.kills += o.kills;
        self.redis_restarts += o.redis_restarts;
    }
}

impl Drop for World<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.report());
        }
    }
}

impl<'a> World<'a> {
    /// The case on one server of `backend`, or, with `redis`, on a cluster of [`faults::NODES`] nodes on it.
    async fn start(
        backend: Backend,
        redis: Option<&'a mut RedisProcess>,
        case: &'a Case,
    ) -> Result<World<'a>, String> {
        let tweak = |c: &mut halley::config::Config| {
            c.limits.publishes_per_sec = 100_000;
            c.limits.publish_burst = 100_000;
            c.limits.new_connections_per_ip_per_sec = 10_000;
            c.limits.new_connections_per_ip_burst = 10_000;
            c.recovery.window_messages = case.window_messages;
            c.recovery.replay_max = case.replay_max;
            c.recovery.window_secs = case.window_secs.unwrap_or(3_600);
        };
        let d = match &redis {
            Some(redis) => Deployment::cluster_on(faults::NODES, &redis.url(), tweak).await,
            None => Deployment::single_with(backend, tweak).await,
        };
        let tenant = d.tenant("property@example.com").await;
        let q = RawMysql::login(d.cql(), &tenant).await;
        let q2 = RawMysql::login(d.nodes().last().expect("a node"), &tenant).await;
        let mut world = World {
            case,
            names: (0..case.pipes).map(|p| format!("web_prop{p}")).collect(),
            published: Published::new(case.pipes),
            streams: Streams::new(case, redis.is_some()),
            clients: case
                .clients
                .iter()
                .map(|pipes| Client::new(pipes.clone(), case.pipes))
                .collect(),
            conns: case.clients.iter().map(|_| None).collect(),
            pending: vec![0; case.clients.len()],
            trace: Vec::new(),
            tally: Tally::default(),
            d: Some(d),
            redis,
            tenant,
            q: Some(q),
            q2: Some(q2),
        };
        for c in 0..case.clients.len() {
            world.reconnect(c).await?;
        }
        Ok(world)
    }

    async fn run(&mut self) -> Result<(), String> {
        for (i, &op) in self.case.ops.iter().enumerate() {
            self.trace.push(format!("{i}: {op:?}"));
            self.step(op).await?;
            for c in 0..self.clients.len() {
                if self.clients[c].wants_resubscribe && self.conns[c].is_some() {
                    self.trace.push(format!("   c{c} resubscribes after a gap"));
                    self.subscribe(c).await?;
                }
            }
        }
        // The end: everyone back, one last message per pipe, everything read.
        self.trace
            .push("end: reconnect all, publish a final message per pipe".into());
        for c in 0..self.clients.len() {
            if self.conns[c].is_none() {
                self.reconnect(c).await?;
            }
        }
        loop {
            for pipe in 0..self.case.pipes {
                self.publish(pipe, 1, false).await;
            }
            // Read up to a probe's answer, not just the frames counted: a frame sent twice is read and
            // judged.
            for c in 0..self.clients.len() {
                self.drain(c).await?;
            }
            // On a cluster a `gap` may still come from the repair after a fault: the client asks again,
            // as the SDK does, and one more final message follows.
            let again: Vec<usize> = (0..self.clients.len())
                .filter(|&c| self.clients[c].wants_resubscribe)
                .collect();
            if self.redis.is_none() || again.is_empty() {
                break;
            }
            self.trace.push(format!(
                "end: {again:?} resubscribe after a gap, publish again"
            ));
            for c in again {
                self.subscribe(c).await?;
            }
        }
        self.tally.messages = self.published.per_pipe.iter().map(Vec::len).sum();
        self.tally.repeats = (self.clients.iter())
            .flat_map(|c| c.seen.iter().flatten())
            .filter(|s| matches!(s, model::Seen::Repeat { .. }))
            .count();
        self.tally.gaps = (self.clients.iter())
            .flat_map(|c| c.seen.iter().flatten())
            .filter(|s| matches!(s, model::Seen::Gap))
            .count();
        for (c, client) in self.clients.iter().enumerate() {
            for &p in &client.pipes {
                check(&client.seen[p], &self.published.per_pipe[p])
                    .map_err(|e| format!("client {c}, pipe {p}: {e}"))?;
            }
        }
        Ok(())
    }

    async fn step(&mut self, op: Op) -> Result<(), String> {
        match op {
            Op::Publish {
                pipe,
                count,
                one_statement,
            } => self.publish(pipe, count, one_statement).await,
            Op::Read { client, frames } => self.read(client, frames).await?,
            Op::Close { client } => {
                let conn = self.gone(client);
                conn.ws.close().await.expect("clean close");
            }
            Op::Drop { client } => self.gone(client).abort(false),
            Op::Reset { client } => self.gone(client).abort(true),
            Op::Reconnect { client } => self.reconnect(client).await?,
            Op::Resubscribe { client } => self.subscribe(client).await?,
            Op::Race {
                client,
                pipe,
                count,
            } => self.race(client, pipe, count).await?,
            Op::Restart => self.restart().await?,
            Op::KillPubsub => self.kill_pubsub().await,
            Op::RestartRedis => self.restart_redis().await,
            Op::Age => {
                let secs = self.case.window_secs.expect("Age only in ageing cases");
                // Past the window's age: every message kept so far is too old (a wait for the server's
                // clock, not a measure of speed: a slower machine only ages them more).
                tokio::time::sleep(Duration::from_secs(secs) + Duration::from_millis(200)).await;
                self.streams.aged();
            }
        }
        Ok(())
    }

    async fn publish(&mut self, pipe: usize, count: usize, one_statement: bool) {
        let seed = self.case.seed;
        let payloads: Vec<String> = (0..count)
            .map(|_| self.published.next(seed, pipe))
            .collect();
        let name = &self.names[pipe];
        let statements = if one_statement {
            vec![multi_insert_sql(
                name,
                "e",
                payloads.iter().map(String::as_str),
            )]
        } else {
            payloads.iter().map(|m| insert_sql(name, "e", m)).collect()
        };
        let q = self.q.as_mut().expect("a CometQL session");
        for sql in statements {
            q.query(&sql).await.assert_ok();
        }
        for _ in 0..count {
            self.streams.published(pipe);
        }
        for (c, client) in self.clients.iter().enumerate() {
            if self.conns[c].is_some() && client.pipes.contains(&pipe) {
                self.pending[c] += count;
            }
        }
    }

    /// The client processes up to `frames` of what was sent to it.
    async fn read(&mut self, c: usize, frames: usize) -> Result<(), String> {
        let n = frames.min(self.pending[c]);
        for _ in 0..n {
            let conn = self.conns[c].as_mut().expect("an open connection");
            let text = conn.ws.recv_text(WAIT).await.expect("a frame already sent");
            self.process(c, &text)?;
        }
        self.pending[c] -= n;
        Ok(())
    }

    fn process(&mut self, c: usize, text: &str) -> Result<Option<model::Subscribed>, String> {
        self.clients[c]
            .process(text, &self.names, &self.published)
            .map_err(|e| format!("client {c}: {e}"))
    }

    /// The client's connection, taken: it is closed or dropped by the caller.
    fn gone(&mut self, c: usize) -> Conn {
        self.pending[c] = 0;
        self.conns[c].take().expect("an open connection")
    }

    async fn reconnect(&mut self, c: usize) -> Result<(), String> {
        let conn = Conn::open(self.node(c), &self.tenant, &format!("client{c}")).await;
        self.conns[c] = Some(conn);
        self.clients[c].new_connection();
        self.pending[c] = 0;
        self.subscribe(c).await
    }

    /// `subscription2` with the client's positions; reads up to every pipe's `subscribed` frame (the
    /// frames before them included) and checks each against what the streams must answer.
    async fn subscribe(&mut self, c: usize) -> Result<(), String> {
        self.subscribe_racing(c, None).await
    }

    /// `subscribe`, while `racing` = (pipe, count) messages are being published to that pipe.
    async fn subscribe_racing(
        &mut self,
        c: usize,
        racing: Option<(usize, u64)>,
    ) -> Result<(), String> {
        self.clients[c].wants_resubscribe = false;
        self.sync_streams().await?;
        let mut want = std::collections::HashMap::new();
        for &p in &self.clients[c].pipes {
            let at = self.clients[c].positions.get(&p);
            let w = match racing {
                Some((pipe, count)) if pipe == p => self.streams.expect_racing(p, at, count),
                _ => self.streams.expect(p, at),
            };
            want.insert(p, w);
        }
        self.clients[c].resubscribing();
        let command = self.clients[c].subscription2(&self.names);
        let conn = self.conns[c].as_mut().expect("an open connection");
        conn.ws
            .send_text(&command)
            .await
            .expect("send subscription2");
        let before = self.clients[c].positions.clone();
        let mut waiting: HashSet<usize> = want.keys().copied().collect();
        while !waiting.is_empty() {
            let conn = self.conns[c].as_mut().expect("an open connection");
            let text = conn
                .ws
                .recv_text(WAIT)
                .await
                .expect("frames up to subscribed");
            let Some(s) = self.process(c, &text)? else {
                continue;
            };
            let w = &want[&s.pipe];
            self.trace.push(format!(
                "   c{c} p{}: subscribed {}:{} recovered:{} (expected {w:?})",
                s.pipe, s.epoch, s.top, s.recovered
            ));
            if !w.met_by(&s) {
                return Err(format!("client {c}: {s:?}, expected {w:?}"));
            }
            if s.recovered {
                self.tally.recovered += 1;
                self.tally.caught_up += before.get(&s.pipe).map_or(0, |b| s.top - b.1) as usize;
            } else if before.contains_key(&s.pipe) {
                self.tally.lost += 1;
            }
            if self.redis.is_none() {
                self.streams.learn(&s);
            }
            waiting.remove(&s.pipe);
        }
        self.pending[c] = 0;
        Ok(())
    }

    /// `count` messages on `pipe` from the second session while client `c` reconnects (when gone) or
    /// resubscribes: each one must be either replayed or delivered live after its `subscribed` frame.
    async fn race(&mut self, c: usize, pipe: usize, count: usize) -> Result<(), String> {
        let seed = self.case.seed;
        let sqls: Vec<String> = (0..count)
            .map(|_| insert_sql(&self.names[pipe], "e", &self.published.next(seed, pipe)))
            .collect();
        self.sync_streams().await?;
        let mut q2 = self.q2.take().expect("the second CometQL session");
        let before = self.streams.top(pipe);
        let burst = async move {
            for sql in &sqls {
                q2.query(sql).await.assert_ok();
            }
            q2
        };
        let join = async {
            if self.conns[c].is_none() {
                let tag = format!("client{c}");
                self.conns[c] = Some(Conn::open(self.node(c), &self.tenant, &tag).await);
                self.clients[c].new_connection();
            }
            self.subscribe_racing(c, Some((pipe, count as u64))).await
        };
        let (q2, joined) = tokio::join!(burst, join);
        self.q2 = Some(q2);
        joined?;
        // Every raced message is in the client's outbox by now: the answer to a probe comes after them.
        self.drain(c).await?;
        for (o, client) in self.clients.iter().enumerate() {
            if o != c && self.conns[o].is_some() && client.pipes.contains(&pipe) {
                self.pending[o] += count;
            }
        }
        // (On a cluster a `gap` from an earlier fault's repair may have come meanwhile: the client asks
        // again after this step, and learns the top then.)
        if self.clients[c].pipes.contains(&pipe) && !self.clients[c].wants_resubscribe {
            let top = self.clients[c].positions[&pipe].1;
            self.streams
                .settle(pipe, top, before, count as u64)
                .map_err(|e| format!("client {c}, pipe {pipe}: {e}"))?;
        } else {
            (0..count).for_each(|_| self.streams.published(pipe));
        }
        Ok(())
    }

    /// Reads everything sent to the client so far: commands are answered in order, so once the answer
    /// to a `user_status` probe is back, every frame pushed before the probe was read. On a cluster
    /// messages come through Redis, so the probe's answer may pass them: the client first reads up to
    /// the last message published on each of its pipes (published after any fault, so it comes).
    async fn drain(&mut self, c: usize) -> Result<(), String> {
        const PROBE: &str = r#""event":"user_status_987654321""#;
        self.read_up_to_last_published(c).await?;
        let conn = self.conns[c].as_mut().expect("an open connection");
        conn.ws
            .send_text("user_status\n987654321")
            .await
            .expect("send a probe");
        loop {
            let conn = self.conns[c].as_mut().expect("an open connection");
            let text = conn
                .ws
                .recv_text(WAIT)
                .await
                .expect("frames up to the probe's answer");
            if text.contains(PROBE) {
                break;
            }
            self.process(c, &text)?;
        }
        self.pending[c] = 0;
        Ok(())
    }

    /// Every connection reads what the server sends until the server closes it, while the server stops
    /// (so that close handshakes are answered); then it starts again on the same data: new epochs.
    async fn restart(&mut self) -> Result<(), String> {
        let mut drains = Vec::new();
        for c in 0..self.conns.len() {
            self.pending[c] = 0;
            if let Some(mut conn) = self.conns[c].take() {
                drains.push((
                    c,
                    tokio::spawn(async move {
                        let mut frames = Vec::new();
                        while let Ok(text) = conn.ws.recv_text(WAIT).await {
                            frames.push(text);
                        }
                        frames
                    }),
                ));
            }
        }
        drop(self.q.take());
        drop(self.q2.take());
        self.d.as_mut().expect("the server").restart().await;
        for (c, drain) in drains {
            for text in drain.await.expect("drain") {
                self.process(c, &text)?;
            }
        }
        self.streams.restarted();
        self.tally.restarts += 1;
        let d = self.d.as_ref().expect("the server");
        self.q = Some(RawMysql::login(d.cql(), &self.tenant).await);
        self.q2 = Some(RawMysql::login(d.cql(), &self.tenant).await);
        Ok(())
    }

    async fn finish(mut self) {
        self.conns.iter_mut().for_each(|c| drop(c.take()));
        drop(self.q.take());
        drop(self.q2.take());
        if let Some(d) = self.d.take() {
            d.stop().await;
        }
    }

    /// The node client `c` connects to.
    fn node(&self, c: usize) -> &TestServer {
        let nodes = self.d.as_ref().expect("the server").nodes();
        &nodes[c % nodes.len()]
    }

    fn report(&self) -> String {
        format!(
            "case {:#?}\nsteps:\n  {}\nseen per client and pipe:\n{}",
            self.case,
            self.trace.join("\n  "),
            self.clients
                .iter()
                .enumerate()
                .flat_map(|(c, client)| {
                    client
                        .pipes
                        .iter()
                        .map(move |&p| format!("  c{c} p{p}: {:?}", client.seen[p]))
                })
                .collect::<Vec<_>>()
                .join("\n")
        )
    }
}

async fn interleavings_never_hide_a_hole(backend: Backend) {
    let mut total = Tally::default();
    let seeds = seeds(CASES);
    for &seed in &seeds {
        let case = Case::generate(seed);
        let mut world = match World::start(backend, None, &case).await {
            Ok(world) => world,
            Err(e) => panic!("seed {seed} ({backend:?}), at the start: {e}"),
        };
        let outcome = world.run().await;
        if let Err(e) = outcome {
            panic!(
                "seed {seed} ({backend:?}): {e}\n{}\nagain: HALLEY_PROPERTY_SEED={seed} cargo test -p halley-tests --test it recovery_property",
                world.report()
            );
        }
        eprintln!("{backend:?} seed {seed}: {:?}", world.tally);
        total.add(world.tally);
        world.finish().await;
    }
    eprintln!("{backend:?}, {} cases: {total:?}", seeds.len());
    if seeds.len() >= CASES as usize {
        // The cases still make every situation the property is about.
        assert!(total.recovered > 0 && total.caught_up > 0, "{total:?}");
        assert!(
            total.lost > 0 && total.repeats > 0 && total.restarts > 0,
            "{total:?}"
        );
    }
}

on_both_backends!(interleavings_never_hide_a_hole);
