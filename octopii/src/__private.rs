//! What the code `#[octopii::service]` generates names, and nothing else:
//! one path the generated code depends on, so the public modules are free
//! to change their layout. Not API; do not use it by hand.

pub use bytes::Bytes;
pub use tower::{BoxError, Layer, Service as TowerService};

pub use crate::rpc::signature::check_signature;

pub use crate::rpc::layers::{Direct, Handler, Outgoing, Request};
pub use crate::rpc::streaming::call::{
    bidi_streaming, client_streaming, decode_head, no_streaming_method, server_streaming, sink,
    split, streaming_only,
};
pub use crate::rpc::{
    Authorized, CallStream, Client, Connect, Context, HandlerFuture, Layered, Policy, RetryPolicy,
    RpcError, Service, StreamFuture, Wire, decode_args, encode_output, unimplemented,
};
