//! Entry points of the fuzz targets (the `fuzz/` crate beside this one)
//! and of the test that replays their corpora: each hands arbitrary bytes
//! to a decoder of data from disk or from the wire, the way Octopii
//! itself calls it, and checks what a decoder that accepted them promises.
//! A panic (an overflow, an out-of-range slice, a broken promise) is a
//! finding. Not part of the API.

use std::path::Path;

use bytes::Bytes;

use crate::raft::storage::{SNAPSHOT_MAGIC, decode_framed, decode_state};
use crate::rpc::codec;
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

/// A snapshot file's bytes, its header checked.
pub fn snapshot_file(data: &[u8]) {
    if let Ok(payload) = decode_framed(Path::new("snapshot"), data, SNAPSHOT_MAGIC) {
        assert_eq!(payload.len() + 16, data.len());
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
