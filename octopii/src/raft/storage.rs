//! [`RaftStorage`]: raft-rs's [`Storage`] backed by the node's WAL.
//!
//! # Layout
//!
//! A raft data directory holds:
//!
//! * `wal/`: a [`Wal`] whose records are raft log entries, one
//!   protobuf-encoded `eraftpb::Entry` per record, in index order;
//! * `raft-state`: the hard state (term, vote, commit), the current
//!   configuration, the latest snapshot's metadata, and the mapping from WAL
//!   record indexes to raft indexes;
//! * `snapshot-<index>-<term>`: the latest snapshot's data, streamed to
//!   and from the file, never held whole in memory (see `snapshot.rs`);
//! * `incoming-snapshots/`: snapshot files arriving from the leader.
//!
//! Both files are written atomically (temporary file, `fsync`, rename,
//! directory `fsync`) and framed as `magic ‖ length ‖ CRC32C ‖ payload`
//! (`docs/ARCHITECTURE.md` gives the bytes; the snapshot file's length is
//! 64-bit).
//!
//! # Why entries alone go to the WAL
//!
//! Raft needs three kinds of durable state that change at very different
//! rates: entries (every proposal), term and vote (every election), and the
//! configuration and snapshot (rarely). Entries are the hot path and get the
//! WAL's group commit; the rest is small and rewritten whole, so recovery is
//! "read one file, then read the entries it points to", with no replay of
//! interleaved record kinds.
//!
//! WAL record `w` holds raft entry `w - wal_base + raft_base` for
//! `w >= wal_base`. Installing a snapshot from the leader discards the whole
//! log: it sets `raft_base` to the snapshot index + 1 and `wal_base` to the
//! WAL's next index, in the same atomic write of `raft-state` that records
//! the snapshot. Records below `wal_base` are then dead and compacted away;
//! a crash at any point leaves either the old or the new state, both whole.
//!
//! # What is persisted when
//!
//! Entries are durable before [`append`](RaftStorage::append) returns.
//! `raft-state` is rewritten, durably, whenever the term or vote changes, on
//! every applied membership change and snapshot. The commit index is saved
//! with it but not on every change: raft does not need it durable (a
//! restarted node learns it again from the leader), and saving it lazily
//! spares an `fsync` per commit. The saved commit never exceeds the last
//! durable entry.
//!
//! # Reads
//!
//! Entries since the latest snapshot are also kept in memory, so raft's
//! reads (`entries`, `term`) never touch the disk; a snapshot, taken every
//! [`snapshot_interval`](super::RaftConfig::snapshot_interval) applied
//! entries or once they hold
//! [`snapshot_log_bytes`](super::RaftConfig::snapshot_log_bytes), bounds
//! that memory.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use serde::{Deserialize, Serialize};

use super::RaftError;
use super::snapshot::{self, Fingerprint, SnapshotWriter};
use crate::codec;
use crate::wal::fs::{read_whole, write_atomic};
use crate::wal::{StdFs, Wal, WalFs, WalOptions, create_dir_durable};
use crate::{OctopiiError, Result};

/// Name of the hard-state file.
const STATE_FILE: &str = "raft-state";
/// First bytes of the hard-state file.
pub(crate) const STATE_MAGIC: &[u8; 8] = b"OCTORFTS";
/// Directory, inside the raft directory, that receives snapshot files.
pub(crate) const INCOMING_DIR: &str = "incoming-snapshots";
/// Magic, length and CRC before a file's payload.
const FILE_HEADER: usize = 16;
/// Largest index or term a `raft-state` file or an installed snapshot may
/// hold: every index derived from one (`+ 1`, `+ entries`) then stays far
/// from `u64::MAX`.
const MAX_INDEX: u64 = i64::MAX as u64;

/// The contents of `raft-state` (bincode, as [`codec`] encodes it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StateRecord {
    pub(crate) term: u64,
    pub(crate) vote: u64,
    pub(crate) commit: u64,
    /// Protobuf-encoded `ConfState` of the latest applied configuration.
    pub(crate) conf_state: Vec<u8>,
    pub(crate) snapshot_index: u64,
    pub(crate) snapshot_term: u64,
    /// Protobuf-encoded `ConfState` at the snapshot.
    pub(crate) snapshot_conf_state: Vec<u8>,
    /// WAL index of the record that holds raft entry `raft_base`.
    pub(crate) wal_base: u64,
    pub(crate) raft_base: u64,
}

/// The raft log and state of one node, durable in a directory.
pub struct RaftStorage {
    dir: PathBuf,
    fs: Arc<dyn WalFs>,
    wal: Wal,
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: SnapshotMetadata,
    /// The latest snapshot file's fingerprint (`None` before the first).
    snapshot_file: Option<Fingerprint>,
    /// What `raft-state` holds now.
    saved: StateRecord,
    /// Entries `snapshot.index + 1 ..`, all durable.
    entries: VecDeque<Entry>,
    /// Bytes of data and context in `entries`.
    entry_bytes: u64,
    /// Set when raft asked for a snapshot the stored one cannot serve.
    snapshot_wanted: Cell<bool>,
}

impl std::fmt::Debug for RaftStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftStorage")
            .field("dir", &self.dir)
            .field("hard_state", &self.hard_state)
            .field("snapshot_index", &self.snapshot.index)
            .field("last_index", &self.last())
            .finish()
    }
}

fn storage_error(message: impl Into<String>) -> OctopiiError {
    OctopiiError::Raft(RaftError::Storage(message.into()))
}

