//! The on-disk format: segment header and record framing.
//!
//! Pure encode and decode, no I/O. `docs/WAL.md` describes the same layout
//! byte by byte; the two must agree. Every integer is little-endian.
//!
//! Segment header, [`HEADER_LEN`] bytes:
//!
//! ```text
//! offset  size  field
//!      0     8  magic b"OCTOWAL\0"
//!      8     2  format version (u16) = 1
//!     10     2  reserved, zero
//!     12     4  salt (u32), random per segment file
//!     16     8  segment sequence number (u64)
//!     24     8  index of the segment's first record (u64)
//!     32     4  CRC32C of bytes 0..32
//!     36     4  reserved, zero
//! ```
//!
//! Each record after the header:
//!
//! ```text
//! [length: u32][crc: u32][payload: length bytes]
//! crc = CRC32C(length_le ‖ payload ‖ salt_le ‖ index_le)
//! ```
//!
//! The index is not stored: it is the segment's first index plus the
//! record's position. Covering it (and the salt) in the CRC means a record
//! shifted to another position, or left over from an older file, fails.
//! The length and payload come first so that a caller can checksum its
//! payload before the index is known ([`payload_crc`]), and the writer
//! finishes the CRC with [`finish_crc`].

use super::error::{Corruption, RecordFault};

/// The eight bytes every segment file starts with.
pub const MAGIC: [u8; 8] = *b"OCTOWAL\0";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Length of the segment header in bytes.
pub const HEADER_LEN: usize = 40;
/// Length of a record's frame header (length + CRC) in bytes.
pub const FRAME_HEADER_LEN: usize = 8;
/// Largest first index a segment header may hold. A segment holds fewer
/// than 2^32 records, so every index computed from it stays far from
/// `u64::MAX`.
pub const MAX_FIRST_INDEX: u64 = i64::MAX as u64;
/// The unit a disk writes atomically at least (the smallest sector size),
/// as etcd assumes: a write cut by a power loss leaves whole sectors of
/// zeros, not zeros from an arbitrary byte.
pub const SECTOR_LEN: usize = 512;

/// The decoded header of one segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Random per-file value mixed into every record CRC.
    pub salt: u32,
    /// The segment's sequence number (also its file name).
    pub seq: u64,
    /// Index of the first record stored in this segment.
    pub first_index: u64,
}

impl SegmentHeader {
    /// Encodes the header into its [`HEADER_LEN`] bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12..16].copy_from_slice(&self.salt.to_le_bytes());
        out[16..24].copy_from_slice(&self.seq.to_le_bytes());
        out[24..32].copy_from_slice(&self.first_index.to_le_bytes());
        let crc = crc32c::crc32c(&out[0..32]);
        out[32..36].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a header; when it is not one, says at which byte offset
    /// and what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self, (u64, Corruption)> {
        if bytes.len() < HEADER_LEN {
            let len = bytes.len() as u64;
            return Err((0, Corruption::ShortHeader { len }));
        }
        if bytes[0..8] != MAGIC {
            return Err((0, Corruption::BadMagic));
        }
        let expected = read_u32(bytes, 32);
        let actual = crc32c::crc32c(&bytes[0..32]);
        if actual != expected {
            return Err((32, Corruption::HeaderCrc { expected, actual }));
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != FORMAT_VERSION {
            return Err((8, Corruption::UnsupportedVersion { version }));
        }
        let first_index = read_u64(bytes, 24);
        if first_index == 0 || first_index > MAX_FIRST_INDEX {
            return Err((24, Corruption::FirstIndex { index: first_index }));
        }
        Ok(SegmentHeader {
            salt: read_u32(bytes, 12),
            seq: read_u64(bytes, 16),
            first_index,
        })
    }
}

/// CRC32C of `length_le ‖ payload`: the part of a record's CRC that does not
/// depend on where the record lands.
pub fn payload_crc(payload: &[u8]) -> u32 {
    let len = payload.len() as u32;
    crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), payload)
}

