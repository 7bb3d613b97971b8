//! Snapshot files: what a raft snapshot holds and how it lies on disk.
//!
//! A snapshot lives in a file, never whole in memory: it is written by
//! streaming the state machine into it ([`StateMachine::snapshot_to`]),
//! sent to a peer straight from the file and received into a file, and
//! restored by streaming it back ([`StateMachine::restore_from`]). What
//! raft-rs carries in `Snapshot.data` is only the file's [`Fingerprint`]
//! (12 bytes); the file itself is found by the snapshot's index and term.
//!
//! # Format
//!
//! `magic (8) ‖ payload length (u64 LE) ‖ CRC32C of the payload (u32 LE) ‖
//! payload`, the payload being `peers length (u32 LE) ‖ peers (bincode
//! Vec<(u64, SocketAddr)>) ‖ state (the rest)`. Lengths are 64-bit, so a
//! state of any size fits; the CRC is computed and checked in 64 KiB
//! steps. `docs/ARCHITECTURE.md` and `docs/PROTOCOL.md` give the bytes.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::RaftError;
use super::machine::{StateMachine, StateMachineError};
use crate::codec;
use crate::wal::{WalFile, WalFs};
use crate::{OctopiiError, Result};

/// First bytes of a snapshot file.
const MAGIC: &[u8; 8] = b"OCTORFSN";
/// Magic, payload length and CRC before the payload.
pub(crate) const HEADER_LEN: usize = 20;
/// Largest encoded address list taken from a snapshot file.
const MAX_PEERS_LEN: u32 = 1024 * 1024;
/// Bytes read or written at a time.
const BUFFER_SIZE: usize = 64 * 1024;

fn damaged(path: &Path, why: impl std::fmt::Display) -> OctopiiError {
    OctopiiError::Raft(RaftError::Storage(format!(
        "{} is damaged: {why}",
        path.display()
    )))
}

/// The name of the snapshot file at `index`, `term` in a raft directory.
pub(crate) fn file_name(index: u64, term: u64) -> String {
    format!("snapshot-{index:016x}-{term:016x}")
}

/// Where a received, checked snapshot waits for raft to install it.
pub(crate) fn received_path(dir: &Path, index: u64, term: u64) -> PathBuf {
    dir.join(format!("{}.received", file_name(index, term)))
}

/// The index of the snapshot a file belongs to, from its name (a snapshot
/// file, or a temporary, received or partial file of one).
pub(crate) fn index_of(name: &str) -> Option<u64> {
    let name = name.strip_prefix('.').unwrap_or(name);
    let hex = name.strip_prefix("snapshot-")?.get(..16)?;
    u64::from_str_radix(hex, 16).ok()
}

/// A snapshot file's payload length and CRC32C: in its header, and in
/// raft's `Snapshot.data`, so a receiver knows which file it must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    /// Bytes of payload.
    pub(crate) len: u64,
    /// CRC32C of the payload.
    pub(crate) crc32c: u32,
}

impl Fingerprint {
    /// The bytes raft carries as `Snapshot.data`: length (u64 LE), CRC (u32 LE).
    pub(crate) fn to_reference(self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(12);
        bytes.extend_from_slice(&self.len.to_le_bytes());
        bytes.extend_from_slice(&self.crc32c.to_le_bytes());
        bytes
    }

    /// Reads [`to_reference`](Self::to_reference)'s bytes.
    pub(crate) fn from_reference(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; 12] = bytes.try_into().ok()?;
        let (len, crc) = bytes.split_at(8);
        Some(Fingerprint {
            len: u64::from_le_bytes(len.try_into().ok()?),
            crc32c: u32::from_le_bytes(crc.try_into().ok()?),
        })
    }

    fn header(self) -> [u8; HEADER_LEN] {
        let mut header = [0u8; HEADER_LEN];
        header[..8].copy_from_slice(MAGIC);
        header[8..16].copy_from_slice(&self.len.to_le_bytes());
        header[16..].copy_from_slice(&self.crc32c.to_le_bytes());
        header
    }

    fn from_header(header: &[u8; HEADER_LEN]) -> Option<Self> {
        if &header[..8] != MAGIC {
            return None;
        }
        let (len, crc) = header[8..].split_at(8);
        Some(Fingerprint {
            len: u64::from_le_bytes(len.try_into().ok()?),
            crc32c: u32::from_le_bytes(crc.try_into().ok()?),
        })
    }
}

/// Writes a snapshot file: payload bytes stream in through [`Write`],
/// their CRC computed on the way; [`finish`](Self::finish) puts the file in
/// place atomically and durably. Dropped unfinished, it leaves nothing.
pub(crate) struct SnapshotWriter {
    fs: Arc<dyn WalFs>,
    file: BufWriter<Cursor>,
    tmp: PathBuf,
    path: PathBuf,
    len: u64,
    crc32c: u32,
    finished: bool,
}