fn pb_encode(message: &impl protobuf::Message) -> Result<Vec<u8>> {
    message
        .write_to_bytes()
        .map_err(|e| storage_error(format!("a record does not encode: {e}")))
}

fn pb_decode<M: protobuf::Message>(bytes: &[u8], what: &str, path: &Path) -> Result<M> {
    M::parse_from_bytes(bytes)
        .map_err(|e| storage_error(format!("{}: {what} does not decode: {e}", path.display())))
}

impl RaftStorage {
    /// Opens (or creates) the raft state in `dir`, recovering it exactly
    /// as last persisted.
    ///
    /// A fresh directory starts empty (a node that joins a running
    /// cluster), or, with `bootstrap`, from a snapshot at index 1, term 1
    /// holding the first configuration and the initial state. Every
    /// founding member starts from that same snapshot, so a node added
    /// later learns the founding configuration from it.
    ///
    /// Refuses, with an error naming the file, a WAL that fails to open
    /// (corruption), a damaged state or snapshot file, or a log that does
    /// not match the state file. A missing `raft-state` beside a WAL that
    /// holds records, or beside a snapshot, is refused too: starting blank
    /// would forget the term and vote and drop acknowledged entries.
    /// Blocks while it reads.
    pub fn open(
        dir: &Path,
        wal_options: WalOptions,
        bootstrap: Option<&Bootstrap>,
    ) -> Result<Self> {
        Self::open_with_fs(dir, wal_options, bootstrap, Arc::new(StdFs))
    }

    /// Like [`open`](Self::open), with every file operation (the WAL's,
    /// `raft-state`'s, the snapshot files' and the directories') going
    /// through `fs`, for tests that inject failures or crashes.
    pub fn open_with_fs(
        dir: &Path,
        wal_options: WalOptions,
        bootstrap: Option<&Bootstrap>,
        fs: Arc<dyn WalFs>,
    ) -> Result<Self> {
        create_dir_durable(fs.as_ref(), dir).map_err(|e| OctopiiError::file(dir, e))?;
        let wal =
            Wal::open_with_fs(dir.join("wal"), wal_options, Arc::clone(&fs)).map_err(|e| {
                storage_error(format!(
                    "the raft log in {} cannot be opened, refusing to start rather than rejoin \
                 with lost state: {e}",
                    dir.display()
                ))
            })?;
        let state_path = dir.join(STATE_FILE);
        let mut saved = match read_whole(fs.as_ref(), &state_path) {
            Ok(bytes) => decode_state(&state_path, &bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                refuse_unless_blank(fs.as_ref(), dir, &wal)?;
                // Written before any bootstrap snapshot: from here on a
                // missing `raft-state` always means lost state.
                let blank = fresh_state(&wal, None)?;
                write_framed(
                    fs.as_ref(),
                    dir,
                    STATE_FILE,
                    STATE_MAGIC,
                    &codec::encode(&blank)?,
                )?;
                blank
            }
            Err(e) => return Err(OctopiiError::file(&state_path, e)),
        };
        if let Some(bootstrap) = bootstrap {
            if saved.is_untouched(&wal) {
                let founded = fresh_state(&wal, Some(bootstrap))?;
                let name = snapshot::file_name(founded.snapshot_index, founded.snapshot_term);
                snapshot::write_file(&fs, &dir.join(name), &bootstrap.snapshot_data)?;
                write_framed(
                    fs.as_ref(),
                    dir,
                    STATE_FILE,
                    STATE_MAGIC,
                    &codec::encode(&founded)?,
                )?;
                saved = founded;
            }
        }

        let conf_state: ConfState = pb_decode(&saved.conf_state, "conf state", &state_path)?;
        let mut snapshot = SnapshotMetadata {
            index: saved.snapshot_index,
            term: saved.snapshot_term,
            ..SnapshotMetadata::default()
        };
        snapshot.set_conf_state(pb_decode(
            &saved.snapshot_conf_state,
            "snapshot conf state",
            &state_path,
        )?);
        let snapshot_file = if saved.snapshot_index > 0 {
            let name = snapshot::file_name(saved.snapshot_index, saved.snapshot_term);
            Some(snapshot::verify(fs.as_ref(), &dir.join(name))?)
        } else {
            None
        };
        let hard_state = HardState {
            term: saved.term,
            vote: saved.vote,
            commit: saved.commit,
            ..HardState::default()
        };
        let mut storage = RaftStorage {
            dir: dir.to_path_buf(),
            fs,
            wal,
            hard_state,
            conf_state,
            snapshot,
            snapshot_file,
            saved,
            entries: VecDeque::new(),
            entry_bytes: 0,
            snapshot_wanted: Cell::new(false),
        };
        storage.load_entries()?;
        storage.remove_old_snapshots();
        let (commit, first, last) = (
            storage.hard_state.commit,
            storage.snapshot.index,
            storage.last(),
        );
        if commit < first || commit > last {
            return Err(storage_error(format!(
                "{}: commit index {commit} is outside the log {first}..={last}",
                state_path.display()
            )));
        }
        Ok(storage)
    }

    /// Reads the entries after the snapshot back from the WAL.
    fn load_entries(&mut self) -> Result<()> {
        let first_raft = self.saved.first_entry_index();
        let start = self.raft_to_wal(first_raft)?;
        let (wal_first, wal_end) = (self.wal.first_index(), self.wal.last_index() + 1);
        if start < wal_first || start > wal_end {
            return Err(storage_error(format!(
                "{}: the raft log should continue at WAL record {start}, but the WAL holds \
                 {wal_first}..{wal_end}",
                self.dir.display()
            )));
        }
        for item in self.wal.iter_from(start) {
            let (index, record) = item?;
            let entry: Entry = pb_decode(&record, &format!("WAL record {index}"), &self.dir)?;
            let expected = first_raft + self.entries.len() as u64;
            if entry.index != expected {
                return Err(storage_error(format!(
                    "{}: WAL record {index} holds raft entry {}, expected {expected}",
                    self.dir.display(),
                    entry.index
                )));
            }
            self.entry_bytes += entry_size(&entry);
            self.entries.push_back(entry);
        }
        Ok(())
    }