/// Completes a [`payload_crc`] with the segment's salt and the record index.
pub fn finish_crc(partial: u32, salt: u32, index: u64) -> u32 {
    let mut tail = [0u8; 12];
    tail[0..4].copy_from_slice(&salt.to_le_bytes());
    tail[4..12].copy_from_slice(&index.to_le_bytes());
    crc32c::crc32c_append(partial, &tail)
}

/// The full CRC of a record.
pub fn record_crc(payload: &[u8], salt: u32, index: u64) -> u32 {
    finish_crc(payload_crc(payload), salt, index)
}

/// Total bytes a record with `payload_len` bytes of payload takes on disk.
pub fn frame_len(payload_len: usize) -> usize {
    FRAME_HEADER_LEN + payload_len
}

/// Appends the framed record to `out`, given its [`payload_crc`].
pub fn encode_record(out: &mut Vec<u8>, payload: &[u8], partial_crc: u32, salt: u32, index: u64) {
    let crc = finish_crc(partial_crc, salt, index);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Decodes the record at `offset` of `buf` as record `index`; returns the
/// payload range within `buf`.
pub fn decode_record(
    buf: &[u8],
    offset: usize,
    salt: u32,
    index: u64,
    max_record_size: u32,
) -> Result<std::ops::Range<usize>, RecordFault> {
    let remaining = buf.len().saturating_sub(offset);
    if remaining < FRAME_HEADER_LEN {
        return Err(RecordFault::ShortHeader);
    }
    let len = read_u32(buf, offset);
    let stored_crc = read_u32(buf, offset + 4);
    if len > max_record_size {
        return Err(RecordFault::TooLarge { len });
    }
    let start = offset + FRAME_HEADER_LEN;
    let end = start + len as usize;
    if end > buf.len() {
        return Err(RecordFault::ShortPayload { len });
    }
    let actual = record_crc(&buf[start..end], salt, index);
    if actual != stored_crc {
        return Err(RecordFault::CrcMismatch {
            expected: stored_crc,
            actual,
        });
    }
    Ok(start..end)
}

impl RecordFault {
    /// Whether the bad record at `offset` of the last segment `buf` is what
    /// an interrupted write leaves (so it may be cut off), rather than
    /// damage to a record that was once complete (which must be refused).
    ///
    /// etcd's rule: a record running past the end of the file is torn; a
    /// complete one failing its CRC is torn only if one of its sectors is
    /// all zeros (the file's size reached the disk, that sector's data did
    /// not).
    pub fn is_torn_write(&self, buf: &[u8], offset: usize) -> bool {
        match *self {
            RecordFault::ShortHeader | RecordFault::ShortPayload { .. } => true,
            RecordFault::TooLarge { len } => {
                offset.saturating_add(frame_len(len as usize)) > buf.len()
                    || has_zero_sector(buf, offset, offset + FRAME_HEADER_LEN)
            }
            RecordFault::CrcMismatch { .. } => {
                let len = read_u32(buf, offset) as usize;
                has_zero_sector(buf, offset, offset + frame_len(len))
            }
        }
    }
}

/// Whether some sector-aligned piece of `buf[start..end]` (the piece
/// between two sector boundaries, or between one and `start` or `end`) is
/// all zeros.
fn has_zero_sector(buf: &[u8], start: usize, end: usize) -> bool {
    let end = end.min(buf.len());
    let mut at = start;
    while at < end {
        let next = ((at / SECTOR_LEN) + 1).saturating_mul(SECTOR_LEN).min(end);
        if buf[at..next].iter().all(|b| *b == 0) {
            return true;
        }
        at = next;
    }
    false
}

/// What scanning the records of one segment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Record boundaries: `bounds[k]..bounds[k + 1]` is record `k`'s frame;
    /// `bounds[0]` is [`HEADER_LEN`].
    pub bounds: Vec<u32>,
    /// Where and why scanning stopped before the end of the buffer.
    pub fault: Option<(usize, RecordFault)>,
}

