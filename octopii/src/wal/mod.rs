//! The node's write-ahead log: an append-only sequence of records, each
//! durable on disk before its append resolves.
//!
//! Records are numbered by a `u64` index. A new log starts at index 1 (the
//! Raft convention: 0 means "nothing"); an opened log continues from what
//! its files say. [`Wal::truncate_suffix`] drops a conflicting tail, as
//! Raft needs when a leader overwrites it, and [`Wal::compact_prefix`]
//! deletes whole segments below a snapshot.
//!
//! # Why group commit
//!
//! Durability costs one `fdatasync` per acknowledgement, and a disk does a
//! bounded number of those per second (hundreds to a few thousand) no
//! matter how little each one carries. So a dedicated writer thread
//! (`octopii-wal`) takes every append that queued up while the previous
//! `fdatasync` ran, writes them all at once and shares the next
//! `fdatasync` among them ([`FlushPolicy::GroupCommit`], the default). A
//! single writer pays one sync per record, as it must; a hundred concurrent
//! writers pay about one sync per hundred records (`octopii bench wal`
//! measures it). A lone writer on a quiet log skips the hand-off: its
//! append is written and synced by the calling thread, inside
//! [`tokio::task::block_in_place`] on a multi-threaded tokio runtime (never
//! on a current-thread one), and the future is ready when the call returns
//! (`docs/WAL.md` has the rules). A file system in memory
//! ([`WalFs::never_blocks`]) is written on the appending thread instead,
//! one request at a time, so a simulation that schedules every task also
//! schedules the writes.
//!
//! # Why a failed sync poisons the log
//!
//! When `write` or `fdatasync` fails, Linux may already have dropped the
//! dirty pages, and marks them clean: a retried `fdatasync` can then
//! succeed without the data ever reaching the disk. Retrying would
//! acknowledge records that are not durable. So after any failed write,
//! sync, segment creation, truncation or deletion the log refuses everything (every
//! later call returns an error naming the first failure), and the way back
//! is to drop it and [`Wal::open`] it again, which trusts only what it can
//! read back from disk.
//!
//! # Recovery
//!
//! [`Wal::open`] reads every segment back. A torn tail in the last segment
//! (a record cut short, or one with a sector of zeros, with nothing valid
//! after it) is what a crash mid-write leaves: it is cut off, logged with
//! `tracing::warn!` and reported by [`Wal::recovery_report`]. A complete
//! record failing its CRC, a bad record anywhere else, a missing segment
//! or a gap in the indexes refuses the open, with a [`WalError`] naming
//! the file, the byte offset and what is wrong there. Directories the log
//! creates are made durable ([`create_dir_durable`]). The rules are spelt
//! out in `docs/WAL.md`, with the on-disk format byte by byte
//! (little-endian throughout).
//!
//! # Concurrency
//!
//! [`Wal`] is cheap to clone and `Send + Sync`. Its futures need no
//! particular runtime. Reads ([`Wal::read`], [`Wal::iter_from`]) are
//! blocking file reads done by the calling thread beside the writer; they
//! see records once they are durable.

mod error;
pub(crate) mod format;
pub(crate) mod fs;
mod metrics;
mod options;
mod reader;
pub(crate) mod recovery;
mod segment;
mod state;
mod writer;

use std::collections::VecDeque;
use std::future::Future;
use std::ops::{Bound, Range, RangeBounds};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

pub use error::{Corruption, FileOp, NotTorn, RecordFault, WalError};
pub use fs::{DirLock, StdFs, WalFile, WalFs, create_dir_durable};
pub use options::{FlushPolicy, MAX_SIZE_LIMIT, WalOptions};
pub use recovery::{RecoveryReport, TornTail};

use error::Result;
use state::{Counters, Shared, View};
use writer::{AppendReply, Request, Writer};

/// Records read per step by [`WalIter`].
const ITER_CHUNK_RECORDS: u64 = 1024;
/// Bytes read per step by [`WalIter`] (at least one record is always read).
const ITER_CHUNK_BYTES: usize = 1024 * 1024;