impl SnapshotWriter {
    /// Starts writing `path` (through `path.tmp`) on `fs`.
    pub(crate) fn create(fs: &Arc<dyn WalFs>, path: &Path) -> Result<Self> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let file = fs.create(&tmp).map_err(|e| OctopiiError::file(&tmp, e))?;
        // Room for the header, written once the payload is known.
        let file = Cursor {
            file,
            pos: HEADER_LEN as u64,
        };
        Ok(SnapshotWriter {
            fs: Arc::clone(fs),
            file: BufWriter::with_capacity(BUFFER_SIZE, file),
            tmp,
            path: path.to_owned(),
            len: 0,
            crc32c: 0,
            finished: false,
        })
    }

    /// Writes the header, fsyncs, renames the file into place and fsyncs
    /// its directory.
    pub(crate) fn finish(mut self) -> Result<Fingerprint> {
        let fingerprint = Fingerprint {
            len: self.len,
            crc32c: self.crc32c,
        };
        let tmp = self.tmp.clone();
        let io = |e| OctopiiError::file(&tmp, e);
        self.file.flush().map_err(io)?;
        let file = &self.file.get_ref().file;
        file.write_all_at(&fingerprint.header(), 0).map_err(io)?;
        file.sync_all().map_err(io)?;
        self.fs
            .rename(&self.tmp, &self.path)
            .map_err(|e| OctopiiError::file(&self.path, e))?;
        self.finished = true;
        sync_parent(self.fs.as_ref(), &self.path)?;
        Ok(fingerprint)
    }
}

impl Write for SnapshotWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.crc32c = crc32c::crc32c_append(self.crc32c, &buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.fs.remove_file(&self.tmp);
        }
    }
}

/// A [`WalFile`] read or written in order from a position, as
/// [`Read`] and [`Write`].
struct Cursor {
    file: Arc<dyn WalFile>,
    pos: u64,
}

impl Read for Cursor {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Cursor {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write_all_at(buf, self.pos)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fsyncs the directory holding `path`, so a rename into it is durable.
pub(crate) fn sync_parent(fs: &dyn WalFs, path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs.sync_dir(dir).map_err(|e| OctopiiError::file(dir, e))
}

/// Writes a snapshot file holding `payload` (a small one: the initial state).
pub(crate) fn write_file(fs: &Arc<dyn WalFs>, path: &Path, payload: &[u8]) -> Result<Fingerprint> {
    let mut writer = SnapshotWriter::create(fs, path)?;
    writer
        .write_all(payload)
        .map_err(|e| OctopiiError::file(path, e))?;
    writer.finish()
}

/// A whole snapshot file, header and `payload`, in memory (the fuzz
/// targets' seeds).
pub(crate) fn file_bytes(payload: &[u8]) -> Vec<u8> {
    let fingerprint = Fingerprint {
        len: payload.len() as u64,
        crc32c: crc32c::crc32c(payload),
    };
    let mut bytes = fingerprint.header().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

/// Writes a snapshot payload: the members' addresses, then the state as
/// `machine` streams it.
pub(crate) fn write_payload(
    out: &mut dyn Write,
    peers: &[(u64, SocketAddr)],
    machine: &dyn StateMachine,
) -> Result<()> {
    let peers = codec::encode(&peers)?;
    let len = u32::try_from(peers.len())
        .ok()
        .filter(|&len| len <= MAX_PEERS_LEN)
        .ok_or_else(|| {
            RaftError::Storage(format!(
                "the member list of {} bytes is too large for a snapshot (at most {MAX_PEERS_LEN})",
                peers.len()
            ))
        })?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&peers)?;
    Ok(machine.snapshot_to(out)?)
}

/// Opens a snapshot file and checks its header against its length.
fn open_checked(fs: &dyn WalFs, path: &Path) -> Result<(BufReader<Cursor>, Fingerprint)> {
    let file = fs.open(path).map_err(|e| OctopiiError::file(path, e))?;
    let size = file.size().map_err(|e| OctopiiError::file(path, e))?;
    let mut reader = BufReader::with_capacity(BUFFER_SIZE, Cursor { file, pos: 0 });
    let mut header = [0u8; HEADER_LEN];
    if size < HEADER_LEN as u64 || reader.read_exact(&mut header).is_err() {
        return Err(damaged(path, "short header"));
    }
    let fingerprint =
        Fingerprint::from_header(&header).ok_or_else(|| damaged(path, "bad magic"))?;
    check_length(path, fingerprint, size)?;
    Ok((reader, fingerprint))
}

fn check_length(path: &Path, fingerprint: Fingerprint, file_size: u64) -> Result<()> {
    if file_size - HEADER_LEN as u64 != fingerprint.len {
        return Err(damaged(
            path,
            format!(
                "length mismatch: the header announces {} payload bytes, the file holds {}",
                fingerprint.len,
                file_size - HEADER_LEN as u64
            ),
        ));
    }
    Ok(())
}

/// Reads the whole payload once, checking its CRC; returns the header's
/// fingerprint.
pub(crate) fn verify(fs: &dyn WalFs, path: &Path) -> Result<Fingerprint> {
    let (mut reader, fingerprint) = open_checked(fs, path)?;
    let mut buffer = vec![0u8; BUFFER_SIZE];
    let mut crc = 0u32;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(OctopiiError::file(path, e)),
        };
        crc = crc32c::crc32c_append(crc, &buffer[..n]);
    }
    if crc != fingerprint.crc32c {
        return Err(damaged(path, "CRC mismatch"));
    }
    Ok(fingerprint)
}