/// Scans the records of a whole segment file held in `buf`.
pub fn scan_segment(buf: &[u8], header: &SegmentHeader, max_record_size: u32) -> Scan {
    let mut bounds = vec![HEADER_LEN as u32];
    let mut offset = HEADER_LEN;
    let mut index = header.first_index;
    while offset < buf.len() {
        match decode_record(buf, offset, header.salt, index, max_record_size) {
            Ok(payload) => {
                offset = payload.end;
                bounds.push(offset as u32);
                index += 1;
            }
            Err(fault) => {
                return Scan {
                    bounds,
                    fault: Some((offset, fault)),
                };
            }
        }
    }
    Scan {
        bounds,
        fault: None,
    }
}

/// How many of the following indexes [`valid_record_after`] tries at each
/// offset, so that a damaged area spanning several records is still seen
/// as followed by valid ones.
pub const LOOKAHEAD_INDEXES: u64 = 32;

/// Most payload bytes [`valid_record_after`] checksums before giving up.
pub const LOOKAHEAD_BUDGET_BYTES: u64 = 1 << 30;

/// What [`valid_record_after`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Later {
    /// A valid record with this index starts at this offset.
    Found {
        /// Byte offset of the record.
        offset: usize,
        /// Its index.
        index: u64,
    },
    /// No valid record follows.
    Nothing,
    /// The search hit [`LOOKAHEAD_BUDGET_BYTES`] before it could tell.
    Undecided,
}

