//! [`ChunkSource`]: what a transfer sends, read once in 64 KiB buffers.
//!
//! The source is read from its start and each buffer hashed as it goes on
//! a blocking thread (so neither runs on the threads that drive QUIC
//! connections), held only while there is room for the buffers it reads;
//! they are handed on as [`Bytes`]: a buffer sent to several peers is
//! shared, never copied or read again. Two kinds of source are read where
//! they are sent from instead: at most one buffer in memory, and a file
//! on a file system that never blocks.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::TransferError;
use super::blocking::run_blocking;
use super::protocol::{BUFFER_SIZE, HASH_LEN};
use crate::wal::{WalFile, WalFs};

/// The bytes a transfer sends.
///
/// ```
/// use octopii::chunk::ChunkSource;
/// let from_disk = ChunkSource::File("backup.tar".into());
/// let from_memory = ChunkSource::Memory(bytes::Bytes::from_static(b"hello"));
/// # let _ = (from_disk, from_memory);
/// ```
#[derive(Clone)]
pub enum ChunkSource {
    /// A file, streamed from disk; never held in memory whole.
    File(PathBuf),
    /// Bytes already in memory, sent in zero-copy slices.
    Memory(Bytes),
    /// A file on the given file system rather than the real disk (raft
    /// sends its snapshots from the file system that holds its state; a
    /// simulation's is in memory).
    FileOn(Arc<dyn WalFs>, PathBuf),
}

impl std::fmt::Debug for ChunkSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkSource::File(path) => f.debug_tuple("File").field(path).finish(),
            ChunkSource::Memory(bytes) => f.debug_tuple("Memory").field(&bytes.len()).finish(),
            ChunkSource::FileOn(_, path) => f.debug_tuple("FileOn").field(path).finish(),
        }
    }
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
    FileOn(Arc<dyn WalFile>, PathBuf, bool),
}

impl Input {
    /// Whether reading `size` bytes costs less here than on a blocking
    /// thread.
    fn works_inline(&self, size: u64) -> bool {
        match self {
            Input::File(..) => false,
            Input::Memory(_) => size <= BUFFER_SIZE as u64,
            Input::FileOn(_, _, never_blocks) => *never_blocks,
        }
    }
}

