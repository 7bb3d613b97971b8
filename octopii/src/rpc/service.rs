//! The server-side contract between `#[octopii::service]` and the RPC layer.
//!
//! The attribute turns a trait `X` into `XServer<S>`, which implements
//! [`Service`]: given a method name, the call's [`Context`] and the encoded
//! arguments, it returns a future of the encoded result. The helpers below
//! are what the generated code calls; they are public for it, not for hand
//! use.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Call, CallStream, Code, Context, RpcError};
use crate::codec;

/// The future a handler returns: the encoded reply value, or a status.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static>>;

/// The future of a call that owns its stream; it answers on the stream.
pub type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A service a node can serve: implemented by the generated `XServer<S>`.
pub trait Service: Send + Sync + 'static {
    /// The service's name on the wire (the trait's name).
    fn name(&self) -> &'static str;

    /// The names of its methods.
    fn methods(&self) -> &'static [&'static str];

    /// Whether `call` may be served; the `Err` says why not. The router
    /// asks before every call and answers a refusal `PermissionDenied`.
    /// The default admits every caller the transport let in (see
    /// [`Policy::any_caller`](super::Policy::any_caller)); wrap a service in
    /// [`Authorized`](super::Authorized) to give it a [`Policy`](super::Policy).
    fn authorize(&self, call: &Call<'_>) -> Result<(), String> {
        let _ = call;
        Ok(())
    }

    /// Starts the handler of `method` with `ctx` and the encoded `args`.
    /// An unknown method resolves to [`Code::Unimplemented`].
    fn call(&self, method: &str, ctx: Context, args: Bytes) -> HandlerFuture;

    /// Starts the handler of `method` as a call that owns `stream` (a
    /// streaming method or a bulk transfer; see [`CallStream`]). The
    /// default has no such methods and answers [`Code::Unimplemented`].
    fn serve_stream(
        &self,
        method: &str,
        ctx: Context,
        args: Bytes,
        stream: CallStream,
    ) -> StreamFuture {
        let _ = (ctx, args);
        super::streaming::call::no_streaming_method(self.name(), method, stream)
    }
}

/// Types that can be arguments or results of a service method.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross the wire in an Octopii service",
    label = "must implement `serde::Serialize` and `serde::de::DeserializeOwned`, and be `Send + 'static`",
    note = "derive them with `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait Wire: Serialize + DeserializeOwned + Send + 'static {}

// Not recommended in errors: the user then sees one `Wire` error per type
// instead of serde's long lists of types that do implement its traits.
#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned + Send + 'static> Wire for T {}

/// Decodes a method's argument tuple; failure is [`Code::InvalidArgument`].
#[doc(hidden)]
pub fn decode_args<T: DeserializeOwned>(args: &[u8]) -> Result<T, RpcError> {
    codec::decode(args).map_err(|e| {
        RpcError::new(
            Code::InvalidArgument,
            format!("arguments do not decode: {e}"),
        )
    })
}

/// Encodes a method's return value; failure is [`Code::Internal`].
#[doc(hidden)]
pub fn encode_output<T: Serialize>(value: &T) -> Result<Vec<u8>, RpcError> {
    codec::encode(value)
        .map_err(|e| RpcError::new(Code::Internal, format!("result does not encode: {e}")))
}

/// The reply to a method the service does not have.
#[doc(hidden)]
pub fn unimplemented(service: &str, method: &str) -> HandlerFuture {
    unimplemented_because(format!("service `{service}` has no method `{method}`"))
}

/// An [`Code::Unimplemented`] reply that says why.
pub(crate) fn unimplemented_because(message: String) -> HandlerFuture {
    Box::pin(std::future::ready(Err(RpcError::new(
        Code::Unimplemented,
        message,
    ))))
}
