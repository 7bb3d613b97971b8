//! What every call leaves behind, on both sides: a `tracing` span
//! (`rpc.client` or `rpc.server`, with service, method, peer, trace ids,
//! status code and duration) and two metrics through the `metrics` facade:
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `octopii_rpc_calls_total` | counter | `side` (`client`, `server`), `service`, `method` (on a server, `unknown` for a name it does not serve), `code` (`Ok` or a [`Code`]) |
//! | `octopii_rpc_call_duration_seconds` | histogram | `side`, `service`, `method` |
//!
//! With no `tracing` subscriber and no metrics recorder installed, both
//! cost a check each.
//!
//! Metric handles are registered once per service and method by each node
//! and kept ([`CallMetrics`]), with the recorder installed at that moment:
//! install a recorder before starting nodes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use metrics::{Counter, Histogram};
use tokio::time::Instant;
use tracing::Span;
use tracing::field::Empty;

use super::trace::TraceContext;
use super::{Code, Service};
use crate::transport::PeerInfo;

/// The `service` or `method` label of a call to a name the node does not
/// serve.
const UNKNOWN: &str = "unknown";

/// Wire codes a call ends with: 0 (`Ok`) to 16 (`Unauthenticated`).
const WIRE_CODES: usize = Code::Unauthenticated as usize + 1;

/// The metric handles of the calls one side of a node makes or serves, by
/// service and method, registered on first use: building them per call
/// cost more than all the rest of observing it.
#[derive(Debug)]
pub(crate) struct CallMetrics {
    side: &'static str,
    methods: RwLock<HashMap<(&'static str, &'static str), Arc<MethodMetrics>>>,
}

/// The handles of one method: its duration and, by status, its calls.
#[derive(Debug)]
struct MethodMetrics {
    side: &'static str,
    service: &'static str,
    method: &'static str,
    duration: Histogram,
    /// By wire code, 0 for `Ok`; registered when a call first ends so.
    calls: [OnceLock<Counter>; WIRE_CODES],
}

impl CallMetrics {
    /// The handles of the calls this node makes.
    pub fn client() -> Self {
        Self::of_side("client")
    }

    /// The handles of the calls this node serves.
    pub fn server() -> Self {
        Self::of_side("server")
    }

    fn of_side(side: &'static str) -> Self {
        CallMetrics {
            side,
            methods: RwLock::default(),
        }
    }

    fn method(&self, service: &'static str, method: &'static str) -> Arc<MethodMetrics> {
        let key = (service, method);
        let known = self.methods.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(handles) = known.get(&key) {
            return handles.clone();
        }
        drop(known);
        let mut known = self.methods.write().unwrap_or_else(PoisonError::into_inner);
        let side = self.side;
        known
            .entry(key)
            .or_insert_with(|| {
                let duration = metrics::histogram!(
                    "octopii_rpc_call_duration_seconds",
                    "side" => side,
                    "service" => service,
                    "method" => method,
                );
                Arc::new(MethodMetrics {
                    side,
                    service,
                    method,
                    duration,
                    calls: Default::default(),
                })
            })
            .clone()
    }
}

impl MethodMetrics {
    fn calls(&self, failed: Option<Code>) -> &Counter {
        let code = failed.map_or(0, Code::to_wire) as usize;
        self.calls[code].get_or_init(|| {
            metrics::counter!(
                "octopii_rpc_calls_total",
                "side" => self.side,
                "service" => self.service,
                "method" => self.method,
                "code" => failed.map_or("Ok", Code::as_str),
            )
        })
    }
}

/// A span id as traces write it: 16 hex digits, formatted only if the
/// span is recorded.
struct SpanId(u64);

impl std::fmt::Display for SpanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One call being observed; [`finish`](Self::finish) records its outcome.
pub(crate) struct Observed {
    span: Span,
    started: Instant,
    metrics: Arc<MethodMetrics>,
}

impl Observed {
    /// A call this node makes to `peer`, in `trace`.
    pub fn client(
        metrics: &CallMetrics,
        service: &'static str,
        method: &'static str,
        peer: SocketAddr,
        trace: &TraceContext,
    ) -> Self {
        let span = tracing::info_span!(
            target: "octopii::rpc",
            "rpc.client",
            service,
            method,
            %peer,
            trace_id = %format_args!("{:032x}", trace.trace_id()),
            span_id = %format_args!("{:016x}", trace.span_id()),
            code = Empty,
            micros = Empty,
        );
        Observed {
            span,
            started: Instant::now(),
            metrics: metrics.method(service, method),
        }
    }

    /// A call `peer` makes to this node of `method` of `service` (named
    /// `names` by the caller, whether or not they exist), served in `trace`
    /// (a child of the caller's `parent` span, if it sent one).
    pub fn server(
        metrics: &CallMetrics,
        (service, method): (&str, &str),
        served: Option<&dyn Service>,
        peer: &PeerInfo,
        trace: &TraceContext,
        parent: Option<u64>,
    ) -> Self {
        let span = tracing::info_span!(
            target: "octopii::rpc",
            "rpc.server",
            service,
            method,
            peer = %peer.addr,
            identity = %peer.identity,
            trace_id = %format_args!("{:032x}", trace.trace_id()),
            span_id = %format_args!("{:016x}", trace.span_id()),
            parent_id = parent.map(|p| tracing::field::display(SpanId(p))),
            code = Empty,
            micros = Empty,
        );
        // Metric labels are the served service's own names, never a
        // peer's: names no service has would grow the metrics without
        // bound. A span records what the peer asked for.
        let (service, method) = match served {
            Some(served) => (
                served.name(),
                served
                    .methods()
                    .iter()
                    .find(|m| **m == method)
                    .map_or(UNKNOWN, |m| *m),
            ),
            None => (UNKNOWN, UNKNOWN),
        };
        Observed {
            span,
            started: Instant::now(),
            metrics: metrics.method(service, method),
        }
    }

    /// The call's span, to run its work in.
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Records how the call ended: `None` for a reply, else its code.
    pub fn finish(self, failed: Option<Code>) {
        let elapsed = self.started.elapsed();
        let code = failed.map_or("Ok", Code::as_str);
        self.span.record("code", code);
        self.span.record("micros", elapsed.as_micros() as u64);
        self.metrics.calls(failed).increment(1);
        self.metrics.duration.record(elapsed.as_secs_f64());
    }
}
