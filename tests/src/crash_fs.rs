//! An in-memory [`WalFs`] that loses, at a simulated power failure, what was
//! never made durable: file data not followed by an `fsync` and directory
//! entries (created, renamed, deleted files and directories) not followed by
//! an `fsync` of their directory. SIGKILL keeps the page cache, so a crash
//! test that kills a process cannot see a missing `fsync`; this can.
//!
//! A test runs a workload with [`CrashFs::power_fails_after`] set: that
//! many operations that change files succeed, then every operation fails
//! (the machine is gone). It then drops what it had open, calls
//! [`CrashFs::crash`] with a [`Tear`] saying what of the unsynced data
//! reached the disk, and recovers from what is left.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use octopii::wal::{DirLock, WalFile, WalFs};

/// What of the data written since a file's last `fsync` is on disk after
/// the crash. Directory entries not synced are always lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tear {
    /// None of it.
    DropAll,
    /// All of it (as if the kernel had flushed it just in time).
    KeepAll,
    /// All writes but the last, and the first half of the last one.
    TearLast,
}

/// An operation that changes files or makes them durable, as logged by
/// [`CrashFs::log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A directory was created.
    CreateDir(PathBuf),
    /// A file was created (or emptied).
    Create(PathBuf),
    /// A file was written.
    Write(PathBuf),
    /// A file was truncated or extended.
    SetLen(PathBuf),
    /// A file was synced.
    Sync(PathBuf),
    /// A file was renamed (from, to).
    Rename(PathBuf, PathBuf),
    /// A file was deleted.
    Remove(PathBuf),
    /// A directory was synced.
    SyncDir(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    File(u64),
    Dir,
}

#[derive(Default)]
struct Dir {
    current: BTreeMap<OsString, Entry>,
    durable: BTreeMap<OsString, Entry>,
}

enum Pending {
    Write { offset: usize, bytes: Vec<u8> },
    SetLen(usize),
}

#[derive(Default)]
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Default)]
struct State {
    dirs: BTreeMap<PathBuf, Dir>,
    inodes: HashMap<u64, Inode>,
    next_inode: u64,
    /// Changing operations still allowed before the power fails.
    budget: Option<u64>,
    dead: bool,
    /// Changing operations still allowed before one fails with this error.
    failure: Option<(u64, io::ErrorKind)>,
    /// How long a write takes to become durable ([`WalFs::sync_delay`]).
    sync_delay: std::time::Duration,
    log: Vec<Op>,
}

/// The in-memory file system; clones share it. Only `/` exists at first.
#[derive(Clone)]
pub struct CrashFs {
    state: Arc<Mutex<State>>,
    never_blocks: bool,
}

impl Default for CrashFs {
    fn default() -> Self {
        Self::new()
    }
}

fn power_failed() -> io::Error {
    io::Error::other("simulated power failure")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

fn split(path: &Path) -> io::Result<(PathBuf, OsString)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent.to_path_buf(), name.to_os_string())),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no parent", path.display()),
        )),
    }
}

impl State {
    /// Counts a changing operation; fails once the power has failed.
    fn spend(&mut self, op: Op) -> io::Result<()> {
        if self.dead {
            return Err(power_failed());
        }
        if let Some(left) = &mut self.budget {
            if *left == 0 {
                self.dead = true;
                return Err(power_failed());
            }
            *left -= 1;
        }
        match &mut self.failure {
            Some((0, kind)) => {
                let kind = *kind;
                self.failure = None;
                return Err(io::Error::new(kind, format!("simulated {kind}")));
            }
            Some((left, _)) => *left -= 1,
            None => {}
        }
        self.log.push(op);
        Ok(())
    }

    fn alive(&self) -> io::Result<()> {
        if self.dead {
            Err(power_failed())
        } else {
            Ok(())
        }
    }

    fn dir_mut(&mut self, path: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(path).ok_or_else(|| not_found(path))
    }