/// A write-ahead log in one directory. Clones share the same log.
///
/// ```
/// use octopii::wal::{Wal, WalOptions};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let runtime = tokio::runtime::Builder::new_current_thread().build()?;
///
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// runtime.block_on(async {
///     assert_eq!(wal.append(b"first").await?, 1);
///     assert_eq!(wal.append_batch([&b"second"[..], b"third"]).await?, 2..4);
///     // Raft: a new leader overwrites index 3 onwards.
///     wal.truncate_suffix(3).await?;
///     assert_eq!(wal.append(b"third, again").await?, 3);
///     Ok::<_, octopii::wal::WalError>(())
/// })?;
/// assert_eq!(wal.read(2..=3)?, vec![b"second".to_vec(), b"third, again".to_vec()]);
/// drop(wal);
///
/// // Reopening recovers every acknowledged record.
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// assert_eq!((wal.first_index(), wal.last_index()), (1, 3));
/// for record in wal.iter_from(1) {
///     let (index, bytes) = record?;
///     println!("{index}: {} bytes", bytes.len());
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    writer: Writing,
    report: RecoveryReport,
    options: WalOptions,
    _lock: DirLock,
}

/// Where the writer runs.
enum Writing {
    /// On a thread of its own, fed through a channel (a real disk).
    Thread {
        tx: Option<Sender<Request>>,
        thread: Option<JoinHandle<()>>,
        /// Shared with the thread, which locks it for each batch.
        writer: Arc<Mutex<Writer>>,
        /// Requests sent to the thread and not yet taken into a batch.
        queued: Arc<AtomicUsize>,
    },
    /// On the thread that makes the request ([`WalFs::never_blocks`]),
    /// answering each request [`WalFs::sync_delay`] after it is written.
    Inline {
        writer: Box<Mutex<Writer>>,
        fs: Arc<dyn WalFs>,
    },
}

impl Drop for Inner {
    fn drop(&mut self) {
        let Writing::Thread { tx, thread, .. } = &mut self.writer else {
            return;
        };
        // The writer finishes what is queued, then sees the channel closed.
        drop(tx.take());
        if let Some(thread) = thread.take() {
            if thread.join().is_err() {
                tracing::error!("the WAL writer thread panicked");
            }
        }
    }
}

/// Counters since the log was opened. See [`Wal::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WalStats {
    /// Records acknowledged by appends.
    pub records_appended: u64,
    /// Bytes written to segment files (frames included).
    pub bytes_written: u64,
    /// Batches made durable and acknowledged.
    pub commits: u64,
    /// `fdatasync` calls on segment files.
    pub fsyncs: u64,
}

impl Wal {
    /// Opens (or creates) the log in `dir`, recovering it as the module docs
    /// describe. Blocks while it reads the log back.
    pub fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<Wal> {
        Wal::open_with_fs(dir, options, Arc::new(StdFs))
    }

