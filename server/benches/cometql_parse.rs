//! CometQL parse of the statement every publish sends: a one-row INSERT into pipes_messages.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

const INSERT: &str = "INSERT INTO pipes_messages (name, event, message) VALUES \
     ('web_chat', 'message', '{\"user\":\"alice\",\"text\":\"Hello, world! A typical chat line.\"}')";

fn parse_insert(c: &mut Criterion) {
    assert!(
        halley::cometql::parse(INSERT).is_ok(),
        "the benchmark statement must parse"
    );
    let mut group = c.benchmark_group("cometql");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_insert", |b| {
        b.iter(|| halley::cometql::parse(black_box(INSERT)))
    });
    group.finish();
}

criterion_group!(benches, parse_insert);
criterion_main!(benches);
