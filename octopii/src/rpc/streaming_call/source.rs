//! The receiving half of a streaming call: item frames read only when the
//! next item is asked for, and decoded in place.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use futures::Stream;
use serde::de::DeserializeOwned;

use super::{END, ITEM, bounded};
use crate::rpc::client::CANCELLED;
use crate::rpc::frame::{self, FrameReader};
use crate::rpc::{Code, RpcError, Streaming, codec};

/// Aborts a spawned task when dropped.
#[derive(Debug)]
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// peer's end, it stops the stream, which ends the peer's producer.
#[derive(Debug)]
pub(super) struct ItemSource {
    recv: quinn::RecvStream,
    reader: FrameReader,
    max_frame_size: u32,
    deadline: Option<Instant>,
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

    /// The next item if its frame is already buffered (`Some(None)` after
    /// the end frame), or `None` when more bytes must be read first.
    fn buffered_item<T: DeserializeOwned>(&mut self) -> Option<Option<Result<T, RpcError>>> {
        match self.reader.next_buffered(self.max_frame_size, parse_item) {
            Ok(Some(None)) => {
                self.done = true;
                Some(None)
            }
            Ok(Some(item)) => Some(item),
            Ok(None) => None,
            Err(e) => Some(Some(Err(e.into()))),
        }
    }

    /// Reads more bytes of the stream; its end here is an error, as the
    /// end frame has not come.
    async fn fill(&mut self) -> Result<(), RpcError> {
        let read = async {
            if self.reader.fill(&mut self.recv).await? {
                Ok(())
            } else {
                Err(RpcError::new(
                    Code::Unavailable,
                    "the stream ended without its end frame",
                ))
            }
        };
        bounded(self.deadline, read).await
    }
}

/// An item frame's payload: `Some(item)`, or `None` for the end frame.
// Inlined, as are the codec's functions: it runs once per stream item.
#[inline]
fn parse_item<T: DeserializeOwned>(payload: &[u8]) -> Option<Result<T, RpcError>> {
    match payload.first() {
        Some(&ITEM) => Some(codec::decode(&payload[1..]).map_err(|e| {
            RpcError::new(
                Code::InvalidArgument,
                format!("stream item does not decode: {e}"),
            )
        })),
        Some(&END) => None,
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

/// The items still to come from an [`ItemSource`]. Items already buffered
/// are decoded in place without a future; only reading more bytes waits.
struct Items<T> {
    source: Option<ItemSource>,
    filling: Option<Filling>,
    _item: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Stream for Items<T> {
    type Item = Result<T, RpcError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(filling) = &mut self.filling {
                let (source, filled) = ready!(filling.as_mut().poll(cx));
                self.filling = None;
                if let Err(e) = filled {
                    // The source drops here: an error ends the stream.
                    return Poll::Ready(Some(Err(e)));
                }
                self.source = Some(source);
            }
            let Some(source) = &mut self.source else {
                return Poll::Ready(None);
            };
            match source.buffered_item() {
                Some(Some(Ok(item))) => return Poll::Ready(Some(Ok(item))),
                Some(end_or_error) => {
                    self.source = None;
                    return Poll::Ready(end_or_error);
                }
                None => {
                    let Some(mut source) = self.source.take() else {
                        return Poll::Ready(None);
                    };
                    self.filling = Some(Box::pin(async move {
                        let filled = source.fill().await;
                        (source, filled)
                    }));
                }
            }
        }
    }
}

impl ItemSource {
    /// The items still to come, as a [`Streaming`].
    pub(super) fn into_streaming<T: DeserializeOwned + Send + 'static>(self) -> Streaming<T> {
        Streaming::from_results(Items {
            source: Some(self),
            filling: None,
            _item: PhantomData,
        })
    }
}
