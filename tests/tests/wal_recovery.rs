//! Recovery on real files: torn tails are cut, damage (a complete record
//! failing its CRC included) is refused with the file and byte offset,
//! continuity is checked, and the bytes on disk are the ones `docs/WAL.md`
//! describes.

use std::path::{Path, PathBuf};

use octopii::wal::{Corruption, Wal, WalError, WalOptions};

const HEADER_LEN: usize = 40;

fn runtime() -> tokio::runtime::Runtime {
    octopii_tests::tokio_runtime(2)
}

fn options() -> WalOptions {
    WalOptions {
        segment_size: 1024,
        ..WalOptions::default()
    }
}

/// Payloads of a log whose last segment ends with small records of varied
/// length (including an empty one), so every byte of them can be cut.
fn payloads() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..40u8)
        .map(|i| vec![i; 20 + usize::from(i) * 3])
        .collect();
    out.extend([
        b"".to_vec(),
        b"a".to_vec(),
        b"tail-9...".to_vec(),
        b"the last one".to_vec(),
    ]);
    out
}

/// Writes `payloads` to a new log in `dir` and returns its segment files.
fn build_log(dir: &Path, payloads: &[Vec<u8>]) -> Vec<PathBuf> {
    let files = build_log_with(dir, payloads, &options());
    assert!(files.len() >= 3, "want several segments, got {files:?}");
    files
}

fn build_log_with(dir: &Path, payloads: &[Vec<u8>], options: &WalOptions) -> Vec<PathBuf> {
    let rt = runtime();
    let wal = Wal::open(dir, options.clone()).expect("open");
    rt.block_on(async {
        for (i, p) in payloads.iter().enumerate() {
            assert_eq!(wal.append(p).await.expect("append"), i as u64 + 1);
        }
    });
    drop(wal);
    segment_files(dir)
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

/// Record boundaries of a segment, read with the documented framing:
/// `[u32 length][u32 crc][payload]` after a 40-byte header.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = vec![HEADER_LEN];
    let mut at = HEADER_LEN;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += 8 + len;
        offsets.push(at);
    }
    assert_eq!(at, bytes.len(), "segment ends on a record boundary");
    offsets
}

fn first_index(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes"))
}

/// A copy of the log in `from`, for one damaged variant.
fn copy_log(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().expect("tempdir");
    for file in segment_files(from) {
        std::fs::copy(&file, to.path().join(file.file_name().expect("name"))).expect("copy");
    }
    to
}

fn path_in(dir: &Path, like: &Path) -> PathBuf {
    dir.join(like.file_name().expect("name"))
}

#[test]
fn wal_cutting_the_last_records_at_every_byte_recovers_exactly_the_complete_ones() {
    cut_and_recover(|cut| cut, false);
}

/// A power loss that kept the file's size but not its last sectors leaves
/// them zero, from a sector boundary on (a disk writes whole sectors).
#[test]
fn wal_zeroed_sectors_at_the_end_recover_exactly_the_complete_records() {
    cut_and_recover(|cut| cut.next_multiple_of(SECTOR), true);
}

const SECTOR: usize = 512;

