//! The receiving side of one transfer: where the bytes land, how they are
//! checked, and how they are put in place.
//!
//! Bytes for a file go to a temporary file next to the destination, are
//! fsynced, and are renamed into place only after the SHA-256 matched (then
//! the directory is fsynced too): no partial or unverified file ever appears
//! at the destination path. Hashing and writing run on a blocking thread,
//! fed 64 KiB buffers through a bounded channel, never on the threads that
//! drive the QUIC connections; a transfer holds that thread only while
//! buffers wait to be written. Two kinds of transfer do their work where
//! the bytes arrive instead: one of at most one buffer into memory (less
//! work than handing it to a thread) and one into a file system that never
//! blocks (memory, as a simulation's disk is).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::blocking::run_blocking;
use super::fs_dir::FsTemp;
use super::progress::Reporter;
use super::protocol::{BUFFER_SIZE, HASH_LEN, SIZE_LEN};
use super::{names, recv_dir, resume};
use crate::rpc::{CallStream, RpcError};

/// Buffers queued between the stream and the writer thread.
const WRITE_AHEAD: usize = 16;

/// Resolves `name`, sent by a peer, to a path inside `root` (canonical).
///
/// Only plain relative names are taken: no `..`, `.`, root or prefix
/// component, none of the receiver's own temporary names (see `names`),
/// and the parent directory must exist and, symlinks resolved, still lie
/// inside `root`.
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
    if relative.iter().any(names::is_reserved) {
        return Err(format!(
            "file name {name:?} is reserved for the receiver's temporary files \
             (`{}…` or `…{}`)",
            names::TEMP_PREFIX,
            names::PARTIAL_SUFFIX
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

/// Device and inode: which file a name leads to.
type Identity = (u64, u64);

fn identity(meta: &std::fs::Metadata) -> Identity {
    (meta.dev(), meta.ino())
}

/// Why verified bytes did not end up durably in place.
#[derive(Debug)]
pub(crate) enum CommitError {
    /// Not renamed into place: the destination is as it was.
    NotPlaced(String),
    /// Renamed into place, but the directory fsync failed: the file may
    /// not survive a crash.
    NotDurable(String),
}

/// `dest` is in place, but syncing its directory failed with `e`.
pub(crate) fn not_durable(dest: &Path, e: std::io::Error) -> CommitError {
    CommitError::NotDurable(format!(
        "{} is in place but fsyncing its directory failed ({e}): \
         it may not survive a crash",
        dest.display()
    ))
}

/// A temporary file on its way to `dest`. Dropped without
/// [`commit`](Self::commit) or [`discard`](Self::discard), it is kept if
/// it is a resumable partial file and removed otherwise.
#[derive(Debug)]
pub(crate) struct TempFile {
    file: File,
    path: PathBuf,
    dest: PathBuf,
    /// The file written and hashed; `path` must still name it at commit.
    identity: Identity,
    remove_on_drop: bool,
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
        let (file, path, held, hasher) = if resumable {
            let path = names::partial_path(dest);
            let (file, held, hasher) = resume::open_partial(&path, size)?;
            (file, path, held, hasher)
        } else {
            let parent = dest.parent().unwrap_or(Path::new("."));
            let (file, path) = tempfile::Builder::new()
                .prefix(names::TEMP_PREFIX)
                .suffix(names::TEMP_SUFFIX)
                .tempfile_in(parent)?
                .keep()
                .map_err(|e| e.error)?;
            (file, path, 0, Sha256::new())
        };
        let temp = TempFile {
            identity: identity(&file.metadata()?),
            file,
            path,
            dest: dest.to_owned(),
            remove_on_drop: !resumable,
        };
        Ok((temp, held, hasher))
    }

    /// Renames the file into place and fsyncs its directory.
    pub(crate) fn commit(self) -> Result<PathBuf, CommitError> {
        self.commit_with(recv_dir::sync_dir)
    }

    /// [`commit`](Self::commit), fsyncing the directory with `sync_dir`.
    fn commit_with(
        mut self,
        sync_dir: impl FnOnce(&Path) -> std::io::Result<()>,
    ) -> Result<PathBuf, CommitError> {
        let not_placed = |e: String| CommitError::NotPlaced(e);
        // Only the file that was hashed may be published.
        match std::fs::symlink_metadata(&self.path) {
            Ok(meta) if identity(&meta) == self.identity => {}
            found => {
                // What the name leads to now is not ours to remove.
                self.remove_on_drop = false;
                let what = match found {
                    Ok(_) => "was replaced by another file".to_owned(),
                    Err(e) => format!("is gone ({e})"),
                };
                return Err(not_placed(format!(
                    "the temporary file {} {what}: nothing was put in place",
                    self.path.display()
                )));
            }
        }
        if let Err(e) = std::fs::rename(&self.path, &self.dest) {
            // Verified but unplaceable: not worth resuming, removed on drop.
            self.remove_on_drop = true;
            return Err(not_placed(format!("renaming into place: {e}")));
        }
        // Renamed: nothing is left at `path` to remove.
        self.remove_on_drop = false;
        // A partial file of an older interrupted attempt is stale now.
        let partial = names::partial_path(&self.dest);
        if partial != self.path {
            let _ = std::fs::remove_file(partial);
        }
        let dir = match self.dest.parent() {
            Some(dir) => dir,
            None => Path::new("."),
        };
        sync_dir(dir).map_err(|e| not_durable(&self.dest, e))?;
        Ok(self.dest.clone())
    }

    /// Removes the file.
    pub(crate) fn discard(mut self) {
        self.remove_on_drop = true;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.remove_on_drop {
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
    /// In a temporary file on the service's own file system.
    FsFile(FsTemp),
}

impl Sink {
    /// Whether writing `size` bytes here costs less than handing them to
    /// a blocking thread: at most one buffer into memory, or anything
    /// into a file system that never blocks.
    fn works_inline(&self, size: u64) -> bool {
        match self {
            Sink::Memory(_) => size <= BUFFER_SIZE as u64,
            Sink::File(_) => false,
            Sink::FsFile(temp) => temp.never_blocks(),
        }
    }

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
            Sink::FsFile(temp) => temp.write(bytes),
        }
    }

    fn sync(&mut self) -> Result<(), String> {
        match self {
            Sink::Memory(_) => Ok(()),
            Sink::File(temp) => temp
                .file
                .sync_all()
                .map_err(|e| format!("fsync of {}: {e}", temp.path.display())),
            Sink::FsFile(temp) => temp.sync(),
        }
    }

    /// Throws the bytes away (removes a temporary file).
    pub(crate) fn discard(self) {
        match self {
            Sink::Memory(_) => {}
            Sink::File(temp) => temp.discard(),
            Sink::FsFile(temp) => temp.discard(),
        }
    }
}

/// A sink whose bytes are all written (and fsynced), with their hash.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub(crate) sink: Sink,
    pub(crate) hash: [u8; HASH_LEN],
}

/// The bytes written so far and their hash.
struct Work {
    sink: Sink,
    hasher: Sha256,
}

impl Work {
    /// Hashes and writes `first`, then whatever else is queued; the
    /// sink is discarded on a failure.
    fn drain(mut self, first: Bytes, incoming: &mut mpsc::Receiver<Bytes>) -> Result<Work, String> {
        let mut next = Some(first);
        while let Some(buffer) = next {
            self.hasher.update(&buffer);
            if let Err(reason) = self.sink.write(&buffer) {
                self.sink.discard();
                return Err(reason);
            }
            next = incoming.try_recv().ok();
        }
        Ok(self)
    }

    fn seal(mut self) -> Result<Sealed, String> {
        if let Err(reason) = self.sink.sync() {
            self.sink.discard();
            return Err(reason);
        }
        Ok(Sealed {
            sink: self.sink,
            hash: self.hasher.finalize().into(),
        })
    }
}

/// The writer of one transfer. Hashing and writing run on a blocking
/// thread that is held while buffers are queued and given back when the
/// queue is empty: a transfer whose sender sends nothing holds no thread.
/// A sink that [works inline](Sink::works_inline) is written by the task.
struct Writer {
    buffers: mpsc::Sender<Bytes>,
    task: JoinHandle<Result<Sealed, String>>,
}

impl Writer {
    /// Starts hashing (continuing `hasher`) and writing `size` bytes into
    /// `sink`.
    fn spawn(sink: Sink, hasher: Sha256, size: u64) -> Writer {
        let (buffers, incoming) = mpsc::channel::<Bytes>(WRITE_AHEAD);
        let inline = sink.works_inline(size);
        let task = tokio::spawn(write_queued(incoming, Work { sink, hasher }, inline));
        Writer { buffers, task }
    }

    /// Queues `buffer`; `false` when the writer stopped on an error.
    async fn push(&self, buffer: Bytes) -> bool {
        self.buffers.send(buffer).await.is_ok()
    }

    /// Waits until everything queued is written and synced.
    async fn finish(self) -> Result<Sealed, String> {
        drop(self.buffers);
        self.task
            .await
            .map_err(|e| format!("writer task failed: {e}"))?
    }
}

async fn write_queued(
    mut incoming: mpsc::Receiver<Bytes>,
    mut work: Work,
    inline: bool,
) -> Result<Sealed, String> {
    while let Some(first) = incoming.recv().await {
        (work, incoming) = run_blocking(inline, move || {
            let work = work.drain(first, &mut incoming)?;
            Ok((work, incoming))
        })
        .await?;
    }
    run_blocking(inline, move || work.seal()).await
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
    let writer = Writer::spawn(sink, hasher, offered);
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

/// Breaks a transfer whose sender sends nothing for a whole stall period.
/// Reads only mark that bytes moved; one timer checks the mark once per
/// period (a timer re-armed per read would cost more than the read), so a
/// slow sender that keeps sending is never broken, and a silent one is
/// broken between one and two periods after its last byte.
struct Watchdog {
    stall: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    moved: bool,
}

impl Watchdog {
    fn new(stall: Duration) -> Self {
        Watchdog {
            stall,
            timer: Box::pin(tokio::time::sleep(stall)),
            moved: false,
        }
    }

    /// Reads up to `max` bytes; `None` at a clean end of the sender's side.
    async fn read(
        &mut self,
        stream: &mut CallStream,
        max: usize,
    ) -> Result<Option<Bytes>, Interrupted> {
        loop {
            tokio::select! {
                biased;
                read = stream.read_raw(max) => {
                    let read = read.map_err(broken)?;
                    self.moved |= read.as_ref().is_some_and(|chunk| !chunk.is_empty());
                    return Ok(read);
                }
                () = &mut self.timer => {
                    if !std::mem::take(&mut self.moved) {
                        return Err(Interrupted::Broken(format!(
                            "the sender sent nothing for {:?}",
                            self.stall
                        )));
                    }
                    let deadline = tokio::time::Instant::now() + self.stall;
                    self.timer.as_mut().reset(deadline);
                }
            }
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
        Ok(true)
    }
}

fn broken(e: RpcError) -> Interrupted {
    Interrupted::Broken(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_with(dest: &Path, bytes: &[u8], resumable: bool) -> TempFile {
        let (mut temp, _, _) = TempFile::create(dest, bytes.len() as u64, resumable).unwrap();
        temp.file.write_all(bytes).unwrap();
        temp
    }

    #[test]
    fn peers_cannot_name_the_receivers_temporary_files() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        for name in [
            ".foo.octopii-partial",
            "sub/.foo.octopii-partial",
            ".octopii-AbC123.tmp",
            "sub/.octopii-x",
        ] {
            let refused = resolve(&root, name).unwrap_err();
            assert!(refused.contains("reserved"), "{name}: {refused}");
        }
        assert_eq!(resolve(&root, "sub/foo").unwrap(), root.join("sub/foo"));
    }

    #[test]
    fn a_temporary_file_replaced_before_the_rename_is_not_published() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("foo");
        for resumable in [false, true] {
            let temp = temp_with(&dest, b"verified bytes", resumable);
            // Another file takes the temporary name after the bytes were hashed.
            let other = dir.path().join("other");
            std::fs::write(&other, b"someone else's bytes").unwrap();
            std::fs::rename(&other, &temp.path).unwrap();
            let path = temp.path.clone();
            let Err(CommitError::NotPlaced(reason)) = temp.commit() else {
                panic!("the replaced file was published");
            };
            assert!(reason.contains("replaced"), "{reason}");
            assert!(!dest.exists(), "resumable {resumable}");
            // Not ours: left where it is.
            assert_eq!(std::fs::read(&path).unwrap(), b"someone else's bytes");
            std::fs::remove_file(path).unwrap();
        }
    }

    #[test]
    fn a_failed_directory_fsync_says_the_file_is_in_place_but_not_durable() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("foo");
        let temp = temp_with(&dest, b"verified bytes", false);
        let committed = temp.commit_with(|_| Err(std::io::Error::other("injected EIO")));
        let Err(CommitError::NotDurable(reason)) = committed else {
            panic!("expected NotDurable, got {committed:?}");
        };
        assert!(
            reason.contains("in place") && reason.contains("injected EIO"),
            "{reason}"
        );
        assert_eq!(std::fs::read(&dest).unwrap(), b"verified bytes");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_idle_writer_holds_no_blocking_thread() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // Larger than one buffer: written on a blocking thread.
            let size = 2 * BUFFER_SIZE as u64;
            let writer = Writer::spawn(Sink::Memory(BytesMut::new()), Sha256::new(), size);
            assert!(writer.push(Bytes::from_static(b"first")).await);
            while writer.buffers.capacity() < WRITE_AHEAD {
                tokio::task::yield_now().await;
            }
            // The writer took its buffer and waits for more: the only
            // blocking thread must be free for other work.
            let other = tokio::task::spawn_blocking(|| "ran");
            let ran = tokio::time::timeout(Duration::from_secs(10), other).await;
            assert_eq!(ran.expect("the blocking thread is free").unwrap(), "ran");
            assert!(writer.push(Bytes::from_static(b" second")).await);
            let sealed = writer.finish().await.unwrap();
            assert_eq!(
                sealed.hash,
                <[u8; 32]>::from(Sha256::digest(b"first second"))
            );
            let Sink::Memory(bytes) = sealed.sink else {
                panic!("a memory sink");
            };
            assert_eq!(&bytes[..], b"first second");
        });
    }

    #[test]
    fn a_transfer_of_one_buffer_into_memory_needs_no_blocking_thread() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            // The only blocking thread is taken until the writer is done.
            let (release, held) = std::sync::mpsc::channel::<()>();
            let busy = tokio::task::spawn_blocking(move || held.recv());
            let writer = Writer::spawn(Sink::Memory(BytesMut::new()), Sha256::new(), 5);
            assert!(writer.push(Bytes::from_static(b"small")).await);
            let sealed = tokio::time::timeout(Duration::from_secs(10), writer.finish())
                .await
                .expect("written without a blocking thread")
                .unwrap();
            assert_eq!(sealed.hash, <[u8; 32]>::from(Sha256::digest(b"small")));
            release.send(()).unwrap();
            busy.await.unwrap().unwrap();
        });
    }
}
