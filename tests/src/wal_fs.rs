//! The real WAL file layer with a hook before the operations tests
//! interfere with: failing them, or holding them.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use octopii::wal::{DirLock, StdFs, WalFile, WalFs};

/// A file operation a [`FileHook`] is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOp {
    /// Writing to a file.
    Write,
    /// `fdatasync` of a file.
    SyncData,
    /// `fsync` of a file.
    SyncAll,
    /// Truncating or extending a file.
    SetLen,
    /// Creating a file.
    Create,
    /// Creating a directory.
    CreateDir,
    /// Renaming a file.
    Rename,
    /// Deleting a file.
    Remove,
    /// `fsync` of a directory.
    SyncDir,
}

/// Runs before each [`FileOp`]; an error fails the operation.
pub trait FileHook: Send + Sync + 'static {
    /// Called before `op` is performed.
    fn before(&self, op: FileOp) -> io::Result<()>;
}

/// [`StdFs`] with `hook` consulted before every operation that changes
/// files or makes them durable.
pub struct HookedFs<H>(pub Arc<H>);

struct HookedFile<H> {
    inner: Arc<dyn WalFile>,
    hook: Arc<H>,
}

impl<H: FileHook> HookedFs<H> {
    fn wrap(&self, file: Arc<dyn WalFile>) -> Arc<dyn WalFile> {
        Arc::new(HookedFile {
            inner: file,
            hook: Arc::clone(&self.0),
        })
    }
}

impl<H: FileHook> WalFile for HookedFile<H> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.hook.before(FileOp::Write)?;
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.hook.before(FileOp::SyncData)?;
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.hook.before(FileOp::SyncAll)?;
        self.inner.sync_all()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.hook.before(FileOp::SetLen)?;
        self.inner.set_len(len)
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

impl<H: FileHook> WalFs for HookedFs<H> {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.0.before(FileOp::CreateDir)?;
        StdFs.create_dir_all(dir)
    }
    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        self.0.before(FileOp::CreateDir)?;
        StdFs.create_dir(dir)
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
        self.0.before(FileOp::Create)?;
        Ok(self.wrap(StdFs.create(path)?))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.before(FileOp::Rename)?;
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.0.before(FileOp::Remove)?;
        StdFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.0.before(FileOp::SyncDir)?;
        StdFs.sync_dir(dir)
    }
}
