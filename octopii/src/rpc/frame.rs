//! Length-prefixed frames: `[u32 big-endian length][payload]`.
//!
//! The length is checked against the configured maximum before anything is
//! allocated for the payload.

use std::borrow::Cow;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use quinn::{ReadError, RecvStream};
use serde::{Deserialize, Serialize};

use super::budget::{FrameBudget, FrameReservation, OverBudget};
use super::trace::TraceContext;
use super::{Code, RpcError};
use crate::codec;

/// Bytes of a frame's length prefix.
pub const PREFIX: usize = 4;

/// The first frame of every request: which method, until when, with what.
/// Borrowed when a client encodes it, owned when a server decodes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestHeader<'a> {
    /// Service name (the trait's name).
    pub service: Cow<'a, str>,
    /// Method name.
    pub method: Cow<'a, str>,
    /// Time the caller still waits, in microseconds, if it set a deadline.
    pub timeout_micros: Option<u64>,
    /// Caller-supplied `(key, value)` pairs.
    pub metadata: Cow<'a, [(String, String)]>,
    /// The call owns this stream (a streaming call or a bulk transfer):
    /// after the arguments it carries the method's own protocol, and it is
    /// never reused.
    pub owns_stream: bool,
    /// The caller's trace context, if it sends one in binary (else a
    /// server reads a `traceparent` metadata entry, if any).
    pub trace: Option<TraceContext>,
    /// The fingerprint of the method's signature, if the caller sends one
    /// (generated clients do): a server whose own differs refuses the call.
    pub signature: Option<u64>,
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The length prefix is above the maximum; the stream's framing is lost.
    TooLarge {
        /// The announced length.
        len: u32,
        /// The configured maximum.
        max: u32,
    },
    /// Reading the frame would take the bytes held in incomplete frames
    /// above the connection's or the node's budget.
    OverBudget {
        /// The announced length.
        len: u32,
        /// Which budget refuses it.
        refused: OverBudget,
    },
    /// The stream ended inside a frame.
    Truncated,
    /// The stream was reset, stopped, or its connection was lost.
    Stream(ReadError),
}

impl From<FrameError> for RpcError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge { len, max } => RpcError::new(
                Code::ResourceExhausted,
                format!("frame of {len} bytes exceeds the maximum of {max}"),
            ),
            FrameError::OverBudget { len, refused } => RpcError::new(
                Code::ResourceExhausted,
                format!(
                    "a frame of {len} bytes would take the {}'s incomplete frames above their budget of {} bytes",
                    refused.scope, refused.limit
                ),
            ),
            FrameError::Truncated => RpcError::new(Code::Unavailable, "stream ended mid-frame"),
            FrameError::Stream(ReadError::ConnectionLost(e)) => {
                RpcError::from(crate::transport::TransportError::from(e))
            }
            FrameError::Stream(e) => RpcError::new(Code::Unavailable, e.to_string()),
        }
    }
}

/// Reads frames from a stream, taking whatever chunks quinn has ready, so
/// a request (header and arguments frames) that arrived in one packet is
/// read with one call into quinn, not four.
///
/// A reader with a [`FrameBudget`] (a server's) reserves the announced
/// length of a frame that is not yet wholly buffered before it reads on,
/// and gives it back once the frame is complete or the reader is dropped.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: BytesMut,
    budget: Option<FrameBudget>,
    /// The reservation of the incomplete frame at the head of `buf`.
    held: Option<FrameReservation>,
}

impl FrameReader {
    /// A reader with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// A reader whose incomplete frames draw on `budget`.
    pub(crate) fn with_budget(budget: FrameBudget) -> Self {
        FrameReader {
            budget: Some(budget),
            ..Self::default()
        }
    }

    /// Whether bytes past the last frame returned are buffered.
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Bytes buffered past the last frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Consumes `prefix` if the buffered bytes begin with it.
    pub fn skip_prefix(&mut self, prefix: &[u8]) -> bool {
        let found = self.buf.starts_with(prefix);
        if found {
            self.buf.advance(prefix.len());
        }
        found
    }

    /// Takes up to `max` bytes buffered past the last frame, if any.
    pub fn take_buffered(&mut self, max: usize) -> Option<Bytes> {
        if self.buf.is_empty() || max == 0 {
            return None;
        }
        let n = self.buf.len().min(max);
        Some(self.buf.split_to(n).freeze())
    }

