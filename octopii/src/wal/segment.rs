//! Segment files: naming, and durable creation.
//!
//! A segment is named after its sequence number, 16 lower-case hex digits
//! and `.wal`. It is created under a temporary name, its header written and
//! synced, then renamed into place and the directory synced: a file with a
//! segment name therefore always has a complete header.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::{FileOp, WalError};
use super::format::{HEADER_LEN, SegmentHeader};
use super::fs::WalFs;
use super::state::SegmentView;

/// Suffix of segment files.
pub(crate) const SEGMENT_SUFFIX: &str = ".wal";
/// Suffix of a segment being created; left-overs are deleted on open.
pub(crate) const TEMP_SUFFIX: &str = ".wal.tmp";

/// File name of segment `seq`.
pub(crate) fn file_name(seq: u64) -> String {
    format!("{seq:016x}{SEGMENT_SUFFIX}")
}

/// The sequence number a segment file name stands for, if it is one.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 16
        || !digits
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// A fresh random salt for a new segment file.
fn new_salt(seq: u64) -> u32 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(seq);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish() as u32
}

/// Creates segment `seq`, whose first record will be `first_index`, durably.
pub(crate) fn create(
    fs: &dyn WalFs,
    dir: &Path,
    seq: u64,
    first_index: u64,
) -> Result<SegmentView, WalError> {
    let path = dir.join(file_name(seq));
    let temp = dir.join(format!("{seq:016x}{TEMP_SUFFIX}"));
    let header = SegmentHeader {
        salt: new_salt(seq),
        seq,
        first_index,
    };
    let on_temp = |op, e| WalError::io(op, &temp, e);
    let file = fs.create(&temp).map_err(|e| on_temp(FileOp::Create, e))?;
    let write = FileOp::Write {
        offset: 0,
        len: HEADER_LEN as u64,
    };
    file.write_all_at(&header.encode(), 0)
        .map_err(|e| on_temp(write, e))?;
    file.sync_all().map_err(|e| on_temp(FileOp::SyncAll, e))?;
    fs.rename(&temp, &path)
        .map_err(|e| WalError::io(FileOp::Rename, &path, e))?;
    fs.sync_dir(dir)
        .map_err(|e| WalError::io(FileOp::SyncDir, dir, e))?;
    Ok(SegmentView {
        seq,
        path,
        salt: header.salt,
        first_index,
        file,
        bounds: vec![HEADER_LEN as u32],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(file_name(1), "0000000000000001.wal");
        assert_eq!(parse_file_name("0000000000000001.wal"), Some(1));
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("0000000000000001.wal.tmp"), None);
        assert_eq!(parse_file_name("000000000000000G.wal"), None);
        assert_eq!(parse_file_name("1.wal"), None);
        assert_eq!(parse_file_name("LOCK"), None);
    }
}
