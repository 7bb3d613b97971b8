//! Typed RPC over pooled QUIC streams.
//!
//! `#[octopii::service]` on a trait generates a client (`XClient`) that calls
//! through [`Client`] and a server (`XServer<S>`) that implements
//! [`Service`]; a node serves it with [`OctopiiNode::serve`](crate::OctopiiNode::serve).
//!
//! * [`budget`]: what a peer can make a server hold, and its limits.
//! * [`codec`](crate::codec): how arguments and results become bytes.
//! * `client.rs`: the call path over pooled bidirectional streams.
//! * `server.rs`: the router that serves a node's inbound streams.
//! * [`Code`] and [`RpcError`]: the status of a call.
//! * [`Policy`]: which verified callers a service serves.
//! * [`CallStream`]: the stream of a call that owns one (streaming calls,
//!   bulk transfers).
//! * [`streaming`]: [`Streaming`], the items of a streaming call, and how
//!   streaming calls carry them on their stream.
//!
//! The wire format is specified in `docs/PROTOCOL.md`.

pub mod budget;
mod call_stream;
mod client;
mod context;
// The wire layout for tests that speak it byte by byte; a client in
// another language is written from `docs/PROTOCOL.md`, not from this.
#[doc(hidden)]
pub mod frame;
mod policy;
mod server;
mod service;
mod status;
pub mod streaming;

pub use budget::RpcStats;
pub use call_stream::CallStream;
pub(crate) use client::StreamPool;
pub use client::{Client, Connect};
pub use context::{Context, Metadata};
pub use policy::{Authorized, Call, Policy};
pub(crate) use server::Router;
pub use service::{
    HandlerFuture, Service, StreamFuture, Wire, decode_args, encode_output, unimplemented,
};
pub use status::{Code, RpcError};
pub use streaming::{StreamSender, Streaming};