    /// Like [`Wal::open`], with every file operation going through `fs`
    /// (for tests that inject failures).
    pub fn open_with_fs(
        dir: impl AsRef<Path>,
        options: WalOptions,
        fs: Arc<dyn WalFs>,
    ) -> Result<Wal> {
        options.validate()?;
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_durable(fs.as_ref(), &dir)
            .map_err(|e| WalError::io(FileOp::CreateDir, &dir, e))?;
        let lock = fs.lock_dir(&dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => WalError::Locked { dir: dir.clone() },
            _ => WalError::io(FileOp::Lock, &dir, e),
        })?;
        let recovered = recovery::recover(fs.as_ref(), &dir, &options)?;
        let report = recovered.report;
        let shared = Arc::new(Shared {
            dir,
            max_record_size: options.max_record_size,
            view: RwLock::new(View {
                segments: recovered.segments,
                durable_next: report.last_index + 1,
                failure: None,
            }),
            counters: Counters::default(),
        });
        let inline = fs.never_blocks();
        let writer = Writer::new(Arc::clone(&fs), Arc::clone(&shared), options.clone());
        let writer = if inline {
            Writing::Inline {
                writer: Box::new(Mutex::new(writer)),
                fs,
            }
        } else {
            let (tx, rx) = std::sync::mpsc::channel();
            let writer = Arc::new(Mutex::new(writer));
            let queued = Arc::new(AtomicUsize::new(0));
            let thread = {
                let (writer, queued) = (Arc::clone(&writer), Arc::clone(&queued));
                std::thread::Builder::new()
                    .name("octopii-wal".to_string())
                    .spawn(move || Writer::run(writer, queued, rx))
                    .map_err(WalError::Spawn)?
            };
            Writing::Thread {
                tx: Some(tx),
                thread: Some(thread),
                writer,
                queued,
            }
        };
        tracing::debug!(
            dir = %shared.dir.display(),
            first = report.first_index,
            last = report.last_index,
            segments = report.segments,
            "WAL opened"
        );
        Ok(Wal {
            inner: Arc::new(Inner {
                shared,
                writer,
                report,
                options,
                _lock: lock,
            }),
        })
    }

    /// Appends one record; resolves to its index once it is durable (as the
    /// [`FlushPolicy`] defines).
    ///
    /// The record is queued when this is called, so appends get indexes in
    /// call order, and dropping the future does not cancel the append. On a
    /// quiet log the call itself writes and syncs the record (see the module
    /// docs), so it may block for one `fdatasync`.
    pub fn append(&self, record: &[u8]) -> WalFuture<u64> {
        self.submit_append(std::iter::once(record), AppendReply::One)
    }

    /// Appends records with consecutive indexes in one request; resolves to
    /// their index range once all are durable.
    ///
    /// The records are written together but the batch is not atomic across
    /// a crash: a prefix of it may survive one that comes before the future
    /// resolves. An empty batch resolves to an empty range.
    pub fn append_batch<I>(&self, records: I) -> WalFuture<Range<u64>>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        self.submit_append(records, AppendReply::Many)
    }

    fn submit_append<I, T>(
        &self,
        records: I,
        reply: impl FnOnce(oneshot::Sender<Result<T>>) -> AppendReply,
    ) -> WalFuture<T>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        if let Err(e) = self.inner.shared.check_usable() {
            return WalFuture::failed(e);
        }
        let max = self.inner.options.max_record_size;
        let mut data = Vec::new();
        let mut frames = Vec::new();
        for record in records {
            let record = record.as_ref();
            if record.len() > max as usize {
                return WalFuture::failed(WalError::RecordTooLarge {
                    len: record.len(),
                    max,
                });
            }
            data.extend_from_slice(record);
            frames.push((record.len() as u32, format::payload_crc(record)));
        }
        let (tx, rx) = oneshot::channel();
        self.request(
            Request::Append {
                data,
                records: frames,
                reply: reply(tx),
            },
            rx,
        )
    }

    /// Makes everything appended so far durable, whatever the policy.
    pub fn sync(&self) -> WalFuture<()> {
        let (tx, rx) = oneshot::channel();
        self.request(Request::Sync(tx), rx)
    }

    /// Removes every record with index `>= from_index`, durably; the next
    /// append gets `from_index`. `from_index` may be anything from
    /// [`first_index`](Wal::first_index) to `last_index + 1` (a no-op).
    ///
    /// Waits for appends queued before it. A concurrent read of the removed
    /// records may fail.
    pub fn truncate_suffix(&self, from_index: u64) -> WalFuture<()> {
        let (tx, rx) = oneshot::channel();
        self.request(Request::TruncateSuffix(from_index, tx), rx)
    }

    /// Deletes every whole segment whose records all have indexes below
    /// `upto_index`; [`first_index`](Wal::first_index) moves to the first
    /// record of the oldest segment kept (at most `upto_index`). The segment
    /// being appended to is never deleted.
    pub fn compact_prefix(&self, upto_index: u64) -> WalFuture<()> {
        let (tx, rx) = oneshot::channel();
        self.request(Request::CompactPrefix(upto_index, tx), rx)
    }

    fn request<T>(&self, request: Request, rx: oneshot::Receiver<Result<T>>) -> WalFuture<T> {
        if let Err(e) = self.inner.shared.check_usable() {
            return WalFuture::failed(e);
        }
        match &self.inner.writer {
            Writing::Thread {
                tx, writer, queued, ..
            } => {
                let Err(request) = serve_here_if_quiet(writer, queued, request) else {
                    return WalFuture::waiting(rx);
                };
                queued.fetch_add(1, Ordering::AcqRel);
                match tx.as_ref().map(|tx| tx.send(request)) {
                    Some(Ok(())) => WalFuture::waiting(rx),
                    _ => {
                        queued.fetch_sub(1, Ordering::AcqRel);
                        WalFuture::failed(WalError::WriterStopped)
                    }
                }
            }
            Writing::Inline { writer, fs } => {
                // The reply is sent before `serve` returns: the future is
                // ready, or once the disk's delay has passed.
                writer
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .serve(request);
                match fs.sync_delay() {
                    Duration::ZERO => WalFuture::waiting(rx),
                    delay => WalFuture::delayed(delay, rx),
                }
            }
        }
    }

    /// Reads the records in `range`, checking each one's CRC. Every index in
    /// the range must be in the log. Blocks while it reads the files.
    pub fn read(&self, range: impl RangeBounds<u64>) -> Result<Vec<Vec<u8>>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => self.first_index(),
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => self.last_index() + 1,
        };
        reader::read_range(&self.inner.shared, start, end, usize::MAX)
    }

    /// Reads the record at `index`.
    pub fn get(&self, index: u64) -> Result<Vec<u8>> {
        let mut records = self.read(index..=index)?;
        records.pop().ok_or_else(|| WalError::PastEnd {
            index,
            last: self.last_index(),
        })
    }

    /// Iterates over the records from `start_index` to the last one at the
    /// time of the call, reading a chunk at a time. Yields an error first if
    /// `start_index` is outside `first_index..=last_index + 1`.
    pub fn iter_from(&self, start_index: u64) -> WalIter {
        let shared = Arc::clone(&self.inner.shared);
        let (first, end) = {
            let view = shared.read_view();
            (view.first_index(), view.durable_next)
        };
        let error = if start_index < first {
            Some(WalError::Compacted {
                index: start_index,
                first,
            })
        } else if start_index > end {
            Some(WalError::PastEnd {
                index: start_index,
                last: end - 1,
            })
        } else {
            shared.check_usable().err()
        };
        WalIter {
            shared,
            next: start_index,
            end,
            buffered: VecDeque::new(),
            error,
            done: false,
        }
    }

    /// Index of the first record in the log (of the next record, when the
    /// log is empty).
    pub fn first_index(&self) -> u64 {
        self.inner.shared.read_view().first_index()
    }

    /// Index of the last durable record; `first_index() - 1` when the log is
    /// empty (0 for a new log).
    pub fn last_index(&self) -> u64 {
        self.inner.shared.read_view().durable_next - 1
    }

    /// What [`Wal::open`] found and repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// Counters since the log was opened.
    pub fn stats(&self) -> WalStats {
        self.inner.shared.counters.snapshot()
    }

    /// `Ok` while the log is usable; otherwise the error every call returns,
    /// naming the failure that made it unusable.
    pub fn check_usable(&self) -> Result<()> {
        self.inner.shared.check_usable()
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// The options the log was opened with.
    pub fn options(&self) -> &WalOptions {
        &self.inner.options
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let view = self.inner.shared.read_view();
        f.debug_struct("Wal")
            .field("dir", &self.inner.shared.dir)
            .field("first_index", &view.first_index())
            .field("last_index", &(view.durable_next - 1))
            .field("segments", &view.segments.len())
            .field("failure", &view.failure)
            .finish()
    }
}