    /// Reads the next frame. `Ok(None)`: the stream ended cleanly before it.
    pub async fn next(
        &mut self,
        recv: &mut RecvStream,
        max: u32,
    ) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(len) = self.buffered_len(max)? {
                self.held = None;
                self.buf.advance(PREFIX);
                return Ok(Some(self.buf.split_to(len).freeze()));
            }
            if !self.fill(recv).await? {
                return Ok(None);
            }
        }
    }

    /// Hands the payload of the next frame to `f`, if the whole frame is
    /// already buffered, without waiting and without copying it.
    pub fn next_buffered<R>(
        &mut self,
        max: u32,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, FrameError> {
        let Some(len) = self.buffered_len(max)? else {
            return Ok(None);
        };
        self.held = None;
        let out = f(&self.buf[PREFIX..PREFIX + len]);
        self.buf.advance(PREFIX + len);
        Ok(Some(out))
    }

    /// Reads what quinn has ready into the buffer, waiting for at least one
    /// chunk. `Ok(false)`: the stream ended cleanly with nothing buffered.
    pub async fn fill(&mut self, recv: &mut RecvStream) -> Result<bool, FrameError> {
        // Up to this many chunks (one per packet received) in one call,
        // which takes the connection's lock once: a stream of small
        // frames would otherwise take it once per packet.
        let mut chunks: [Bytes; 32] = Default::default();
        match recv.read_chunks(&mut chunks).await {
            Ok(Some(n)) => {
                for chunk in &chunks[..n] {
                    self.buf.extend_from_slice(chunk);
                }
                Ok(true)
            }
            Ok(None) if self.buf.is_empty() => Ok(false),
            Ok(None) => Err(FrameError::Truncated),
            Err(e) => Err(FrameError::Stream(e)),
        }
    }

    /// The payload length of the next frame, if it is wholly buffered.
    fn buffered_len(&mut self, max: u32) -> Result<Option<usize>, FrameError> {
        if self.buf.len() < PREFIX {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if len > max {
            return Err(FrameError::TooLarge { len, max });
        }
        let end = PREFIX + len as usize;
        if self.buf.len() >= end {
            return Ok(Some(len as usize));
        }
        if let (Some(budget), None) = (&self.budget, &self.held) {
            let held = budget
                .reserve(u64::from(len))
                .map_err(|refused| FrameError::OverBudget { len, refused })?;
            self.held = Some(held);
        }
        // The length is within the limits: now it may be reserved.
        self.buf.reserve(end - self.buf.len());
        Ok(None)
    }
}

/// Appends a frame holding the encoding of `value` to `out`.
pub fn put_encoded<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), RpcError> {
    let start = out.len();
    out.put_u32(0);
    codec::encode_into(value, out)?;
    patch_len(out, start)
}

/// Appends a frame holding `payload` to `out`.
pub fn put_bytes(out: &mut Vec<u8>, payload: &[u8]) -> Result<(), RpcError> {
    let len = u32::try_from(payload.len()).map_err(|_| beyond_prefix(payload.len()))?;
    out.put_u32(len);
    out.extend_from_slice(payload);
    Ok(())
}

/// Writes the length of the frame that starts at `start` into its prefix.
fn patch_len(out: &mut [u8], start: usize) -> Result<(), RpcError> {
    let len = out.len() - start - PREFIX;
    let len = u32::try_from(len).map_err(|_| beyond_prefix(len))?;
    out[start..start + PREFIX].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

/// A frame too large for its length prefix.
fn beyond_prefix(len: usize) -> RpcError {
    RpcError::new(
        Code::ResourceExhausted,
        format!("frame of {len} bytes is larger than a length prefix can state (4 GiB)"),
    )
}

/// A response frame: `[u32 len][u8 code][payload]`; code 0 carries the
/// encoded value, any other code a UTF-8 message.
pub fn response(result: &Result<Vec<u8>, RpcError>) -> Vec<u8> {
    let (code, body): (u8, &[u8]) = match result {
        Ok(value) => (0, value),
        Err(e) => (e.code().to_wire(), e.message().as_bytes()),
    };
    let mut out = Vec::with_capacity(PREFIX + 1 + body.len());
    out.put_u32((1 + body.len()) as u32);
    out.put_u8(code);
    out.extend_from_slice(body);
    out
}

/// Splits a response frame's payload into the value bytes or the status.
pub fn parse_response(frame: Bytes) -> Result<Bytes, RpcError> {
    match frame.first() {
        None => Err(RpcError::new(Code::Internal, "empty response frame")),
        Some(0) => Ok(frame.slice(1..)),
        Some(&code) => Err(RpcError::new(
            Code::from_wire(code),
            String::from_utf8_lossy(&frame[1..]).into_owned(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of `docs/PROTOCOL.md`, "Request", byte for byte.
    #[test]
    fn a_request_header_is_laid_out_as_documented() {
        let trace = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let header = RequestHeader {
            service: "Calculator".into(),
            method: "add".into(),
            timeout_micros: None,
            metadata: Cow::Borrowed(&[]),
            owns_stream: false,
            trace,
            signature: Some(0x0123_4567_89ab_cdef),
        };
        let documented = "0A 00 00 00 00 00 00 00 43 61 6C 63 75 6C 61 74 6F 72 \
            03 00 00 00 00 00 00 00 61 64 64 00 00 00 00 00 00 00 00 00 00 \
            01 36 47 0E 0E 9D 92 CE A3 A6 4D B3 77 35 2F F9 4B B7 02 A9 0B AA 67 F0 00 01 \
            01 EF CD AB 89 67 45 23 01";
        let documented: Vec<u8> = documented
            .split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        assert_eq!(codec::encode(&header).unwrap(), documented);
        assert_eq!(documented.len(), 74);
        let back: RequestHeader<'static> = codec::decode(&documented).unwrap();
        assert_eq!(back, header);
    }
}
