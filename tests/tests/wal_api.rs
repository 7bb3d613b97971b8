//! The write-ahead log's API on real files: append, read, iterate,
//! truncate, compact, policies, reopen.

use std::path::{Path, PathBuf};
use std::time::Duration;

use octopii::wal::{FlushPolicy, Wal, WalError, WalOptions};

fn runtime() -> tokio::runtime::Runtime {
    octopii_tests::tokio_runtime(2)
}

/// Small segments so that a few dozen records span several files.
fn small_segments() -> WalOptions {
    WalOptions {
        segment_size: 4096,
        ..WalOptions::default()
    }
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

fn record(i: u64) -> Vec<u8> {
    format!("record {i} ")
        .repeat(1 + (i % 13) as usize)
        .into_bytes()
}

/// Appends records `1..=n` (contents from [`record`]) one at a time.
fn fill(rt: &tokio::runtime::Runtime, wal: &Wal, n: u64) {
    rt.block_on(async {
        for i in 1..=n {
            let index = wal.append(&record(i)).await.expect("append");
            assert_eq!(index, i);
        }
    });
}

#[test]
fn wal_a_new_log_starts_at_index_one_and_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let wal = Wal::open(dir.path(), WalOptions::default()).expect("open");
    assert!(wal.recovery_report().created);
    assert_eq!((wal.first_index(), wal.last_index()), (1, 0));
    fill(&rt, &wal, 5);
    assert_eq!((wal.first_index(), wal.last_index()), (1, 5));
    let all = wal.read(..).expect("read all");
    assert_eq!(all, (1..=5).map(record).collect::<Vec<_>>());
    assert_eq!(wal.get(3).expect("get"), record(3));
    assert_eq!(wal.read(2..4).expect("read"), vec![record(2), record(3)]);
    assert_eq!(wal.read(5..5).expect("empty read"), Vec::<Vec<u8>>::new());
}

#[test]
fn wal_append_batch_returns_a_contiguous_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let wal = Wal::open(dir.path(), small_segments()).expect("open");
    rt.block_on(async {
        assert_eq!(wal.append(b"one").await.expect("append"), 1);
        let batch: Vec<Vec<u8>> = (2..=100).map(record).collect();
        assert_eq!(wal.append_batch(&batch).await.expect("batch"), 2..101);
        let empty: [&[u8]; 0] = [];
        assert_eq!(wal.append_batch(empty).await.expect("empty"), 101..101);
        assert_eq!(wal.append(b"").await.expect("empty record"), 101);
    });
    assert_eq!(
        wal.read(2..101).expect("read"),
        (2..=100).map(record).collect::<Vec<_>>()
    );
    assert_eq!(wal.get(101).expect("get"), Vec::<u8>::new());
}

#[test]
fn wal_reads_outside_the_log_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let wal = Wal::open(dir.path(), WalOptions::default()).expect("open");
    fill(&rt, &wal, 3);
    let past = wal.read(3..=4).expect_err("past the end");
    assert!(
        matches!(past, WalError::PastEnd { index: 4, last: 3 }),
        "{past:?}"
    );
    assert!(past.to_string().contains("past the last index 3"), "{past}");
    assert!(wal.read(0..2).is_err());
    assert!(wal.get(4).is_err());
    let mut iter = wal.iter_from(5);
    assert!(iter.next().expect("an error").is_err());
    assert!(iter.next().is_none());
    assert_eq!(wal.iter_from(4).count(), 0);
}

#[test]
fn wal_iter_from_yields_indexes_and_records_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let wal = Wal::open(dir.path(), small_segments()).expect("open");
    fill(&rt, &wal, 300);
    assert!(segment_files(dir.path()).len() > 3);
    let got: Vec<(u64, Vec<u8>)> = wal.iter_from(7).collect::<Result<_, _>>().expect("iterate");
    let want: Vec<(u64, Vec<u8>)> = (7..=300).map(|i| (i, record(i))).collect();
    assert_eq!(got, want);
}

#[test]
fn wal_segments_roll_over_and_the_log_reopens_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let wal = Wal::open(dir.path(), small_segments()).expect("open");
    fill(&rt, &wal, 200);
    drop(wal);
    let files = segment_files(dir.path());
    assert!(files.len() > 3, "{files:?}");
    for file in &files {
        // A segment only exceeds the limit when one record alone does.
        assert!(std::fs::metadata(file).expect("metadata").len() <= 4096);
    }
    let wal = Wal::open(dir.path(), small_segments()).expect("reopen");
    let report = wal.recovery_report().clone();
    assert!(!report.created);
    assert_eq!(report.segments, files.len());
    assert_eq!(
        (report.first_index, report.last_index, report.records),
        (1, 200, 200)
    );
    assert_eq!(report.torn_tail, None);
    assert_eq!(
        wal.read(..).expect("read"),
        (1..=200).map(record).collect::<Vec<_>>()
    );
    // Appends continue after the recovered records.
    assert_eq!(rt.block_on(wal.append(b"next")).expect("append"), 201);
}

