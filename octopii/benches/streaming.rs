//! A server stream of 16-byte items: Octopii beside a raw quinn stream of
//! the same framed bytes, in the same run. Both lines of the
//! `server-stream-16B` group report items per second; their ratio is the
//! figure that matters (`octopii bench rpc --streaming` prints it).

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use octopii::OctopiiRuntime;
use octopii::bench::streaming::{Payload, StreamingBench};

const ITEMS: u64 = 10_000;

fn server_stream(c: &mut Criterion) {
    let runtime = OctopiiRuntime::new(2).expect("runtime");
    let bench = StreamingBench::start(&runtime, ITEMS, Payload::Ticks).expect("bench nodes");

    let mut group = c.benchmark_group("server-stream-16B");
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(ITEMS));
    group.bench_function("raw-quinn-stream", |b| {
        b.iter_custom(|streams| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..streams {
                    bench.raw_stream().await.expect("raw stream");
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("octopii-stream", |b| {
        b.iter_custom(|streams| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..streams {
                    bench.rpc_stream().await.expect("octopii stream");
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    runtime.block_on(bench.shutdown());
}

criterion_group!(benches, server_stream);
criterion_main!(benches);