/// Looks for any valid record with an index in
/// `next_index..next_index + LOOKAHEAD_INDEXES` starting at or after `from`.
///
/// A bad record that is followed by a valid later record is damage in the
/// middle of the log, not a torn write at its end.
pub fn valid_record_after(
    buf: &[u8],
    from: usize,
    salt: u32,
    next_index: u64,
    max_record_size: u32,
) -> Later {
    // The common torn tail is zeros or nothing: no record can hide there.
    let Some(rest) = buf.get(from..) else {
        return Later::Nothing;
    };
    if rest.len() < FRAME_HEADER_LEN || rest.iter().all(|b| *b == 0) {
        return Later::Nothing;
    }
    // The CRC's dependence on the index is the same whatever the payload
    // (the index is a fixed-length suffix): `finish_crc(p, salt, i)` is
    // `finish_crc(p, salt, next_index) ^ delta[i - next_index]`. So one CRC
    // per offset tests every candidate index.
    let deltas: Vec<u32> = (0..LOOKAHEAD_INDEXES)
        .map(|k| finish_crc(0, salt, next_index) ^ finish_crc(0, salt, next_index.wrapping_add(k)))
        .collect();
    let mut budget = LOOKAHEAD_BUDGET_BYTES;
    for offset in from..=buf.len() - FRAME_HEADER_LEN {
        let len = read_u32(buf, offset);
        if len > max_record_size {
            continue;
        }
        let start = offset + FRAME_HEADER_LEN;
        let Some(payload) = buf.get(start..start + len as usize) else {
            continue;
        };
        budget = match budget.checked_sub(u64::from(len) + 16) {
            Some(left) => left,
            None => return Later::Undecided,
        };
        let base = finish_crc(payload_crc(payload), salt, next_index);
        let stored = read_u32(buf, offset + 4);
        if let Some(k) = deltas.iter().position(|d| base ^ d == stored) {
            return Later::Found {
                offset,
                index: next_index + k as u64,
            };
        }
    }
    Later::Nothing
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u32 = 1 << 20;

    fn header() -> SegmentHeader {
        SegmentHeader {
            salt: 0xdead_beef,
            seq: 7,
            first_index: 100,
        }
    }

    fn segment(payloads: &[&[u8]]) -> Vec<u8> {
        let h = header();
        let mut buf = h.encode().to_vec();
        for (i, p) in payloads.iter().enumerate() {
            encode_record(
                &mut buf,
                p,
                payload_crc(p),
                h.salt,
                h.first_index + i as u64,
            );
        }
        buf
    }

    #[test]
    fn header_round_trips_and_detects_damage() {
        let bytes = header().encode();
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header()));
        // Extreme first indexes are refused, naming the field's offset.
        for first_index in [0, MAX_FIRST_INDEX + 1, u64::MAX] {
            let bad = SegmentHeader {
                first_index,
                ..header()
            }
            .encode();
            assert_eq!(SegmentHeader::decode(&bad).map_err(|e| e.0), Err(24));
        }
        for bit in 0..32 * 8 {
            let mut bad = bytes;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&bad).is_err(), "bit {bit}");
        }
        assert!(SegmentHeader::decode(&bytes[..HEADER_LEN - 1]).is_err());
    }

    #[test]
    fn header_layout_is_little_endian_at_documented_offsets() {
        let bytes = header().encode();
        assert_eq!(&bytes[0..8], b"OCTOWAL\0");
        assert_eq!(&bytes[8..10], &[1, 0]);
        assert_eq!(&bytes[12..16], &0xdead_beefu32.to_le_bytes());
        assert_eq!(&bytes[16..24], &7u64.to_le_bytes());
        assert_eq!(&bytes[24..32], &100u64.to_le_bytes());
        assert_eq!(&bytes[36..40], &[0, 0, 0, 0]);
    }

    #[test]
    fn records_scan_back() {
        let buf = segment(&[b"", b"a", b"hello world"]);
        let scan = scan_segment(&buf, &header(), MAX);
        assert_eq!(scan.fault, None);
        assert_eq!(scan.bounds, vec![40, 48, 57, 76]);
    }

    #[test]
    fn crc_covers_index_and_salt() {
        let p = b"payload";
        let crc = record_crc(p, 1, 5);
        assert_ne!(crc, record_crc(p, 1, 6));
        assert_ne!(crc, record_crc(p, 2, 5));
        // A record moved one position is refused.
        let buf = segment(&[b"x", b"y"]);
        let shifted = {
            let mut h = header();
            h.first_index += 1;
            h
        };
        let scan = scan_segment(&buf, &shifted, MAX);
        assert!(
            matches!(scan.fault, Some((40, RecordFault::CrcMismatch { .. }))),
            "{:?}",
            scan.fault
        );
    }

    #[test]
    fn faults_are_classified() {
        let buf = segment(&[b"abc"]);
        let scan = scan_segment(&buf[..buf.len() - 1], &header(), MAX);
        assert_eq!(scan.fault, Some((40, RecordFault::ShortPayload { len: 3 })));
        let scan = scan_segment(&buf[..44], &header(), MAX);
        assert_eq!(scan.fault, Some((40, RecordFault::ShortHeader)));
        let scan = scan_segment(&buf, &header(), 2);
        assert_eq!(scan.fault, Some((40, RecordFault::TooLarge { len: 3 })));
    }

    #[test]
    fn lookahead_finds_later_records_but_not_zeros() {
        let buf = segment(&[b"one", b"two", b"three"]);
        let h = header();
        // From inside record 0, record 1 (index 101) is found at its offset.
        assert_eq!(
            valid_record_after(&buf, 48, h.salt, 101, MAX),
            Later::Found {
                offset: 51,
                index: 101
            }
        );
        // Record 2 is found even when asked from index 101 on.
        assert_eq!(
            valid_record_after(&buf, 52, h.salt, 101, MAX),
            Later::Found {
                offset: 62,
                index: 102
            }
        );
        let mut zeros = buf.clone();
        zeros.extend_from_slice(&[0u8; 64]);
        assert_eq!(
            valid_record_after(&zeros, buf.len(), h.salt, 103, MAX),
            Later::Nothing
        );
        // Garbage with plausible lengths everywhere: no false find.
        let garbage: Vec<u8> = (0..4096u32).map(|i| (i % 7) as u8).collect();
        assert_eq!(
            valid_record_after(&garbage, 0, h.salt, 1, MAX),
            Later::Nothing
        );
    }
}
