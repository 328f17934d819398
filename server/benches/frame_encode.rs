//! Building and encoding the WebSocket frame of one publish (done once per publish, shared by all subscribers).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use halley::browser::frames::pipe_message;
use halley::browser::ApiEra;
use std::hint::black_box;

const MESSAGE: &str = "{\"user\":\"alice\",\"text\":\"Hello, world! A typical chat line.\"}";

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Elements(1));
    group.bench_function("pipe_message_encode_modern", |b| {
        b.iter(|| {
            pipe_message(
                black_box("web_chat"),
                "message",
                black_box(MESSAGE),
                1_795_000_000,
            )
            .encode(ApiEra::Modern)
        })
    });
    group.bench_function("pipe_message_encode_legacy", |b| {
        b.iter(|| {
            pipe_message(
                black_box("web_chat"),
                "message",
                black_box(MESSAGE),
                1_795_000_000,
            )
            .encode(ApiEra::Legacy)
        })
    });
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