    fn raft_to_wal(&self, raft_index: u64) -> Result<u64> {
        self.saved.wal_index_of(raft_index).ok_or_else(|| {
            storage_error(format!(
                "raft index {raft_index} is outside the log that starts at {} (WAL record {})",
                self.saved.raft_base, self.saved.wal_base
            ))
        })
    }

    fn last(&self) -> u64 {
        self.snapshot.index + self.entries.len() as u64
    }

    /// The latest snapshot's metadata.
    pub fn snapshot_metadata(&self) -> &SnapshotMetadata {
        &self.snapshot
    }

    /// Whether the checked file of snapshot `index`/`term` from a leader
    /// is waiting to be installed.
    pub(crate) fn has_received_snapshot(&self, index: u64, term: u64) -> bool {
        self.fs
            .open(&snapshot::received_path(&self.dir, index, term))
            .is_ok()
    }

    /// The file system this raft state is kept on.
    pub(crate) fn fs(&self) -> &Arc<dyn WalFs> {
        &self.fs
    }

    /// The directory holding this raft state.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The latest snapshot's file (`None` before the first snapshot).
    pub fn snapshot_path(&self) -> Option<PathBuf> {
        self.snapshot_file?;
        let name = snapshot::file_name(self.snapshot.index, self.snapshot.term);
        Some(self.dir.join(name))
    }

    /// Bytes of commands (entry data and context) held since the latest
    /// snapshot: what the in-memory copy of the log costs.
    pub fn log_bytes(&self) -> u64 {
        self.entry_bytes
    }

    /// The configuration last persisted.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Whether raft asked for a newer snapshot than the stored one (the
    /// request is cleared by asking).
    pub fn take_snapshot_request(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }

