//! [`OctopiiError`]: the façade over the layers' own errors.
//!
//! Each layer returns its own typed error ([`CodecError`](crate::codec::CodecError),
//! [`TransportError`](crate::transport::TransportError),
//! [`WalError`](crate::wal::WalError), [`RpcError`](crate::rpc::RpcError),
//! [`RaftError`](crate::raft::RaftError), …); the node-level API returns
//! `OctopiiError`, which wraps each whole (`From`), so `?` crosses layers
//! and a caller can still match on the layer's variant. It is
//! `#[non_exhaustive]`: new kinds do not break callers that match on it.

use std::path::PathBuf;
use std::time::Duration;

/// Result alias used throughout Octopii.
pub type Result<T, E = OctopiiError> = std::result::Result<T, E>;

/// Everything that can go wrong in Octopii, as a typed value.
///
/// ```
/// use octopii::OctopiiError;
/// let err = OctopiiError::Config { field: "bind_addr", message: "not a socket address".into() };
/// assert_eq!(err.to_string(), "invalid config field `bind_addr`: not a socket address");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OctopiiError {
    /// An operating-system I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    /// An I/O error on a named file.
    #[error("I/O error on {path}: {source}")]
    File {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// Encoding or decoding a value failed.
    #[error("codec error: {0}")]
    Codec(#[from] crate::codec::CodecError),

    /// A connection, a handshake or a certificate failed.
    #[error("transport error: {0}")]
    Transport(#[from] crate::transport::TransportError),

    /// Certificate or key files could not be loaded.
    #[error("credentials: {0}")]
    Credentials(#[from] crate::identity::CredentialsError),

    /// An operation did not finish within its time limit.
    #[error("timed out after {0:?}")]
    Timeout(Duration),

    /// A configuration value is invalid; `field` names it.
    #[error("invalid config field `{field}`: {message}")]
    Config {
        /// The configuration field at fault, as spelled in the TOML file.
        field: &'static str,
        /// Why the value was refused.
        message: String,
    },

    /// The write-ahead log failed or is unusable.
    #[error("WAL error: {0}")]
    Wal(#[from] crate::wal::WalError),

    /// Data read back from disk failed a check (a checksum, a magic
    /// number, a value out of range): the file is damaged. Nothing was
    /// repaired or discarded.
    #[error("corrupt {path} at byte offset {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset in the file of the first bad byte or field.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },

    /// A service could not be served.
    #[error("cannot serve: {0}")]
    Serve(#[from] crate::rpc::ServeError),

    /// A remote call ended without a value.
    #[error("RPC failed: {0}")]
    Rpc(#[from] crate::rpc::RpcError),

    /// A bulk transfer did not deliver.
    #[error("chunk transfer failed: {0}")]
    Chunk(#[from] crate::chunk::TransferError),

    /// The replicated state machine refused or could not finish an
    /// operation (not the leader, proposal too large, storage, …).
    #[error("raft: {0}")]
    Raft(#[from] crate::raft::RaftError),

    /// The replicated state machine could not write or restore its state;
    /// the source is the state machine's own error (see
    /// [`StateMachineError`](crate::raft::StateMachineError)).
    #[error("state machine: {0}")]
    StateMachine(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),

    /// The runtime or node has been shut down.
    #[error("shut down: {0}")]
    Shutdown(String),
}

impl OctopiiError {
    /// Wraps an I/O error with the path it happened on.
    pub fn file(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        OctopiiError::File {
            path: path.into(),
            source,
        }
    }
}

impl OctopiiError {
    /// A [`Corrupt`](OctopiiError::Corrupt) error on `path` at `offset`.
    pub fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        OctopiiError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}

impl From<crate::raft::StateMachineError> for OctopiiError {
    fn from(e: crate::raft::StateMachineError) -> Self {
        OctopiiError::StateMachine(e.into_inner())
    }
}