/// Restores `machine` from a snapshot file by streaming its state;
/// returns the members' addresses it holds. The CRC is checked on the way
/// (the file was checked whole before it was installed or opened): a
/// mismatch is an `Err`, after which the machine's state is unusable.
pub(crate) fn restore(
    fs: &dyn WalFs,
    path: &Path,
    machine: &mut dyn StateMachine,
) -> Result<Vec<(u64, SocketAddr)>> {
    let (reader, fingerprint) = open_checked(fs, path)?;
    read_payload(path, reader, fingerprint, machine)
}

/// Checks a whole snapshot file held in memory as opening and restoring
/// one does (header, length, address list, CRC), discarding the state.
/// The fuzz targets' entry point.
pub(crate) fn check_bytes(bytes: &[u8]) -> Result<Vec<(u64, SocketAddr)>> {
    let path = Path::new("snapshot");
    let header: &[u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| damaged(path, "short header"))?;
    let fingerprint = Fingerprint::from_header(header).ok_or_else(|| damaged(path, "bad magic"))?;
    check_length(path, fingerprint, bytes.len() as u64)?;
    read_payload(path, &bytes[HEADER_LEN..], fingerprint, &mut Discard)
}

/// Streams a snapshot payload (after its header) into `machine`.
fn read_payload(
    path: &Path,
    reader: impl Read,
    fingerprint: Fingerprint,
    machine: &mut dyn StateMachine,
) -> Result<Vec<(u64, SocketAddr)>> {
    let mut reader = CrcReader {
        inner: reader,
        crc32c: 0,
    };
    let mut len = [0u8; 4];
    reader
        .read_exact(&mut len)
        .map_err(|_| damaged(path, "no address list"))?;
    let peers_len = u32::from_le_bytes(len);
    let state_len = fingerprint
        .len
        .checked_sub(4 + u64::from(peers_len))
        .filter(|_| peers_len <= MAX_PEERS_LEN)
        .ok_or_else(|| damaged(path, "the address list does not fit"))?;
    let mut peers = vec![0u8; peers_len as usize];
    reader
        .read_exact(&mut peers)
        .map_err(|e| OctopiiError::file(path, e))?;
    let peers = codec::decode(&peers)
        .map_err(|e| damaged(path, format!("the address list does not decode: {e}")))?;
    let mut state = (&mut reader).take(state_len);
    machine.restore_from(&mut state, state_len)?;
    // What the machine left unread still counts for the CRC.
    std::io::copy(&mut state, &mut std::io::sink()).map_err(|e| OctopiiError::file(path, e))?;
    if reader.crc32c != fingerprint.crc32c {
        return Err(damaged(path, "CRC mismatch"));
    }
    Ok(peers)
}

/// A state machine that keeps nothing: [`check_bytes`] reads the state
/// only for its CRC.
struct Discard;

impl StateMachine for Discard {
    fn apply(&mut self, _: &[u8]) -> Vec<u8> {
        Vec::new()
    }
    fn query(&self, _: &[u8]) -> Vec<u8> {
        Vec::new()
    }
    fn snapshot(&self) -> Vec<u8> {
        Vec::new()
    }
    fn restore(&mut self, _: &[u8]) -> std::result::Result<(), StateMachineError> {
        Ok(())
    }
    fn restore_from(
        &mut self,
        _: &mut dyn Read,
        _: u64,
    ) -> std::result::Result<(), StateMachineError> {
        Ok(())
    }
}

/// Computes the CRC32C of what passes through.
struct CrcReader<R> {
    inner: R,
    crc32c: u32,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc32c = crc32c::crc32c_append(self.crc32c, &buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File};

    use super::*;
    use crate::wal::StdFs;

