//! Layers around a served service: [`Request`], [`Handler`] (the service
//! itself, at the bottom of the stack), [`Layered`] (the stack, served as a
//! [`Service`]) and [`PolicyLayer`].

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use tower::{BoxError, Layer};

use super::Shared;
use crate::rpc::policy::judge;
use crate::rpc::{
    Call, CallStream, Code, Context, HandlerFuture, Policy, RpcError, Service, StreamFuture,
};

/// A call's stream, held for the handler until a layer lets the call
/// through, and taken back to answer a refusal on.
type StreamSlot = Arc<Mutex<Option<CallStream>>>;

fn take(slot: &StreamSlot) -> Option<CallStream> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// One call on its way to a handler, as server-side layers see it.
#[derive(Debug)]
pub struct Request {
    service: &'static str,
    method: String,
    ctx: Context,
    args: Bytes,
    stream: Option<StreamSlot>,
}

impl Request {
    /// A unary call of `service.method` with `ctx` and encoded `args`:
    /// what a layer is tested with, without a network.
    pub fn new(
        service: &'static str,
        method: impl Into<String>,
        ctx: Context,
        args: Bytes,
    ) -> Self {
        Request {
            service,
            method: method.into(),
            ctx,
            args,
            stream: None,
        }
    }

    /// The service called.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The method called.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The call's context: the verified caller, deadline, metadata, trace.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// The encoded arguments.
    pub fn args(&self) -> &Bytes {
        &self.args
    }

    /// Whether the call owns a stream (a streaming method or a transfer):
    /// its reply is sent on the stream, and the layers' reply is empty.
    pub fn is_streaming(&self) -> bool {
        self.stream.is_some()
    }
}

/// The bottom of a server's stack: runs the call's handler. Ready at once;
/// the reply is the encoded value.
#[derive(Clone)]
pub struct Handler {
    service: Arc<dyn Service>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("service", &self.service.name())
            .finish()
    }
}

impl tower::Service<Request> for Handler {
    type Response = Vec<u8>;
    type Error = RpcError;
    type Future = HandlerFuture;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), RpcError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> HandlerFuture {
        let Request {
            method,
            ctx,
            args,
            stream,
            ..
        } = request;
        let Some(slot) = stream else {
            return self.service.call(&method, ctx, args);
        };
        let Some(stream) = take(&slot) else {
            let error = RpcError::new(Code::Internal, "the call's stream was already taken");
            return Box::pin(std::future::ready(Err(error)));
        };
        let call = self.service.serve_stream(&method, ctx, args, stream);
        Box::pin(async move {
            call.await;
            Ok(Vec::new())
        })
    }
}

/// A [`Service`] served through `tower` layers; the generated
/// `XServer::layer` makes one. Its name, methods and own policy are the
/// inner service's.
pub struct Layered<T> {
    service: Arc<dyn Service>,
    stack: Shared<T>,
}

impl<T> std::fmt::Debug for Layered<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Layered")
            .field("service", &self.service.name())
            .finish_non_exhaustive()
    }
}

impl<T> Layered<T> {
    /// Serves `service` through `layer` (a `tower::ServiceBuilder` stacks
    /// several into one).
    pub fn new<S, L>(service: S, layer: L) -> Self
    where
        S: Service,
        L: Layer<Handler, Service = T>,
    {
        let service: Arc<dyn Service> = Arc::new(service);
        let stack = layer.layer(Handler {
            service: service.clone(),
        });
        Layered {
            service,
            stack: Shared::new(stack),
        }
    }
}

impl<T> Service for Layered<T>
where
    T: tower::Service<Request, Response = Vec<u8>, Error: Into<BoxError>, Future: Send + 'static>
        + Send
        + 'static,
{
    fn name(&self) -> &'static str {
        self.service.name()
    }

    fn methods(&self) -> &'static [&'static str] {
        self.service.methods()
    }

    fn authorize(&self, call: &Call<'_>) -> Result<(), String> {
        self.service.authorize(call)
    }

    fn call(&self, method: &str, ctx: Context, args: Bytes) -> HandlerFuture {
        self.stack
            .call(Request::new(self.service.name(), method, ctx, args))
    }

    fn serve_stream(
        &self,
        method: &str,
        ctx: Context,
        args: Bytes,
        stream: CallStream,
    ) -> StreamFuture {
        let slot = Arc::new(Mutex::new(Some(stream)));
        let mut request = Request::new(self.service.name(), method, ctx, args);
        request.stream = Some(slot.clone());
        let call = self.stack.call(request);
        Box::pin(async move {
            // A layer that refused the call never handed the stream on:
            // the refusal is its answer.
            if let Err(refused) = call.await
                && let Some(stream) = take(&slot)
            {
                stream.fail(refused).await;
            }
        })
    }
}

/// A [`Policy`] as a `tower` layer: a call the policy refuses is answered
/// `PermissionDenied` (`Unauthenticated` for a caller never verified), and
/// logged with the caller's identity, as [`Authorized`](crate::rpc::Authorized)
/// does.
#[derive(Debug, Clone)]
pub struct PolicyLayer {
    policy: Policy,
}

impl PolicyLayer {
    /// A layer admitting the calls `policy` admits.
    pub fn new(policy: Policy) -> Self {
        PolicyLayer { policy }
    }
}

impl<S> Layer<S> for PolicyLayer {
    type Service = PolicyService<S>;

    fn layer(&self, inner: S) -> PolicyService<S> {
        PolicyService {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service [`PolicyLayer`] puts around `S`.
#[derive(Debug, Clone)]
pub struct PolicyService<S> {
    inner: S,
    policy: Policy,
}

impl<S> tower::Service<Request> for PolicyService<S>
where
    S: tower::Service<
            Request,
            Response: Send + 'static,
            Error: Into<BoxError>,
            Future: Send + 'static,
        >,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let call = Call::new(request.ctx.peer(), request.service, &request.method);
        if let Err(refused) = judge(&call, self.policy.check(&call)) {
            return Box::pin(std::future::ready(Err(refused.into())));
        }
        let call = self.inner.call(request);
        Box::pin(async move { call.await.map_err(Into::into) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Role;
    use crate::transport::PeerInfo;
    use tower::ServiceExt;

    fn request(role: Role) -> Request {
        let peer = PeerInfo {
            addr: "127.0.0.1:1".parse().unwrap(),
            identity: "alice".into(),
            role,
            verified: true,
        };
        Request::new(
            "Kv",
            "get",
            Context::new(Arc::new(peer), None, Vec::new()),
            Bytes::new(),
        )
    }

    #[tokio::test]
    async fn a_policy_layer_refuses_what_its_policy_refuses_without_a_network() {
        let echo =
            tower::service_fn(|r: Request| async move { Ok::<_, RpcError>(r.args().to_vec()) });
        let guarded = PolicyLayer::new(Policy::nodes()).layer(echo);
        let refused = guarded
            .clone()
            .oneshot(request(Role::Client))
            .await
            .unwrap_err();
        let refused = super::super::status_of(refused);
        assert_eq!(refused.code(), Code::PermissionDenied);
        assert!(
            refused.message().contains("Kv.get is for nodes"),
            "{refused}"
        );
        assert!(guarded.oneshot(request(Role::Node { id: 1 })).await.is_ok());
    }
}
