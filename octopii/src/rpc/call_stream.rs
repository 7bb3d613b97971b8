//! Calls that own their stream: streaming RPCs and bulk transfers.
//!
//! A unary call borrows a pooled stream for one request and response. A
//! call that owns its stream (header flag `owns_stream`) takes a fresh one:
//! after the usual request header and arguments frames, the stream belongs
//! to the method's own protocol (a sequence of frames, raw file bytes, …)
//! until it ends. Both kinds are routed by the same header, so they share a
//! connection without confusion. The server side is
//! [`Service::serve_stream`](super::Service::serve_stream), the client side
//! [`Client::open_stream`](super::Client::open_stream).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};

use super::frame::{self, FrameReader};
use super::{Code, RpcError};
use crate::transport::PeerInfo;

/// One side of a stream that a call owns after its request header.
#[derive(Debug)]
pub struct CallStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    reader: FrameReader,
    max_frame_size: u32,
    peer: Arc<PeerInfo>,
    idle_timeout: Option<Duration>,
}

impl CallStream {
    pub(crate) fn new(
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        reader: FrameReader,
        max_frame_size: u32,
        peer: Arc<PeerInfo>,
    ) -> Self {
        CallStream {
            send,
            recv,
            reader,
            max_frame_size,
            peer,
            idle_timeout: None,
        }
    }

    /// Bounds how long a streaming call on this stream waits on its peer
    /// (for an item, or for room to write one).
    pub(crate) fn set_idle_timeout(&mut self, idle: Duration) {
        self.idle_timeout = Some(idle);
    }

    /// The stream's parts, for the streaming-call machinery.
    pub(crate) fn into_parts(self) -> StreamParts {
        StreamParts {
            send: self.send,
            recv: self.recv,
            reader: self.reader,
            max_frame_size: self.max_frame_size,
            idle_timeout: self.idle_timeout,
        }
    }

    /// The node at the other end.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// The largest frame this side accepts.
    pub fn max_frame_size(&self) -> u32 {
        self.max_frame_size
    }

    /// Reads the next frame; `None` at a clean end of the peer's side.
    pub async fn read_frame(&mut self) -> Result<Option<Bytes>, RpcError> {
        Ok(self
            .reader
            .next(&mut self.recv, self.max_frame_size)
            .await?)
    }

    /// Writes `payload` as one frame.
    pub async fn write_frame(&mut self, payload: &[u8]) -> Result<(), RpcError> {
        let mut out = Vec::with_capacity(frame::PREFIX + payload.len());
        frame::put_bytes(&mut out, payload)?;
        self.write_raw(&out).await
    }

    /// Reads up to `max` raw bytes; `None` at a clean end of the peer's side.
    /// Bytes already buffered past the last frame come first.
    pub async fn read_raw(&mut self, max: usize) -> Result<Option<Bytes>, RpcError> {
        if let Some(buffered) = self.reader.take_buffered(max) {
            return Ok(Some(buffered));
        }
        match self.recv.read_chunk(max, true).await {
            Ok(chunk) => Ok(chunk.map(|c| c.bytes)),
            Err(e) => Err(frame::FrameError::Stream(e).into()),
        }
    }

    /// Fills `buf` with raw bytes; an early end is an error.
    pub async fn read_raw_exact(&mut self, mut buf: &mut [u8]) -> Result<(), RpcError> {
        while !buf.is_empty() {
            let Some(mut chunk) = self.read_raw(buf.len()).await? else {
                return Err(RpcError::new(Code::Unavailable, "stream ended early"));
            };
            let n = chunk.len();
            chunk.copy_to_slice(&mut buf[..n]);
            buf = &mut buf[n..];
        }
        Ok(())
    }

    /// Writes raw bytes.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), RpcError> {
        self.send.write_all(bytes).await.map_err(write_error)
    }

    /// Writes raw bytes without copying them.
    pub async fn write_bytes(&mut self, bytes: Bytes) -> Result<(), RpcError> {
        self.send.write_chunk(bytes).await.map_err(write_error)
    }

    /// Writes as much of `bytes` as the stream takes now (at least one byte
    /// unless `bytes` is empty), without copying; `bytes` is left holding
    /// what was not written. Lets a writer see a slow peer's progress.
    pub async fn write_some(&mut self, bytes: &mut Bytes) -> Result<usize, RpcError> {
        let written = self
            .send
            .write_chunks(std::slice::from_mut(bytes))
            .await
            .map_err(write_error)?;
        Ok(written.bytes)
    }

    /// Writes a response frame: the encoded value, or a status.
    pub async fn respond(&mut self, result: &Result<Vec<u8>, RpcError>) -> Result<(), RpcError> {
        self.write_raw(&frame::response(result)).await
    }

    /// Answers `error` and ends this side of the stream. What the peer
    /// still sends is not wanted: the receiving side is stopped with code
    /// 255, as by any side that answers before it has read everything.
    pub async fn fail(mut self, error: RpcError) {
        let _ = self.recv.stop(crate::rpc::client::CANCELLED);
        let _ = self.respond(&Err(error)).await;
        self.finish();
    }

    /// Ends this side cleanly; what was written is still delivered.
    pub fn finish(&mut self) {
        let _ = self.send.finish();
    }

    /// Abandons the stream both ways with an application error `code`.
    pub fn reset(&mut self, code: u32) {
        let code = quinn::VarInt::from_u32(code);
        let _ = self.send.reset(code);
        let _ = self.recv.stop(code);
    }

    /// Resolves when the peer stops reading this side (it went away).
    pub async fn stopped(&mut self) {
        let _ = self.send.stopped().await;
    }
}

/// A [`CallStream`] taken apart by the streaming-call machinery.
pub(crate) struct StreamParts {
    pub(crate) send: quinn::SendStream,
    pub(crate) recv: quinn::RecvStream,
    pub(crate) reader: FrameReader,
    pub(crate) max_frame_size: u32,
    /// How long the server waits on the peer; `None` on the client side.
    pub(crate) idle_timeout: Option<Duration>,
}

fn write_error(e: quinn::WriteError) -> RpcError {
    match e {
        quinn::WriteError::ConnectionLost(e) => crate::transport::TransportError::from(e).into(),
        other => RpcError::new(Code::Unavailable, format!("writing: {other}")),
    }
}