    /// Appends `entries` durably, first dropping any conflicting suffix
    /// they replace.
    pub async fn append(&mut self, entries: &[Entry]) -> Result<()> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let first_index = first.index;
        if first_index <= self.snapshot.index || first_index > self.last() + 1 {
            return Err(storage_error(format!(
                "entries from {first_index} do not extend the log {}..={}",
                self.snapshot.index,
                self.last()
            )));
        }
        let wal_index = self.raft_to_wal(first_index)?;
        if first_index <= self.last() {
            self.wal.truncate_suffix(wal_index).await?;
            let kept = (first_index - self.snapshot.index - 1) as usize;
            let dropped: u64 = self.entries.range(kept..).map(entry_size).sum();
            self.entry_bytes -= dropped;
            self.entries.truncate(kept);
        }
        let records = entries.iter().map(pb_encode).collect::<Result<Vec<_>>>()?;
        let range = self.wal.append_batch(&records).await?;
        if range.start != wal_index {
            return Err(storage_error(format!(
                "raft entry {first_index} landed in WAL record {}, expected {wal_index}",
                range.start
            )));
        }
        self.entry_bytes += entries.iter().map(entry_size).sum::<u64>();
        self.entries.extend(entries.iter().cloned());
        Ok(())
    }

    /// Records raft's hard state; persists it now if the term or vote
    /// changed (the commit index is saved lazily, see the module docs).
    pub fn set_hard_state(&mut self, hard_state: &HardState) -> Result<()> {
        self.hard_state = hard_state.clone();
        if hard_state.term != self.saved.term || hard_state.vote != self.saved.vote {
            self.save()?;
        }
        Ok(())
    }

    /// Records a new commit index (saved lazily).
    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    /// Persists the configuration produced by an applied membership change.
    pub fn set_conf_state(&mut self, conf_state: ConfState) -> Result<()> {
        self.conf_state = conf_state;
        self.save()
    }

    /// Installs a snapshot received from the leader: its file (received
    /// and checked already, waiting at its `.received` name), metadata and
    /// configuration replace the whole log, durably.
    pub async fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<()> {
        let meta = snapshot.get_metadata().clone();
        if meta.index > MAX_INDEX || meta.term > MAX_INDEX {
            return Err(storage_error(format!(
                "refusing a snapshot at index {} term {}: above the largest allowed, {MAX_INDEX}",
                meta.index, meta.term
            )));
        }
        let fingerprint = Fingerprint::from_reference(&snapshot.data)
            .ok_or_else(|| storage_error("the snapshot carries no usable file reference"))?;
        let received = snapshot::received_path(&self.dir, meta.index, meta.term);
        let path = self.dir.join(snapshot::file_name(meta.index, meta.term));
        self.fs
            .rename(&received, &path)
            .map_err(|e| OctopiiError::file(&received, e))?;
        snapshot::sync_parent(self.fs.as_ref(), &path)?;
        self.conf_state = meta.get_conf_state().clone();
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        if meta.term > self.hard_state.term {
            // A newer term than this node has saved: no vote in it yet.
            self.hard_state.term = meta.term;
            self.hard_state.vote = 0;
        }
        self.entries.clear();
        self.entry_bytes = 0;
        self.snapshot = meta;
        self.snapshot_file = Some(fingerprint);
        let (wal_base, raft_base) = (self.wal.last_index() + 1, self.snapshot.index + 1);
        self.save_with_base(wal_base, raft_base)?;
        self.remove_old_snapshots();
        Ok(self.wal.compact_prefix(wal_base).await?)
    }

    /// Takes a snapshot at `index` (an applied entry) whose data `write`
    /// streams into the snapshot file, then drops the entries it covers
    /// from memory and compacts the WAL.
    ///
    /// `write` runs before the returned future is first polled and is not
    /// kept in it, so it may borrow what is not `Send` (the state machine).
    pub fn compact(
        &mut self,
        index: u64,
        write: impl FnOnce(&mut dyn Write) -> Result<()>,
    ) -> impl Future<Output = Result<()>> + Send + '_ {
        let taken = self.take_snapshot(index, write);
        async move {
            match taken? {
                Some(upto) => Ok(self.wal.compact_prefix(upto).await?),
                None => Ok(()),
            }
        }
    }

    /// Writes the snapshot file and records it; the WAL index below which
    /// records are dead, or `None` if `index` is not past the latest snapshot.
    fn take_snapshot(
        &mut self,
        index: u64,
        write: impl FnOnce(&mut dyn Write) -> Result<()>,
    ) -> Result<Option<u64>> {
        if index <= self.snapshot.index {
            return Ok(None);
        }
        let term = self
            .term(index)
            .map_err(|e| storage_error(format!("snapshot at {index}: {e}")))?;
        let mut writer =
            SnapshotWriter::create(&self.fs, &self.dir.join(snapshot::file_name(index, term)))?;
        write(&mut writer)?;
        let fingerprint = writer.finish()?;
        let covered = (index - self.snapshot.index) as usize;
        let dropped: u64 = self.entries.drain(..covered).map(|e| entry_size(&e)).sum();
        self.entry_bytes -= dropped;
        self.snapshot.index = index;
        self.snapshot.term = term;
        self.snapshot.set_conf_state(self.conf_state.clone());
        self.snapshot_file = Some(fingerprint);
        self.save()?;
        self.remove_old_snapshots();
        self.raft_to_wal(index + 1).map(Some)
    }

    fn save(&mut self) -> Result<()> {
        self.save_with_base(self.saved.wal_base, self.saved.raft_base)
    }

    /// Writes `raft-state` from the current fields.
    fn save_with_base(&mut self, wal_base: u64, raft_base: u64) -> Result<()> {
        let record = StateRecord {
            term: self.hard_state.term,
            vote: self.hard_state.vote,
            commit: self
                .hard_state
                .commit
                .min(self.last())
                .max(self.snapshot.index),
            conf_state: pb_encode(&self.conf_state)?,
            snapshot_index: self.snapshot.index,
            snapshot_term: self.snapshot.term,
            snapshot_conf_state: pb_encode(self.snapshot.get_conf_state())?,
            wal_base,
            raft_base,
        };
        write_framed(
            self.fs.as_ref(),
            &self.dir,
            STATE_FILE,
            STATE_MAGIC,
            &codec::encode(&record)?,
        )?;
        self.saved = record;
        Ok(())
    }

    /// Deletes snapshot files other than the current one, here and among
    /// the received ones, that raft can no longer install: those up to the
    /// current snapshot's index (raft refuses a snapshot below its commit
    /// index, and the current one covers at most that). Newer received
    /// files may still be on their way in, so they stay; so does anything
    /// in this directory that is not a snapshot file. Best effort: a
    /// leftover file is harmless.
    fn remove_old_snapshots(&self) {
        let current = snapshot::file_name(self.snapshot.index, self.snapshot.term);
        let index = self.snapshot.index;
        let stale = |name: &str| snapshot::index_of(name).is_some_and(|i| i <= index);
        remove_files(self.fs.as_ref(), &self.dir, |name| {
            name != current && stale(name)
        });
        // Anything a peer left in the incoming directory goes too, except
        // a newer snapshot still arriving.
        remove_files(self.fs.as_ref(), &self.dir.join(INCOMING_DIR), |name| {
            snapshot::index_of(name).is_none_or(|i| i <= index)
        });
    }
}

/// How founding members of a cluster start (see [`RaftStorage::open`]).
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The founding voters.
    pub voters: Vec<u64>,
    /// The payload of the initial snapshot file (the same on every
    /// founder): the initial state is small, so it is held in memory.
    pub snapshot_data: Vec<u8>,
}

/// The state of a fresh directory.
fn fresh_state(wal: &Wal, bootstrap: Option<&Bootstrap>) -> Result<StateRecord> {
    let wal_base = wal.last_index() + 1;
    Ok(match bootstrap {
        None => StateRecord {
            wal_base,
            ..blank_state()?
        },
        Some(bootstrap) => {
            let conf_state = pb_encode(&ConfState {
                voters: bootstrap.voters.clone(),
                ..ConfState::default()
            })?;
            StateRecord {
                term: 1,
                vote: 0,
                commit: 1,
                conf_state: conf_state.clone(),
                snapshot_index: 1,
                snapshot_term: 1,
                snapshot_conf_state: conf_state,
                wal_base,
                raft_base: 2,
            }
        }
    })
}

fn entry_size(entry: &Entry) -> u64 {
    (entry.data.len() + entry.context.len()) as u64
}

/// Removes the files of `dir` whose name `doomed` picks (best effort).
fn remove_files(fs: &dyn WalFs, dir: &Path, doomed: impl Fn(&str) -> bool) {
    let Ok(listing) = fs.read_dir(dir) else {
        return;
    };
    for path in listing {
        let doomed = path
            .file_name()
            .is_some_and(|name| doomed(&name.to_string_lossy()));
        if doomed && !path.is_dir() {
            if let Err(e) = fs.remove_file(&path) {
                tracing::warn!(file = %path.display(), "cannot remove an old snapshot: {e}");
            }
        }
    }
}

