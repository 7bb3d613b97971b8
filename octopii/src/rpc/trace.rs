//! [`TraceContext`]: the W3C trace context a call carries across nodes.
//!
//! Every call sends its trace context in its request header (the ids of the
//! W3C Trace Context, in binary); a caller may instead set the
//! `traceparent` metadata entry in the W3C text form
//! (`00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`), which a
//! server reads when the header has none. A handler
//! runs inside its call's context: calls it makes continue the same trace,
//! so one trace id follows a request through every hop. Both sides record
//! the ids in their `tracing` span (`rpc.client`, `rpc.server`), where a
//! log or trace pipeline joins them.
//!
//! ```
//! use octopii::rpc::TraceContext;
//!
//! let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
//! let parent = TraceContext::parse(header).unwrap();
//! let child = parent.child();
//! assert_eq!(child.trace_id(), parent.trace_id());
//! assert_ne!(child.span_id(), parent.span_id());
//! assert!(child.to_string().starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
//! ```

use std::fmt;

/// The metadata key of the trace context.
pub const TRACEPARENT: &str = "traceparent";

tokio::task_local! {
    /// The trace of the call whose handler is running.
    static CURRENT: TraceContext;
}

/// A position in a distributed trace: the trace, and the span in it that
/// is the parent of whatever comes next.
///
/// In a request header it travels as three fields: the trace id (`u128`),
/// the caller's span id (`u64`) and the flags (`u8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

impl TraceContext {
    /// The start of a new trace, sampled.
    pub fn new_root() -> Self {
        TraceContext {
            // Zero ids are invalid in W3C Trace Context.
            trace_id: rand::random::<u128>().max(1),
            span_id: rand::random::<u64>().max(1),
            flags: 1,
        }
    }

    /// A new span in the same trace, this one its parent.
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: rand::random::<u64>().max(1),
            ..*self
        }
    }

    /// Reads a `traceparent` value; `None` unless it is a valid version-00
    /// header (later versions are read by their first four fields, as the
    /// specification asks).
    pub fn parse(header: &str) -> Option<Self> {
        let mut fields = header.trim().split('-');
        let version = u8::from_str_radix(fields.next().filter(|v| v.len() == 2)?, 16).ok()?;
        let trace_id = hex_field(fields.next()?, 32)?;
        let span_id = hex_field(fields.next()?, 16)? as u64;
        let flags = hex_field(fields.next()?, 2)? as u8;
        let valid = version != 0xff
            && trace_id != 0
            && span_id != 0
            && (version != 0 || fields.next().is_none());
        valid.then_some(TraceContext {
            trace_id,
            span_id,
            flags,
        })
    }

    /// `Some(self)` if its ids are not zero, which W3C Trace Context
    /// forbids (a header that arrived with one starts a new trace).
    pub(crate) fn valid(self) -> Option<Self> {
        (self.trace_id != 0 && self.span_id != 0).then_some(self)
    }

    /// The trace's id.
    pub fn trace_id(&self) -> u128 {
        self.trace_id
    }

    /// This span's id.
    pub fn span_id(&self) -> u64 {
        self.span_id
    }

    /// Whether the trace is sampled (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The trace of the handler running on this task, if any: the parent
    /// of the calls it makes.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|trace| *trace).ok()
    }

    /// Runs `future` with `self` as the current trace.
    pub(crate) async fn scope<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }
}

impl fmt::Display for TraceContext {
    /// The `traceparent` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

/// A lowercase or uppercase hex field of exactly `len` digits.
fn hex_field(field: &str, len: usize) -> Option<u128> {
    (field.len() == len && field.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u128::from_str_radix(field, 16).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_reads_back_as_it_was_written() {
        let trace = TraceContext::new_root();
        assert_eq!(TraceContext::parse(&trace.to_string()), Some(trace));
        assert_eq!(trace.to_string().len(), 55);
        assert!(trace.sampled());
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(TraceContext::parse(ok).is_some());
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
        // A later version may add fields; the first four are read.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
        let trace = TraceContext::parse(later).expect("a later version");
        assert!(!trace.sampled());
    }

    #[test]
    fn the_current_trace_is_the_scope_s() {
        assert_eq!(TraceContext::current(), None);
        let trace = TraceContext::new_root();
        let seen = futures::executor::block_on(trace.scope(async { TraceContext::current() }));
        assert_eq!(seen, Some(trace));
    }
}
