//! Entry points of the fuzz targets (the `fuzz/` crate beside this one)
//! and of the test that replays their corpora: each hands arbitrary bytes
//! to a decoder of data from disk or from the wire, the way Octopii
//! itself calls it, and checks what a decoder that accepted them promises.
//! A panic (an overflow, an out-of-range slice, a broken promise) is a
//! finding. Not part of the API.

use std::path::Path;

use bytes::Bytes;

use crate::chunk::protocol::{Destination, TransferRequest};
use crate::chunk::{is_reserved, resolve};
use crate::codec;
use crate::raft::snapshot;
use crate::raft::storage::decode_state;
use crate::rpc::frame::{self, RequestHeader};
use crate::wal::format::decode_record;
use crate::wal::recovery::check_segment;

/// Largest record the WAL targets accept (small, so that lengths matter).
const MAX_RECORD: u32 = 1 << 16;
/// Largest frame the wire target accepts.
const MAX_FRAME: u32 = 1 << 20;

/// A WAL segment file's bytes, checked as recovery checks them (as the
/// last segment and as an earlier one); every kept record must then read
/// back as a reader reads it.
pub fn wal_segment(data: &[u8]) {
    let path = Path::new("fuzz.wal");
    // The sequence number the file name would have to carry.
    let seq = data
        .get(16..24)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
    for is_last in [false, true] {
        let Ok(checked) = check_segment(path, data, seq, None, is_last, MAX_RECORD) else {
            continue;
        };
        let first = checked.header.first_index;
        let next = checked.next_index();
        assert!(next >= first && next - 1 < u64::MAX);
        let kept = checked.torn.map_or(data.len(), |(offset, _, _)| offset);
        let buf = &data[..kept];
        for (k, pair) in checked.bounds.windows(2).enumerate() {
            let payload = decode_record(
                buf,
                pair[0] as usize,
                checked.header.salt,
                first + k as u64,
                MAX_RECORD,
            )
            .expect("a kept record reads back");
            assert_eq!(payload.end, pair[1] as usize);
        }
    }
}

/// A `raft-state` file's bytes, decoded and checked as opening raft
/// storage does; then the indexes opening derives from it.
pub fn raft_state(data: &[u8]) {
    let Ok(state) = decode_state(Path::new("raft-state"), data) else {
        return;
    };
    let first = state.first_entry_index();
    let _ = state.wal_index_of(first);
}

/// A snapshot file's bytes, checked as opening and restoring one does.
pub fn snapshot_file(data: &[u8]) {
    if let Ok(peers) = snapshot::check_bytes(data) {
        assert!(data.len() >= snapshot::HEADER_LEN + 4 + peers.len());
    }
}

/// Bytes received on a stream: split into `[u32 big-endian length]
/// [payload]` frames as the frame reader does (a length above the maximum
/// ends the stream), each payload decoded as a request header and parsed
/// as a response.
pub fn rpc_frames(data: &[u8]) {
    let mut rest = data;
    while rest.len() >= frame::PREFIX {
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if len > MAX_FRAME {
            return;
        }
        let Some(payload) = rest.get(frame::PREFIX..frame::PREFIX + len as usize) else {
            return;
        };
        let _ = codec::decode::<RequestHeader<'static>>(payload);
        let _ = frame::parse_response(Bytes::copy_from_slice(payload));
        rest = &rest[frame::PREFIX + len as usize..];
    }
}

/// A receive directory for [`chunk_request`]: a subdirectory `sub` and a
/// symlink `out` that leads outside it. Made once per process.
fn receive_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("octopii-fuzz-{}", std::process::id()));
        let root = base.join("recv");
        std::fs::create_dir_all(root.join("sub")).expect("fuzz receive directory");
        let _ = std::os::unix::fs::symlink(&base, root.join("out"));
        root.canonicalize().expect("canonical receive directory")
    })
}

/// A transfer's arguments frame, decoded as `ChunkService` decodes it;
/// a file destination is then resolved as the receiver resolves it, and a
/// path it accepts must lie inside the receive directory and name none of
/// the receiver's temporary files.
pub fn chunk_request(data: &[u8]) {
    let Ok(request) = crate::rpc::decode_args::<TransferRequest>(data) else {
        return;
    };
    let Destination::File { path } = request.destination else {
        return;
    };
    let root = receive_dir();
    if let Ok(dest) = resolve(root, &path) {
        let inside = dest
            .strip_prefix(root)
            .expect("a destination inside the directory");
        assert!(
            !inside.iter().any(is_reserved),
            "{path:?} names a temporary file"
        );
    }
}

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name, with the entry point each calls.
pub const TARGETS: &[(&str, Target)] = &[
    ("wal_segment", wal_segment),
    ("raft_state", raft_state),
    ("snapshot_file", snapshot_file),
    ("rpc_frames", rpc_frames),
    ("chunk_request", chunk_request),
];