#[test]
fn wal_truncate_suffix_overwrites_the_tail_durably() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let wal = Wal::open(dir.path(), small_segments()).expect("open");
    fill(&rt, &wal, 200);
    let files_before = segment_files(dir.path()).len();
    rt.block_on(wal.truncate_suffix(50)).expect("truncate");
    assert_eq!(wal.last_index(), 49);
    assert!(wal.get(50).is_err());
    assert!(segment_files(dir.path()).len() < files_before);
    rt.block_on(async {
        assert_eq!(wal.append(b"new 50").await.expect("append"), 50);
        assert_eq!(wal.append(b"new 51").await.expect("append"), 51);
    });
    drop(wal);
    let wal = Wal::open(dir.path(), small_segments()).expect("reopen");
    assert_eq!(wal.last_index(), 51);
    assert_eq!(wal.get(49).expect("get"), record(49));
    assert_eq!(wal.get(50).expect("get"), b"new 50");
    assert_eq!(wal.get(51).expect("get"), b"new 51");
    assert_eq!(wal.recovery_report().torn_tail, None);
}

#[test]
fn wal_truncate_suffix_at_a_segment_start_and_to_the_first_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let wal = Wal::open(dir.path(), small_segments()).expect("open");
    fill(&rt, &wal, 100);
    // The first record of the second segment.
    let second = segment_files(dir.path())[1].clone();
    let bytes = std::fs::read(&second).expect("read segment");
    let start = u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes"));
    rt.block_on(wal.truncate_suffix(start)).expect("truncate");
    assert_eq!(wal.last_index(), start - 1);
    assert_eq!(rt.block_on(wal.append(b"x")).expect("append"), start);

    rt.block_on(wal.truncate_suffix(1)).expect("truncate all");
    assert_eq!((wal.first_index(), wal.last_index()), (1, 0));
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(rt.block_on(wal.append(b"again")).expect("append"), 1);
    drop(wal);
    let wal = Wal::open(dir.path(), small_segments()).expect("reopen");
    assert_eq!(wal.read(..).expect("read"), vec![b"again".to_vec()]);
}

#[test]
fn wal_truncate_suffix_out_of_range_is_refused_and_harmless() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let wal = Wal::open(dir.path(), WalOptions::default()).expect("open");
    fill(&rt, &wal, 3);
    let err = rt
        .block_on(wal.truncate_suffix(5))
        .expect_err("beyond the end");
    assert!(
        matches!(err, WalError::PastEnd { index: 5, last: 3 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("past the last index 3"), "{err}");
    rt.block_on(wal.truncate_suffix(4))
        .expect("no-op at last + 1");
    assert_eq!(wal.last_index(), 3);
    assert_eq!(rt.block_on(wal.append(b"4")).expect("still usable"), 4);
}

#[test]
fn wal_compact_prefix_deletes_whole_segments_below_the_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let wal = Wal::open(dir.path(), small_segments()).expect("open");
    fill(&rt, &wal, 300);
    let files = segment_files(dir.path());
    rt.block_on(wal.compact_prefix(150)).expect("compact");
    let first = wal.first_index();
    assert!(first > 1 && first <= 150, "first index {first}");
    let kept = segment_files(dir.path());
    assert!(kept.len() < files.len());
    assert_eq!(kept, files[files.len() - kept.len()..]);
    assert!(wal.get(first - 1).is_err());
    assert_eq!(wal.read(first..).expect("read").len() as u64, 301 - first);

    // Compaction never removes the segment being appended to.
    rt.block_on(wal.compact_prefix(u64::MAX))
        .expect("compact all");
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(wal.last_index(), 300);
    let first = wal.first_index();
    drop(wal);
    let wal = Wal::open(dir.path(), small_segments()).expect("reopen");
    assert_eq!((wal.first_index(), wal.last_index()), (first, 300));
    assert_eq!(wal.get(300).expect("get"), record(300));
    assert_eq!(rt.block_on(wal.append(b"x")).expect("append"), 301);
}

