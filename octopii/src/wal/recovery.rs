//! Opening a log: reading every segment back and deciding what to trust.
//!
//! The rules:
//!
//! * Segment files must have consecutive sequence numbers, valid headers,
//!   and continuous indexes (each segment starts where the previous ends).
//! * Every record of every segment but the last must be valid: a bad one
//!   refuses the open with the file and byte offset.
//! * In the last segment, a bad record that a crash mid-write explains (one
//!   that runs past the end of the file, or a complete one failing its CRC
//!   with a sector of all zeros in it) with no valid record anywhere after
//!   it is a torn write: the file is truncated just before it, and the
//!   truncation logged and reported in [`RecoveryReport::torn_tail`]. A
//!   complete record failing its CRC otherwise, or a bad record followed
//!   by a valid one, is damage: the open is refused, naming file and
//!   offset. Cutting it would drop a record that was acknowledged.
//! * Left-over temporary files from an interrupted segment creation are
//!   deleted.

use std::path::{Path, PathBuf};

use super::error::{Corruption, FileOp, NotTorn, RecordFault, Result, WalError};
use super::format::{self, FRAME_HEADER_LEN, SegmentHeader};
use super::fs::{WalFs, read_exact_at};
use super::options::WalOptions;
use super::segment;
use super::state::SegmentView;

/// What opening the log found and did. See [`Wal::recovery_report`](super::Wal::recovery_report).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The directory held no segment, so a new log was started.
    pub created: bool,
    /// Segment files in the log after opening.
    pub segments: usize,
    /// Records in the log after opening.
    pub records: u64,
    /// Index of the first record (or of the next one, for an empty log).
    pub first_index: u64,
    /// Index of the last record (`first_index - 1` for an empty log).
    pub last_index: u64,
    /// The torn tail that was cut off the last segment, if there was one.
    pub torn_tail: Option<TornTail>,
    /// Temporary files of an interrupted segment creation that were deleted.
    pub removed_temp_files: Vec<PathBuf>,
}

/// An incomplete or damaged end of the last segment, cut off on open.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TornTail {
    /// The segment file that was truncated.
    pub path: PathBuf,
    /// Byte offset it was truncated at (the start of the first bad record).
    pub offset: u64,
    /// How many bytes were cut off.
    pub discarded_bytes: u64,
    /// The index the first discarded record would have had.
    pub index: u64,
    /// What was wrong with the first discarded record.
    pub reason: RecordFault,
}

/// The log as read back from disk.
pub(crate) struct Recovered {
    pub segments: Vec<SegmentView>,
    pub report: RecoveryReport,
}

/// Reads the log in `dir` back, repairing a torn tail; refuses damage.
pub(crate) fn recover(fs: &dyn WalFs, dir: &Path, options: &WalOptions) -> Result<Recovered> {
    let mut report = RecoveryReport::default();
    let entries = fs
        .read_dir(dir)
        .map_err(|e| WalError::io(FileOp::ListDir, dir, e))?;
    let mut seqs = Vec::new();
    for path in entries {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(segment::TEMP_SUFFIX) {
            fs.remove_file(&path)
                .map_err(|e| WalError::io(FileOp::Remove, &path, e))?;
            report.removed_temp_files.push(path);
        } else if let Some(seq) = segment::parse_file_name(name) {
            seqs.push(seq);
        }
    }
    if !report.removed_temp_files.is_empty() {
        fs.sync_dir(dir)
            .map_err(|e| WalError::io(FileOp::SyncDir, dir, e))?;
    }
    seqs.sort_unstable();

    let mut segments: Vec<SegmentView> = Vec::with_capacity(seqs.len().max(1));
    if seqs.is_empty() {
        let created = segment::create(fs, dir, 1, 1)?;
        segments.push(created);
        report.created = true;
    }
    for pair in seqs.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(WalError::MissingSegments {
                dir: dir.to_path_buf(),
                before: pair[0],
                after: pair[1],
            });
        }
    }
    for (position, &seq) in seqs.iter().enumerate() {
        let is_last = position + 1 == seqs.len();
        let expected_first = segments.last().map(SegmentView::next_index);
        let path = dir.join(segment::file_name(seq));
        let seg = read_segment(
            fs,
            &path,
            seq,
            expected_first,
            is_last,
            options,
            &mut report,
        )?;
        segments.push(seg);
    }

    let first_index = segments.first().map_or(1, |s| s.first_index);
    let next_index = segments.last().map_or(1, SegmentView::next_index);
    report.segments = segments.len();
    report.first_index = first_index;
    report.last_index = next_index - 1;
    report.records = next_index - first_index;
    Ok(Recovered { segments, report })
}