/// Writes `magic ‖ len u32 LE ‖ CRC32C u32 LE ‖ payload` to `dir/name`
/// atomically and durably.
fn write_framed(
    fs: &dyn WalFs,
    dir: &Path,
    name: &str,
    magic: &[u8; 8],
    payload: &[u8],
) -> Result<()> {
    let bytes = frame_file(magic, payload)
        .ok_or_else(|| storage_error(format!("{name}: {} bytes is too large", payload.len())))?;
    write_atomic(fs, dir, name, &bytes).map_err(|e| OctopiiError::file(dir.join(name), e))
}

/// `magic ‖ len u32 LE ‖ CRC32C u32 LE ‖ payload`; `None` if the payload
/// does not fit a `u32` length.
pub(crate) fn frame_file(magic: &[u8; 8], payload: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(payload.len()).ok()?;
    let mut bytes = Vec::with_capacity(FILE_HEADER + payload.len());
    bytes.extend_from_slice(magic);
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    Some(bytes)
}

/// The `raft-state` of a node that has done nothing yet.
pub(crate) fn blank_state() -> Result<StateRecord> {
    let empty = pb_encode(&ConfState::default())?;
    Ok(StateRecord {
        term: 0,
        vote: 0,
        commit: 0,
        conf_state: empty.clone(),
        snapshot_index: 0,
        snapshot_term: 0,
        snapshot_conf_state: empty,
        wal_base: 1,
        raft_base: 1,
    })
}

/// The payload of the bytes of a file written by [`write_framed`], once
/// its magic, length and CRC are checked; `path` names it in errors.
pub(crate) fn decode_framed<'a>(path: &Path, bytes: &'a [u8], magic: &[u8; 8]) -> Result<&'a [u8]> {
    if bytes.len() < FILE_HEADER {
        return Err(OctopiiError::corrupt(
            path,
            0,
            format!(
                "{} bytes, shorter than the {FILE_HEADER}-byte header",
                bytes.len()
            ),
        ));
    }
    if &bytes[..8] != magic {
        return Err(OctopiiError::corrupt(path, 0, "bad magic"));
    }
    let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    let crc = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    let payload = &bytes[FILE_HEADER..];
    if payload.len() != len {
        return Err(OctopiiError::corrupt(
            path,
            8,
            format!(
                "length mismatch: the header says {len} bytes, {} follow",
                payload.len()
            ),
        ));
    }
    if crc32c::crc32c(payload) != crc {
        return Err(OctopiiError::corrupt(path, 12, "CRC mismatch"));
    }
    Ok(payload)
}

/// Decodes and checks the bytes of a `raft-state` file at `path`.
pub(crate) fn decode_state(path: &Path, bytes: &[u8]) -> Result<StateRecord> {
    let payload = decode_framed(path, bytes, STATE_MAGIC)?;
    let record: StateRecord = codec::decode(payload).map_err(|e| {
        OctopiiError::corrupt(path, FILE_HEADER as u64, format!("does not decode: {e}"))
    })?;
    record.check(path)?;
    Ok(record)
}

impl StateRecord {
    /// Byte offsets in the file of each field, as bincode's fixed-width
    /// encoding lays them out after the header.
    fn offsets(&self) -> StateOffsets {
        let base = FILE_HEADER as u64;
        let conf = self.conf_state.len() as u64;
        let snap_conf = self.snapshot_conf_state.len() as u64;
        StateOffsets {
            term: base,
            commit: base + 16,
            conf_state: base + 24,
            snapshot_index: base + 32 + conf,
            snapshot_term: base + 40 + conf,
            snapshot_conf_state: base + 48 + conf,
            wal_base: base + 56 + conf + snap_conf,
            raft_base: base + 64 + conf + snap_conf,
        }
    }

    /// Refuses values no run of this code writes, so that every index
    /// computed from them is in range; names the field's byte offset.
    fn check(&self, path: &Path) -> Result<()> {
        let at = self.offsets();
        let bad = |offset: u64, why: String| Err(OctopiiError::corrupt(path, offset, why));
        for (name, value, offset) in [
            ("term", self.term, at.term),
            ("commit", self.commit, at.commit),
            ("snapshot index", self.snapshot_index, at.snapshot_index),
            ("snapshot term", self.snapshot_term, at.snapshot_term),
            ("WAL base", self.wal_base, at.wal_base),
            ("raft base", self.raft_base, at.raft_base),
        ] {
            if value > MAX_INDEX {
                return bad(
                    offset,
                    format!("{name} {value} is above the largest allowed, {MAX_INDEX}"),
                );
            }
        }
        if self.wal_base == 0 {
            return bad(
                at.wal_base,
                "WAL base is 0; WAL indexes start at 1".to_string(),
            );
        }
        if self.raft_base == 0 || self.raft_base > self.snapshot_index + 1 {
            return bad(
                at.raft_base,
                format!(
                    "raft base {} is outside 1..={} (one past the snapshot index)",
                    self.raft_base,
                    self.snapshot_index + 1
                ),
            );
        }
        for (what, bytes, offset) in [
            ("conf state", &self.conf_state, at.conf_state),
            (
                "snapshot conf state",
                &self.snapshot_conf_state,
                at.snapshot_conf_state,
            ),
        ] {
            if let Err(e) = <ConfState as protobuf::Message>::parse_from_bytes(bytes) {
                return bad(offset, format!("{what} does not decode: {e}"));
            }
        }
        Ok(())
    }