#[test]
fn wal_an_oversized_record_is_refused_without_harming_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let options = WalOptions {
        max_record_size: 100,
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), options).expect("open");
    let err = rt.block_on(wal.append(&[0u8; 101])).expect_err("too large");
    assert!(
        matches!(err, WalError::RecordTooLarge { len: 101, max: 100 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("maximum record size"), "{err}");
    assert!(wal.check_usable().is_ok());
    assert_eq!(rt.block_on(wal.append(&[7u8; 100])).expect("append"), 1);
}

#[test]
fn wal_a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = Wal::open(dir.path(), WalOptions::default()).expect("open");
    let err = Wal::open(dir.path(), WalOptions::default()).expect_err("locked");
    assert!(matches!(err, WalError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("already open"), "{err}");
    drop(wal);
    Wal::open(dir.path(), WalOptions::default()).expect("open after drop");
}

#[test]
fn wal_invalid_options_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = WalOptions {
        segment_size: 10,
        ..WalOptions::default()
    };
    let err = Wal::open(dir.path(), options).expect_err("tiny segments");
    assert!(
        matches!(
            err,
            WalError::InvalidOption {
                field: "wal.segment_size",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("segment_size"), "{err}");
}

fn policy_round_trip(policy: FlushPolicy) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let options = WalOptions {
        flush_policy: policy,
        ..small_segments()
    };
    let wal = Wal::open(dir.path(), options.clone()).expect("open");
    rt.block_on(async {
        let appends: Vec<_> = (1..=40).map(|i| wal.append(&record(i))).collect();
        for (i, index) in futures::future::join_all(appends)
            .await
            .into_iter()
            .enumerate()
        {
            assert_eq!(index.expect("append"), i as u64 + 1);
        }
        wal.sync().await.expect("sync");
    });
    assert_eq!(wal.last_index(), 40);
    drop(wal);
    let wal = Wal::open(dir.path(), options).expect("reopen");
    assert_eq!(
        wal.read(..).expect("read"),
        (1..=40).map(record).collect::<Vec<_>>()
    );
}

#[test]
fn wal_the_interval_policy_appends_and_recovers() {
    policy_round_trip(FlushPolicy::Interval(Duration::from_millis(5)));
}

#[test]
fn wal_the_no_sync_policy_appends_and_recovers() {
    policy_round_trip(FlushPolicy::NoSyncForTestsOnly);
}

#[test]
fn wal_group_commit_with_linger_and_a_small_byte_cap_appends_and_recovers() {
    policy_round_trip(FlushPolicy::GroupCommit {
        linger: Some(Duration::from_millis(1)),
        max_batch_bytes: 64,
    });
}

#[test]
fn wal_works_on_a_current_thread_runtime_and_drops_inside_async_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let wal = Wal::open(dir.path(), WalOptions::default()).expect("open");
        let clone = wal.clone();
        let handle = tokio::spawn(clone.append(b"spawned"));
        assert_eq!(handle.await.expect("join").expect("append"), 1);
        // The future is queued at call time and outlives the handle.
        let pending = wal.append(b"after drop");
        drop(wal);
        drop(clone);
        assert_eq!(pending.await.expect("append"), 2);
    });
    let wal = Wal::open(dir.path(), WalOptions::default()).expect("reopen");
    assert_eq!(wal.last_index(), 2);
}

#[test]
fn wal_stats_count_records_commits_and_fsyncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let wal = Wal::open(dir.path(), WalOptions::default()).expect("open");
    fill(&rt, &wal, 10);
    let stats = wal.stats();
    assert_eq!(stats.records_appended, 10);
    // One at a time: each append is its own commit with its own fsync.
    assert_eq!(stats.commits, 10);
    assert_eq!(stats.fsyncs, 10);
    let framed: u64 = (1..=10).map(|i| record(i).len() as u64 + 8).sum();
    assert_eq!(stats.bytes_written, framed);
}

#[test]
fn wal_large_records_and_batches_span_segments_and_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let wal = Wal::open(dir.path(), small_segments()).expect("open");
    // A record larger than a segment gets a segment of its own; a batch
    // larger than the writer's buffer is written in several pieces.
    let big: Vec<Vec<u8>> = (0..300u32)
        .map(|i| vec![(i % 251) as u8; 10_000 + i as usize])
        .collect();
    let range = rt.block_on(wal.append_batch(&big)).expect("batch");
    assert_eq!(range, 1..301);
    assert_eq!(segment_files(dir.path()).len(), 300);
    drop(wal);
    let wal = Wal::open(dir.path(), small_segments()).expect("reopen");
    assert_eq!(wal.read(..).expect("read"), big);
}

#[test]
fn wal_readers_see_only_complete_records_while_appends_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let wal = Wal::open(dir.path(), small_segments()).expect("open");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let wal = wal.clone();
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let last = wal.last_index();
                let got = wal.read(1..=last).expect("read while appending");
                assert_eq!(got.len() as u64, last);
                for (i, r) in got.iter().enumerate() {
                    assert_eq!(r, &record(i as u64 + 1));
                }
                reads += 1;
            }
            reads
        })
    };
    fill(&rt, &wal, 400);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(reader.join().expect("reader") > 0);
}