/// A segment file's bytes, checked.
pub(crate) struct CheckedSegment {
    pub header: SegmentHeader,
    /// Record boundaries of the records kept, as in [`SegmentView::bounds`].
    pub bounds: Vec<u32>,
    /// A torn tail to cut off: its offset, the index its first record would
    /// have had, and what was wrong with that record.
    pub torn: Option<(usize, u64, RecordFault)>,
}

impl CheckedSegment {
    /// Index one past the segment's last kept record.
    pub fn next_index(&self) -> u64 {
        self.header.first_index + self.bounds.len() as u64 - 1
    }
}

/// Checks the bytes `buf` of segment file `path` (sequence number `seq`)
/// against the recovery rules; no I/O. `expected_first` is where the
/// previous segment ended, `is_last` whether a torn tail may be repaired.
pub(crate) fn check_segment(
    path: &Path,
    buf: &[u8],
    seq: u64,
    expected_first: Option<u64>,
    is_last: bool,
    max_record_size: u32,
) -> Result<CheckedSegment> {
    let corrupt = |offset: usize, reason| Err(WalError::corrupt(path, offset as u64, reason));
    if buf.len() > u32::MAX as usize {
        let size = buf.len() as u64;
        return corrupt(0, Corruption::TooLarge { size });
    }
    let header = SegmentHeader::decode(buf)
        .map_err(|(offset, reason)| WalError::corrupt(path, offset, reason))?;
    if header.seq != seq {
        return corrupt(
            16,
            Corruption::SequenceMismatch {
                expected: seq,
                actual: header.seq,
            },
        );
    }
    if let Some(expected) = expected_first {
        if header.first_index != expected {
            return corrupt(
                24,
                Corruption::IndexGap {
                    expected,
                    actual: header.first_index,
                },
            );
        }
    }

    let scan = format::scan_segment(buf, &header, max_record_size);
    let Some((offset, fault)) = scan.fault else {
        return Ok(CheckedSegment {
            header,
            bounds: scan.bounds,
            torn: None,
        });
    };
    let index = header.first_index + scan.bounds.len() as u64 - 1;
    let damage = |why| {
        corrupt(
            offset,
            Corruption::Record {
                index,
                fault,
                not_torn: Some(why),
            },
        )
    };
    if !is_last {
        return damage(NotTorn::NotLastSegment);
    }
    if !fault.is_torn_write(buf, offset) {
        return damage(NotTorn::Complete);
    }
    let later = format::valid_record_after(
        buf,
        offset + FRAME_HEADER_LEN,
        header.salt,
        index + 1,
        max_record_size,
    );
    match later {
        format::Later::Found {
            offset: later_offset,
            index: later_index,
        } => damage(NotTorn::FollowedBy {
            index: later_index,
            offset: later_offset as u64,
        }),
        format::Later::Undecided => damage(NotTorn::Undecided),
        format::Later::Nothing => Ok(CheckedSegment {
            header,
            bounds: scan.bounds,
            torn: Some((offset, index, fault)),
        }),
    }
}

/// Reads one segment file and checks it; truncates a torn tail if `is_last`.
fn read_segment(
    fs: &dyn WalFs,
    path: &Path,
    seq: u64,
    expected_first: Option<u64>,
    is_last: bool,
    options: &WalOptions,
    report: &mut RecoveryReport,
) -> Result<SegmentView> {
    let io = |op, e| WalError::io(op, path, e);
    let file = fs.open(path).map_err(|e| io(FileOp::Open, e))?;
    let size = file.size().map_err(|e| io(FileOp::Size, e))?;
    if size > u64::from(u32::MAX) {
        return Err(WalError::corrupt(path, 0, Corruption::TooLarge { size }));
    }
    let mut buf = vec![0u8; size as usize];
    let read = FileOp::Read {
        offset: 0,
        len: size,
    };
    read_exact_at(file.as_ref(), &mut buf, 0).map_err(|e| io(read, e))?;
    let checked = check_segment(
        path,
        &buf,
        seq,
        expected_first,
        is_last,
        options.max_record_size,
    )?;
    if let Some((offset, index, fault)) = checked.torn {
        let len = offset as u64;
        file.set_len(len)
            .and_then(|()| file.sync_all())
            .map_err(|e| io(FileOp::SetLen { len }, e))?;
        let torn = TornTail {
            path: path.to_path_buf(),
            offset: offset as u64,
            discarded_bytes: size - offset as u64,
            index,
            reason: fault,
        };
        tracing::warn!(
            path = %path.display(),
            offset = torn.offset,
            discarded_bytes = torn.discarded_bytes,
            index,
            reason = %torn.reason,
            "WAL: truncated a torn tail off the last segment"
        );
        report.torn_tail = Some(torn);
    }
    let CheckedSegment { header, bounds, .. } = checked;

    Ok(SegmentView {
        seq,
        path: path.to_path_buf(),
        salt: header.salt,
        first_index: header.first_index,
        file,
        bounds,
    })
}
