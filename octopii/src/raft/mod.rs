//! A replicated state machine over raft-rs, durable in the node's WAL.

mod config;
mod error;
mod log;
pub mod storage;

pub use config::RaftConfig;
pub use error::RaftError;
pub use storage::RaftStorage;
