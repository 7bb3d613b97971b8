//! [`WalError`]: everything the write-ahead log can refuse or fail at, as
//! values a caller can match on and an operator can act on.
//!
//! Damage names the file, the byte offset and what the bytes there say
//! ([`Corruption`]); a failed file operation names the operation and the
//! file ([`FileOp`]); a log made unusable by a failed write or sync
//! ([`WalError::Poisoned`]) carries the failure that did it. The log is a
//! standalone layer, so its error names nothing above it; the crate's
//! top-level error wraps it.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use super::format::{FORMAT_VERSION, HEADER_LEN, MAX_FIRST_INDEX};
use super::segment;

/// Result of the log's operations.
pub(crate) type Result<T, E = WalError> = std::result::Result<T, E>;

/// Why a [`Wal`](super::Wal) operation failed.
///
/// ```
/// use octopii::wal::{Wal, WalError, WalOptions};
///
/// # fn main() -> Result<(), WalError> {
/// let dir = tempfile::tempdir().expect("tempdir");
/// let wal = Wal::open(dir.path(), WalOptions::default())?;
/// match wal.read(1..=1) {
///     Err(WalError::PastEnd { index: 1, last: 0 }) => {}
///     other => panic!("an empty log has no record 1: {other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// A file operation failed. While opening or reading, the log stays as
    /// it was; a failure that changed files arrives wrapped in
    /// [`Poisoned`](WalError::Poisoned).
    #[error("{op} {} failed: {source}", path.display())]
    Io {
        /// What was being done.
        op: FileOp,
        /// The file or directory it was done to.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },

    /// Another [`Wal`](super::Wal), in this process or another, has the
    /// directory open.
    #[error("the log in {} is already open (its directory is locked)", dir.display())]
    Locked {
        /// The log's directory.
        dir: PathBuf,
    },

    /// The thread that writes the log could not be started.
    #[error("cannot start the WAL writer thread: {0}")]
    Spawn(#[source] io::Error),

    /// A file of the log failed a check (a checksum, a magic number, a
    /// value out of range): it is damaged. Nothing was repaired or
    /// discarded.
    #[error("corrupt {} at byte offset {offset}: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset in the file of the first bad byte or field.
        offset: u64,
        /// What is wrong there.
        reason: Corruption,
    },

    /// Segment files are missing between two that exist: records in
    /// between are lost.
    #[error(
        "segment files missing in {}: {} is followed by {}",
        dir.display(),
        segment::file_name(*before),
        segment::file_name(*after)
    )]
    MissingSegments {
        /// The log's directory.
        dir: PathBuf,
        /// Sequence number of the segment before the gap.
        before: u64,
        /// Sequence number of the segment after it.
        after: u64,
    },

    /// An append larger than [`WalOptions::max_record_size`](super::WalOptions::max_record_size).
    /// The log is unharmed.
    #[error("record of {len} bytes exceeds the maximum record size of {max} bytes")]
    RecordTooLarge {
        /// Size of the refused record.
        len: usize,
        /// The configured maximum.
        max: u32,
    },

    /// The index asked for was removed by [`Wal::compact_prefix`](super::Wal::compact_prefix).
    #[error("index {index} is below the first index {first} (compacted away)")]
    Compacted {
        /// The index asked for.
        index: u64,
        /// The first index still in the log.
        first: u64,
    },

    /// The index asked for is past the last durable record.
    #[error("index {index} is past the last index {last}")]
    PastEnd {
        /// The index asked for.
        index: u64,
        /// The last index in the log (`first - 1` when it is empty).
        last: u64,
    },

    /// A range whose start is after its end.
    #[error("invalid range: start {start} is after end {end}")]
    InvalidRange {
        /// The start of the range.
        start: u64,
        /// Its end (exclusive).
        end: u64,
    },

    /// An earlier write, sync or file operation failed, so the log refuses
    /// everything: the kernel may have dropped unwritten data, and a retry
    /// could acknowledge records that are not durable. Drop the log and
    /// open it again to recover what is durable.
    #[error(
        "the log in {} is unusable: {cause}; after a failed write, sync or file operation \
         the kernel may have dropped unwritten data, so the log refuses all further use \
         (reopen it to recover what is durable)",
        dir.display()
    )]
    Poisoned {
        /// The log's directory.
        dir: PathBuf,
        /// The first failure, which every later call reports.
        #[source]
        cause: Arc<WalError>,
    },

    /// The last segment has the largest possible sequence number, so no
    /// new segment can follow it.
    #[error("segment {} is the last possible", path.display())]
    SegmentsExhausted {
        /// The last segment.
        path: PathBuf,
    },

    /// The writer thread is gone (it panicked), so nothing can be written.
    #[error("the WAL writer thread has stopped")]
    WriterStopped,

    /// A [`WalOptions`](super::WalOptions) value is out of range.
    #[error("invalid WAL option `{field}`: {reason}")]
    InvalidOption {
        /// The option, as `wal.<field>`.
        field: &'static str,
        /// The rule it breaks.
        reason: &'static str,
    },
}

