//! What the writer thread publishes and readers look at.
//!
//! The writer owns the files; readers share [`View`] behind a lock held only
//! long enough to copy out what they need. A record is visible once its
//! index is below [`View::durable_next`], which moves only after the sync
//! that made it durable.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::WalStats;
use super::error::WalError;
use super::fs::WalFile;

/// One segment file as readers see it.
pub(crate) struct SegmentView {
    pub seq: u64,
    pub path: PathBuf,
    pub salt: u32,
    pub first_index: u64,
    pub file: Arc<dyn WalFile>,
    /// `bounds[k]..bounds[k + 1]` is the frame of record `first_index + k`;
    /// `bounds[0]` is the header length.
    pub bounds: Vec<u32>,
}

impl SegmentView {
    /// Index one past this segment's last record.
    pub fn next_index(&self) -> u64 {
        self.first_index + self.bounds.len() as u64 - 1
    }

    /// Byte offset one past this segment's last record.
    pub fn end_offset(&self) -> u64 {
        self.bounds.last().map_or(0, |b| u64::from(*b))
    }
}

/// The log as readers see it.
pub(crate) struct View {
    /// Segments in order; never empty after open.
    pub segments: Vec<SegmentView>,
    /// Index one past the last durable record.
    pub durable_next: u64,
    /// The failure that made the log unusable, once one has.
    pub failure: Option<Arc<WalError>>,
}

impl View {
    /// Index of the first record still in the log.
    pub fn first_index(&self) -> u64 {
        self.segments
            .first()
            .map_or(self.durable_next, |s| s.first_index)
    }

    /// Position in `segments` of the segment holding `index`.
    pub fn segment_of(&self, index: u64) -> usize {
        self.segments
            .partition_point(|s| s.first_index <= index)
            .saturating_sub(1)
    }
}

/// Counters behind [`WalStats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub commits: AtomicU64,
    pub fsyncs: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> WalStats {
        WalStats {
            records_appended: self.records.load(Ordering::Relaxed),
            bytes_written: self.bytes.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
        }
    }
}

/// State shared by every handle, the writer thread and iterators.
pub(crate) struct Shared {
    pub dir: PathBuf,
    pub max_record_size: u32,
    pub view: RwLock<View>,
    pub counters: Counters,
}

impl Shared {
    pub fn read_view(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write_view(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The error every call returns once the log is unusable.
    pub fn check_usable(&self) -> Result<(), WalError> {
        match &self.read_view().failure {
            Some(cause) => Err(self.poisoned(cause)),
            None => Ok(()),
        }
    }

    /// The error for a log that failed earlier with `cause`.
    pub fn poisoned(&self, cause: &Arc<WalError>) -> WalError {
        WalError::Poisoned {
            dir: self.dir.clone(),
            cause: Arc::clone(cause),
        }
    }
}
