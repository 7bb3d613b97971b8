//! [`Context`]: what a handler may know about the call it serves.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::trace::{TRACEPARENT, TraceContext};
use crate::identity::Role;
use crate::transport::PeerInfo;

/// Metadata of a call: ordered `(key, value)` string pairs.
pub type Metadata = Vec<(String, String)>;

/// The context of one call, seen by its handler.
///
/// A service method receives it by declaring `&octopii::rpc::Context` as its
/// first argument after `&self`; the argument is filled in by the server
/// and is not part of the client's signature.
///
/// ```
/// #[octopii::service]
/// pub trait Whoami {
///     /// Returns the caller's verified name and its `trace-id` metadata.
///     async fn whoami(&self, ctx: &octopii::rpc::Context) -> (String, Option<String>);
/// }
///
/// struct Server;
/// impl Whoami for Server {
///     async fn whoami(&self, ctx: &octopii::rpc::Context) -> (String, Option<String>) {
///         (ctx.caller().to_owned(), ctx.metadata("trace-id").map(String::from))
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Context {
    peer: Arc<PeerInfo>,
    deadline: Option<Instant>,
    metadata: Arc<Metadata>,
    trace: TraceContext,
    parent: Option<u64>,
    signature: Option<u64>,
}

impl Context {
    /// A context for a call from `peer` due by `deadline`. The call's trace
    /// continues the caller's (its `traceparent` metadata), or starts one.
    pub fn new(peer: Arc<PeerInfo>, deadline: Option<Instant>, metadata: Metadata) -> Self {
        Self::of_request(peer, deadline, metadata, None, None)
    }

    /// The context of a request whose header carried `trace` (else its
    /// `traceparent` metadata is read) and a signature fingerprint.
    pub(crate) fn of_request(
        peer: Arc<PeerInfo>,
        deadline: Option<Instant>,
        metadata: Metadata,
        trace: Option<TraceContext>,
        signature: Option<u64>,
    ) -> Self {
        let caller = trace.and_then(TraceContext::valid).or_else(|| {
            metadata
                .iter()
                .find(|(k, _)| k == TRACEPARENT)
                .and_then(|(_, v)| TraceContext::parse(v))
        });
        Context {
            peer,
            deadline,
            metadata: Arc::new(metadata),
            trace: caller.map_or_else(TraceContext::new_root, |c| c.child()),
            parent: caller.map(|c| c.span_id()),
            signature,
        }
    }

    /// The fingerprint of the method's signature the caller sent, if any.
    pub(crate) fn signature(&self) -> Option<u64> {
        self.signature
    }

    /// Where this call is in its distributed trace: the caller's trace id
    /// and a span id of this call's own. Calls the handler makes continue
    /// it.
    pub fn trace(&self) -> TraceContext {
        self.trace
    }

    /// The caller's span id, if it sent a trace context.
    pub(crate) fn trace_parent(&self) -> Option<u64> {
        self.parent
    }

    /// The calling node: address, certificate name, whether it was verified.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// The caller's verified identity (its certificate's subject name).
    pub fn caller(&self) -> &str {
        &self.peer.identity
    }

    /// What the caller's certificate says it is: a node (with its raft
    /// id), a client or an admin.
    pub fn role(&self) -> Role {
        self.peer.role
    }

    /// The caller's raft id, if it holds a node certificate.
    pub fn node_id(&self) -> Option<u64> {
        self.peer.role.node_id()
    }

    /// When the caller stops waiting, if it set a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the deadline (zero once it has passed).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The first metadata value under `key`.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All metadata pairs, in the order the caller set them.
    pub fn all_metadata(&self) -> &[(String, String)] {
        &self.metadata
    }
}
