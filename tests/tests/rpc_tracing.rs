//! Every call carries its trace context (in its header, or a `traceparent`
//! the caller sets) and is observed: a trace crosses nodes, and each call is
//! counted by status code with its latency, on both sides.

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use octopii::LocalCluster;
use octopii::rpc::{Code, Context, TRACEPARENT, TraceContext};

/// A service that answers with its call's trace position, and those of
/// the calls it makes to the next hop.
#[octopii::service]
pub trait Hop {
    /// `(trace id, span id)` of this call, then of the calls after it.
    async fn hop(&self, ctx: &Context) -> Vec<(u128, u64)>;
}

struct Relay(Option<HopClient>);

impl Hop for Relay {
    async fn hop(&self, ctx: &Context) -> Vec<(u128, u64)> {
        let mut seen = vec![(ctx.trace().trace_id(), ctx.trace().span_id())];
        assert_eq!(TraceContext::current(), Some(ctx.trace()));
        if let Some(next) = &self.0 {
            seen.extend(next.hop().await.expect("the next hop"));
        }
        seen
    }
}

fn recorder() -> Snapshotter {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this test process");
    snapshotter
}

/// What the recorder holds: each series' name, labels and value.
type Series = Vec<(String, Vec<(String, String)>, DebugValue)>;

/// Everything recorded so far (a snapshot drains histograms: take one).
fn series(snapshotter: &Snapshotter) -> Series {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let labels = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            (key.key().name().to_owned(), labels, value)
        })
        .collect()
}

/// The sum of `name`'s series that carry all of `labels`.
fn counter(series: &Series, name: &str, labels: &[(&str, &str)]) -> u64 {
    series
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => *n,
            _ => 0,
        })
        .sum()
}

#[test]
fn a_trace_crosses_two_hops_and_every_call_is_counted() {
    let snapshotter = recorder();
    let cluster = LocalCluster::new().expect("cluster");
    let (client, a, b) = (
        cluster.node("client").expect("node"),
        cluster.node("a").expect("node"),
        cluster.node("b").expect("node"),
    );
    b.serve(HopServer::new(Relay(None))).expect("serve b");
    let to_b = HopClient::new(&a, b.local_addr());
    a.serve(HopServer::new(Relay(Some(to_b)))).expect("serve a");

    // The caller's own trace context is kept, and followed.
    let root = TraceContext::new_root();
    let hop = HopClient::new(&client, a.local_addr()).with_metadata(TRACEPARENT, root.to_string());
    let seen = cluster.block_on(hop.hop()).expect("two hops");
    assert_eq!(seen.len(), 2);
    for (trace_id, _) in &seen {
        assert_eq!(*trace_id, root.trace_id(), "one trace through both hops");
    }
    let spans = [root.span_id(), seen[0].1, seen[1].1];
    assert!(
        spans[0] != spans[1] && spans[1] != spans[2] && spans[0] != spans[2],
        "every hop is a span of its own: {spans:x?}"
    );

    // Without one, a call starts a trace, which its hops share.
    let plain = HopClient::new(&client, a.local_addr());
    let seen = cluster.block_on(plain.hop()).expect("two hops");
    assert_eq!(seen[0].0, seen[1].0);
    assert_ne!(seen[0].0, root.trace_id(), "a new trace");

    // Counted on both sides, by code: `client` serves no `Hop`.
    let nowhere = HopClient::new(&a, client.local_addr());
    let refused = cluster.block_on(nowhere.hop());
    assert_eq!(refused.map_err(|e| e.code()), Err(Code::Unimplemented));
    let recorded = series(&snapshotter);
    let calls = |side, method, code| {
        counter(
            &recorded,
            "octopii_rpc_calls_total",
            &[
                ("side", side),
                ("service", "Hop"),
                ("method", method),
                ("code", code),
            ],
        )
    };
    // The client called `hop` twice on a, and a called it twice on b.
    assert_eq!(calls("client", "hop", "Ok"), 4);
    assert_eq!(calls("server", "hop", "Ok"), 4);
    assert_eq!(calls("client", "hop", "Unimplemented"), 1);
    // A server labels a name it does not serve `unknown`: a peer's made-up
    // names must not grow its metrics.
    assert_eq!(calls("server", "hop", "Unimplemented"), 0);
    let unknown = [
        ("side", "server"),
        ("service", "unknown"),
        ("method", "unknown"),
        ("code", "Unimplemented"),
    ];
    assert_eq!(counter(&recorded, "octopii_rpc_calls_total", &unknown), 1);
    let latencies = recorded
        .iter()
        .filter(|(name, ..)| name == "octopii_rpc_call_duration_seconds")
        .map(|(.., value)| match value {
            DebugValue::Histogram(samples) => samples.len(),
            _ => 0,
        })
        .sum::<usize>();
    assert_eq!(latencies, 10, "a latency per call and side");
}