    /// The WAL record holding raft entry `raft_index`, if it can be one.
    pub(crate) fn wal_index_of(&self, raft_index: u64) -> Option<u64> {
        raft_index
            .checked_sub(self.raft_base)
            .and_then(|offset| offset.checked_add(self.wal_base))
    }

    /// The index of the first entry after the snapshot.
    pub(crate) fn first_entry_index(&self) -> u64 {
        self.snapshot_index + 1
    }

    /// Whether this is the state of a node that has done nothing yet: no
    /// term, no vote, no snapshot, no entry in the WAL.
    fn is_untouched(&self, wal: &Wal) -> bool {
        self.term == 0
            && self.vote == 0
            && self.snapshot_index == 0
            && wal.last_index() < self.wal_base
    }
}

/// Where each checked field of a `raft-state` file starts.
struct StateOffsets {
    term: u64,
    commit: u64,
    conf_state: u64,
    snapshot_index: u64,
    snapshot_term: u64,
    snapshot_conf_state: u64,
    wal_base: u64,
    raft_base: u64,
}

/// With `raft-state` missing, refuses to start unless nothing else of a
/// past run is there either: a WAL with records (or compacted ones) or a
/// snapshot file means the node had state that a blank start would forget.
fn refuse_unless_blank(fs: &dyn WalFs, dir: &Path, wal: &Wal) -> Result<()> {
    let lost = |what: String| {
        storage_error(format!(
            "{} is missing, but {what}: starting blank would forget this node's term and \
             vote and the entries it acknowledged, so it refuses to start; restore the \
             file, or delete {} entirely to rejoin as a new, empty member",
            dir.join(STATE_FILE).display(),
            dir.display()
        ))
    };
    if wal.last_index() >= wal.first_index() || wal.first_index() != 1 {
        return Err(lost(format!(
            "the WAL in {} holds records {}..={}",
            wal.dir().display(),
            wal.first_index(),
            wal.last_index()
        )));
    }
    let listing = fs.read_dir(dir).map_err(|e| OctopiiError::file(dir, e))?;
    for path in listing {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if let Some(name) = name {
            if snapshot::index_of(&name).is_some() && !name.ends_with(".tmp") {
                return Err(lost(format!("snapshot file {} exists", path.display())));
            }
        }
    }
    Ok(())
}

fn unavailable() -> raft::Error {
    raft::Error::Store(StorageError::Unavailable)
}

