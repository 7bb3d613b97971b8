//! [`ChunkSource`]: what a transfer sends, read once in 64 KiB buffers.
//!
//! One blocking reader thread reads the source from its start, hashes each
//! buffer as it goes (so hashing never runs on the threads that drive QUIC
//! connections) and hands the buffers on as [`Bytes`]: a buffer sent to
//! several peers is shared, never copied or read again.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::TransferError;
use super::protocol::{BUFFER_SIZE, HASH_LEN};

/// The bytes a transfer sends.
///
/// ```
/// use octopii::chunk::ChunkSource;
/// let from_disk = ChunkSource::File("backup.tar".into());
/// let from_memory = ChunkSource::Memory(bytes::Bytes::from_static(b"hello"));
/// # let _ = (from_disk, from_memory);
/// ```
#[derive(Debug, Clone)]
pub enum ChunkSource {
    /// A file, streamed from disk; never held in memory whole.
    File(PathBuf),
    /// Bytes already in memory, sent in zero-copy slices.
    Memory(Bytes),
}

/// What the reader thread hands on, in order.
#[derive(Debug, Clone)]
pub(crate) enum Piece {
    /// The next buffer of the source.
    Data(Bytes),
    /// The source ended; its SHA-256.
    End([u8; HASH_LEN]),
    /// Reading failed; nothing more follows.
    Failed(String),
}

/// A source opened for reading, its size known.
pub(crate) struct OpenSource {
    input: Input,
    size: u64,
}

enum Input {
    File(File, PathBuf),
    Memory(Bytes),
}

impl ChunkSource {
    /// Opens the source and learns its size.
    pub(crate) fn open(self) -> Result<OpenSource, TransferError> {
        match self {
            ChunkSource::Memory(bytes) => Ok(OpenSource {
                size: bytes.len() as u64,
                input: Input::Memory(bytes),
            }),
            ChunkSource::File(path) => {
                let failed =
                    |e: std::io::Error| TransferError::Source(format!("{}: {e}", path.display()));
                let file = File::open(&path).map_err(failed)?;
                let meta = file.metadata().map_err(failed)?;
                if !meta.is_file() {
                    return Err(TransferError::Source(format!(
                        "{}: not a regular file",
                        path.display()
                    )));
                }
                Ok(OpenSource {
                    size: meta.len(),
                    input: Input::File(file, path),
                })
            }
        }
    }
}

impl OpenSource {
    /// Bytes the source holds.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Starts the reader thread: every buffer, then the hash, into `out`.
    /// It stops early when `out` closes (no peer is left).
    pub(crate) fn spawn_reader(self, out: mpsc::Sender<Piece>) {
        tokio::task::spawn_blocking(move || {
            let piece = match self.read_all(&out) {
                Ok(Some(hash)) => Piece::End(hash),
                Ok(None) => return,
                Err(reason) => Piece::Failed(reason),
            };
            let _ = out.blocking_send(piece);
        });
    }

    /// `Ok(None)` when the receiving side went away.
    fn read_all(self, out: &mpsc::Sender<Piece>) -> Result<Option<[u8; HASH_LEN]>, String> {
        let mut hasher = Sha256::new();
        match self.input {
            Input::Memory(bytes) => {
                let mut at = 0;
                while at < bytes.len() {
                    let end = (at + BUFFER_SIZE).min(bytes.len());
                    let buffer = bytes.slice(at..end);
                    hasher.update(&buffer);
                    if out.blocking_send(Piece::Data(buffer)).is_err() {
                        return Ok(None);
                    }
                    at = end;
                }
            }
            Input::File(mut file, path) => {
                let mut left = self.size;
                while left > 0 {
                    let want = left.min(BUFFER_SIZE as u64) as usize;
                    // `read_to_end` fills spare capacity without zeroing it first.
                    let mut buffer = Vec::with_capacity(want);
                    let read = (&mut file).take(want as u64).read_to_end(&mut buffer);
                    let failure = match read {
                        Ok(n) if n == want => None,
                        Ok(_) => Some("the file shrank while being read".to_owned()),
                        Err(e) => Some(e.to_string()),
                    };
                    if let Some(failure) = failure {
                        return Err(format!(
                            "{}: {failure} (after {} of {} bytes)",
                            path.display(),
                            self.size - left,
                            self.size
                        ));
                    }
                    hasher.update(&buffer);
                    if out.blocking_send(Piece::Data(Bytes::from(buffer))).is_err() {
                        return Ok(None);
                    }
                    left -= want as u64;
                }
            }
        }
        Ok(Some(hasher.finalize().into()))
    }
}
