//! [`TransferError`]: why a transfer to one peer did not deliver.

use std::time::Duration;

use crate::rpc::{Code, RpcError};

/// Why a transfer to one peer failed. Cheap to clone, so every
/// [`TransferResult`](super::TransferResult) owns its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The receiver refused the transfer before any data (bad name,
    /// over its memory cap, destination not writable, no such service, …).
    #[error("refused by the receiver ({code}): {reason}")]
    Refused {
        /// The status code of the refusal.
        code: Code,
        /// The receiver's reason.
        reason: String,
    },
    /// Status `1`: the bytes the receiver got do not match the SHA-256.
    #[error("checksum mismatch: the receiver discarded the data")]
    ChecksumMismatch,
    /// Status `2`: the receiver failed after accepting (size header wrong,
    /// disk full, …); it kept nothing.
    #[error("the receiver failed: {0}")]
    Receiver(String),
    /// Status `3`: the data matched its SHA-256 and is at its destination,
    /// but the receiver could not fsync the directory, so it may not
    /// survive a crash there. Not delivered: send again to be sure.
    #[error("in place but not durable: {0}")]
    NotDurable(String),
    /// The peer took no data for a whole stall timeout, or gave no answer
    /// in time (the accept within the stall timeout; the verdict within
    /// the stall timeout plus the time the data took).
    #[error("the peer stalled: no progress for {0:?}")]
    Stalled(Duration),
    /// The source could not be read.
    #[error("reading the source failed: {0}")]
    Source(String),
    /// The peer could not be reached, or the connection or stream broke.
    #[error("connection failed: {0}")]
    Connection(String),
    /// The peer answered something that is not the chunk protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
}

impl From<RpcError> for TransferError {
    fn from(e: RpcError) -> Self {
        TransferError::Connection(e.to_string())
    }
}
