//! The receiving side of one transfer: where the bytes land, how they are
//! checked, and how they are put in place.
//!
//! Bytes for a file go to a temporary file next to the destination, are
//! fsynced, and are renamed into place only after the SHA-256 matched (then
//! the directory is fsynced too): no partial or unverified file ever appears
//! at the destination path. Hashing and writing run on a blocking thread,
//! fed 64 KiB buffers through a bounded channel, never on the threads that
//! drive the QUIC connections.

use std::fs::File;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::progress::Reporter;
use super::protocol::{BUFFER_SIZE, HASH_LEN, SIZE_LEN};
use super::resume;
use crate::rpc::{CallStream, RpcError};

/// Buffers queued between the stream and the writer thread.
const WRITE_AHEAD: usize = 16;

/// Resolves `name`, sent by a peer, to a path inside `root` (canonical).
///
/// Only plain relative names are taken: no `..`, `.`, root or prefix
/// component, and the parent directory must exist and, symlinks resolved,
/// still lie inside `root`.
pub(crate) fn resolve(root: &Path, name: &str) -> Result<PathBuf, String> {
    let relative = Path::new(name);
    if name.is_empty() || name.contains('\0') {
        return Err(format!("unusable file name {name:?}"));
    }
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(format!(
            "file name {name:?} must be a plain relative path (no `..`, `.` or leading `/`)"
        ));
    }
    let file_name = relative
        .file_name()
        .ok_or_else(|| format!("file name {name:?} names no file"))?;
    let parent = root.join(relative.parent().unwrap_or(Path::new("")));
    let parent = parent
        .canonicalize()
        .map_err(|e| format!("directory of {name:?}: {e}"))?;
    if !parent.starts_with(root) {
        return Err(format!(
            "{name:?} leads outside the receive directory (through a symlink)"
        ));
    }
    Ok(parent.join(file_name))
}

/// A temporary file on its way to `dest`. Dropped without
/// [`commit`](Self::commit) or [`discard`](Self::discard), it is kept if
/// it is a resumable partial file and removed otherwise.
#[derive(Debug)]
pub(crate) struct TempFile {
    file: File,
    path: PathBuf,
    dest: PathBuf,
    keep_if_interrupted: bool,
}

impl TempFile {
    /// Creates the temporary file for `dest`: a fresh uniquely named one,
    /// or for a resumable transfer the partial file, with the count and hash
    /// of the bytes it already holds.
    pub(crate) fn create(
        dest: &Path,
        size: u64,
        resumable: bool,
    ) -> std::io::Result<(TempFile, u64, Sha256)> {
        if resumable {
            let path = resume::partial_path(dest);
            let (file, held, hasher) = resume::open_partial(&path, size)?;
            let temp = TempFile {
                file,
                path,
                dest: dest.to_owned(),
                keep_if_interrupted: true,
            };
            return Ok((temp, held, hasher));
        }
        let parent = dest.parent().unwrap_or(Path::new("."));
        let (file, path) = tempfile::Builder::new()
            .prefix(".octopii-")
            .suffix(".tmp")
            .tempfile_in(parent)?
            .keep()
            .map_err(|e| e.error)?;
        let temp = TempFile {
            file,
            path,
            dest: dest.to_owned(),
            keep_if_interrupted: false,
        };
        Ok((temp, 0, Sha256::new()))
    }

    /// Renames the file into place and fsyncs its directory.
    pub(crate) fn commit(mut self) -> std::io::Result<PathBuf> {
        if let Err(e) = std::fs::rename(&self.path, &self.dest) {
            // Verified but unplaceable: not worth resuming, removed on drop.
            self.keep_if_interrupted = false;
            return Err(e);
        }
        // Renamed: nothing is left at `path` to remove.
        self.keep_if_interrupted = true;
        // A partial file of an older interrupted attempt is stale now.
        let partial = resume::partial_path(&self.dest);
        if partial != self.path {
            let _ = std::fs::remove_file(partial);
        }
        if let Some(dir) = self.dest.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(self.dest.clone())
    }

