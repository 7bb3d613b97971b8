//! Streaming calls on the wire: item frames, and the client and server
//! entry points that `#[octopii::service]` generates calls to.
//!
//! A streaming call owns its QUIC stream (see [`CallStream`]). After the
//! request, each direction that streams carries item frames
//! `[u32 length][u8 tag][body]`: tag `0` an item, tag `255` the clean end,
//! any other tag an error status that ends the stream. A server that
//! streams first answers a head: a response frame whose value is `()` (or
//! `Result<(), E>` for a method returning `Result<Streaming<T>, E>`). The
//! byte layout is in `docs/PROTOCOL.md`, section "Streaming calls".
//!
//! Each side writes the items of a [`Streaming`] as fast as QUIC accepts
//! them and reads the peer's items only when asked for the next one, so
//! memory stays bounded by the flow-control windows. A side that goes away
//! resets or stops the stream, which ends the other side's producer.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, Waker, ready};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes};
use futures::{Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::client::CANCELLED;
use super::frame::{self, FrameReader};
use super::{CallStream, Client, Code, HandlerFuture, RpcError, StreamFuture, Streaming, codec};

/// Tag of an item frame.
pub const ITEM: u8 = 0;
/// Tag of the frame that ends a stream cleanly.
pub const END: u8 = 0xFF;

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
    fn new(send: quinn::SendStream, max_frame_size: u32) -> Self {
        ItemSink {
            send,
            max_frame_size,
            done: false,
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), RpcError> {
        self.send.write_all(bytes).await.map_err(stopped)
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
        self.send.write_chunk(batch.into()).await.map_err(stopped)
    }

    fn finish(&mut self) {
        self.done = true;
        let _ = self.send.finish();
    }

    /// Writes `head` (a response frame), if any, then the items of `items`
    /// and the end frame, or the error status the items ended with. An
    /// error means the peer went away; the producer is dropped at once.
    async fn send_items<T: Serialize>(
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
            // going away meanwhile.
            let ready_now = items.poll_next_unpin(&mut TaskContext::from_waker(Waker::noop()));
            let next = match ready_now {
                Poll::Ready(next) => next,
                Poll::Pending => {
                    if !out.is_empty() {
                        self.write_batch(&mut out).await?;
                    }
                    tokio::select! {
                        next = items.next() => next,
                        _ = self.send.stopped() => {
                            return Err(RpcError::new(Code::Cancelled, "the peer stopped the stream"));
                        }
                    }
                }
            };
            match next {
                Some(Ok(item)) => {
                    if let Err(e) = put_item(&mut out, &item, self.max_frame_size) {
                        out.extend_from_slice(&frame::response(&Err(e)));
                        break;
                    }
                    if out.len() >= BATCH {
                        self.write_batch(&mut out).await?;
                    }
                }
                Some(Err(e)) => {
                    out.extend_from_slice(&frame::response(&Err(e)));
                    break;
                }
                None => {
                    out.put_u32(1);
                    out.put_u8(END);
                    break;
                }
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

/// Appends the item frame of `item` to `out`; on failure `out` is as it was.
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

/// Aborts a spawned task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The receiving half of a streaming call's stream. Dropped before the
/// peer's end, it stops the stream, which ends the peer's producer.
#[derive(Debug)]
struct ItemSource {
    recv: quinn::RecvStream,
    reader: FrameReader,
    max_frame_size: u32,
    deadline: Option<Instant>,
    done: bool,
    /// The task sending this call's items the other way, if any: it goes
    /// when the receiving side goes.
    _pump: Option<AbortOnDrop>,
}

impl Drop for ItemSource {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.recv.stop(CANCELLED);
        }
    }
}

impl ItemSource {
    fn new(
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
    async fn head(&mut self) -> Result<Bytes, RpcError> {
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
    fn into_streaming<T: DeserializeOwned + Send + 'static>(self) -> Streaming<T> {
        Streaming::from_results(Items {
            source: Some(self),
            filling: None,
            _item: PhantomData,
        })
    }
}

fn deadline_exceeded() -> RpcError {
    RpcError::new(
        Code::DeadlineExceeded,
        "the streaming call did not finish within its deadline",
    )
}

/// Runs `call` to its deadline, if it has one. A failure once the deadline
/// has passed is the deadline's doing: the server resets the stream when
/// its own copy of the deadline passes, which may be seen first.
async fn bounded<R>(
    deadline: Option<Instant>,
    call: impl Future<Output = Result<R, RpcError>>,
) -> Result<R, RpcError> {
    let Some(deadline) = deadline else {
        return call.await;
    };
    match tokio::time::timeout_at(deadline.into(), call).await {
        Ok(Err(_)) if Instant::now() >= deadline => Err(deadline_exceeded()),
        Ok(result) => result,
        Err(_) => Err(deadline_exceeded()),
    }
}

fn deadline_of(client: &Client) -> Option<Instant> {
    client.deadline().map(|d: Duration| Instant::now() + d)
}

/// Client side of a method that returns a stream and takes none: the
/// head's bytes (decode them with [`decode_head`]) and the items.
#[doc(hidden)]
pub async fn server_streaming<A, Out>(
    client: &Client,
    service: &'static str,
    method: &'static str,
    args: &A,
) -> Result<(Bytes, Streaming<Out>), RpcError>
where
    A: Serialize + ?Sized,
    Out: DeserializeOwned + Send + 'static,
{
    let deadline = deadline_of(client);
    bounded(deadline, async {
        let (mut send, recv, reader, max) = client
            .open_stream(service, method, args)
            .await?
            .into_parts();
        // Nothing streams this way: the request is all the client sends.
        let _ = send.finish();
        let mut source = ItemSource::new(recv, reader, max, deadline);
        let head = source.head().await?;
        Ok((head, source.into_streaming()))
    })
    .await
}

/// Client side of a method that takes a stream and returns one: `input`
/// is sent by a task of its own while the caller reads the reply items.
#[doc(hidden)]
pub async fn bidi_streaming<A, In, Out>(
    client: &Client,
    service: &'static str,
    method: &'static str,
    args: &A,
    input: Streaming<In>,
) -> Result<(Bytes, Streaming<Out>), RpcError>
where
    A: Serialize + ?Sized,
    In: Serialize + Send + 'static,
    Out: DeserializeOwned + Send + 'static,
{
    let deadline = deadline_of(client);
    bounded(deadline, async {
        let (send, recv, reader, max) = client
            .open_stream(service, method, args)
            .await?
            .into_parts();
        let mut sink = ItemSink::new(send, max);
        let pump = tokio::spawn(async move {
            let _ = sink.send_items(None, input).await;
        });
        let mut source = ItemSource::new(recv, reader, max, deadline);
        source._pump = Some(AbortOnDrop(pump));
        let head = source.head().await?;
        Ok((head, source.into_streaming()))
    })
    .await
}

/// Client side of a method that takes a stream and returns a value.
#[doc(hidden)]
pub async fn client_streaming<A, In, R>(
    client: &Client,
    service: &'static str,
    method: &'static str,
    args: &A,
    input: Streaming<In>,
) -> Result<R, RpcError>
where
    A: Serialize + ?Sized,
    In: Serialize + Send + 'static,
    R: DeserializeOwned,
{
    let deadline = deadline_of(client);
    let reply = bounded(deadline, async {
        let (send, recv, reader, max) = client
            .open_stream(service, method, args)
            .await?
            .into_parts();
        let mut sink = ItemSink::new(send, max);
        let mut source = ItemSource::new(recv, reader, max, deadline);
        let pump = sink.send_items(None, input);
        let reply = source.head();
        tokio::pin!(pump, reply);
        // The server may answer before it has read every item (an error,
        // or it needs no more): then the rest is not sent.
        tokio::select! {
            biased;
            reply = &mut reply => reply,
            _ = &mut pump => reply.await,
        }
    })
    .await?;
    codec::decode(&reply).map_err(|e| {
        RpcError::new(
            Code::Internal,
            format!("{service}.{method} reply does not decode: {e}"),
        )
    })
}

/// Decodes the head of a streamed reply: `()`, or `Result<(), E>` for a
/// method returning `Result<Streaming<T>, E>`.
#[doc(hidden)]
pub fn decode_head<H: DeserializeOwned>(head: &[u8]) -> Result<H, RpcError> {
    codec::decode(head).map_err(|e| {
        RpcError::new(
            Code::Internal,
            format!("the head of a streamed reply does not decode: {e}"),
        )
    })
}

/// Server side of a method that takes a stream: the sending half, and the
/// client's items.
#[doc(hidden)]
pub fn split<In>(stream: CallStream) -> (ItemSink, Streaming<In>)
where
    In: DeserializeOwned + Send + 'static,
{
    let (send, recv, reader, max) = stream.into_parts();
    // The call's deadline is the router's to enforce on this side.
    let source = ItemSource::new(recv, reader, max, None);
    (ItemSink::new(send, max), source.into_streaming())
}

/// Server side of a method that takes no stream: the sending half.
#[doc(hidden)]
pub fn sink(stream: CallStream) -> ItemSink {
    let (send, _recv, _reader, max) = stream.into_parts();
    ItemSink::new(send, max)
}

/// The reply to a unary request for a streaming method.
#[doc(hidden)]
pub fn streaming_only(service: &str, method: &str) -> HandlerFuture {
    let message =
        format!("`{service}.{method}` is a streaming method: call it on a stream of its own");
    Box::pin(std::future::ready(Err(RpcError::new(
        Code::Unimplemented,
        message,
    ))))
}

/// The reply to a streaming request for a method the service does not
/// stream.
#[doc(hidden)]
pub fn no_streaming_method(service: &str, method: &str, stream: CallStream) -> StreamFuture {
    let error = RpcError::new(
        Code::Unimplemented,
        format!("service `{service}` has no streaming method `{method}`"),
    );
    Box::pin(stream.fail(error))
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