    fn std_fs() -> Arc<dyn WalFs> {
        Arc::new(StdFs)
    }

    /// The state is the bytes themselves.
    struct Bytes(Vec<u8>);

    impl StateMachine for Bytes {
        fn apply(&mut self, _: &[u8]) -> Vec<u8> {
            Vec::new()
        }
        fn query(&self, _: &[u8]) -> Vec<u8> {
            Vec::new()
        }
        fn snapshot(&self) -> Vec<u8> {
            self.0.clone()
        }
        fn restore(&mut self, snapshot: &[u8]) -> std::result::Result<(), StateMachineError> {
            self.0 = snapshot.to_vec();
            Ok(())
        }
    }

    fn write(path: &Path, peers: &[(u64, SocketAddr)], state: &[u8]) -> Fingerprint {
        let mut writer = SnapshotWriter::create(&std_fs(), path).unwrap();
        write_payload(&mut writer, peers, &Bytes(state.to_vec())).unwrap();
        writer.finish().unwrap()
    }

    #[test]
    fn a_written_snapshot_restores_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(file_name(7, 2));
        let peers = vec![(1, "127.0.0.1:7001".parse().unwrap())];
        // Several buffers' worth, so the CRC spans more than one read.
        let state: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let fingerprint = write(&path, &peers, &state);
        assert_eq!(verify(&StdFs, &path).unwrap(), fingerprint);
        assert!(!dir.path().join(format!("{}.tmp", file_name(7, 2))).exists());
        let mut machine = Bytes(Vec::new());
        assert_eq!(restore(&StdFs, &path, &mut machine).unwrap(), peers);
        assert_eq!(machine.0, state);

        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let err = restore(&StdFs, &path, &mut machine)
            .unwrap_err()
            .to_string();
        assert!(err.contains("CRC mismatch"), "{err}");
        fs::write(&path, &bytes[..last]).unwrap();
        let err = verify(&StdFs, &path).unwrap_err().to_string();
        assert!(err.contains("length mismatch"), "{err}");
        fs::write(&path, b"OCTORFSN").unwrap();
        let err = verify(&StdFs, &path).unwrap_err().to_string();
        assert!(err.contains("short header"), "{err}");
    }

    /// A payload over `u32::MAX` bytes: the header keeps its length, and a
    /// (sparse) file of that size passes the length check.
    #[test]
    fn a_payload_above_four_gib_keeps_its_length() {
        let big = Fingerprint {
            len: u64::from(u32::MAX) + 3,
            crc32c: 0xdead_beef,
        };
        let header = big.header();
        assert_eq!(&header[..8], b"OCTORFSN");
        assert_eq!(header[8..16], (u64::from(u32::MAX) + 3).to_le_bytes());
        assert_eq!(Fingerprint::from_header(&header), Some(big));
        assert_eq!(Fingerprint::from_reference(&big.to_reference()), Some(big));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let mut file = File::create(&path).unwrap();
        file.write_all(&header).unwrap();
        file.set_len(HEADER_LEN as u64 + big.len).unwrap();
        drop(file);
        let (_, read) = open_checked(&StdFs, &path).unwrap();
        assert_eq!(read, big);
        // One byte short is refused without reading the payload.
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(HEADER_LEN as u64 + big.len - 1)
            .unwrap();
        let err = open_checked(&StdFs, &path).err().unwrap().to_string();
        assert!(err.contains("length mismatch"), "{err}");
    }

    /// The example file `docs/PROTOCOL.md` gives, byte by byte.
    #[test]
    fn a_snapshot_file_is_laid_out_as_documented() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("documented");
        let fingerprint = write(&path, &[], b"hi");
        let mut expected = b"OCTORFSN".to_vec();
        expected.extend_from_slice(&[0x0e, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(&[0x33, 0xde, 0x75, 0xd9]);
        expected.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(b"hi");
        assert_eq!(fs::read(&path).unwrap(), expected);
        let mut reference = vec![0x0e, 0, 0, 0, 0, 0, 0, 0];
        reference.extend_from_slice(&[0x33, 0xde, 0x75, 0xd9]);
        assert_eq!(fingerprint.to_reference(), reference);
    }

    #[test]
    fn names_give_their_snapshot_index() {
        assert_eq!(index_of(&file_name(0x2a, 3)), Some(0x2a));
        let received = received_path(Path::new("d"), 5, 1);
        let name = received.file_name().unwrap().to_str().unwrap();
        assert_eq!(index_of(name), Some(5));
        assert_eq!(
            index_of(&format!(".{}.octopii-partial", file_name(9, 1))),
            Some(9)
        );
        assert_eq!(index_of("raft-state"), None);
        assert_eq!(index_of("snapshot-xyz"), None);
    }
}
