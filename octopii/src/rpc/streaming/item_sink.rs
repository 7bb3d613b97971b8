//! The sending half of a streaming call: items gathered into batched
//! writes, then the end frame or the error status they ended with.

use std::future::Future;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use bytes::BufMut;
use futures::StreamExt;
use serde::Serialize;

use super::call::{END, ITEM};
use super::idle::{IdleTimer, waiting_on_peer};
use crate::codec;
use crate::rpc::client::CANCELLED;
use crate::rpc::frame;
use crate::rpc::{Code, RpcError, Streaming};

/// Items are gathered into writes of about this many bytes while the
/// producer has them ready, so small items do not cost one write each.
const BATCH: usize = 64 * 1024;

/// The sending half of a streaming call's stream. Dropped before it has
/// sent its end, it resets the stream, so the peer never mistakes a
/// cancelled call for a complete one.
#[derive(Debug)]
pub struct ItemSink {
    send: quinn::SendStream,
    max_frame_size: u32,
    /// How long to wait for room to write (a server's own limit).
    idle: Option<IdleTimer>,
    done: bool,
}

impl Drop for ItemSink {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.send.reset(CANCELLED);
        }
    }
}

impl ItemSink {
    pub(super) fn new(
        send: quinn::SendStream,
        max_frame_size: u32,
        idle_timeout: Option<Duration>,
    ) -> Self {
        ItemSink {
            send,
            max_frame_size,
            idle: idle_timeout.map(IdleTimer::new),
            done: false,
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), RpcError> {
        let send = &mut self.send;
        let write = async move { send.write_all(bytes).await.map_err(stopped) };
        waiting_on_peer(&mut self.idle, write).await
    }

    /// Writes and empties `out`: a large batch is handed over as it is,
    /// a small one copied so that its buffer is reused.
    async fn write_batch(&mut self, out: &mut Vec<u8>) -> Result<(), RpcError> {
        if out.len() < BATCH / 4 {
            self.write(out).await?;
            out.clear();
            return Ok(());
        }
        let batch = std::mem::replace(out, Vec::with_capacity(BATCH + 1024));
        let send = &mut self.send;
        let write = async move { send.write_chunk(batch.into()).await.map_err(stopped) };
        waiting_on_peer(&mut self.idle, write).await
    }

    fn finish(&mut self) {
        self.done = true;
        let _ = self.send.finish();
    }

    /// Writes `head` (a response frame), if any, then the items of `items`
    /// and the end frame, or the error status the items ended with. An
    /// error means the peer went away; the producer is dropped at once.
    pub(super) async fn send_items<T: Serialize>(
        &mut self,
        head: Option<Vec<u8>>,
        mut items: Streaming<T>,
    ) -> Result<(), RpcError> {
        let mut out = Vec::with_capacity(BATCH + 1024);
        if let Some(head) = head {
            out.extend_from_slice(&frame::response(&Ok(head)));
        }
        loop {
            // Take what the producer has ready: a waker that does nothing
            // asks without waiting (`items.next()` below registers the real
            // one). Wait only with nothing unwritten, watching for the peer
            // going away meanwhile. Each item is framed where it is polled:
            // moving it first would cost a copy per item.
            let ready_now = items.poll_next_unpin(&mut TaskContext::from_waker(Waker::noop()));
            let ended = match ready_now {
                Poll::Ready(next) => put_next(&mut out, next, self.max_frame_size),
                Poll::Pending => {
                    if !out.is_empty() {
                        self.write_batch(&mut out).await?;
                    }
                    tokio::select! {
                        biased;
                        next = items.next() => put_next(&mut out, next, self.max_frame_size),
                        _ = self.send.stopped() => {
                            return Err(RpcError::new(Code::Cancelled, "the peer stopped the stream"));
                        }
                    }
                }
            };
            if ended {
                break;
            }
            if out.len() >= BATCH {
                self.write_batch(&mut out).await?;
            }
        }
        self.write_batch(&mut out).await?;
        self.finish();
        Ok(())
    }

    /// Answers the call with the one response frame `handler` resolves to,
    /// and ends this side: the reply of a method that takes a stream and
    /// returns a value. If the client goes away first, the handler is
    /// dropped.
    pub async fn respond(mut self, handler: impl Future<Output = Result<Vec<u8>, RpcError>>) {
        let Some(result) = self.unless_stopped(handler).await else {
            return;
        };
        self.write_response(result).await;
    }

    /// Answers a method that returns a stream. `handler` resolves to the
    /// encoded head value and the items, or to the head alone when it is
    /// an application error (no items follow), or to a status. Returns when
    /// the items are sent or the client went away; either way the handler
    /// and its producer are dropped.
    pub async fn answer<T: Serialize>(
        mut self,
        handler: impl Future<Output = Result<(Vec<u8>, Option<Streaming<T>>), RpcError>>,
    ) {
        let Some(opened) = self.unless_stopped(handler).await else {
            return;
        };
        match opened.and_then(|(head, items)| Ok((self.fits(head)?, items))) {
            Ok((head, Some(items))) => {
                // An error here is the client going away: nobody to tell.
                let _ = self.send_items(Some(head), items).await;
            }
            Ok((head, None)) => self.write_response(Ok(head)).await,
            Err(e) => self.write_response(Err(e)).await,
        }
    }

    /// `handler`'s output, or `None` if the peer stops the stream first.
    async fn unless_stopped<R>(&mut self, handler: impl Future<Output = R>) -> Option<R> {
        tokio::select! {
            biased;
            output = handler => Some(output),
            _ = self.send.stopped() => None,
        }
    }

    async fn write_response(&mut self, result: Result<Vec<u8>, RpcError>) {
        let result = result.and_then(|value| self.fits(value));
        if self.write(&frame::response(&result)).await.is_ok() {
            self.finish();
        }
    }

    fn fits(&self, value: Vec<u8>) -> Result<Vec<u8>, RpcError> {
        if value.len() >= self.max_frame_size as usize {
            return Err(too_large("reply", value.len(), self.max_frame_size));
        }
        Ok(value)
    }
}

fn stopped(e: quinn::WriteError) -> RpcError {
    RpcError::new(Code::Cancelled, format!("the peer stopped the stream: {e}"))
}

fn too_large(what: &str, len: usize, max: u32) -> RpcError {
    RpcError::new(
        Code::ResourceExhausted,
        format!("{what} of {len} bytes exceeds the maximum frame of {max}"),
    )
}

/// Appends the frame of what a producer yielded to `out`: an item, or the
/// frame that ends the stream (the end frame, or the error status).
/// Returns whether the stream has ended.
#[inline(always)]
fn put_next<T: Serialize>(out: &mut Vec<u8>, next: Option<Result<T, RpcError>>, max: u32) -> bool {
    let error = match next {
        Some(Ok(item)) => match put_item(out, &item, max) {
            Ok(()) => return false,
            Err(e) => e,
        },
        Some(Err(e)) => e,
        None => {
            out.put_u32(1);
            out.put_u8(END);
            return true;
        }
    };
    out.extend_from_slice(&frame::response(&Err(error)));
    true
}

/// Appends the item frame of `item` to `out`; on failure `out` is as it was.
// Inlined, as are the codec's functions: it runs once per stream item.
#[inline(always)]
fn put_item<T: Serialize>(out: &mut Vec<u8>, item: &T, max: u32) -> Result<(), RpcError> {
    let start = out.len();
    out.put_u32(0);
    out.put_u8(ITEM);
    if let Err(e) = codec::encode_into(item, out) {
        out.truncate(start);
        return Err(RpcError::new(
            Code::Internal,
            format!("stream item does not encode: {e}"),
        ));
    }
    let len = out.len() - start - frame::PREFIX;
    if len > max as usize {
        out.truncate(start);
        return Err(too_large("stream item", len, max));
    }
    out[start..start + frame::PREFIX].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_end_and_error_frames_are_as_documented() {
        let mut out = Vec::new();
        put_item(&mut out, &7u64, 1024).unwrap();
        assert_eq!(out, [0, 0, 0, 9, ITEM, 7, 0, 0, 0, 0, 0, 0, 0]);
        let error = frame::response(&Err(RpcError::new(Code::Internal, "disk gone")));
        assert_eq!(error[..5], [0, 0, 0, 10, 13]);
        assert_eq!(&error[5..], b"disk gone");
    }

    #[test]
    fn an_item_too_large_for_a_frame_is_refused_and_leaves_the_buffer_alone() {
        let mut out = vec![1, 2, 3];
        let err = put_item(&mut out, &vec![0u8; 100], 64).unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert_eq!(out, [1, 2, 3]);
    }
}