/// Serves `request` on this thread when the log is quiet (see the module
/// docs), sparing the two thread wake-ups of a hand-off; gives it back
/// otherwise.
fn serve_here_if_quiet(
    writer: &Mutex<Writer>,
    queued: &AtomicUsize,
    request: Request,
) -> std::result::Result<(), Request> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if queued.load(Ordering::Acquire) != 0 {
        return Err(request);
    }
    // A current-thread runtime's one thread runs every task: never block it.
    let flavor = Handle::try_current().ok().map(|h| h.runtime_flavor());
    if flavor == Some(RuntimeFlavor::CurrentThread) {
        return Err(request);
    }
    let Ok(mut writer) = writer.try_lock() else {
        return Err(request);
    };
    // Under the lock, nothing queued means every earlier request is written.
    if !writer.serves_a_lone_request() || queued.load(Ordering::Acquire) != 0 {
        return Err(request);
    }
    match flavor {
        // Moves the worker's other tasks to another thread while this one
        // waits for the disk.
        Some(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| writer.serve(request)),
        _ => writer.serve(request),
    }
    Ok(())
}

/// The answer to a request made of a [`Wal`]: resolves once the writer has
/// done it (for appends, once the records are durable).
///
/// The request is queued when the `Wal` method is called; dropping this
/// future does not cancel it. Works on any async runtime.
///
/// # Panics
///
/// When polled again after it resolved, as futures may.
#[must_use = "the request is already queued; await this to learn whether it succeeded"]
pub struct WalFuture<T> {
    state: FutureState<T>,
}

