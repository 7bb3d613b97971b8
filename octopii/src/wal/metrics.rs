//! The log's series in the process's `metrics` recorder (see
//! `docs/ARCHITECTURE.md`, "Metrics"). The log knows no node, so its
//! series are labelled with its directory: stable across restarts, and
//! one log per directory at a time (the directory lock).

use std::path::Path;
use std::time::Duration;

use metrics::{Counter, Histogram, counter, histogram};

/// One log's series, recorded by its writer on whichever thread it runs.
pub(crate) struct WalMetrics {
    records: Counter,
    bytes: Counter,
    fsyncs: Counter,
    fsync_seconds: Histogram,
    records_per_fsync: Histogram,
}

impl WalMetrics {
    pub(crate) fn new(dir: &Path) -> Self {
        let dir = dir.display().to_string();
        WalMetrics {
            records: counter!("octopii_wal_records_appended_total", "dir" => dir.clone()),
            bytes: counter!("octopii_wal_bytes_written_total", "dir" => dir.clone()),
            fsyncs: counter!("octopii_wal_fsyncs_total", "dir" => dir.clone()),
            fsync_seconds: histogram!("octopii_wal_fsync_duration_seconds", "dir" => dir.clone()),
            records_per_fsync: histogram!("octopii_wal_records_per_fsync", "dir" => dir),
        }
    }

    /// Records acknowledged (durable as the flush policy defines).
    pub(crate) fn appended(&self, records: u64) {
        self.records.increment(records);
    }

    pub(crate) fn written(&self, bytes: u64) {
        self.bytes.increment(bytes);
    }

    /// One `fdatasync` that took `took` and made `records` new records durable.
    pub(crate) fn synced(&self, took: Duration, records: u64) {
        self.fsyncs.increment(1);
        self.fsync_seconds.record(took.as_secs_f64());
        self.records_per_fsync.record(records as f64);
    }
}
