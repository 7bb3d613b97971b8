//! Typed RPC over pooled QUIC streams.
//!
//! `#[octopii::service]` on a trait generates a client (`XClient`) that calls
//! through [`Client`] and a server (`XServer<S>`) that implements
//! [`Service`]; a node serves it with [`OctopiiNode::serve`](crate::OctopiiNode::serve).
//!
//! # Example
//!
//! Define a service, serve it on one node, call it from another:
//!
//! ```
//! use octopii::rpc::{Code, Context};
//! use octopii::LocalCluster;
//!
//! /// A key-value store.
//! #[octopii::service]
//! pub trait Store {
//!     /// The value of `key`, if any.
//!     async fn get(&self, key: String) -> Option<String>;
//!     /// Who is asking, as their certificate says.
//!     async fn whoami(&self, ctx: &Context) -> String;
//! }
//!
//! struct Fixed;
//!
//! impl Store for Fixed {
//!     async fn get(&self, key: String) -> Option<String> {
//!         (key == "motd").then(|| "hello".to_owned())
//!     }
//!     async fn whoami(&self, ctx: &Context) -> String {
//!         ctx.caller().to_owned()
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Two nodes on loopback with certificates of one CA (see `LocalCluster`
//! // for the same written out).
//! let cluster = LocalCluster::new()?;
//! let (server, alice) = (cluster.node("server")?, cluster.node("alice")?);
//! server.serve(StoreServer::new(Fixed))?;
//!
//! let store = StoreClient::new(&alice, server.local_addr());
//! cluster.block_on(async {
//!     assert_eq!(store.get("motd".into()).await?, Some("hello".to_owned()));
//!     assert_eq!(store.whoami().await?, "alice");
//!     // A call that cannot finish ends with a status: here nobody answers,
//!     // and the call gives up at its deadline.
//!     let far = StoreClient::new(&alice, "127.0.0.1:9".parse().unwrap())
//!         .with_deadline(std::time::Duration::from_millis(300));
//!     let error = far.get("motd".into()).await.unwrap_err();
//!     assert_eq!(error.code(), Code::DeadlineExceeded);
//!     Ok::<_, octopii::RpcError>(())
//! })?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! * [`budget`]: what a peer can make a server hold, and its limits.
//! * [`codec`](crate::codec): how arguments and results become bytes.
//! * `client.rs`: the call path over pooled bidirectional streams.
//! * `server.rs`: the router that serves a node's inbound streams.
//! * [`Code`] and [`RpcError`]: the status of a call.
//! * [`Policy`]: which verified callers a service serves.
//! * [`layers`]: `tower` middleware around a served service and a client's
//!   calls.
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
mod lane;
// The wire layout for tests that speak it byte by byte; a client in
// another language is written from `docs/PROTOCOL.md`, not from this.
#[doc(hidden)]
pub mod frame;
pub mod layers;
pub(crate) mod observe;
mod policy;
mod replicas;
mod retry;
mod server;
mod service;
pub(crate) mod signature;
mod status;
pub mod streaming;
mod trace;

pub use budget::RpcStats;
pub use call_stream::CallStream;
pub(crate) use client::StreamPool;
pub use client::{Client, Connect};
pub use context::{Context, Metadata};
pub use layers::{Layered, PolicyLayer};
pub use policy::{Authorized, Call, Policy};
pub use replicas::{Replicas, SKIP_UNREACHABLE};
pub use retry::RetryPolicy;
pub(crate) use server::Router;
pub use server::ServeError;
pub use service::{
    HandlerFuture, Service, StreamFuture, Wire, decode_args, encode_output, unimplemented,
};
pub use status::{Code, RpcError};
pub use streaming::{StreamSender, Streaming};
pub use trace::{TRACEPARENT, TraceContext};
