//! # Octopii
//!
//! A Rust service framework over QUIC: typed services from one attribute,
//! mutually authenticated multiplexed transport, verified bulk transfer and
//! replicated durable state.
//!
//! The crate is built in layers, each calling only the ones below it.
//! Raft is a service hosted on a node:
//!
//! ```text
//! raft → node → chunk → rpc → transport → runtime
//!   ↘ wal
//! ```
//!
//! * [`raft`]: a replicated state machine over raft-rs, durable in the WAL.
//! * [`node`]: [`OctopiiNode`] ties the layers together.
//! * [`chunk`]: verified bulk transfer of files and buffers to many peers.
//! * [`rpc`]: typed calls over pooled QUIC streams (`#[octopii::service]`).
//! * [`transport`]: one QUIC endpoint per node, mutual TLS, a connection pool.
//! * [`runtime`]: [`OctopiiRuntime`], an isolated tokio thread pool.
//! * [`wal`]: the write-ahead log, standalone.
//!
//! Beneath them all, plain data every layer may use: [`config`]
//! ([`Config`], loaded from TOML or built in code), [`identity`] (what a
//! certificate says its holder is), [`codec`] (how values become bytes on
//! the wire and on disk). [`error`] wraps the errors of every layer.
//!
//! ## Features
//!
//! None by default. `bench` adds `octopii::bench`, the
//! measurement harnesses; `prometheus` adds
//! [`metrics::serve_prometheus`](crate::metrics) and
//! [`Config::metrics_addr`], a Prometheus scrape endpoint for the
//! [`metrics`] every layer records; `cli` adds the `octopii`
//! command-line binary (with both).

#![warn(missing_docs)]

// Lets `#[octopii::service]` (whose output names `::octopii`) be used here.
extern crate self as octopii;

#[doc(hidden)]
pub mod __private;
#[cfg(feature = "bench")]
pub mod bench;
pub mod chunk;
pub mod codec;
pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod identity;
mod local_cluster;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod rpc;
pub mod runtime;
pub mod transport;
pub mod wal;

pub use config::Config;
pub use error::{OctopiiError, Result};
pub use local_cluster::LocalCluster;
pub use node::OctopiiNode;
pub use rpc::{Context, RpcError, StreamSender, Streaming};
pub use runtime::OctopiiRuntime;
pub use transport::tls::ClusterCa;

/// Turns a trait into a typed RPC service: see [`rpc`].
pub use octopii_macros::service;
