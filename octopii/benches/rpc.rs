//! One small unary call: Octopii beside a raw quinn echo of the same bytes
//! on a reused stream, in the same run. Compare the two lines of the
//! `unary-32B` group: their ratio is the figure that matters.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use octopii::OctopiiRuntime;
use octopii::bench::rpc::RpcBench;

fn unary(c: &mut Criterion) {
    let runtime = OctopiiRuntime::new(2).expect("runtime");
    let bench = RpcBench::start(&runtime, 32, 1).expect("bench nodes");
    let mut raw = runtime.block_on(bench.raw_caller()).expect("raw stream");
    let rpc = bench.rpc_caller();

    let mut group = c.benchmark_group("unary-32B");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("raw-quinn-echo", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    raw.call().await.expect("raw call");
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("octopii-call", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    rpc.call().await.expect("octopii call");
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    runtime.block_on(bench.shutdown());
}

criterion_group!(benches, unary);
criterion_main!(benches);
