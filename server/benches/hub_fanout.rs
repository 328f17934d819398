//! Hub fan-out: one publication delivered to 10,000 in-memory outboxes subscribed to one pipe, and the
//! receivers drained (what the connection tasks would do), without sockets. Then private messages
//! (`send_to_user`) from several threads at once to many users, each with one connection: to in-memory
//! outboxes, and to loopback sockets written in place (what the users map's lock was held across).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use halley::hub::outgoing;
use halley::hub::OutboxRx;
use halley::hub::{ConnInfo, Era, Outbox, Publication, Registry};
use halley::ids::{ConnId, DevId, EventName, PipeName, UserId};
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SUBSCRIBERS: u64 = 10_000;
const OUTBOX_FRAMES: usize = 1024;

fn info(conn: u64) -> ConnInfo {
    ConnInfo {
        conn: ConnId(conn),
        era: Era::Modern,
        user_id: UserId(0),
        uuid: format!("{conn:032}"),
        ip: "127.0.0.1".into(),
        user_agent: String::new(),
        origin: String::new(),
        language: String::new(),
        msg_ids: false,
    }
}

fn fan_out(c: &mut Criterion) {
    let registry = Registry::default();
    let dev_id = DevId(1);
    let pipe = PipeName::parse("web_chat").expect("valid pipe");
    let mut receivers: Vec<OutboxRx> = Vec::with_capacity(SUBSCRIBERS as usize);
    for conn in 0..SUBSCRIBERS {
        let (outbox, rx) = Outbox::new(info(conn), OUTBOX_FRAMES);
        registry.subscribe(dev_id, &pipe, outbox);
        receivers.push(rx);
    }
    // Another tenant's pipe in the same registry, as on a shared node.
    let (other, _other_rx) = Outbox::new(info(SUBSCRIBERS), OUTBOX_FRAMES);
    registry.subscribe(DevId(2), &pipe, other);

    let event = EventName::parse("message").expect("valid event");
    let publication = Publication {
        dev_id,
        pipe: pipe.clone(),
        frame: outgoing::pipe_message(&pipe, &event, "Hello, world!", 1_795_000_000, None),
        except: None,
        position: None,
        presence: false,
        socket: None,
    };
    assert_eq!(registry.deliver(&publication), SUBSCRIBERS as usize);
    drain(&mut receivers);

    let mut group = c.benchmark_group("hub");
    group.throughput(Throughput::Elements(SUBSCRIBERS));
    group.sample_size(30);
    group.bench_function("deliver_10k_and_drain", |b| {
        b.iter(|| {
            let n = registry.deliver(&publication);
            assert_eq!(drain(&mut receivers), n);
        })
    });
    group.bench_function("deliver_10k_only", |b| {
        b.iter_custom(|iters| {
            let mut spent = std::time::Duration::ZERO;
            for _ in 0..iters {
                let start = std::time::Instant::now();
                registry.deliver(&publication);
                spent += start.elapsed();
                drain(&mut receivers);
            }
            spent
        })
    });
    group.finish();
    fan_out_positioned(c, &publication);
}

/// The same 10,000 subscribers having asked for positions (`subscription2`): an offset, a second encoding
/// and the recovery window per publish, sent under the shard's lock. Compare with `deliver_10k_and_drain`
/// (the path every pipe nobody asked positions for keeps).
fn fan_out_positioned(c: &mut Criterion, publication: &Publication) {
    let registry = Registry::default();
    let mut receivers: Vec<OutboxRx> = Vec::with_capacity(SUBSCRIBERS as usize);
    for conn in 0..SUBSCRIBERS {
        let (outbox, rx) = Outbox::new(info(conn), OUTBOX_FRAMES);
        registry.subscribe_positioned(publication.dev_id, &publication.pipe, outbox, None, None);
        receivers.push(rx);
    }
    drain(&mut receivers);
    let mut group = c.benchmark_group("hub");
    group.throughput(Throughput::Elements(SUBSCRIBERS));
    group.sample_size(30);
    group.bench_function("deliver_10k_positioned_and_drain", |b| {
        b.iter(|| {
            let n = registry.deliver(publication);
            assert_eq!(drain(&mut receivers), n);
        })
    });
    group.finish();
}