impl WalError {
    /// An [`Io`](WalError::Io) error: `op` on `path` failed with `source`.
    pub(crate) fn io(op: FileOp, path: impl Into<PathBuf>, source: io::Error) -> Self {
        WalError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// A [`Corrupt`](WalError::Corrupt) error.
    pub(crate) fn corrupt(path: impl Into<PathBuf>, offset: u64, reason: Corruption) -> Self {
        WalError::Corrupt {
            path: path.into(),
            offset,
            reason,
        }
    }
}

/// A file operation of the log; see [`WalError::Io`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileOp {
    /// Creating a directory.
    CreateDir,
    /// Locking the log's directory.
    Lock,
    /// Listing a directory.
    ListDir,
    /// Opening a file.
    Open,
    /// Reading a file's size.
    Size,
    /// Reading `len` bytes at `offset`.
    Read {
        /// Byte offset of the read.
        offset: u64,
        /// Bytes to read.
        len: u64,
    },
    /// Creating a file.
    Create,
    /// Writing `len` bytes at `offset`.
    Write {
        /// Byte offset of the write.
        offset: u64,
        /// Bytes written.
        len: u64,
    },
    /// `fdatasync` of a segment.
    SyncData,
    /// `fsync` of a file.
    SyncAll,
    /// `fsync` of a directory.
    SyncDir,
    /// Truncating a file to `len` bytes (and syncing it).
    SetLen {
        /// The new length.
        len: u64,
    },
    /// Renaming a file into place (the path is the new name).
    Rename,
    /// Deleting a file.
    Remove,
}

impl fmt::Display for FileOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileOp::CreateDir => write!(f, "creation of directory"),
            FileOp::Lock => write!(f, "locking of directory"),
            FileOp::ListDir => write!(f, "listing of directory"),
            FileOp::Open => write!(f, "opening of"),
            FileOp::Size => write!(f, "reading the size of"),
            FileOp::Read { offset, len } => {
                write!(f, "read of {len} bytes at byte offset {offset} of")
            }
            FileOp::Create => write!(f, "creation of"),
            FileOp::Write { offset, len } => {
                write!(f, "write of {len} bytes at byte offset {offset} to")
            }
            FileOp::SyncData => write!(f, "fdatasync of"),
            FileOp::SyncAll => write!(f, "fsync of"),
            FileOp::SyncDir => write!(f, "fsync of directory"),
            FileOp::SetLen { len } => write!(f, "truncation to {len} bytes of"),
            FileOp::Rename => write!(f, "rename to"),
            FileOp::Remove => write!(f, "deletion of"),
        }
    }
}