/// For every byte `cut` of the last records, damages the last segment at
/// `damage_from(cut)` (truncating it there, or zeroing it from there on),
/// and checks that recovery keeps exactly the records before that point.
fn cut_and_recover(damage_from: impl Fn(usize) -> usize, zero_fill: bool) {
    let (payloads, options) = if zero_fill {
        // One segment of small records with sector boundaries among them.
        let small: Vec<Vec<u8>> = (0..300u32)
            .map(|i| vec![(i % 251) as u8 | 1; 5 + (i % 9) as usize])
            .collect();
        let options = WalOptions {
            segment_size: 8192,
            ..options()
        };
        (small, options)
    } else {
        (payloads(), options())
    };
    let original = tempfile::tempdir().expect("tempdir");
    let files = build_log_with(original.path(), &payloads, &options);
    let last = files.last().expect("a segment").clone();
    let bytes = std::fs::read(&last).expect("read");
    let bounds = record_offsets(&bytes);
    let last_first = first_index(&bytes);
    let cut_from = if zero_fill {
        HEADER_LEN + 1
    } else {
        assert!(bounds.len() > 5, "the last segment holds the small records");
        bounds[bounds.len() - 5]
    };
    let cuts: std::collections::BTreeSet<usize> = (cut_from..=bytes.len())
        .map(damage_from)
        .filter(|&cut| cut <= bytes.len())
        .collect();
    assert!(cuts.len() >= 3, "only {} cuts", cuts.len());
    for cut in cuts {
        // Records wholly before the cut survive; nothing after it does.
        let complete = bounds.iter().filter(|&&b| b <= cut).count() - 1;
        let boundary = bounds[complete];
        let expected_last = last_first + complete as u64 - 1;
        {
            let copy = copy_log(original.path());
            let damaged = path_in(copy.path(), &last);
            let mut data = bytes.clone();
            if zero_fill {
                // The size made it to disk, the data did not.
                data[cut..].fill(0);
            } else {
                data.truncate(cut);
            }
            std::fs::write(&damaged, &data).expect("write damaged");

            let wal = Wal::open(copy.path(), options.clone())
                .unwrap_or_else(|e| panic!("open after cut {cut} (zeros {zero_fill}): {e}"));
            assert_eq!(
                wal.last_index(),
                expected_last,
                "cut {cut} zeros {zero_fill}"
            );
            let report = wal.recovery_report();
            if data.len() == boundary {
                assert_eq!(report.torn_tail, None, "cut {cut} zeros {zero_fill}");
            } else {
                let torn = report.torn_tail.as_ref().expect("a torn tail is reported");
                assert_eq!(torn.path, damaged);
                assert_eq!(torn.offset, boundary as u64);
                assert_eq!(torn.discarded_bytes, (data.len() - boundary) as u64);
                assert_eq!(torn.index, expected_last + 1);
            }
            let got = wal.read(..).expect("read back");
            assert_eq!(
                got,
                payloads[..expected_last as usize],
                "cut {cut} zeros {zero_fill}"
            );
            assert_eq!(
                std::fs::metadata(&damaged).expect("metadata").len(),
                boundary as u64,
                "the torn tail is cut off the file"
            );
            if cut % 7 == 0 {
                // The repaired log takes appends after the surviving records.
                let rt = runtime();
                let index = rt.block_on(wal.append(b"after repair")).expect("append");
                assert_eq!(index, expected_last + 1);
                drop(wal);
                let wal = Wal::open(copy.path(), options.clone()).expect("reopen");
                assert_eq!(wal.get(index).expect("get"), b"after repair");
                assert_eq!(wal.recovery_report().torn_tail, None);
            }
        }
    }
}

fn flip(path: &Path, bit: usize) {
    let mut data = std::fs::read(path).expect("read");
    data[bit / 8] ^= 1 << (bit % 8);
    std::fs::write(path, data).expect("write");
}

/// Flips every bit of record `k` of segment `file` in turn and checks that
/// each open is refused, naming the file and the record's byte offset.
fn every_flip_is_refused(original: &Path, file: &Path, k: usize) {
    let bytes = std::fs::read(file).expect("read");
    let bounds = record_offsets(&bytes);
    let (start, end) = (bounds[k], bounds[k + 1]);
    let copy = copy_log(original);
    let target = path_in(copy.path(), file);
    for bit in start * 8..end * 8 {
        flip(&target, bit);
        let err = Wal::open(copy.path(), options())
            .expect_err(&format!("bit {bit} of record at {start} is refused"));
        assert!(
            matches!(&err, WalError::Corrupt { path, offset, .. }
                if *path == target && *offset == start as u64),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&target.display().to_string()), "{message}");
        assert!(
            message.contains(&format!("byte offset {start}:")),
            "{message}"
        );
        flip(&target, bit);
    }
    // Undamaged again, it opens.
    Wal::open(copy.path(), options()).expect("open the repaired copy");
}