    /// Removes the file.
    pub(crate) fn discard(mut self) {
        self.keep_if_interrupted = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep_if_interrupted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Where the bytes of one transfer land.
#[derive(Debug)]
pub(crate) enum Sink {
    /// In memory, within the receiver's memory cap.
    Memory(BytesMut),
    /// In a temporary file.
    File(TempFile),
}

impl Sink {
    fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            Sink::Memory(buffer) => {
                buffer.extend_from_slice(bytes);
                Ok(())
            }
            Sink::File(temp) => temp
                .file
                .write_all(bytes)
                .map_err(|e| format!("writing {}: {e}", temp.path.display())),
        }
    }

    fn sync(&mut self) -> Result<(), String> {
        match self {
            Sink::Memory(_) => Ok(()),
            Sink::File(temp) => temp
                .file
                .sync_all()
                .map_err(|e| format!("fsync of {}: {e}", temp.path.display())),
        }
    }

    /// Throws the bytes away (removes a temporary file).
    pub(crate) fn discard(self) {
        if let Sink::File(temp) = self {
            temp.discard();
        }
    }
}

/// A sink whose bytes are all written (and fsynced), with their hash.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub(crate) sink: Sink,
    pub(crate) hash: [u8; HASH_LEN],
}

/// The writer thread of one transfer.
struct Writer {
    buffers: mpsc::Sender<Bytes>,
    thread: JoinHandle<Result<Sealed, String>>,
}

impl Writer {
    /// Starts hashing (continuing `hasher`) and writing into `sink`.
    fn spawn(mut sink: Sink, mut hasher: Sha256) -> Writer {
        let (buffers, mut incoming) = mpsc::channel::<Bytes>(WRITE_AHEAD);
        let thread = tokio::task::spawn_blocking(move || {
            while let Some(buffer) = incoming.blocking_recv() {
                hasher.update(&buffer);
                if let Err(reason) = sink.write(&buffer) {
                    sink.discard();
                    return Err(reason);
                }
            }
            if let Err(reason) = sink.sync() {
                sink.discard();
                return Err(reason);
            }
            Ok(Sealed {
                sink,
                hash: hasher.finalize().into(),
            })
        });
        Writer { buffers, thread }
    }

    /// Queues `buffer`; `false` when the thread stopped on an error.
    async fn push(&self, buffer: Bytes) -> bool {
        self.buffers.send(buffer).await.is_ok()
    }

    /// Waits until everything queued is written and synced.
    async fn finish(self) -> Result<Sealed, String> {
        drop(self.buffers);
        self.thread
            .await
            .map_err(|e| format!("writer thread failed: {e}"))?
    }
}

/// How the data phase of a transfer ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// All bytes arrived and their hash matches: ready to deliver.
    Verified(Sealed),
    /// All bytes arrived but their hash does not match (discarded).
    Mismatch,
    /// The receiver must answer status 2 with this reason (discarded).
    Failed(String),
    /// The stream broke: no verdict can be sent. A resumable partial file
    /// has been kept, fsynced.
    Broken(String),
}

/// Receives `[size][data from offset][hash]` into `sink`, hashing it after
/// the `held` bytes `hasher` already covers.
pub(crate) async fn receive_data(
    stream: &mut CallStream,
    offered: u64,
    held: u64,
    (sink, hasher): (Sink, Sha256),
    stall: Duration,
    reporter: &mut Reporter,
) -> Outcome {
    let writer = Writer::spawn(sink, hasher);
    let read = read_data(stream, offered, held, &writer, stall, reporter).await;
    let end = match read {
        Ok(end) => end,
        Err(Interrupted::Broken(reason)) => {
            // Whatever arrived is written and synced: a resumable partial
            // file keeps it, a fresh temporary file is removed on drop.
            let _ = writer.finish().await;
            return Outcome::Broken(reason);
        }
        Err(Interrupted::WriterStopped) => {
            return match writer.finish().await {
                Err(reason) => Outcome::Failed(reason),
                Ok(sealed) => {
                    sealed.sink.discard();
                    Outcome::Failed("the writer stopped".into())
                }
            };
        }
        Err(Interrupted::Failed(reason)) => {
            if let Ok(sealed) = writer.finish().await {
                sealed.sink.discard();
            }
            return Outcome::Failed(reason);
        }
    };
    match writer.finish().await {
        Err(reason) => Outcome::Failed(reason),
        Ok(sealed) if sealed.hash == end => Outcome::Verified(sealed),
        Ok(sealed) => {
            sealed.sink.discard();
            Outcome::Mismatch
        }
    }
}

