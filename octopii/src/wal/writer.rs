//! The writer: group commit, segment roll-over, truncation.
//!
//! The writer owns the active segment, behind a lock. Its thread blocks for
//! a request, then takes everything else already queued (and, by policy,
//! waits a little for more), writes it all, runs one `fdatasync`, publishes
//! the new records to readers and only then answers every request of the
//! batch. Appends that arrive while that `fdatasync` runs queue up and share
//! the next one. A lone appender that finds the log quiet serves its own
//! request instead, as a batch of one ([`Writer::serve`]).
//!
//! A failed write, sync, creation or truncation makes the writer record the
//! cause and answer every request from then on with an error naming it.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

use super::error::{FileOp, Result, WalError};
use super::format::{self, frame_len};
use super::fs::{WalFile, WalFs};
use super::metrics::WalMetrics;
use super::options::{FlushPolicy, WalOptions};
use super::segment;
use super::state::{Counters, Shared};

/// Encoded bytes buffered before they are written out mid-batch.
const WRITE_CHUNK: usize = 1024 * 1024;
/// Batch byte cap of the policies that have none of their own.
const DEFAULT_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Where an append's answer goes.
pub(crate) enum AppendReply {
    /// [`Wal::append`](super::Wal::append): the record's index.
    One(oneshot::Sender<Result<u64>>),
    /// [`Wal::append_batch`](super::Wal::append_batch): the indexes.
    Many(oneshot::Sender<Result<Range<u64>>>),
}

