//! # Octopii
//!
//! A Rust service framework over QUIC: typed services from one attribute,
//! mutually authenticated multiplexed transport, verified bulk transfer and
//! replicated durable state.
//!
//! The crate is built in layers, each calling only the ones below it:
//!
//! ```text
//! node → raft → {rpc, wal, chunk} → transport → runtime
//! ```
//!
//! * [`runtime`]: [`OctopiiRuntime`], an isolated tokio thread pool.
//! * [`transport`]: one QUIC endpoint per node, mutual TLS, a connection pool.
//! * [`wal`]: the node's write-ahead log.
//! * [`node`]: [`OctopiiNode`] ties the layers together.
//! * [`config`]: [`Config`], loaded from TOML or built in code.

#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod node;
pub mod runtime;
pub mod transport;
pub mod wal;

pub use config::Config;
pub use error::{OctopiiError, Result};
pub use node::OctopiiNode;
pub use runtime::OctopiiRuntime;