/// Seed inputs of each target, `(target, file name, bytes)`: valid files
/// and frames and a few damaged ones. Names starting `crash-` are inputs
/// that once crashed a decoder (kept as regression inputs). The files in
/// `fuzz/corpus` and `fuzz/artifacts` are these, written by the ignored
/// test `write_fuzz_seeds`.
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    use crate::raft::storage::{STATE_MAGIC, blank_state, frame_file};

    // A snapshot file: the members' addresses, then the state.
    let snapshot_file_bytes = |peers: &[(u64, &str)], state: &[u8]| {
        let peers: Vec<(u64, std::net::SocketAddr)> = peers
            .iter()
            .map(|(id, addr)| (*id, addr.parse().expect("address")))
            .collect();
        let peers = codec::encode(&peers).expect("addresses encode");
        let mut payload = (peers.len() as u32).to_le_bytes().to_vec();
        payload.extend_from_slice(&peers);
        payload.extend_from_slice(state);
        snapshot::file_bytes(&payload)
    };
    use crate::wal::format::{SegmentHeader, encode_record, payload_crc};

    let segment = |first_index: u64, records: &[&[u8]]| {
        let header = SegmentHeader {
            salt: 0x5eed_0001,
            seq: 1,
            first_index,
        };
        let mut out = header.encode().to_vec();
        for (k, r) in records.iter().enumerate() {
            encode_record(
                &mut out,
                r,
                payload_crc(r),
                header.salt,
                first_index.wrapping_add(k as u64),
            );
        }
        out
    };
    let state = |edit: &dyn Fn(&mut crate::raft::storage::StateRecord)| {
        let mut record = blank_state().expect("a blank state encodes");
        edit(&mut record);
        frame_file(STATE_MAGIC, &codec::encode(&record).expect("state encodes")).expect("small")
    };
    let full = segment(1, &[b"first", b"", b"third record"]);
    let mut torn = full.clone();
    torn.truncate(full.len() - 3);
    let mut zeroed = segment(1, &[&[7u8; 600], &[8u8; 600]]);
    zeroed[1024..].fill(0);

    let header = RequestHeader {
        service: "Echo".into(),
        method: "echo".into(),
        timeout_micros: Some(1_000_000),
        metadata: vec![("k".to_string(), "v".to_string())].into(),
        owns_stream: false,
        trace: None,
        signature: None,
    };
    let mut request = Vec::new();
    frame::put_encoded(&mut request, &header).expect("header encodes");
    frame::put_bytes(&mut request, b"arguments").expect("small");
    let mut response = frame::response(&Ok(b"value".to_vec()));
    response.extend(frame::response(&Err(crate::rpc::RpcError::new(
        crate::rpc::Code::Unavailable,
        "no such method",
    ))));

    let chunk_request_bytes = |path: &str| {
        let request = TransferRequest {
            destination: Destination::File { path: path.into() },
            size: 1000,
            resume: true,
        };
        codec::encode(&request).expect("request encodes")
    };

    vec![
        ("wal_segment", "seed-three-records", full),
        ("wal_segment", "seed-header-only", segment(1, &[])),
        ("wal_segment", "seed-torn-tail", torn),
        ("wal_segment", "seed-zeroed-sector", zeroed),
        (
            "wal_segment",
            "seed-late-first-index",
            segment(1 << 40, &[b"x"]),
        ),
        // First index u64::MAX: overflowed the next index (state.rs,
        // format.rs) before headers were range-checked.
        (
            "wal_segment",
            "crash-first-index-max",
            segment(u64::MAX, &[b"x", b"y"]),
        ),
        ("raft_state", "seed-blank", state(&|_| {})),
        (
            "raft_state",
            "seed-founded",
            state(&|r| {
                r.term = 1;
                r.commit = 1;
                r.snapshot_index = 1;
                r.snapshot_term = 1;
                r.raft_base = 2;
            }),
        ),
        // wal_base and snapshot_index u64::MAX overflowed raft_to_wal and
        // the first entry's index.
        (
            "raft_state",
            "crash-wal-base-max",
            state(&|r| r.wal_base = u64::MAX),
        ),
        (
            "raft_state",
            "crash-snapshot-index-max",
            state(&|r| r.snapshot_index = u64::MAX),
        ),
        (
            "snapshot_file",
            "seed-snapshot",
            snapshot_file_bytes(&[(1, "127.0.0.1:7001")], b"state machine bytes"),
        ),
        ("snapshot_file", "seed-empty", snapshot_file_bytes(&[], b"")),
        ("rpc_frames", "seed-request", request),
        (
            "chunk_request",
            "seed-file",
            chunk_request_bytes("sub/file.bin"),
        ),
        (
            "chunk_request",
            "seed-dot-dot",
            chunk_request_bytes("sub/../../x"),
        ),
        (
            "chunk_request",
            "seed-symlink",
            chunk_request_bytes("out/x"),
        ),
        (
            "chunk_request",
            "seed-partial-name",
            chunk_request_bytes("sub/.x.octopii-partial"),
        ),
        ("rpc_frames", "seed-responses", response),
    ]
}
