//! Lanes: one long-lived stream that carries many unary calls at once.
//!
//! A call of its own on a pooled stream costs about one encrypted datagram
//! and one `sendmsg` each way. When a client's calls to a peer overlap, it
//! sends the later ones on a lane instead: every frame carries its call's
//! id, replies come back in any order, and each side's writer sends every
//! frame ready at that moment in one write, so the calls of many callers
//! share packets. A lone call keeps its pooled stream, the lowest latency.
//!
//! On the wire (`docs/PROTOCOL.md`, "Lanes"): the client opens a
//! bidirectional stream and writes [`MARKER`] first, where a pooled stream
//! would start with a frame's length. Then frames
//! `[u32 length][u64 call id][u8 tag][body]`, big-endian length, the id
//! little-endian:
//!
//! * client to server, tag [`CALL`]: the body is the request's header and
//!   arguments frames, exactly as on a pooled stream; ids increase.
//! * client to server, tag [`CANCEL`]: no body; the server drops the call.
//! * server to client: the tag is the response's status code (0 for a
//!   value) and the body the value or the message, as a response frame's.

pub(crate) mod client;

use std::future::Future;

use bytes::{Buf, BufMut, Bytes};
use tokio::sync::mpsc;

use super::{Code, RpcError};

/// The first four bytes a client writes on a lane. No frame is announced
/// with this length: `transport.max_frame_size` is below 4 GiB − 1.
pub(crate) const MARKER: [u8; 4] = [0xFF; 4];

/// Tag of a call.
pub(crate) const CALL: u8 = 0;
/// Tag of a cancellation.
pub(crate) const CANCEL: u8 = 1;

/// Bytes after a lane frame's length: the call id and the tag.
pub(crate) const HEAD: usize = 9;

/// Frames waiting for a client lane's writer, at most; a full queue holds
/// up the calls that would add to it. (A server lane's queue is as long as
/// the calls it runs at once.)
pub(crate) const QUEUE: usize = 1024;

/// Bytes a writer gathers into one write at most.
const WRITE_BATCH: usize = 256 * 1024;

/// Writes `start`, then every frame queued at that moment in one write,
/// until the queue closes (then finishes the stream), or until `broken`
/// gives a code (then resets the stream with it).
pub(crate) async fn write(
    mut send: quinn::SendStream,
    mut queued: mpsc::Receiver<Vec<u8>>,
    start: Vec<u8>,
    broken: impl Future<Output = quinn::VarInt>,
) {
    let mut broken = std::pin::pin!(broken);
    let mut batch = start;
    loop {
        let first = tokio::select! {
            biased;
            code = &mut broken => {
                let _ = send.reset(code);
                return;
            }
            first = queued.recv() => first,
        };
        let Some(first) = first else { break };
        batch.extend_from_slice(&first);
        while batch.len() < WRITE_BATCH {
            match queued.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if send.write_all(&batch).await.is_err() {
            return;
        }
        batch.clear();
    }
    let _ = send.finish();
}

/// A lane frame of call `id` with `tag` and `body`.
pub(crate) fn frame(id: u64, tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + HEAD + body.len());
    out.put_u32((HEAD + body.len()) as u32);
    out.put_u64_le(id);
    out.put_u8(tag);
    out.extend_from_slice(body);
    out
}

/// The reply frame of call `id`.
pub(crate) fn reply(id: u64, result: &Result<Vec<u8>, RpcError>) -> Vec<u8> {
    match result {
        Ok(value) => frame(id, 0, value),
        Err(e) => frame(id, e.code().to_wire(), e.message().as_bytes()),
    }
}

/// Splits a lane frame's payload (after its length) into id, tag and body.
pub(crate) fn parse(mut payload: Bytes) -> Result<(u64, u8, Bytes), RpcError> {
    if payload.len() < HEAD {
        return Err(RpcError::new(
            Code::InvalidArgument,
            format!(
                "a lane frame of {} bytes has no call id and tag",
                payload.len()
            ),
        ));
    }
    let id = payload.get_u64_le();
    let tag = payload.get_u8();
    Ok((id, tag, payload))
}

/// Splits a call's body into its header and arguments frames.
pub(crate) fn split_call(mut body: Bytes) -> Option<(Bytes, Bytes)> {
    let take = |body: &mut Bytes| {
        (body.len() >= 4).then_some(())?;
        let len = body.get_u32() as usize;
        (body.len() >= len).then(|| body.split_to(len))
    };
    let header = take(&mut body)?;
    let args = take(&mut body)?;
    body.is_empty().then_some((header, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_frame_is_length_id_tag_body() {
        let frame = frame(0x0102, CALL, b"ab");
        assert_eq!(frame, [0, 0, 0, 11, 2, 1, 0, 0, 0, 0, 0, 0, 0, b'a', b'b']);
        let (id, tag, body) = parse(Bytes::copy_from_slice(&frame[4..])).unwrap();
        assert_eq!((id, tag, &body[..]), (0x0102, CALL, &b"ab"[..]));
        assert!(parse(Bytes::from_static(&[1, 2, 3])).is_err());
    }

    #[test]
    fn a_call_body_is_exactly_two_frames() {
        let body = Bytes::from_static(&[0, 0, 0, 1, 7, 0, 0, 0, 2, 8, 9]);
        let (header, args) = split_call(body).unwrap();
        assert_eq!((&header[..], &args[..]), (&[7][..], &[8, 9][..]));
        assert!(split_call(Bytes::from_static(&[0, 0, 0, 1, 7])).is_none());
        assert!(split_call(Bytes::from_static(&[0, 0, 0, 1, 7, 0, 0, 0, 0, 1])).is_none());
        assert!(split_call(Bytes::from_static(&[0, 0, 0, 9, 7])).is_none());
    }
}
