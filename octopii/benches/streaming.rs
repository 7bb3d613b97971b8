//! A server stream of 16-byte items: Octopii beside a raw quinn stream of
//! the same framed bytes, in the same run. Both lines of the
//! `server-stream-16B` group report items per second; their ratio is the
//! figure that matters (`octopii bench rpc --streaming` prints it).

use std::future::Future;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use octopii::OctopiiRuntime;
use octopii::bench::streaming::{Payload, StreamingBench};

const ITEMS: u64 = 10_000;

/// How long `streams` streams take, one after another.
fn time_streams<F>(
    runtime: &OctopiiRuntime,
    streams: u64,
    stream: impl Fn() -> F + Sync,
) -> Duration
where
    F: Future<Output = octopii::Result<()>> + Send,
{
    runtime.block_on(async {
        let start = Instant::now();
        for _ in 0..streams {
            stream().await.expect("stream");
        }
        start.elapsed()
    })
}

fn server_stream(c: &mut Criterion) {
    let runtime = OctopiiRuntime::new(2).expect("runtime");
    let bench = StreamingBench::start(&runtime, ITEMS, Payload::Ticks).expect("bench nodes");

    let mut group = c.benchmark_group("server-stream-16B");
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(ITEMS));
    group.bench_function("raw-quinn-stream", |b| {
        b.iter_custom(|streams| time_streams(&runtime, streams, || bench.raw_stream()))
    });
    group.bench_function("octopii-stream", |b| {
        b.iter_custom(|streams| time_streams(&runtime, streams, || bench.rpc_stream()))
    });
    group.finish();
    runtime.block_on(bench.shutdown());
}

criterion_group!(benches, server_stream);
criterion_main!(benches);
