//! Hub fan-out: one publication delivered to 10,000 in-memory outboxes subscribed to one pipe, and the
//! receivers drained (what the connection tasks would do), without sockets.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use halley::hub::outgoing;
use halley::hub::OutboxRx;
use halley::hub::{ConnInfo, Era, Outbox, Publication, Registry};
use halley::ids::{ConnId, DevId, EventName, PipeName, UserId};

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
}

fn drain(receivers: &mut [OutboxRx]) -> usize {
    receivers
        .iter_mut()
        .map(|rx| std::iter::from_fn(|| rx.try_recv()).count())
        .sum()
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
