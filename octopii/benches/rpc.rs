//! One small unary call: Octopii beside a raw quinn echo of the same bytes
//! on a reused stream and tarpc's echo over TCP, in the same run. Compare
//! the lines of the `unary-32B` group: Octopii's to the raw echo's and to
//! tarpc's are the figures that matter; `observe-one-call` to Octopii's is the share of a call its
//! spans and metrics take.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use octopii::OctopiiRuntime;
use octopii::bench::rpc::{ObserveOneCall, RpcBench};
use octopii::bench::tarpc::TarpcBench;

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
    let tarpc = runtime
        .block_on(async { tokio::spawn(TarpcBench::start(32, 1)).await })
        .expect("task")
        .expect("tarpc bench");
    let tarpc_caller = tarpc.caller();
    group.bench_function("tarpc-echo", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    tarpc_caller.call().await.expect("tarpc call");
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
    // Observing a call (spans and metrics, both sides) beside the call.
    let observe = ObserveOneCall::default();
    group.bench_function("observe-one-call", |b| b.iter(|| observe.observe()));
    group.finish();
    runtime.block_on(bench.shutdown());
}

criterion_group!(benches, unary);
criterion_main!(benches);