#[test]
fn wal_a_flipped_bit_in_a_middle_record_of_the_last_segment_is_refused() {
    let original = tempfile::tempdir().expect("tempdir");
    let files = build_log(original.path(), &payloads());
    let last = files.last().expect("segment");
    let records = record_offsets(&std::fs::read(last).expect("read")).len() - 1;
    // Every record but the last one of the last segment counts as "middle".
    every_flip_is_refused(original.path(), last, records - 2);
    every_flip_is_refused(original.path(), last, 0);
}

#[test]
fn wal_a_flipped_bit_in_an_earlier_segment_is_refused() {
    let original = tempfile::tempdir().expect("tempdir");
    let files = build_log(original.path(), &payloads());
    let records = record_offsets(&std::fs::read(&files[1]).expect("read")).len() - 1;
    every_flip_is_refused(original.path(), &files[1], records - 1);
}

/// A complete last record failing its CRC was acknowledged once: cutting
/// it would lose it, so the open is refused. Only a flip that makes the
/// record run past the end of the file (a length bit) looks like, and is
/// repaired as, a torn write.
#[test]
fn wal_a_flipped_bit_in_the_last_record_is_refused_unless_it_runs_past_the_end() {
    let original = tempfile::tempdir().expect("tempdir");
    let payloads = payloads();
    let files = build_log(original.path(), &payloads);
    let last = files.last().expect("segment");
    let bytes = std::fs::read(last).expect("read");
    let bounds = record_offsets(&bytes);
    let start = bounds[bounds.len() - 2];
    let copy = copy_log(original.path());
    let target = path_in(copy.path(), last);
    let (mut refused, mut repaired) = (0, 0);
    for bit in start * 8..bytes.len() * 8 {
        std::fs::write(&target, &bytes).expect("restore");
        flip(&target, bit);
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let len = u32::from_le_bytes(damaged[start..start + 4].try_into().expect("4 bytes"));
        let runs_past_the_end = start + 8 + len as usize > bytes.len();
        match Wal::open(copy.path(), options()) {
            Ok(wal) => {
                assert!(runs_past_the_end, "bit {bit}: a complete record was cut");
                let n = payloads.len() as u64;
                assert_eq!(wal.last_index(), n - 1, "bit {bit}");
                let torn = wal.recovery_report().torn_tail.clone().expect("reported");
                assert_eq!((torn.offset, torn.index), (start as u64, n), "bit {bit}");
                assert_eq!(wal.read(..).expect("read"), payloads[..payloads.len() - 1]);
                repaired += 1;
            }
            Err(err) => {
                assert!(!runs_past_the_end, "bit {bit}: a torn write refused: {err}");
                let message = err.to_string();
                assert!(message.contains(&target.display().to_string()), "{message}");
                assert!(
                    message.contains(&format!("byte offset {start}:")),
                    "{message}"
                );
                refused += 1;
            }
        }
    }
    assert!(
        refused > 0 && repaired > 0,
        "{refused} refused, {repaired} repaired"
    );
}