impl AppendReply {
    fn send(self, result: Result<Range<u64>>) {
        // A caller that dropped its future no longer wants the answer.
        match self {
            AppendReply::One(tx) => {
                let _ = tx.send(result.map(|r| r.start));
            }
            AppendReply::Many(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

/// A request to the writer thread.
pub(crate) enum Request {
    /// Append records; `data` holds their payloads back to back and `records`
    /// each one's length and [`format::payload_crc`].
    Append {
        data: Vec<u8>,
        records: Vec<(u32, u32)>,
        reply: AppendReply,
    },
    /// Sync everything written so far.
    Sync(oneshot::Sender<Result<()>>),
    /// Remove every record with index `>= from`.
    TruncateSuffix(u64, oneshot::Sender<Result<()>>),
    /// Delete whole segments whose records are all below the index.
    CompactPrefix(u64, oneshot::Sender<Result<()>>),
}

/// The segment records are appended to.
struct Active {
    seq: u64,
    salt: u32,
    path: PathBuf,
    file: Arc<dyn WalFile>,
    /// Records in the segment, including buffered ones.
    records: u64,
    /// File offset where the unwritten buffer starts.
    written: u64,
}

/// What a batch owes its requesters once it is durable.
#[derive(Default)]
struct Batch {
    appends: Vec<(AppendReply, Range<u64>)>,
    syncs: Vec<oneshot::Sender<Result<()>>>,
    bytes: usize,
    records: u64,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.appends.is_empty() && self.syncs.is_empty()
    }
}

/// The writer thread's state.
pub(crate) struct Writer {
    fs: Arc<dyn WalFs>,
    shared: Arc<Shared>,
    options: WalOptions,
    active: Active,
    /// Encoded records not yet written to `active`.
    buf: Vec<u8>,
    /// Boundaries of records appended to `active` not yet given to readers.
    new_bounds: Vec<u32>,
    next_index: u64,
    /// Data written since the last sync.
    dirty: bool,
    /// Records appended since the last sync, for `octopii_wal_records_per_fsync`.
    unsynced_records: u64,
    metrics: WalMetrics,
    last_sync: Instant,
    failure: Option<Arc<WalError>>,
    /// The last batch answered one request: nobody else was appending.
    quiet: bool,
}

impl Writer {
    /// A writer appending to the last segment of the shared view.
    pub fn new(fs: Arc<dyn WalFs>, shared: Arc<Shared>, options: WalOptions) -> Self {
        let (active, next_index) = {
            let view = shared.read_view();
            let last = view
                .segments
                .last()
                .expect("recovery leaves at least one segment");
            let active = Active {
                seq: last.seq,
                salt: last.salt,
                path: last.path.clone(),
                file: Arc::clone(&last.file),
                records: last.bounds.len() as u64 - 1,
                written: last.end_offset(),
            };
            (active, last.next_index())
        };
        Writer {
            metrics: WalMetrics::new(&shared.dir),
            fs,
            shared,
            options,
            active,
            buf: Vec::new(),
            new_bounds: Vec::new(),
            next_index,
            dirty: false,
            unsynced_records: 0,
            last_sync: Instant::now(),
            failure: None,
            quiet: true,
        }
    }

    /// Whether a request may be served at once by its caller: the last batch
    /// answered a single request, so this one is likely alone too, and the
    /// policy would not wait for company anyway.
    pub fn serves_a_lone_request(&self) -> bool {
        let waits = match self.options.flush_policy {
            FlushPolicy::GroupCommit { linger, .. } => linger.is_some(),
            FlushPolicy::Interval(_) => true,
            FlushPolicy::NoSyncForTestsOnly => false,
        };
        self.quiet && !waits
    }

    /// Serves one request at once, as a batch of its own.
    pub fn serve(&mut self, request: Request) {
        let mut batch = Batch::default();
        self.take(request, &mut batch);
        self.commit(&mut batch);
    }

    /// Serves requests from `rx`, in batches, until every sender is gone.
    ///
    /// The writer is shared with appenders that write and sync themselves
    /// while it is idle (see [`Wal::append`](super::Wal::append)); it is
    /// locked for a whole batch, and `queued` counts the requests sent and
    /// not yet taken into one, so an appender that finds the lock free and
    /// nothing queued knows every earlier request is already written.
    pub fn run(writer: Arc<Mutex<Writer>>, queued: Arc<AtomicUsize>, rx: Receiver<Request>) {
        let take = |w: &mut Writer, request: Request, batch: &mut Batch| {
            w.take(request, batch);
            queued.fetch_sub(1, Ordering::AcqRel);
        };
        while let Ok(first) = rx.recv() {
            let mut w = writer.lock().unwrap_or_else(PoisonError::into_inner);
            let opened = Instant::now();
            let mut batch = Batch::default();
            let mut next = Some(first);
            let mut disconnected = false;
            while let Some(request) = next.take() {
                take(&mut w, request, &mut batch);
                if batch.bytes >= w.batch_cap() {
                    break;
                }
                match rx.try_recv() {
                    Ok(request) => {
                        next = Some(request);
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                    Err(TryRecvError::Empty) => {}
                }
                let Some(deadline) = w.deadline(opened) else {
                    break;
                };
                let now = Instant::now();
                if batch.is_empty() || now >= deadline {
                    break;
                }
                match rx.recv_timeout(deadline - now) {
                    Ok(request) => next = Some(request),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => disconnected = true,
                }
            }
            w.commit(&mut batch);
            if disconnected {
                break;
            }
        }
    }

    fn batch_cap(&self) -> usize {
        match self.options.flush_policy {
            FlushPolicy::GroupCommit {
                max_batch_bytes, ..
            } => max_batch_bytes,
            FlushPolicy::Interval(_) => usize::MAX,
            FlushPolicy::NoSyncForTestsOnly => DEFAULT_BATCH_BYTES,
        }
    }

    /// Until when a batch opened at `opened` keeps gathering requests;
    /// `None`: take only what is already queued.
    fn deadline(&self, opened: Instant) -> Option<Instant> {
        match self.options.flush_policy {
            FlushPolicy::GroupCommit {
                linger: Some(linger),
                ..
            } => Some(opened + linger),
            FlushPolicy::Interval(every) => Some((self.last_sync + every).max(opened)),
            FlushPolicy::GroupCommit { linger: None, .. } | FlushPolicy::NoSyncForTestsOnly => None,
        }
    }

    fn take(&mut self, request: Request, batch: &mut Batch) {
        match request {
            Request::Append {
                data,
                records,
                reply,
            } => self.append(&data, &records, reply, batch),
            Request::Sync(reply) => {
                if let Some(cause) = &self.failure {
                    let _ = reply.send(Err(self.shared.poisoned(cause)));
                } else {
                    batch.syncs.push(reply);
                }
            }
            Request::TruncateSuffix(from, reply) => {
                self.commit(batch);
                let result = self.checked(|w| w.truncate_suffix(from));
                let _ = reply.send(result);
            }
            Request::CompactPrefix(upto, reply) => {
                self.commit(batch);
                let result = self.checked(|w| w.compact_prefix(upto));
                let _ = reply.send(result);
            }
        }
    }

    /// Runs `op` unless the log is unusable.
    fn checked(&mut self, op: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        match &self.failure {
            Some(cause) => Err(self.shared.poisoned(cause)),
            None => op(self),
        }
    }

    fn append(
        &mut self,
        data: &[u8],
        records: &[(u32, u32)],
        reply: AppendReply,
        batch: &mut Batch,
    ) {
        if let Some(cause) = &self.failure {
            reply.send(Err(self.shared.poisoned(cause)));
            return;
        }
        let first = self.next_index;
        let mut at = 0usize;
        for &(len, partial_crc) in records {
            // `Wal::submit_append` made `records` describe `data` exactly.
            let payload = &data[at..at + len as usize];
            at += len as usize;
            if let Err(cause) = self.append_one(payload, partial_crc) {
                self.fail(cause);
                break;
            }
            batch.bytes += frame_len(payload.len());
        }
        batch.records += self.next_index - first;
        batch.appends.push((reply, first..self.next_index));
    }

    fn append_one(&mut self, payload: &[u8], partial_crc: u32) -> Result<()> {
        let frame = frame_len(payload.len()) as u64;
        let end = self.active.written + self.buf.len() as u64;
        if self.active.records > 0 && end + frame > self.options.segment_size {
            self.roll()?;
        }
        format::encode_record(
            &mut self.buf,
            payload,
            partial_crc,
            self.active.salt,
            self.next_index,
        );
        self.new_bounds
            .push((self.active.written + self.buf.len() as u64) as u32);
        self.next_index += 1;
        self.active.records += 1;
        self.unsynced_records += 1;
        self.dirty = true;
        if self.buf.len() >= WRITE_CHUNK {
            self.write_out()?;
        }
        Ok(())
    }

    /// Writes the buffer to the active segment.
    fn write_out(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let write = FileOp::Write {
            offset: self.active.written,
            len: self.buf.len() as u64,
        };
        self.active
            .file
            .write_all_at(&self.buf, self.active.written)
            .map_err(|e| WalError::io(write, &self.active.path, e))?;
        self.active.written += self.buf.len() as u64;
        Counters::add(&self.shared.counters.bytes, self.buf.len() as u64);
        self.metrics.written(self.buf.len() as u64);
        self.buf.clear();
        // A very large record leaves a large buffer behind; give it back.
        self.buf.shrink_to(2 * WRITE_CHUNK);
        Ok(())
    }

    /// `fdatasync` of the active segment.
    fn sync_active(&mut self) -> Result<()> {
        let started = Instant::now();
        self.active
            .file
            .sync_data()
            .map_err(|e| WalError::io(FileOp::SyncData, &self.active.path, e))?;
        Counters::add(&self.shared.counters.fsyncs, 1);
        self.last_sync = Instant::now();
        let records = std::mem::take(&mut self.unsynced_records);
        self.metrics.synced(self.last_sync - started, records);
        self.dirty = false;
        Ok(())
    }

    /// Hands the boundaries of newly written records to readers (they stay
    /// invisible until `durable_next` passes them).
    fn hand_over_bounds(&mut self) {
        if self.new_bounds.is_empty() {
            return;
        }
        let mut view = self.shared.write_view();
        if let Some(last) = view.segments.last_mut() {
            last.bounds.append(&mut self.new_bounds);
        }
    }

    /// Seals the active segment (written and synced) and starts the next.
    fn roll(&mut self) -> Result<()> {
        self.write_out()?;
        self.sync_active()?;
        let seq = self
            .active
            .seq
            .checked_add(1)
            .ok_or_else(|| WalError::SegmentsExhausted {
                path: self.active.path.clone(),
            })?;
        let next = segment::create(self.fs.as_ref(), &self.shared.dir, seq, self.next_index)?;
        self.hand_over_bounds();
        self.active = Active {
            seq: next.seq,
            salt: next.salt,
            path: next.path.clone(),
            file: Arc::clone(&next.file),
            records: 0,
            written: next.end_offset(),
        };
        self.shared.write_view().segments.push(next);
        Ok(())
    }

    /// Makes the batch durable, publishes it and answers its requesters.
    fn commit(&mut self, batch: &mut Batch) {
        let batch = std::mem::take(batch);
        if batch.is_empty() {
            return;
        }
        self.quiet = batch.appends.len() + batch.syncs.len() == 1;
        if self.failure.is_none() {
            let must_sync = !batch.syncs.is_empty()
                || (self.dirty && self.options.flush_policy != FlushPolicy::NoSyncForTestsOnly);
            let mut result = self.write_out();
            if result.is_ok() && must_sync {
                result = self.sync_active();
            }
            if let Err(cause) = result {
                self.fail(cause);
            }
        }
        if let Some(cause) = &self.failure {
            let err = || self.shared.poisoned(cause);
            for (reply, _) in batch.appends {
                reply.send(Err(err()));
            }
            for reply in batch.syncs {
                let _ = reply.send(Err(err()));
            }
            return;
        }
        self.hand_over_bounds();
        self.shared.write_view().durable_next = self.next_index;
        Counters::add(&self.shared.counters.records, batch.records);
        self.metrics.appended(batch.records);
        Counters::add(&self.shared.counters.commits, 1);
        for (reply, range) in batch.appends {
            reply.send(Ok(range));
        }
        for reply in batch.syncs {
            let _ = reply.send(Ok(()));
        }
    }

    /// Records why the log is unusable; every later request fails with it.
    fn fail(&mut self, cause: WalError) -> Arc<WalError> {
        tracing::error!(dir = %self.shared.dir.display(), %cause, "WAL is now unusable");
        let cause = Arc::new(cause);
        self.shared.write_view().failure = Some(Arc::clone(&cause));
        self.failure = Some(Arc::clone(&cause));
        cause
    }

    /// Runs a step that changes files; a failure makes the log unusable.
    fn durable_step(&mut self, step: Result<()>) -> Result<()> {
        step.map_err(|cause| {
            let cause = self.fail(cause);
            self.shared.poisoned(&cause)
        })
    }

    fn truncate_suffix(&mut self, from: u64) -> Result<()> {
        let first = self.shared.read_view().first_index();
        if from > self.next_index {
            return Err(WalError::PastEnd {
                index: from,
                last: self.next_index - 1,
            });
        }
        if from < first {
            return Err(WalError::Compacted { index: from, first });
        }
        if from == self.next_index {
            return Ok(());
        }
        // Readers stop seeing the removed records first, then the files change.
        let (removed, keep) = {
            let mut view = self.shared.write_view();
            let position = view.segment_of(from);
            let removed: Vec<PathBuf> = view
                .segments
                .drain(position + 1..)
                .map(|s| s.path)
                .collect();
            let seg = view
                .segments
                .last_mut()
                .expect("the segment holding `from` is kept");
            let kept = (from - seg.first_index) as usize;
            seg.bounds.truncate(kept + 1);
            let keep = Active {
                seq: seg.seq,
                salt: seg.salt,
                path: seg.path.clone(),
                file: Arc::clone(&seg.file),
                records: kept as u64,
                written: seg.end_offset(),
            };
            view.durable_next = from;
            (removed, keep)
        };
        self.next_index = from;
        self.new_bounds.clear();
        let dir = self.shared.dir.clone();
        let fs = Arc::clone(&self.fs);
        // Newest first, so a crash part-way leaves a contiguous log.
        for path in removed.iter().rev() {
            let step = fs
                .remove_file(path)
                .map_err(|e| WalError::io(FileOp::Remove, path, e));
            self.durable_step(step)?;
        }
        if !removed.is_empty() {
            let step = fs
                .sync_dir(&dir)
                .map_err(|e| WalError::io(FileOp::SyncDir, &dir, e));
            self.durable_step(step)?;
        }
        let truncate = FileOp::SetLen { len: keep.written };
        let step = keep
            .file
            .set_len(keep.written)
            .and_then(|()| keep.file.sync_all())
            .map_err(|e| WalError::io(truncate, &keep.path, e));
        self.active = keep;
        self.durable_step(step)?;
        self.dirty = false;
        self.unsynced_records = 0;
        Ok(())
    }

    fn compact_prefix(&mut self, upto: u64) -> Result<()> {
        let mut deleted = 0usize;
        loop {
            let victim = {
                let view = self.shared.read_view();
                match view.segments.get(..2) {
                    Some([first, second]) if second.first_index <= upto => Some(first.path.clone()),
                    _ => None,
                }
            };
            let Some(path) = victim else {
                break;
            };
            // Oldest first, so a crash part-way leaves a contiguous log. A
            // failed unlink leaves it unknown whether the file is gone.
            let step = self
                .fs
                .remove_file(&path)
                .map_err(|e| WalError::io(FileOp::Remove, &path, e));
            self.durable_step(step)?;
            self.shared.write_view().segments.remove(0);
            deleted += 1;
        }
        if deleted > 0 {
            let dir = self.shared.dir.clone();
            let step = self
                .fs
                .sync_dir(&dir)
                .map_err(|e| WalError::io(FileOp::SyncDir, &dir, e));
            self.durable_step(step)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::fs::StdFs;
    use crate::wal::recovery;
    use crate::wal::state::{Counters, View};
    use std::sync::RwLock;
    use std::time::Duration;

    fn gather_window(w: &Writer) -> Option<Duration> {
        let now = Instant::now();
        w.deadline(now).map(|d| d.saturating_duration_since(now))
    }

    fn writer(dir: &std::path::Path, policy: FlushPolicy) -> Writer {
        let options = WalOptions {
            flush_policy: policy,
            ..WalOptions::default()
        };
        let fs: Arc<dyn WalFs> = Arc::new(StdFs);
        let recovered = recovery::recover(fs.as_ref(), dir, &options).expect("recover");
        let next = recovered.report.last_index + 1;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            max_record_size: options.max_record_size,
            view: RwLock::new(View {
                segments: recovered.segments,
                durable_next: next,
                failure: None,
            }),
            counters: Counters::default(),
        });
        Writer::new(fs, shared, options)
    }

    #[test]
    fn policies_map_to_gathering_windows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = writer(dir.path(), FlushPolicy::default());
        assert_eq!(gather_window(&w), None);
        let linger = Duration::from_millis(5);
        let mut w = w;
        w.options.flush_policy = FlushPolicy::GroupCommit {
            linger: Some(linger),
            max_batch_bytes: 10,
        };
        assert_eq!(gather_window(&w), Some(linger));
        assert_eq!(w.batch_cap(), 10);
        // Interval: right after a sync, wait out the interval.
        w.options.flush_policy = FlushPolicy::Interval(Duration::from_secs(60));
        w.last_sync = Instant::now();
        assert!(gather_window(&w) > Some(Duration::from_secs(59)));
        // After a quiet spell longer than the interval: no wait.
        w.options.flush_policy = FlushPolicy::Interval(Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(gather_window(&w), Some(Duration::ZERO));
    }
}