enum Interrupted {
    Broken(String),
    Failed(String),
    WriterStopped,
}

/// Reads the size header, the data and the hash; returns the hash.
async fn read_data(
    stream: &mut CallStream,
    offered: u64,
    held: u64,
    writer: &Writer,
    stall: Duration,
    reporter: &mut Reporter,
) -> Result<[u8; HASH_LEN], Interrupted> {
    let mut watchdog = Watchdog::new(stall);
    let mut header = [0u8; SIZE_LEN];
    if !watchdog.fill(stream, &mut header).await? {
        return Err(Interrupted::Failed(
            "the stream ended before the size header".into(),
        ));
    }
    let size = u64::from_be_bytes(header);
    if size != offered {
        return Err(Interrupted::Failed(format!(
            "the size header announces {size} bytes but the request offered {offered}"
        )));
    }
    let mut got = held;
    let mut batch = BytesMut::with_capacity(BUFFER_SIZE);
    while got < size {
        let want = (size - got).min((BUFFER_SIZE - batch.len()) as u64) as usize;
        let Some(chunk) = watchdog.read(stream, want).await? else {
            return Err(Interrupted::Failed(format!(
                "the stream ended after {got} of {size} bytes"
            )));
        };
        got += chunk.len() as u64;
        let buffer = if batch.is_empty() && (chunk.len() == BUFFER_SIZE || got == size) {
            chunk
        } else {
            batch.extend_from_slice(&chunk);
            if batch.len() < BUFFER_SIZE && got < size {
                continue;
            }
            std::mem::replace(&mut batch, BytesMut::with_capacity(BUFFER_SIZE)).freeze()
        };
        if !writer.push(buffer).await {
            return Err(Interrupted::WriterStopped);
        }
        watchdog.progressed();
        reporter.update(got);
    }
    let mut hash = [0u8; HASH_LEN];
    if !watchdog.fill(stream, &mut hash).await? {
        return Err(Interrupted::Failed(format!(
            "the stream ended before the checksum (size header {size})"
        )));
    }
    if watchdog.read(stream, 1).await?.is_some() {
        return Err(Interrupted::Failed(format!(
            "more bytes arrived than the size header announced ({size})"
        )));
    }
    Ok(hash)
}

/// Breaks a transfer whose sender sends nothing for the stall timeout.
/// One timer, re-armed per 64 KiB buffer rather than per read: reads
/// return a packet's worth of bytes, and a timer each would cost more
/// than the read.
struct Watchdog {
    stall: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Watchdog {
    fn new(stall: Duration) -> Self {
        Watchdog {
            stall,
            timer: Box::pin(tokio::time::sleep(stall)),
        }
    }

    fn progressed(&mut self) {
        let deadline = tokio::time::Instant::now() + self.stall;
        self.timer.as_mut().reset(deadline);
    }

    /// Reads up to `max` bytes; `None` at a clean end of the sender's side.
    async fn read(
        &mut self,
        stream: &mut CallStream,
        max: usize,
    ) -> Result<Option<Bytes>, Interrupted> {
        tokio::select! {
            biased;
            read = stream.read_raw(max) => read.map_err(broken),
            () = &mut self.timer => Err(Interrupted::Broken(format!(
                "the sender sent nothing for {:?}",
                self.stall
            ))),
        }
    }

    /// Fills `buf`; `false` if the sender's side ended first.
    async fn fill(&mut self, stream: &mut CallStream, buf: &mut [u8]) -> Result<bool, Interrupted> {
        let mut at = 0;
        while at < buf.len() {
            let Some(chunk) = self.read(stream, buf.len() - at).await? else {
                return Ok(false);
            };
            buf[at..at + chunk.len()].copy_from_slice(&chunk);
            at += chunk.len();
        }
        self.progressed();
        Ok(true)
    }
}

fn broken(e: RpcError) -> Interrupted {
    Interrupted::Broken(e.to_string())
}