#[test]
fn wal_a_missing_middle_segment_is_refused() {
    let original = tempfile::tempdir().expect("tempdir");
    let files = build_log(original.path(), &payloads());
    std::fs::remove_file(&files[1]).expect("remove");
    let err = Wal::open(original.path(), options()).expect_err("gap in segments");
    assert!(
        matches!(
            err,
            WalError::MissingSegments {
                before: 1,
                after: 3,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("missing"), "{message}");
    assert!(message.contains("0000000000000001.wal"), "{message}");
}

#[test]
fn wal_an_index_gap_between_segments_is_refused() {
    let original = tempfile::tempdir().expect("tempdir");
    let files = build_log(original.path(), &payloads());
    let target = &files[2];
    let mut data = std::fs::read(target).expect("read");
    // Move the segment's first index on by one and re-seal its header, so
    // only the continuity check can catch it.
    let first = first_index(&data) + 1;
    data[24..32].copy_from_slice(&first.to_le_bytes());
    let crc = crc32c::crc32c(&data[0..32]);
    data[32..36].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(target, data).expect("write");
    let err = Wal::open(original.path(), options()).expect_err("index gap");
    assert!(
        matches!(
            err,
            WalError::Corrupt {
                offset: 24,
                reason: Corruption::IndexGap { expected, actual },
                ..
            } if actual == expected + 1
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("continuity"), "{message}");
    assert!(message.contains(&target.display().to_string()), "{message}");
    assert!(message.contains("byte offset 24"), "{message}");
}

#[test]
fn wal_a_damaged_segment_header_is_refused() {
    let original = tempfile::tempdir().expect("tempdir");
    let files = build_log(original.path(), &payloads());
    let target = files.last().expect("segment");
    flip(target, 20 * 8);
    let err = Wal::open(original.path(), options()).expect_err("bad header");
    assert!(
        matches!(
            err,
            WalError::Corrupt {
                offset: 32,
                reason: Corruption::HeaderCrc { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("header CRC"), "{message}");
    assert!(message.contains(&target.display().to_string()), "{message}");
    // The offset of the header's CRC, which is what failed.
    assert!(message.contains("byte offset 32"), "{message}");
}

#[test]
fn wal_a_cut_earlier_segment_is_refused() {
    let original = tempfile::tempdir().expect("tempdir");
    let files = build_log(original.path(), &payloads());
    let data = std::fs::read(&files[0]).expect("read");
    let bounds = record_offsets(&data);
    let last_start = bounds[bounds.len() - 2];
    std::fs::write(&files[0], &data[..data.len() - 1]).expect("write");
    let err = Wal::open(original.path(), options()).expect_err("short earlier segment");
    let message = err.to_string();
    assert!(
        message.contains(&files[0].display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("byte offset {last_start}:")),
        "{message}"
    );
}

#[test]
fn wal_leftover_temporary_segments_are_removed() {
    let original = tempfile::tempdir().expect("tempdir");
    build_log(original.path(), &payloads());
    let leftover = original.path().join("00000000000000ff.wal.tmp");
    std::fs::write(&leftover, b"half a header").expect("write");
    let wal = Wal::open(original.path(), options()).expect("open");
    assert_eq!(
        wal.recovery_report().removed_temp_files,
        vec![leftover.clone()]
    );
    assert!(!leftover.exists());
}

#[test]
fn wal_the_bytes_on_disk_follow_the_documented_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let wal = Wal::open(dir.path(), WalOptions::default()).expect("open");
    rt.block_on(async {
        wal.append(b"hello").await.expect("append");
        wal.append(b"").await.expect("append");
    });
    drop(wal);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    assert!(files[0].ends_with("0000000000000001.wal"));
    let data = std::fs::read(&files[0]).expect("read");
    assert_eq!(data.len(), HEADER_LEN + 8 + 5 + 8);
    // Header.
    assert_eq!(&data[0..8], b"OCTOWAL\0");
    assert_eq!(u16::from_le_bytes([data[8], data[9]]), 1, "format version");
    assert_eq!(&data[10..12], &[0, 0]);
    let salt = u32::from_le_bytes(data[12..16].try_into().expect("4 bytes"));
    assert_eq!(
        u64::from_le_bytes(data[16..24].try_into().expect("8")),
        1,
        "sequence"
    );
    assert_eq!(first_index(&data), 1);
    let header_crc = u32::from_le_bytes(data[32..36].try_into().expect("4 bytes"));
    assert_eq!(header_crc, crc32c::crc32c(&data[0..32]));
    assert_eq!(&data[36..40], &[0, 0, 0, 0]);
    // Records: crc = CRC32C(length ‖ payload ‖ salt ‖ index), little-endian.
    let expect_crc = |payload: &[u8], index: u64| {
        let mut covered = (payload.len() as u32).to_le_bytes().to_vec();
        covered.extend_from_slice(payload);
        covered.extend_from_slice(&salt.to_le_bytes());
        covered.extend_from_slice(&index.to_le_bytes());
        crc32c::crc32c(&covered)
    };
    assert_eq!(&data[40..44], &5u32.to_le_bytes());
    assert_eq!(&data[44..48], &expect_crc(b"hello", 1).to_le_bytes());
    assert_eq!(&data[48..53], b"hello");
    assert_eq!(&data[53..57], &0u32.to_le_bytes());
    assert_eq!(&data[57..61], &expect_crc(b"", 2).to_le_bytes());
}