impl ChunkSource {
    /// Whether opening it costs less here than on a blocking thread.
    pub(crate) fn opens_inline(&self) -> bool {
        match self {
            ChunkSource::File(_) => false,
            ChunkSource::Memory(_) => true,
            ChunkSource::FileOn(fs, _) => fs.never_blocks(),
        }
    }

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
            ChunkSource::FileOn(fs, path) => {
                let failed =
                    |e: std::io::Error| TransferError::Source(format!("{}: {e}", path.display()));
                let file = fs.open(&path).map_err(failed)?;
                Ok(OpenSource {
                    size: file.size().map_err(failed)?,
                    input: Input::FileOn(file, path, fs.never_blocks()),
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

    /// Starts reading: every buffer, then the hash, into `out`. It stops
    /// early when `out` closes (no peer is left).
    pub(crate) fn spawn_reader(self, out: mpsc::Sender<Piece>) {
        tokio::spawn(self.read_into(out));
    }

    /// Reads on a blocking thread as many buffers as `out` has room for,
    /// hands them on, and waits for room without holding the thread: a
    /// transfer whose peers take nothing pins no blocking thread.
    async fn read_into(self, out: mpsc::Sender<Piece>) {
        let mut reading = Reading {
            input: self.input,
            size: self.size,
            done: 0,
            hasher: Sha256::new(),
        };
        let inline = reading.input.works_inline(reading.size);
        loop {
            // One sender only: once room is seen, it stays.
            match out.reserve().await {
                Ok(permit) => drop(permit),
                Err(_) => return,
            }
            let room = out.capacity().max(1);
            let step = run_blocking(inline, move || {
                let pieces = reading.next_pieces(room);
                Ok((reading, pieces))
            })
            .await;
            let pieces = match step {
                Ok((rest, pieces)) => {
                    reading = rest;
                    pieces
                }
                Err(e) => {
                    let failed = Piece::Failed(format!("the reader thread failed: {e}"));
                    let _ = out.send(failed).await;
                    return;
                }
            };
            let mut ended = false;
            for piece in pieces {
                ended |= !matches!(piece, Piece::Data(_));
                if out.send(piece).await.is_err() {
                    return;
                }
            }
            if ended {
                return;
            }
        }
    }
}

/// A source part-way through being read and hashed.
struct Reading {
    input: Input,
    size: u64,
    done: u64,
    hasher: Sha256,
}

impl Reading {
    /// Up to `max` next buffers, followed by the hash once the source
    /// ends, or by the failure that stopped it.
    fn next_pieces(&mut self, max: usize) -> Vec<Piece> {
        let mut pieces = Vec::with_capacity(max + 1);
        while pieces.len() < max && self.done < self.size {
            match self.next_buffer() {
                Ok(buffer) => {
                    self.hasher.update(&buffer);
                    self.done += buffer.len() as u64;
                    pieces.push(Piece::Data(buffer));
                }
                Err(reason) => {
                    pieces.push(Piece::Failed(reason));
                    return pieces;
                }
            }
        }
        if self.done == self.size {
            pieces.push(Piece::End(self.hasher.finalize_reset().into()));
        }
        pieces
    }

    fn next_buffer(&mut self) -> Result<Bytes, String> {
        let want = (self.size - self.done).min(BUFFER_SIZE as u64) as usize;
        match &mut self.input {
            Input::Memory(bytes) => {
                let at = self.done as usize;
                Ok(bytes.slice(at..at + want))
            }
            Input::File(file, path) => {
                // `read_to_end` fills spare capacity without zeroing it first.
                let mut buffer = Vec::with_capacity(want);
                let failure = match file.take(want as u64).read_to_end(&mut buffer) {
                    Ok(n) if n == want => return Ok(Bytes::from(buffer)),
                    Ok(_) => "the file shrank while being read".to_owned(),
                    Err(e) => e.to_string(),
                };
                Err(format!(
                    "{}: {failure} (after {} of {} bytes)",
                    path.display(),
                    self.done,
                    self.size
                ))
            }
            Input::FileOn(file, path, _) => {
                let mut buffer = vec![0u8; want];
                let mut at = 0;
                while at < want {
                    match file.read_at(&mut buffer[at..], self.done + at as u64) {
                        Ok(0) => {
                            return Err(format!(
                                "{}: the file shrank while being read (after {} of {} bytes)",
                                path.display(),
                                self.done + at as u64,
                                self.size
                            ));
                        }
                        Ok(n) => at += n,
                        Err(e) => return Err(format!("{}: {e}", path.display())),
                    }
                }
                Ok(Bytes::from(buffer))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(source: ChunkSource, capacity: usize) -> Vec<Piece> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (out, mut pieces) = mpsc::channel(capacity);
            source.open().unwrap().spawn_reader(out);
            let mut all = Vec::new();
            while let Some(piece) = pieces.recv().await {
                all.push(piece);
            }
            all
        })
    }

    #[test]
    fn every_buffer_then_the_hash_of_the_whole() {
        for len in [0, 1, BUFFER_SIZE, 5 * BUFFER_SIZE + 3] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("source");
            std::fs::write(&path, &data).unwrap();
            let sources = [
                ChunkSource::Memory(Bytes::from(data.clone())),
                ChunkSource::File(path),
            ];
            for source in sources {
                let pieces = read_all(source, 2);
                let (last, buffers) = pieces.split_last().unwrap();
                let mut got = Vec::new();
                for piece in buffers {
                    let Piece::Data(buffer) = piece else {
                        panic!("only data before the end");
                    };
                    assert!(buffer.len() <= BUFFER_SIZE);
                    got.extend_from_slice(buffer);
                }
                assert_eq!(got, data, "len {len}");
                let Piece::End(hash) = last else {
                    panic!("the hash comes last");
                };
                assert_eq!(hash[..], Sha256::digest(&data)[..], "len {len}");
            }
        }
    }

    #[test]
    fn a_reader_whose_peers_take_nothing_holds_no_blocking_thread() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let data = Bytes::from(vec![7u8; 10 * BUFFER_SIZE]);
            let (out, mut pieces) = mpsc::channel(1);
            ChunkSource::Memory(data).open().unwrap().spawn_reader(out);
            // The reader filled the channel's one slot and waits for room.
            let first = pieces.recv().await;
            assert!(matches!(first, Some(Piece::Data(_))));
            while pieces.is_empty() {
                tokio::task::yield_now().await;
            }
            let other = tokio::task::spawn_blocking(|| "ran");
            let ran = tokio::time::timeout(std::time::Duration::from_secs(10), other).await;
            assert_eq!(ran.expect("the blocking thread is free").unwrap(), "ran");
            let mut count = 1;
            while let Some(piece) = pieces.recv().await {
                count += 1;
                if matches!(piece, Piece::End(_)) {
                    break;
                }
            }
            assert_eq!(count, 11);
        });
    }
}
