//! The ChunkService wire format, byte for byte in `docs/PROTOCOL.md`
//! ("ChunkService").
//!
//! A transfer is a call that owns its stream (`owns_stream = 1`) of method
//! [`METHOD`] of service [`SERVICE`]. Its arguments frame is a
//! [`TransferRequest`]; the receiver answers one response frame holding an
//! [`Accept`] (or a refusal status), then the sender writes
//! `[size: u64 big-endian][data from the accepted offset][SHA-256 of all
//! size bytes]` and finishes its side, and the receiver answers a
//! [`Status`] byte followed by a frame holding its reason in UTF-8.

use serde::{Deserialize, Serialize};

use crate::rpc::{CallStream, Code, RpcError};

/// The service name on the wire.
pub const SERVICE: &str = "Chunk";
/// The method name of a transfer.
pub const METHOD: &str = "transfer";
/// Bytes a file is read, hashed and written in.
pub const BUFFER_SIZE: usize = 64 * 1024;
/// Bytes of the size header.
pub const SIZE_LEN: usize = 8;
/// Bytes of the SHA-256 trailer.
pub const HASH_LEN: usize = 32;

/// Where the receiver puts the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Destination {
    /// Into memory, handed to the receiving application under `name`.
    Memory {
        /// A label for the application; not a path.
        name: String,
    },
    /// Into the file `path`, relative to the receiver's receive directory.
    File {
        /// Relative path with `/` separators; no `..`, no absolute path.
        path: String,
    },
}

impl Destination {
    /// The name or path, for messages and progress.
    pub fn name(&self) -> &str {
        match self {
            Destination::Memory { name } => name,
            Destination::File { path } => path,
        }
    }
}

/// The arguments frame of a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRequest {
    /// Where the bytes go.
    pub destination: Destination,
    /// Bytes the sender offers (the whole file, also on a resumed transfer).
    pub size: u64,
    /// Continue from a partial file kept by an interrupted transfer, and
    /// keep this one's partial file if it is interrupted in turn.
    pub resume: bool,
}

/// The receiver's first answer: it takes the transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accept {
    /// Bytes the receiver already holds (from a kept partial file); the
    /// sender sends data from this offset on. `0` unless resuming.
    pub offset: u64,
}

/// The receiver's verdict after the data, the transfer's acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// The data matched its SHA-256 and is in place.
    Ok = 0,
    /// The data did not match its SHA-256; nothing was kept.
    ChecksumMismatch = 1,
    /// The transfer failed on the receiver (reason attached); nothing was kept.
    Error = 2,
    /// The data matched its SHA-256 and is in place, but fsyncing its
    /// directory failed (reason attached): it may not survive a crash.
    NotDurable = 3,
}

impl Status {
    /// The status of a wire byte, if it is one.
    pub fn from_wire(byte: u8) -> Option<Status> {
        match byte {
            0 => Some(Status::Ok),
            1 => Some(Status::ChecksumMismatch),
            2 => Some(Status::Error),
            3 => Some(Status::NotDurable),
            _ => None,
        }
    }
}

/// The size header: `size` as 8 bytes, big-endian.
pub fn size_header(size: u64) -> [u8; SIZE_LEN] {
    size.to_be_bytes()
}

/// Writes the verdict: the status byte, then a frame holding `reason`.
pub async fn write_status(
    stream: &mut CallStream,
    status: Status,
    reason: &str,
) -> Result<(), RpcError> {
    stream.write_raw(&[status as u8]).await?;
    stream.write_frame(reason.as_bytes()).await
}

/// Reads the verdict written by [`write_status`].
pub async fn read_status(stream: &mut CallStream) -> Result<(Status, String), RpcError> {
    let mut byte = [0u8; 1];
    stream.read_raw_exact(&mut byte).await?;
    let status = Status::from_wire(byte[0])
        .ok_or_else(|| RpcError::new(Code::Internal, format!("unknown status byte {}", byte[0])))?;
    let reason = stream
        .read_frame()
        .await?
        .ok_or_else(|| RpcError::new(Code::Unavailable, "stream ended before the reason"))?;
    Ok((status, String::from_utf8_lossy(&reason).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    #[test]
    fn request_bytes_are_as_documented() {
        let request = TransferRequest {
            destination: Destination::File {
                path: "a.txt".into(),
            },
            size: 5,
            resume: false,
        };
        let mut expected = vec![1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(b"a.txt");
        expected.extend_from_slice(&[5, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(codec::encode(&request).unwrap(), expected);
        assert_eq!(
            codec::encode(&Accept { offset: 258 }).unwrap(),
            [2, 1, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(size_header(258), [0, 0, 0, 0, 0, 0, 1, 2]);
        for byte in 0..4 {
            assert_eq!(Status::from_wire(byte).map(|s| s as u8), Some(byte));
        }
        assert_eq!(Status::from_wire(4), None);
    }
}