enum FutureState<T> {
    Failed(Option<WalError>),
    Waiting(oneshot::Receiver<Result<T>>),
    /// Answered, but the caller hears of it only once the sleep ends.
    Delayed(Pin<Box<tokio::time::Sleep>>, oneshot::Receiver<Result<T>>),
}

impl<T> WalFuture<T> {
    fn failed(error: WalError) -> Self {
        WalFuture {
            state: FutureState::Failed(Some(error)),
        }
    }

    fn waiting(rx: oneshot::Receiver<Result<T>>) -> Self {
        WalFuture {
            state: FutureState::Waiting(rx),
        }
    }

    fn delayed(delay: Duration, rx: oneshot::Receiver<Result<T>>) -> Self {
        WalFuture {
            state: FutureState::Delayed(Box::pin(tokio::time::sleep(delay)), rx),
        }
    }
}

impl<T> Future for WalFuture<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let state = &mut self.get_mut().state;
        if let FutureState::Delayed(sleep, _) = state {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        match state {
            FutureState::Failed(error) => Poll::Ready(Err(error
                .take()
                .expect("WalFuture polled after it completed"))),
            FutureState::Waiting(rx) | FutureState::Delayed(_, rx) => match Pin::new(rx).poll(cx) {
                Poll::Ready(Ok(result)) => Poll::Ready(result),
                Poll::Ready(Err(_)) => Poll::Ready(Err(WalError::WriterStopped)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<T> std::fmt::Debug for WalFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            FutureState::Failed(_) => "failed",
            FutureState::Waiting(_) => "waiting",
            FutureState::Delayed(..) => "delayed",
        };
        f.debug_struct("WalFuture").field("state", &state).finish()
    }
}

/// Iterator over records and their indexes; see [`Wal::iter_from`].
pub struct WalIter {
    shared: Arc<Shared>,
    next: u64,
    end: u64,
    buffered: VecDeque<Vec<u8>>,
    error: Option<WalError>,
    done: bool,
}

impl Iterator for WalIter {
    type Item = Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(error) = self.error.take() {
            self.done = true;
            return Some(Err(error));
        }
        if self.done {
            return None;
        }
        if self.buffered.is_empty() {
            if self.next >= self.end {
                self.done = true;
                return None;
            }
            let chunk_end = self.end.min(self.next.saturating_add(ITER_CHUNK_RECORDS));
            match reader::read_range(&self.shared, self.next, chunk_end, ITER_CHUNK_BYTES) {
                Ok(records) => self.buffered = records.into(),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        let record = self.buffered.pop_front()?;
        let index = self.next;
        self.next += 1;
        Some(Ok((index, record)))
    }
}

impl std::fmt::Debug for WalIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalIter")
            .field("next", &self.next)
            .field("end", &self.end)
            .finish()
    }
}

// The handle is shareable across threads and its futures can be spawned.
const _: () = {
    const fn shareable<T: Send + Sync + Clone + 'static>() {}
    const fn spawnable<T: Future + Send + 'static>() {}
    shareable::<Wal>();
    spawnable::<WalFuture<u64>>();
    spawnable::<WalFuture<Range<u64>>>();
};