    fn lookup(&self, path: &Path) -> io::Result<Entry> {
        let (parent, name) = split(path)?;
        self.dirs
            .get(&parent)
            .and_then(|d| d.current.get(&name))
            .copied()
            .ok_or_else(|| not_found(path))
    }

    fn inode(&mut self, ino: u64) -> &mut Inode {
        self.inodes.entry(ino).or_default()
    }
}

impl CrashFs {
    /// An empty file system holding only `/`.
    pub fn new() -> Self {
        let mut state = State::default();
        state.dirs.insert(PathBuf::from("/"), Dir::default());
        CrashFs {
            state: Arc::new(Mutex::new(state)),
            never_blocks: false,
        }
    }

    /// An empty file system that says it never blocks
    /// ([`WalFs::never_blocks`]): a WAL on it writes on the appending
    /// thread, as a simulation needs.
    pub fn never_blocking() -> Self {
        CrashFs {
            never_blocks: true,
            ..Self::new()
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From now on, `ops` more changing operations succeed, then the power
    /// fails and every operation errors until [`crash`](Self::crash).
    pub fn power_fails_after(&self, ops: u64) {
        self.lock().budget = Some(ops);
    }

    /// After `ops` more changing operations succeed, the next one fails
    /// with `kind` (an I/O error, a full disk), once; the power stays on.
    pub fn fail_once_after(&self, ops: u64, kind: io::ErrorKind) {
        self.lock().failure = Some((ops, kind));
    }

    /// Takes back a failure [`fail_once_after`](Self::fail_once_after)
    /// set that has not happened yet.
    pub fn clear_failure(&self) {
        self.lock().failure = None;
    }

    /// From now on the disk takes `delay` to make a write durable: a WAL
    /// on a file system that never blocks answers that much later.
    /// `Duration::ZERO` makes it fast again.
    pub fn slow_down(&self, delay: std::time::Duration) {
        self.lock().sync_delay = delay;
    }

    /// The power fails now: every operation errors until
    /// [`crash`](Self::crash).
    pub fn power_off(&self) {
        self.lock().dead = true;
    }

    /// Changing operations done so far (since creation).
    pub fn ops_done(&self) -> u64 {
        self.lock().log.len() as u64
    }

    /// Every changing operation done so far, in order.
    pub fn log(&self) -> Vec<Op> {
        self.lock().log.clone()
    }

    /// Whether the power has failed.
    pub fn power_failed(&self) -> bool {
        self.lock().dead
    }

    /// Simulates the machine coming back: directories hold only their
    /// synced entries (a directory not synced into its parent vanishes with
    /// its contents), files only their synced data plus what `tear` keeps.
    /// The power is on again, without a limit.
    pub fn crash(&self, tear: Tear) {
        let mut state = self.lock();
        let paths: Vec<PathBuf> = state.dirs.keys().cloned().collect();
        for dir in state.dirs.values_mut() {
            dir.current = dir.durable.clone();
        }
        // Shortest paths first: a parent is decided before its children.
        for path in paths {
            let Ok((parent, name)) = split(&path) else {
                continue;
            };
            let survives = state
                .dirs
                .get(&parent)
                .is_some_and(|d| d.durable.get(&name) == Some(&Entry::Dir));
            if !survives {
                state.dirs.remove(&path);
            }
        }
        for inode in state.inodes.values_mut() {
            let mut data = inode.durable.clone();
            let pending = std::mem::take(&mut inode.pending);
            let keep = match tear {
                Tear::DropAll => 0,
                Tear::KeepAll | Tear::TearLast => pending.len(),
            };
            for (k, op) in pending.into_iter().take(keep).enumerate() {
                let last = k + 1 == keep;
                match op {
                    Pending::Write { offset, mut bytes } => {
                        if last && tear == Tear::TearLast {
                            bytes.truncate(bytes.len() / 2);
                        }
                        write_into(&mut data, offset, &bytes);
                    }
                    Pending::SetLen(len) => data.resize(len, 0),
                }
            }
            inode.durable = data.clone();
            inode.current = data;
        }
        state.budget = None;
        state.dead = false;
    }

    /// The current bytes of `path`, if it is a file.
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let mut state = self.lock();
        match state.lookup(path).ok()? {
            Entry::File(ino) => Some(state.inode(ino).current.clone()),
            Entry::Dir => None,
        }
    }

    /// Whether `path` exists now.
    pub fn exists(&self, path: &Path) -> bool {
        path == Path::new("/") || self.lock().lookup(path).is_ok()
    }

    /// Deletes a file at once, durably (as an operator would).
    pub fn delete(&self, path: &Path) {
        let mut state = self.lock();
        if let Ok((parent, name)) = split(path) {
            if let Some(dir) = state.dirs.get_mut(&parent) {
                dir.current.remove(&name);
                dir.durable.remove(&name);
            }
        }
    }

    /// Replaces the current and durable bytes of the file `path`.
    pub fn overwrite(&self, path: &Path, bytes: &[u8]) {
        let mut state = self.lock();
        if let Ok(Entry::File(ino)) = state.lookup(path) {
            let inode = state.inode(ino);
            inode.current = bytes.to_vec();
            inode.durable = bytes.to_vec();
            inode.pending.clear();
        }
    }
}

fn write_into(data: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
    let end = offset + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[offset..end].copy_from_slice(bytes);
}

struct CrashFile {
    fs: CrashFs,
    ino: u64,
    path: PathBuf,
}

impl WalFile for CrashFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut state = self.fs.lock();
        state.alive()?;
        let data = &state.inode(self.ino).current;
        let start = (offset as usize).min(data.len());
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.fs.lock();
        state.spend(Op::Write(self.path.clone()))?;
        let inode = state.inode(self.ino);
        write_into(&mut inode.current, offset as usize, buf);
        inode.pending.push(Pending::Write {
            offset: offset as usize,
            bytes: buf.to_vec(),
        });
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync_all()
    }

    fn sync_all(&self) -> io::Result<()> {
        let mut state = self.fs.lock();
        state.spend(Op::Sync(self.path.clone()))?;
        let inode = state.inode(self.ino);
        inode.durable = inode.current.clone();
        inode.pending.clear();
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.fs.lock();
        state.spend(Op::SetLen(self.path.clone()))?;
        let inode = state.inode(self.ino);
        inode.current.resize(len as usize, 0);
        inode.pending.push(Pending::SetLen(len as usize));
        Ok(())
    }

    fn size(&self) -> io::Result<u64> {
        let mut state = self.fs.lock();
        state.alive()?;
        Ok(state.inode(self.ino).current.len() as u64)
    }
}