/// What is wrong with a damaged file; see [`WalError::Corrupt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// The file is shorter than a segment header.
    ShortHeader {
        /// The file's length.
        len: u64,
    },
    /// The file does not start with the segment magic.
    BadMagic,
    /// The segment header fails its CRC.
    HeaderCrc {
        /// The CRC stored in the header.
        expected: u32,
        /// The CRC of the header's bytes.
        actual: u32,
    },
    /// The header names a format version this build does not read.
    UnsupportedVersion {
        /// The version in the header.
        version: u16,
    },
    /// The header's first index is 0 or too large.
    FirstIndex {
        /// The first index in the header.
        index: u64,
    },
    /// The file is larger than any segment can be.
    TooLarge {
        /// The file's size.
        size: u64,
    },
    /// The header's sequence number is not the one in the file name.
    SequenceMismatch {
        /// The sequence number in the file name.
        expected: u64,
        /// The one in the header.
        actual: u64,
    },
    /// The segment does not start where the previous one ends.
    IndexGap {
        /// The index after the previous segment's last record.
        expected: u64,
        /// The segment's first index.
        actual: u64,
    },
    /// Record `index` does not decode.
    Record {
        /// The record's index.
        index: u64,
        /// What is wrong with it.
        fault: RecordFault,
        /// Found on open: why it was not cut off as a torn write.
        not_torn: Option<NotTorn>,
    },
    /// Record `index` read back with another length than when it was
    /// written (the file changed underneath the log).
    RecordLength {
        /// The record's index.
        index: u64,
        /// The payload length it was written with.
        expected: u64,
        /// The payload length it now declares.
        actual: u64,
    },
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::ShortHeader { len } => {
                write!(f, "segment header is {len} bytes, expected {HEADER_LEN}")
            }
            Corruption::BadMagic => write!(f, "bad magic: not a WAL segment"),
            Corruption::HeaderCrc { expected, actual } => write!(
                f,
                "segment header CRC mismatch: stored {expected:#010x}, computed {actual:#010x}"
            ),
            Corruption::UnsupportedVersion { version } => write!(
                f,
                "unsupported format version {version} (this build reads {FORMAT_VERSION})"
            ),
            Corruption::FirstIndex { index } => {
                write!(f, "first index {index} is outside 1..={MAX_FIRST_INDEX}")
            }
            Corruption::TooLarge { size } => {
                write!(f, "file is {size} bytes, larger than any segment")
            }
            Corruption::SequenceMismatch { expected, actual } => write!(
                f,
                "header says segment {actual} but the file name says {expected}"
            ),
            Corruption::IndexGap { expected, actual } => write!(
                f,
                "index continuity broken: segment starts at index {actual}, but the previous \
                 segment ends with index {}",
                expected.saturating_sub(1)
            ),
            Corruption::Record {
                index,
                fault,
                not_torn,
            } => {
                write!(f, "record {index}: {fault}")?;
                match not_torn {
                    None => Ok(()),
                    Some(NotTorn::NotLastSegment) => write!(f, " (not the last segment)"),
                    Some(NotTorn::Complete) => write!(
                        f,
                        "; the record is complete, so this is damage, not a torn write \
                         (only a record cut short by a crash is repaired)"
                    ),
                    Some(NotTorn::FollowedBy { index, offset }) => write!(
                        f,
                        ", yet valid record {index} follows at byte offset {offset}, so this \
                         is damage, not a torn write"
                    ),
                    Some(NotTorn::Undecided) => write!(
                        f,
                        "; too much data follows to rule out valid records after it, so it \
                         is not treated as a torn write"
                    ),
                }
            }
            Corruption::RecordLength {
                index,
                expected,
                actual,
            } => write!(
                f,
                "record {index} declares {actual} bytes, but {expected} were written"
            ),
        }
    }
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordFault {
    /// Fewer bytes than a record header remain before the end of the file.
    ShortHeader,
    /// The declared payload runs past the end of the file.
    ShortPayload {
        /// The declared payload length.
        len: u32,
    },
    /// The declared length is larger than the configured maximum.
    TooLarge {
        /// The declared payload length.
        len: u32,
    },
    /// The stored CRC does not match the record.
    CrcMismatch {
        /// The CRC stored in the record.
        expected: u32,
        /// The CRC of the record's bytes, salt and index.
        actual: u32,
    },
}

impl fmt::Display for RecordFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordFault::ShortHeader => write!(f, "incomplete record header"),
            RecordFault::ShortPayload { len } => {
                write!(f, "record of {len} bytes runs past the end of the file")
            }
            RecordFault::TooLarge { len } => {
                write!(f, "record length {len} exceeds the maximum record size")
            }
            RecordFault::CrcMismatch { expected, actual } => write!(
                f,
                "CRC mismatch: stored {expected:#010x}, computed {actual:#010x}"
            ),
        }
    }
}

/// Why a bad record found when opening the log was refused as damage
/// rather than cut off as the torn tail of a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotTorn {
    /// It is not in the last segment, which alone is written to.
    NotLastSegment,
    /// It is complete and no sector of it is all zeros: it was written
    /// whole, so it may have been acknowledged.
    Complete,
    /// A valid record follows it.
    FollowedBy {
        /// The index of the valid record.
        index: u64,
        /// Its byte offset in the file.
        offset: u64,
    },
    /// Too much data follows it to rule out valid records there.
    Undecided,
}
