//! Typed RPC over pooled QUIC streams.
//!
//! `#[octopii::service]` on a trait generates a client (`XClient`) that calls
//! through [`Client`] and a server (`XServer<S>`) that implements
//! [`Service`]; a node serves it with [`OctopiiNode::serve`](crate::OctopiiNode::serve).
//!
//! * [`frame`]: `[u32 length][bytes]` frames and the request header.
//! * [`budget`]: what a peer can make a server hold, and its limits.
//! * [`codec`](crate::codec): how arguments and results become bytes.
//! * [`client`]: the call path over pooled bidirectional streams.
//! * [`server`]: the [`Router`] that serves inbound streams.
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
pub mod client;
mod context;
pub mod frame;
mod policy;
pub mod server;
mod service;
mod status;
pub mod streaming;

pub use budget::RpcStats;
pub use call_stream::CallStream;
pub use client::{Client, Connect, StreamPool};
pub use context::{Context, Metadata};
pub use policy::{Authorized, Call, Policy};
pub use server::{Router, ServeError};
pub use service::{
    HandlerFuture, Service, StreamFuture, Wire, decode_args, encode_output, unimplemented,
};
pub use status::{Code, RpcError};
pub use streaming::{StreamSender, Streaming};