impl WalFs for CrashFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut missing: Vec<&Path> = dir.ancestors().filter(|p| !self.exists(p)).collect();
        missing.reverse();
        for path in missing {
            self.create_dir(path)?;
        }
        Ok(())
    }

    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.alive()?;
        let (parent, name) = split(dir)?;
        if !state.dirs.contains_key(&parent) {
            return Err(not_found(&parent));
        }
        if state.lookup(dir).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists", dir.display()),
            ));
        }
        state.spend(Op::CreateDir(dir.to_path_buf()))?;
        state.dir_mut(&parent)?.current.insert(name, Entry::Dir);
        state.dirs.insert(dir.to_path_buf(), Dir::default());
        Ok(())
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<DirLock> {
        let state = self.lock();
        state.alive()?;
        if !state.dirs.contains_key(dir) {
            return Err(not_found(dir));
        }
        Ok(Box::new(()))
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let state = self.lock();
        state.alive()?;
        let entries = &state.dirs.get(dir).ok_or_else(|| not_found(dir))?.current;
        Ok(entries.keys().map(|name| dir.join(name)).collect())
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn WalFile>> {
        let state = self.lock();
        state.alive()?;
        match state.lookup(path)? {
            Entry::File(ino) => Ok(Arc::new(CrashFile {
                fs: self.clone(),
                ino,
                path: path.to_path_buf(),
            })),
            Entry::Dir => Err(io::Error::other(format!(
                "{} is a directory",
                path.display()
            ))),
        }
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn WalFile>> {
        let mut state = self.lock();
        let (parent, name) = split(path)?;
        if !state.dirs.contains_key(&parent) {
            state.alive()?;
            return Err(not_found(&parent));
        }
        state.spend(Op::Create(path.to_path_buf()))?;
        let ino = match state.lookup(path) {
            Ok(Entry::File(ino)) => {
                let inode = state.inode(ino);
                inode.current.clear();
                inode.pending.push(Pending::SetLen(0));
                ino
            }
            Ok(Entry::Dir) => {
                return Err(io::Error::other(format!(
                    "{} is a directory",
                    path.display()
                )));
            }
            Err(_) => {
                state.next_inode += 1;
                let ino = state.next_inode;
                state.inodes.insert(ino, Inode::default());
                state
                    .dir_mut(&parent)?
                    .current
                    .insert(name, Entry::File(ino));
                ino
            }
        };
        Ok(Arc::new(CrashFile {
            fs: self.clone(),
            ino,
            path: path.to_path_buf(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.alive()?;
        let entry = state.lookup(from)?;
        let (to_parent, to_name) = split(to)?;
        if !state.dirs.contains_key(&to_parent) {
            return Err(not_found(&to_parent));
        }
        state.spend(Op::Rename(from.to_path_buf(), to.to_path_buf()))?;
        let (from_parent, from_name) = split(from)?;
        state.dir_mut(&from_parent)?.current.remove(&from_name);
        state.dir_mut(&to_parent)?.current.insert(to_name, entry);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.alive()?;
        state.lookup(path)?;
        state.spend(Op::Remove(path.to_path_buf()))?;
        let (parent, name) = split(path)?;
        state.dir_mut(&parent)?.current.remove(&name);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state.alive()?;
        if !state.dirs.contains_key(dir) {
            return Err(not_found(dir));
        }
        state.spend(Op::SyncDir(dir.to_path_buf()))?;
        let d = state.dir_mut(dir)?;
        d.durable = d.current.clone();
        Ok(())
    }

    fn never_blocks(&self) -> bool {
        self.never_blocks
    }

    fn sync_delay(&self) -> std::time::Duration {
        self.lock().sync_delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_entries_and_data_are_lost_synced_ones_kept() {
        let fs = CrashFs::new();
        fs.create_dir(Path::new("/a")).unwrap();
        fs.sync_dir(Path::new("/")).unwrap();
        let file = fs.create(Path::new("/a/f")).unwrap();
        file.write_all_at(b"hello", 0).unwrap();
        file.sync_all().unwrap();
        file.write_all_at(b" world", 5).unwrap();
        fs.create_dir(Path::new("/b")).unwrap();
        drop(file);
        fs.crash(Tear::DropAll);
        // The file's entry was never synced into /a.
        assert!(!fs.exists(Path::new("/a/f")));
        assert!(fs.exists(Path::new("/a")));
        assert!(!fs.exists(Path::new("/b")));

        let file = fs.create(Path::new("/a/f")).unwrap();
        file.write_all_at(b"hello", 0).unwrap();
        file.sync_all().unwrap();
        fs.sync_dir(Path::new("/a")).unwrap();
        file.write_all_at(b" world", 5).unwrap();
        drop(file);
        fs.crash(Tear::TearLast);
        assert_eq!(fs.read(Path::new("/a/f")).unwrap(), b"hello wo");
    }

    #[test]
    fn the_power_fails_after_the_budget() {
        let fs = CrashFs::new();
        fs.power_fails_after(1);
        fs.create_dir(Path::new("/a")).unwrap();
        assert!(fs.sync_dir(Path::new("/")).is_err());
        assert!(fs.power_failed());
        assert!(fs.read_dir(Path::new("/")).is_err());
        fs.crash(Tear::KeepAll);
        assert!(!fs.exists(Path::new("/a")));
        fs.create_dir(Path::new("/a")).unwrap();
    }
}
