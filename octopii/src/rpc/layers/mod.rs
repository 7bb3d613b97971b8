//! Middleware: `tower` layers around a served service and around a
//! client's calls.
//!
//! A layer sees one call as a `tower` request and may refuse it, delay it,
//! bound it or watch it, with any crate's `tower::Layer` (timeouts,
//! concurrency and rate limits, load shedding) or one of your own:
//!
//! * On the server, [`Layered`] puts layers around a [`Service`](super::Service):
//!   each call is a [`Request`] (service, method, [`Context`](super::Context)
//!   with the verified caller, encoded arguments) and its reply the encoded
//!   value. [`PolicyLayer`] is the authorization of [`Policy`](super::Policy)
//!   as one such layer. Streaming calls pass through the layers too; their
//!   reply is empty, and a layer's refusal is sent on their stream.
//! * On the client, [`Client::layer`](super::Client::layer) puts layers
//!   around its unary calls: each is an [`Outgoing`] call (service, method,
//!   encoded arguments, deadline and metadata a layer may change) and its
//!   reply the encoded value. The layers run inside the call's span, around
//!   its retries.
//!
//! A layer's error becomes the caller's status: an [`RpcError`] is kept as
//! it is, `tower`'s timeout is [`Code::DeadlineExceeded`], its load
//! shedding and a closed buffer are [`Code::ResourceExhausted`] and
//! [`Code::Unavailable`], anything else is [`Code::Unknown`] with the
//! error's text.
//!
//! The layered service is one value shared by all calls: a layer that
//! keeps state (a rate limit's budget, a concurrency limit's permits)
//! keeps one for the whole service. Calls take their turn to pass
//! `poll_ready`, so one waiting for a limit holds up those behind it, which
//! is what a limit is for; a call's deadline still ends its wait.
//!
//! # Example
//!
//! Three layers on a server: at most 64 calls at once, each within a
//! second, and only for nodes.
//!
//! ```
//! use std::time::Duration;
//! use octopii::rpc::{Policy, PolicyLayer};
//! use tower::ServiceBuilder;
//!
//! #[octopii::service]
//! pub trait Echo {
//!     async fn echo(&self, text: String) -> String;
//! }
//! struct Server;
//! impl Echo for Server {
//!     async fn echo(&self, text: String) -> String { text }
//! }
//!
//! let layers = ServiceBuilder::new()
//!     .layer(PolicyLayer::new(Policy::nodes()))
//!     .concurrency_limit(64)
//!     .timeout(Duration::from_secs(1));
//! let served = EchoServer::new(Server).layer(layers);
//! # let _ = served;
//! ```

mod client;
mod server;

pub use client::{Direct, Outgoing};
pub use server::{Handler, Layered, PolicyLayer, PolicyService, Request};

use std::sync::Arc;

use futures::future::BoxFuture;
use tower::{BoxError, ServiceExt};

use super::{Code, RpcError};

/// A `tower` service shared by every call: each call takes its turn to
/// pass `poll_ready` and start, then runs on its own.
pub(crate) struct Shared<T> {
    stack: Arc<tokio::sync::Mutex<T>>,
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared {
            stack: self.stack.clone(),
        }
    }
}

impl<T> Shared<T> {
    pub fn new(stack: T) -> Self {
        Shared {
            stack: Arc::new(tokio::sync::Mutex::new(stack)),
        }
    }

    /// Runs `request` through the stack, its error as a status.
    pub fn call<Req, Resp>(&self, request: Req) -> BoxFuture<'static, Result<Resp, RpcError>>
    where
        T: tower::Service<Req, Response = Resp, Error: Into<BoxError>, Future: Send + 'static>
            + Send
            + 'static,
        Req: Send + 'static,
    {
        let stack = self.stack.clone();
        Box::pin(async move {
            let started = {
                let mut stack = stack.lock().await;
                let ready = stack.ready().await.map_err(|e| status_of(e.into()))?;
                ready.call(request)
            };
            started.await.map_err(|e| status_of(e.into()))
        })
    }
}

/// The status a layer's error gives the caller.
pub(crate) fn status_of(error: BoxError) -> RpcError {
    let error = match error.downcast::<RpcError>() {
        Ok(status) => return *status,
        Err(error) => error,
    };
    let code = if error.is::<tower::timeout::error::Elapsed>() {
        Code::DeadlineExceeded
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        Code::ResourceExhausted
    } else if error.is::<tower::buffer::error::Closed>()
        || error.is::<tower::buffer::error::ServiceError>()
    {
        Code::Unavailable
    } else {
        Code::Unknown
    };
    RpcError::new(code, format!("a layer ended the call: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layers_error_becomes_the_status_it_means() {
        let kept = status_of(Box::new(RpcError::new(Code::PermissionDenied, "no")));
        assert_eq!(
            (kept.code(), kept.message()),
            (Code::PermissionDenied, "no")
        );
        let elapsed = status_of(Box::new(tower::timeout::error::Elapsed::new()));
        assert_eq!(elapsed.code(), Code::DeadlineExceeded);
        let shed = status_of(Box::new(tower::load_shed::error::Overloaded::new()));
        assert_eq!(shed.code(), Code::ResourceExhausted);
        let other = status_of("the moon is full".into());
        assert_eq!(other.code(), Code::Unknown);
        assert!(other.message().contains("the moon is full"), "{other}");
    }
}
