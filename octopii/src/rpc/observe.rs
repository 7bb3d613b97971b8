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

use std::net::SocketAddr;

use metrics::SharedString;
use tokio::time::Instant;
use tracing::Span;
use tracing::field::Empty;

use super::trace::TraceContext;
use super::{Code, Service};
use crate::transport::PeerInfo;

/// The `service` or `method` label of a call to a name the node does not
/// serve.
const UNKNOWN: &str = "unknown";

/// One call being observed; [`finish`](Self::finish) records its outcome.
pub(crate) struct Observed {
    span: Span,
    started: Instant,
    side: &'static str,
    service: SharedString,
    method: SharedString,
}

impl Observed {
    /// A call this node makes to `peer`, in `trace`.
    pub fn client(
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
            side: "client",
            service: SharedString::const_str(service),
            method: SharedString::const_str(method),
        }
    }

    /// A call `peer` makes to this node of `method` of `service` (named
    /// `names` by the caller, whether or not they exist), served in `trace`
    /// (a child of the caller's `parent` span, if it sent one).
    pub fn server(
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
            parent_id = parent.map(|p| tracing::field::display(format!("{p:016x}"))),
            code = Empty,
            micros = Empty,
        );
        // Metric labels are the served service's own names, never a
        // peer's: names no service has would grow the metrics without
        // bound. A span records what the peer asked for.
        let (service, method) = match served {
            Some(served) => (
                SharedString::const_str(served.name()),
                served
                    .methods()
                    .iter()
                    .find(|m| **m == method)
                    .map_or(SharedString::const_str(UNKNOWN), |m| {
                        SharedString::const_str(m)
                    }),
            ),
            None => (
                SharedString::const_str(UNKNOWN),
                SharedString::const_str(UNKNOWN),
            ),
        };
        Observed {
            span,
            started: Instant::now(),
            side: "server",
            service,
            method,
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
        let (service, method) = (self.service, self.method);
        metrics::counter!(
            "octopii_rpc_calls_total",
            "side" => self.side,
            "service" => service.clone(),
            "method" => method.clone(),
            "code" => code,
        )
        .increment(1);
        metrics::histogram!(
            "octopii_rpc_call_duration_seconds",
            "side" => self.side,
            "service" => service,
            "method" => method,
        )
        .record(elapsed.as_secs_f64());
    }
}
