//! The receiving half of a streaming call: bytes read only when an item is
//! asked for and none is left, and the item frames among them decoded in
//! place, together.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use tokio::time::Instant;

use bytes::Bytes;
use futures::Stream;
use serde::de::DeserializeOwned;

use super::call::{END, ITEM, bounded};
use super::idle::{IdleTimer, waiting_on_peer};
use crate::codec;
use crate::rpc::client::CANCELLED;
use crate::rpc::frame::{self, FrameReader};
use crate::rpc::{Code, RpcError, Streaming};

/// Aborts a spawned task when dropped.
#[derive(Debug)]
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The receiving half of a streaming call's stream. Dropped before the
/// peer's end, it stops the stream, which ends the peer's producer.
#[derive(Debug)]
pub(super) struct ItemSource {
    recv: quinn::RecvStream,
    reader: FrameReader,
    max_frame_size: u32,
    deadline: Option<Instant>,
    /// How long to wait for the peer's next bytes (a server's own limit).
    pub(super) idle: Option<IdleTimer>,
    done: bool,
    /// The task sending this call's items the other way, if any: it goes
    /// when the receiving side goes.
    pub(super) _pump: Option<AbortOnDrop>,
}

impl Drop for ItemSource {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.recv.stop(CANCELLED);
        }
    }
}

impl ItemSource {
    pub(super) fn new(
        recv: quinn::RecvStream,
        reader: FrameReader,
        max_frame_size: u32,
        deadline: Option<Instant>,
    ) -> Self {
        ItemSource {
            recv,
            reader,
            max_frame_size,
            deadline,
            idle: None,
            done: false,
            _pump: None,
        }
    }

    async fn frame(&mut self) -> Result<Option<Bytes>, RpcError> {
        let read = async {
            Ok(self
                .reader
                .next(&mut self.recv, self.max_frame_size)
                .await?)
        };
        bounded(self.deadline, read).await
    }

    /// The response frame that heads the peer's answer.
    pub(super) async fn head(&mut self) -> Result<Bytes, RpcError> {
        let frame = self.frame().await?.ok_or_else(|| {
            RpcError::new(Code::Unavailable, "the stream ended before its answer")
        })?;
        frame::parse_response(frame)
    }

    /// Decodes with `parse` into `items` every item whose frame is already
    /// buffered. Returns how the stream ends if its last frame was among
    /// them: at the end frame (`Some(None)`) or with an error
    /// (`Some(Some(e))`).
    fn decode_buffered<T>(
        &mut self,
        parse: fn(&[u8]) -> Option<Result<T, RpcError>>,
        items: &mut VecDeque<T>,
    ) -> Option<Option<RpcError>> {
        loop {
            match self.reader.next_buffered(self.max_frame_size, parse) {
                Ok(Some(Some(Ok(item)))) => items.push_back(item),
                Ok(Some(Some(Err(e)))) => return Some(Some(e)),
                Ok(Some(None)) => {
                    self.done = true;
                    return Some(None);
                }
                Ok(None) => return None,
                Err(e) => return Some(Some(e.into())),
            }
        }
    }

    /// Reads more bytes of the stream; its end here is an error, as the
    /// end frame has not come.
    async fn fill(&mut self) -> Result<(), RpcError> {
        let (reader, recv) = (&mut self.reader, &mut self.recv);
        let read = async move {
            if reader.fill(recv).await? {
                Ok(())
            } else {
                Err(RpcError::new(
                    Code::Unavailable,
                    "the stream ended without its end frame",
                ))
            }
        };
        bounded(self.deadline, waiting_on_peer(&mut self.idle, read)).await
    }
}

/// An item frame's payload: `Some(item)`, or `None` for the end frame.
/// Reached through [`RemoteItems::parse`], once per stream item.
fn parse_item<T: DeserializeOwned>(payload: &[u8]) -> Option<Result<T, RpcError>> {
    match payload.first() {
        Some(&ITEM) => Some(codec::decode(&payload[1..]).map_err(|e| {
            RpcError::new(
                Code::InvalidArgument,
                format!("stream item does not decode: {e}"),
            )
        })),
        Some(&END) if payload.len() == 1 => None,
        Some(&END) => Some(Err(RpcError::new(
            Code::InvalidArgument,
            "an end frame with a body in a stream",
        ))),
        Some(&code) => Some(Err(RpcError::new(
            Code::from_wire(code),
            String::from_utf8_lossy(&payload[1..]).into_owned(),
        ))),
        None => Some(Err(RpcError::new(
            Code::InvalidArgument,
            "empty frame in a stream",
        ))),
    }
}

type Filling = Pin<Box<dyn Future<Output = (ItemSource, Result<(), RpcError>)> + Send>>;

/// The items still to come from an [`ItemSource`]. The items of the bytes
/// already read are decoded together, in one tight loop, and handed out
/// one by one; only reading more bytes waits.
pub(crate) struct RemoteItems<T> {
    source: Option<ItemSource>,
    filling: Option<Filling>,
    /// Decodes one item frame; chosen where `T: DeserializeOwned` is known,
    /// so that polling needs no bound on `T`.
    parse: fn(&[u8]) -> Option<Result<T, RpcError>>,
    /// Items decoded from bytes already read, in order. At most one read's
    /// worth, as they are decoded only once the previous ones are taken.
    decoded: VecDeque<T>,
    /// How the stream ends once `decoded` is empty: at its end frame
    /// (`None`) or with an error.
    end: Option<Option<RpcError>>,
}

// Nothing in `RemoteItems` is pinned: items are moved out by value.
impl<T> Unpin for RemoteItems<T> {}

impl<T> Stream for RemoteItems<T> {
    type Item = Result<T, RpcError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(item) = this.decoded.pop_front() {
                return Poll::Ready(Some(Ok(item)));
            }
            if let Some(end) = this.end.take() {
                return Poll::Ready(end.map(Err));
            }
            if let Some(filling) = &mut this.filling {
                let (source, filled) = ready!(filling.as_mut().poll(cx));
                this.filling = None;
                if let Err(e) = filled {
                    // The source drops here: an error ends the stream.
                    return Poll::Ready(Some(Err(e)));
                }
                this.source = Some(source);
            }
            let Some(source) = &mut this.source else {
                return Poll::Ready(None);
            };
            if let Some(end) = source.decode_buffered(this.parse, &mut this.decoded) {
                // The source drops here; its last items are still handed out.
                this.source = None;
                this.end = Some(end);
            } else if this.decoded.is_empty() {
                let Some(mut source) = this.source.take() else {
                    return Poll::Ready(None);
                };
                this.filling = Some(Box::pin(async move {
                    let filled = source.fill().await;
                    (source, filled)
                }));
            }
        }
    }
}

impl ItemSource {
    /// The items still to come, as a [`Streaming`].
    pub(super) fn into_streaming<T: DeserializeOwned + Send + 'static>(self) -> Streaming<T> {
        Streaming::remote(RemoteItems {
            source: Some(self),
            filling: None,
            parse: parse_item::<T>,
            decoded: VecDeque::new(),
            end: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_frame_must_be_empty() {
        assert!(parse_item::<u8>(&[END]).is_none());
        let err = parse_item::<u8>(&[END, 0]).unwrap().unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(parse_item::<u8>(&[ITEM, 7]).unwrap().unwrap(), 7);
    }
}
