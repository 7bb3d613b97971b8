//! Layers around a client's unary calls: [`Outgoing`] (one call as the
//! layers see it) and [`Direct`] (the call path itself, at the bottom of
//! the stack).

use std::net::SocketAddr;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::rpc::trace::TraceContext;
use crate::rpc::{Client, RpcError};

/// One unary call on its way out, as client-side layers see it. A layer
/// may change its deadline and add metadata (a token, say) before it goes.
#[derive(Debug)]
pub struct Outgoing {
    /// The client's settings for this call, without its layers.
    pub(crate) client: Client,
    pub(crate) service: &'static str,
    pub(crate) method: &'static str,
    pub(crate) args: Bytes,
    pub(crate) idempotent: bool,
    pub(crate) trace: TraceContext,
}

impl Outgoing {
    /// The service called.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The method called.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The encoded arguments.
    pub fn args(&self) -> &Bytes {
        &self.args
    }

    /// Whether the method is `#[octopii(idempotent)]`.
    pub fn idempotent(&self) -> bool {
        self.idempotent
    }

    /// The peer called.
    pub fn peer(&self) -> SocketAddr {
        self.client.peer()
    }

    /// How long the call may take, if it is bounded.
    pub fn deadline(&self) -> Option<Duration> {
        self.client.deadline()
    }

    /// Bounds the call to `deadline`; the server is told.
    pub fn set_deadline(&mut self, deadline: Duration) {
        self.client = self.client.with_deadline(deadline);
    }

    /// Adds `key = value` to the call's metadata.
    pub fn insert_metadata(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.client = self.client.with_metadata(key, value);
    }
}

/// The bottom of a client's stack: sends the call to its peer (with the
/// client's retry policy) and gives the encoded reply. Ready at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct Direct;

impl tower::Service<Outgoing> for Direct {
    type Response = Bytes;
    type Error = RpcError;
    type Future = BoxFuture<'static, Result<Bytes, RpcError>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), RpcError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Outgoing) -> Self::Future {
        Box::pin(async move {
            let names = (call.service, call.method);
            call.client
                .traced_call(names, &call.args, call.idempotent, call.trace)
                .await
        })
    }
}
