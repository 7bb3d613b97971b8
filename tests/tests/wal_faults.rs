//! Failure handling through an injected file layer: after a failed fsync,
//! write or segment creation the log is unusable, and every later call
//! says why. Reopening recovers what was durable.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use octopii::wal::{DirLock, StdFs, Wal, WalFile, WalFs, WalOptions};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime")
}

/// Which operations fail, switched on and off by the test.
#[derive(Default)]
struct Faults {
    sync_data: AtomicBool,
    write: AtomicBool,
    create: AtomicBool,
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected {what} failure"))
}

/// The real file system, with failures on demand.
#[derive(Clone, Default)]
struct FaultyFs(Arc<Faults>);

struct FaultyFile {
    inner: Arc<dyn WalFile>,
    faults: Arc<Faults>,
}

impl WalFile for FaultyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.faults.write.load(Ordering::SeqCst) {
            return Err(injected("write"));
        }
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.faults.sync_data.load(Ordering::SeqCst) {
            return Err(injected("fsync"));
        }
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.inner.sync_all()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

impl FaultyFs {
    fn wrap(&self, file: Arc<dyn WalFile>) -> Arc<dyn WalFile> {
        Arc::new(FaultyFile {
            inner: file,
            faults: Arc::clone(&self.0),
        })
    }
}

impl WalFs for FaultyFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdFs.create_dir_all(dir)
    }
    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        StdFs.lock_dir(dir)
    }
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        StdFs.read_dir(dir)
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn WalFile>> {
        Ok(self.wrap(StdFs.open(path)?))
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WalFile>> {
        if self.0.create.load(Ordering::SeqCst) {
            return Err(injected("create"));
        }
        Ok(self.wrap(StdFs.create(path)?))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
}

/// Checks that every kind of call fails, and says `cause`.
fn assert_every_call_fails(rt: &tokio::runtime::Runtime, wal: &Wal, cause: &str) {
    let says_why = |what: &str, err: octopii::OctopiiError| {
        let message = err.to_string();
        assert!(message.contains("unusable"), "{what}: {message}");
        assert!(message.contains(cause), "{what} names the cause: {message}");
    };
    rt.block_on(async {
        says_why("append", wal.append(b"later").await.expect_err("append"));
        says_why("batch", wal.append_batch([b"x"]).await.expect_err("batch"));
        says_why("sync", wal.sync().await.expect_err("sync"));
        says_why(
            "truncate",
            wal.truncate_suffix(1).await.expect_err("truncate"),
        );
        says_why("compact", wal.compact_prefix(1).await.expect_err("compact"));
    });
    says_why("read", wal.read(..).expect_err("read"));
    says_why("get", wal.get(1).expect_err("get"));
    says_why(
        "iter",
        wal.iter_from(1).next().expect("an item").expect_err("iter"),
    );
    says_why("check", wal.check_usable().expect_err("check"));
}

/// Appends `n` records that succeed; returns them.
fn good_records(rt: &tokio::runtime::Runtime, wal: &Wal, n: u64) -> Vec<Vec<u8>> {
    let records: Vec<Vec<u8>> = (1..=n).map(|i| format!("good {i}").into_bytes()).collect();
    rt.block_on(async {
        for (i, r) in records.iter().enumerate() {
            assert_eq!(wal.append(r).await.expect("append"), i as u64 + 1);
        }
    });
    records
}

fn reopen_keeps(dir: &Path, records: &[Vec<u8>]) {
    let wal = Wal::open(dir, WalOptions::default()).expect("reopen with the real file system");
    let n = records.len() as u64;
    // The failed record may or may not have reached the disk; every
    // acknowledged one did.
    assert!(wal.last_index() >= n, "last index {}", wal.last_index());
    assert_eq!(wal.read(1..=n).expect("read"), records);
}

#[test]
fn wal_a_failed_fsync_fails_the_append_and_every_later_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let fs = FaultyFs::default();
    let wal =
        Wal::open_with_fs(dir.path(), WalOptions::default(), Arc::new(fs.clone())).expect("open");
    let records = good_records(&rt, &wal, 3);

    fs.0.sync_data.store(true, Ordering::SeqCst);
    let err = rt
        .block_on(wal.append(b"doomed"))
        .expect_err("the fsync fails");
    let message = err.to_string();
    assert!(message.contains("fdatasync of"), "{message}");
    assert!(message.contains("injected fsync failure"), "{message}");
    assert_eq!(wal.last_index(), 3, "the failed record is not acknowledged");

    // Even once the disk "works" again, nothing is retried.
    fs.0.sync_data.store(false, Ordering::SeqCst);
    assert_every_call_fails(&rt, &wal, "injected fsync failure");
    drop(wal);
    reopen_keeps(dir.path(), &records);
}

#[test]
fn wal_every_append_of_a_failed_batch_and_after_it_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let fs = FaultyFs::default();
    let wal =
        Wal::open_with_fs(dir.path(), WalOptions::default(), Arc::new(fs.clone())).expect("open");
    let records = good_records(&rt, &wal, 2);
    fs.0.sync_data.store(true, Ordering::SeqCst);
    let appends: Vec<_> = (0..20)
        .map(|i| wal.append(format!("x{i}").as_bytes()))
        .collect();
    let results = rt.block_on(futures::future::join_all(appends));
    for result in results {
        let message = result
            .expect_err("no append of the failed batch succeeds")
            .to_string();
        assert!(message.contains("injected fsync failure"), "{message}");
    }
    drop(wal);
    reopen_keeps(dir.path(), &records);
}

#[test]
fn wal_a_failed_write_fails_the_append_and_every_later_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let fs = FaultyFs::default();
    let wal =
        Wal::open_with_fs(dir.path(), WalOptions::default(), Arc::new(fs.clone())).expect("open");
    let records = good_records(&rt, &wal, 3);
    fs.0.write.store(true, Ordering::SeqCst);
    let err = rt
        .block_on(wal.append(b"doomed"))
        .expect_err("the write fails");
    assert!(err.to_string().contains("injected write failure"), "{err}");
    fs.0.write.store(false, Ordering::SeqCst);
    assert_every_call_fails(&rt, &wal, "injected write failure");
    drop(wal);
    reopen_keeps(dir.path(), &records);
}

#[test]
fn wal_a_failed_segment_creation_fails_the_append_and_every_later_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let fs = FaultyFs::default();
    let options = WalOptions {
        segment_size: 4096,
        ..WalOptions::default()
    };
    let wal = Wal::open_with_fs(dir.path(), options, Arc::new(fs.clone())).expect("open");
    let records = good_records(&rt, &wal, 3);
    fs.0.create.store(true, Ordering::SeqCst);
    // Enough to need a new segment.
    let err = rt
        .block_on(wal.append(&[1u8; 4050]))
        .expect_err("roll-over fails");
    assert!(err.to_string().contains("injected create failure"), "{err}");
    fs.0.create.store(false, Ordering::SeqCst);
    assert_every_call_fails(&rt, &wal, "injected create failure");
    drop(wal);
    reopen_keeps(dir.path(), &records);
}