fn drain(receivers: &mut [OutboxRx]) -> usize {
    receivers
        .iter_mut()
        .map(|rx| std::iter::from_fn(|| rx.try_recv()).count())
        .sum()
}

/// Threads sending private messages at once, each to its own share of the users.
const SENDERS: usize = 4;

/// Every user gets one message per iteration, sent from `SENDERS` threads; the receivers are emptied
/// outside the timing.
fn private_messages(c: &mut Criterion) {
    let mut group = c.benchmark_group("users");
    group.sample_size(20);
    for (name, users, sockets) in [
        ("send_to_10k_users_in_memory", 10_000u64, false),
        ("send_to_1k_users_on_sockets", 1_000, true),
    ] {
        let mut bench = Users::new(users, sockets);
        group.throughput(Throughput::Elements(users));
        for senders in [1, SENDERS] {
            group.bench_function(format!("{name}_{senders}_threads"), |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        spent += bench.send_round(senders);
                        bench.drain();
                    }
                    spent
                })
            });
        }
    }
    group.finish();
}

struct Users {
    registry: Arc<Registry>,
    users: u64,
    receivers: Vec<OutboxRx>,
    /// The clients' ends of the sockets, when the outboxes have them.
    clients: Vec<std::net::TcpStream>,
    _runtime: tokio::runtime::Runtime,
}

const DEV: DevId = DevId(1);

impl Users {
    fn new(users: u64, sockets: bool) -> Users {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let registry = Arc::new(Registry::new(halley::stats::Stats::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let mut receivers = Vec::new();
        let mut clients = Vec::new();
        for user in 1..=users {
            let (outbox, rx) = Outbox::new(info(user), OUTBOX_FRAMES);
            if sockets {
                let client =
                    std::net::TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
                let (server, _) = listener.accept().expect("accept");
                server.set_nonblocking(true).expect("nonblocking");
                client.set_nonblocking(true).expect("nonblocking");
                let _guard = runtime.enter();
                rx.attach(Box::new(
                    tokio::net::TcpStream::from_std(server).expect("tokio socket"),
                ));
                clients.push(client);
            }
            registry
                .link_user(DEV, UserId(user), outbox, || ())
                .expect("linked");
            assert!(!registry.drained(DEV, UserId(user), ConnId(user)));
            receivers.push(rx);
        }
        Users {
            registry,
            users,
            receivers,
            clients,
            _runtime: runtime,
        }
    }

    /// One message to every user, the users split between `senders` threads; the time until all are sent.
    fn send_round(&self, senders: usize) -> Duration {
        let frame = halley::hub::PrivateMessage::new(
            uuid::Uuid::now_v7().to_string(),
            halley::browser::frames::private_message("event", "Hello!"),
        );
        let share = self.users.div_ceil(senders as u64);
        let start = Instant::now();
        std::thread::scope(|s| {
            for t in 0..senders as u64 {
                let (registry, frame) = (&self.registry, &frame);
                s.spawn(move || {
                    let first = 1 + t * share;
                    for user in first..(first + share).min(self.users + 1) {
                        assert_eq!(registry.send_private(DEV, UserId(user), frame), 1);
                    }
                });
            }
        });
        start.elapsed()
    }

    fn drain(&mut self) {
        drain(&mut self.receivers);
        let mut buf = [0u8; 64 * 1024];
        for client in &mut self.clients {
            while matches!(client.read(&mut buf), Ok(n) if n > 0) {}
        }
    }
}

criterion_group!(benches, fan_out, private_messages);
criterion_main!(benches);