impl Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.snapshot.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(unavailable());
        }
        let from = (low - self.snapshot.index - 1) as usize;
        let to = (high - self.snapshot.index - 1) as usize;
        let mut entries: Vec<Entry> = self.entries.range(from..to).cloned().collect();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snapshot.index {
            return Ok(self.snapshot.term);
        }
        if idx < self.snapshot.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.entries
            .get((idx - self.snapshot.index - 1) as usize)
            .map(|e| e.term)
            .ok_or_else(unavailable)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snapshot.index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let conf = self.snapshot.get_conf_state();
        let includes_peer = [
            &conf.voters,
            &conf.learners,
            &conf.voters_outgoing,
            &conf.learners_next,
        ]
        .iter()
        .any(|ids| ids.contains(&to));
        // raft-rs refuses a snapshot whose configuration does not hold the
        // receiver (a node added since it was taken): ask for a fresh one.
        if self.snapshot.index < request_index || !includes_peer {
            self.snapshot_wanted.set(true);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        // raft carries only a reference; the file itself travels apart
        // (`snapshot_transfer.rs`).
        let Some(fingerprint) = self.snapshot_file else {
            self.snapshot_wanted.set(true);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        };
        let mut snapshot = Snapshot {
            data: fingerprint.to_reference().into(),
            ..Snapshot::default()
        };
        snapshot.set_metadata(self.snapshot.clone());
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::wal::FlushPolicy;
    use bytes::Bytes;

    /// The payload of the storage's current snapshot file.
    fn snapshot_payload(s: &RaftStorage) -> Vec<u8> {
        let bytes = fs::read(s.snapshot_path().unwrap()).unwrap();
        bytes[snapshot::HEADER_LEN..].to_vec()
    }

    fn options() -> WalOptions {
        WalOptions {
            flush_policy: FlushPolicy::NoSyncForTestsOnly,
            segment_size: 4096,
            ..WalOptions::default()
        }
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: Bytes::from(vec![index as u8; 100]),
            ..Entry::default()
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn ctx() -> GetEntriesContext {
        GetEntriesContext::empty(false)
    }

    #[test]
    fn restart_recovers_entries_hard_state_and_conf_state() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = RaftStorage::open(dir.path(), options(), None).unwrap();
            block_on(s.append(&(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>())).unwrap();
            // A conflicting suffix from a new leader replaces 4 and 5.
            block_on(s.append(&[entry(4, 2), entry(5, 2), entry(6, 2)])).unwrap();
            let hs = HardState {
                term: 2,
                vote: 3,
                commit: 4,
                ..HardState::default()
            };
            s.set_hard_state(&hs).unwrap();
            s.set_conf_state(ConfState {
                voters: vec![1, 2, 3],
                learners: vec![4],
                ..ConfState::default()
            })
            .unwrap();
        }
        let s = RaftStorage::open(dir.path(), options(), None).unwrap();
        let state = s.initial_state().unwrap();
        assert_eq!((state.hard_state.term, state.hard_state.vote), (2, 3));
        assert_eq!(state.hard_state.commit, 4);
        assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
        assert_eq!(state.conf_state.learners, vec![4]);
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (1, 6));
        let terms: Vec<u64> = (1..=6).map(|i| s.term(i).unwrap()).collect();
        assert_eq!(terms, vec![1, 1, 1, 2, 2, 2]);
        let got = s.entries(2, 7, None, ctx()).unwrap();
        assert_eq!(
            got,
            (2..=6)
                .map(|i| entry(i, if i < 4 { 1 } else { 2 }))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn compaction_and_installed_snapshots_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = RaftStorage::open(dir.path(), options(), None).unwrap();
            let entries: Vec<Entry> = (1..=100).map(|i| entry(i, 1)).collect();
            block_on(s.append(&entries)).unwrap();
            s.set_commit(100);
            block_on(s.compact(60, |out| Ok(out.write_all(b"state at 60")?))).unwrap();
            assert!(s.wal.first_index() > 1, "whole segments were compacted");
            assert_eq!(s.first_index().unwrap(), 61);
            assert_eq!(s.log_bytes(), 40 * 100, "40 entries of 100 bytes are left");
            assert!(matches!(
                s.entries(50, 70, None, ctx()),
                Err(raft::Error::Store(StorageError::Compacted))
            ));
        }
        {
            let mut s = RaftStorage::open(dir.path(), options(), None).unwrap();
            assert_eq!(snapshot_payload(&s), b"state at 60");
            assert_eq!(
                (s.first_index().unwrap(), s.last_index().unwrap()),
                (61, 100)
            );
            assert_eq!(s.term(60).unwrap(), 1);
            // A leader's snapshot far ahead replaces the whole log; its
            // file arrived and was checked already.
            let received = snapshot::received_path(dir.path(), 500, 7);
            let fingerprint = snapshot::write_file(
                &(Arc::new(StdFs) as Arc<dyn WalFs>),
                &received,
                b"state at 500",
            )
            .unwrap();
            let mut snap = Snapshot {
                data: fingerprint.to_reference().into(),
                ..Snapshot::default()
            };
            snap.mut_metadata().index = 500;
            snap.mut_metadata().term = 7;
            snap.mut_metadata().mut_conf_state().voters = vec![1, 2];
            block_on(s.apply_snapshot(snap)).unwrap();
            block_on(s.append(&[entry(501, 7), entry(502, 7)])).unwrap();
        }
        let s = RaftStorage::open(dir.path(), options(), None).unwrap();
        assert_eq!(snapshot_payload(&s), b"state at 500");
        assert_eq!(
            (s.first_index().unwrap(), s.last_index().unwrap()),
            (501, 502)
        );
        assert_eq!(s.initial_state().unwrap().conf_state.voters, vec![1, 2]);
        assert_eq!(s.initial_state().unwrap().hard_state.commit, 500);
        assert_eq!(s.entries(501, 503, None, ctx()).unwrap()[1], entry(502, 7));
        let snap = s.snapshot(0, 2).unwrap();
        assert_eq!(
            (snap.get_metadata().index, snap.get_metadata().term),
            (500, 7)
        );
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("snapshot-"))
            .collect();
        assert_eq!(names.len(), 1, "old snapshots are removed: {names:?}");
    }

    #[test]
    fn founders_start_from_a_snapshot_of_the_first_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let bootstrap = Bootstrap {
            voters: vec![1, 2, 3],
            snapshot_data: b"initial".to_vec(),
        };
        for _ in 0..2 {
            // Reopening does not bootstrap again.
            let s = RaftStorage::open(dir.path(), options(), Some(&bootstrap)).unwrap();
            assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (2, 1));
            // Node 4 is not in it: raft-rs would refuse it, so ask for a fresh one.
            assert!(matches!(
                s.snapshot(0, 4),
                Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable
                ))
            ));
            assert!(s.take_snapshot_request());
            assert!(!s.take_snapshot_request());
            let snap = s.snapshot(0, 2).unwrap();
            assert_eq!(
                (snap.get_metadata().index, snap.get_metadata().term),
                (1, 1)
            );
            assert_eq!(snap.get_metadata().get_conf_state().voters, vec![1, 2, 3]);
            assert_eq!(snapshot_payload(&s), b"initial");
            let path = s.snapshot_path().unwrap();
            let fingerprint = snapshot::verify(&StdFs, &path).unwrap();
            assert_eq!(snap.data.as_ref(), fingerprint.to_reference());
            assert_eq!(s.initial_state().unwrap().conf_state.voters, vec![1, 2, 3]);
        }
    }

    /// A compaction removes what raft can no longer install and keeps a
    /// newer received snapshot, which may be installed next.
    #[test]
    fn compaction_keeps_newer_received_snapshots_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RaftStorage::open(dir.path(), options(), None).unwrap();
        block_on(s.append(&(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>())).unwrap();
        s.set_commit(10);
        let incoming = dir.path().join(INCOMING_DIR);
        fs::create_dir_all(&incoming).unwrap();
        let name = |index| snapshot::file_name(index, 1);
        let left_over = [
            dir.path().join(name(3)),
            snapshot::received_path(dir.path(), 3, 1),
            snapshot::received_path(dir.path(), 20, 1),
            dir.path().join(format!("{}.checking-0", name(20))),
            dir.path().join("notes"),
            incoming.join(name(4)),
            incoming.join(format!(".{}.octopii-partial", name(30))),
            incoming.join("anything"),
        ];
        for path in &left_over {
            fs::write(path, b"x").unwrap();
        }
        block_on(s.compact(5, |out| Ok(out.write_all(b"state at 5")?))).unwrap();
        let names = |dir: &Path| {
            let mut names: Vec<String> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let mut kept = vec![
            name(20) + ".checking-0",
            name(20) + ".received",
            name(5),
            INCOMING_DIR.to_owned(),
            "notes".to_owned(),
            STATE_FILE.to_owned(),
            "wal".to_owned(),
        ];
        kept.sort();
        assert_eq!(names(dir.path()), kept);
        assert_eq!(
            names(&incoming),
            vec![format!(".{}.octopii-partial", name(30))]
        );
    }

    #[test]
    fn a_damaged_state_file_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        drop(RaftStorage::open(dir.path(), options(), None).unwrap());
        let path = dir.path().join(STATE_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let err = RaftStorage::open(dir.path(), options(), None).unwrap_err();
        assert!(err.to_string().contains("CRC mismatch"), "{err}");
    }

    fn write_state(dir: &Path, record: &StateRecord) {
        let bytes = codec::encode(record).unwrap();
        write_framed(&StdFs, dir, STATE_FILE, STATE_MAGIC, &bytes).unwrap();
    }

    #[test]
    fn a_missing_state_file_beside_wal_records_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = RaftStorage::open(dir.path(), options(), None).unwrap();
            block_on(s.append(&[entry(1, 1), entry(2, 1)])).unwrap();
            s.set_hard_state(&HardState {
                term: 1,
                vote: 2,
                ..HardState::default()
            })
            .unwrap();
        }
        std::fs::remove_file(dir.path().join(STATE_FILE)).unwrap();
        let err = RaftStorage::open(dir.path(), options(), None).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("raft-state is missing"), "{message}");
        assert!(message.contains("holds records 1..=2"), "{message}");
        // Refusing changed nothing: still refused, the records still there.
        assert!(RaftStorage::open(dir.path(), options(), None).is_err());
        assert!(!dir.path().join(STATE_FILE).exists());
    }

    #[test]
    fn a_missing_state_file_beside_a_snapshot_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let bootstrap = Bootstrap {
            voters: vec![1],
            snapshot_data: b"initial".to_vec(),
        };
        drop(RaftStorage::open(dir.path(), options(), Some(&bootstrap)).unwrap());
        std::fs::remove_file(dir.path().join(STATE_FILE)).unwrap();
        let err = RaftStorage::open(dir.path(), options(), Some(&bootstrap)).unwrap_err();
        assert!(err.to_string().contains("snapshot file"), "{err}");
    }

    #[test]
    fn a_missing_state_file_in_an_untouched_directory_starts_blank() {
        let dir = tempfile::tempdir().unwrap();
        drop(RaftStorage::open(dir.path(), options(), None).unwrap());
        std::fs::remove_file(dir.path().join(STATE_FILE)).unwrap();
        let s = RaftStorage::open(dir.path(), options(), None).unwrap();
        assert_eq!(s.initial_state().unwrap().hard_state.term, 0);
        // An untouched node may still be founded.
        drop(s);
        let bootstrap = Bootstrap {
            voters: vec![1],
            snapshot_data: b"initial".to_vec(),
        };
        let s = RaftStorage::open(dir.path(), options(), Some(&bootstrap)).unwrap();
        assert_eq!(s.snapshot_metadata().index, 1);
        assert_eq!(snapshot_payload(&s), b"initial");
    }

    #[test]
    fn extreme_values_in_the_state_file_are_refused_naming_the_field_offset() {
        let dir = tempfile::tempdir().unwrap();
        drop(RaftStorage::open(dir.path(), options(), None).unwrap());
        let good =
            fresh_state(&Wal::open(dir.path().join("wal"), options()).unwrap(), None).unwrap();
        let conf = good.conf_state.len() as u64;
        let snap_conf = good.snapshot_conf_state.len() as u64;
        let cases: Vec<(StateRecord, u64)> = vec![
            (
                StateRecord {
                    wal_base: u64::MAX,
                    ..good.clone()
                },
                16 + 56 + conf + snap_conf,
            ),
            (
                StateRecord {
                    snapshot_index: u64::MAX,
                    ..good.clone()
                },
                16 + 32 + conf,
            ),
            (
                StateRecord {
                    snapshot_index: MAX_INDEX,
                    raft_base: MAX_INDEX + 1,
                    ..good.clone()
                },
                16 + 64 + conf + snap_conf,
            ),
            (
                StateRecord {
                    raft_base: 0,
                    ..good.clone()
                },
                16 + 64 + conf + snap_conf,
            ),
            (
                StateRecord {
                    wal_base: 0,
                    ..good.clone()
                },
                16 + 56 + conf + snap_conf,
            ),
        ];
        let path = dir.path().join(STATE_FILE);
        for (record, offset) in cases {
            write_state(dir.path(), &record);
            match RaftStorage::open(dir.path(), options(), None) {
                Err(OctopiiError::Corrupt {
                    path: p, offset: o, ..
                }) => assert_eq!((p, o), (path.clone(), offset), "{record:?}"),
                other => panic!("{record:?}: {other:?}"),
            }
        }
        write_state(dir.path(), &good);
        RaftStorage::open(dir.path(), options(), None).unwrap();
    }

    #[test]
    fn a_snapshot_at_an_extreme_index_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RaftStorage::open(dir.path(), options(), None).unwrap();
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = u64::MAX;
        snap.mut_metadata().term = 1;
        let err = block_on(s.apply_snapshot(snap)).unwrap_err();
        assert!(err.to_string().contains("largest allowed"), "{err}");
        assert_eq!(s.snapshot_metadata().index, 0);
        drop(s);
        RaftStorage::open(dir.path(), options(), None).unwrap();
    }
}
