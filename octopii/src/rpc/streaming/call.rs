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
//! them and reads the peer's bytes only when asked for an item it has not
//! decoded yet, so memory stays bounded by the flow-control windows. A
//! side that goes away resets or stops the stream, which ends the other
//! side's producer.
//!
//! `item_sink.rs` writes a side's items ([`ItemSink`]), `item_source.rs`
//! reads the peer's; this file holds the entry points the generated code calls.

use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::idle::IdleTimer;
pub use super::item_sink::ItemSink;
pub(crate) use super::item_source::RemoteItems;
use super::item_source::{AbortOnDrop, ItemSource};

use crate::codec;
use crate::rpc::call_stream::StreamParts;
use crate::rpc::{CallStream, Client, Code, HandlerFuture, RpcError, StreamFuture, Streaming};

/// Tag of an item frame.
pub const ITEM: u8 = 0;
/// Tag of the frame that ends a stream cleanly.
pub const END: u8 = 0xFF;

fn deadline_exceeded() -> RpcError {
    RpcError::new(
        Code::DeadlineExceeded,
        "the streaming call did not finish within its deadline",
    )
}

/// Runs `call` to its deadline, if it has one. A failure once the deadline
/// has passed is the deadline's doing: the server resets the stream when
/// its own copy of the deadline passes, which may be seen first.
pub(super) async fn bounded<R>(
    deadline: Option<Instant>,
    call: impl Future<Output = Result<R, RpcError>>,
) -> Result<R, RpcError> {
    let Some(deadline) = deadline else {
        return call.await;
    };
    match tokio::time::timeout_at(deadline, call).await {
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
        let mut parts = client
            .open_stream(service, method, args)
            .await?
            .into_parts();
        // Nothing streams this way: the request is all the client sends.
        let _ = parts.send.finish();
        let mut source = ItemSource::new(parts.recv, parts.reader, parts.max_frame_size, deadline);
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
        let StreamParts {
            send,
            recv,
            reader,
            max_frame_size: max,
            ..
        } = client
            .open_stream(service, method, args)
            .await?
            .into_parts();
        let mut sink = ItemSink::new(send, max, None);
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
        let StreamParts {
            send,
            recv,
            reader,
            max_frame_size: max,
            ..
        } = client
            .open_stream(service, method, args)
            .await?
            .into_parts();
        let mut sink = ItemSink::new(send, max, None);
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
    let parts = stream.into_parts();
    let max = parts.max_frame_size;
    // The call's deadline is the router's to enforce on this side; the
    // idle timeout is this side's own.
    let mut source = ItemSource::new(parts.recv, parts.reader, max, None);
    source.idle = parts.idle_timeout.map(IdleTimer::new);
    let sink = ItemSink::new(parts.send, max, parts.idle_timeout);
    (sink, source.into_streaming())
}

/// Server side of a method that takes no stream: the sending half.
#[doc(hidden)]
pub fn sink(stream: CallStream) -> ItemSink {
    let parts = stream.into_parts();
    ItemSink::new(parts.send, parts.max_frame_size, parts.idle_timeout)
}

/// The reply to a unary request for a streaming method.
#[doc(hidden)]
pub fn streaming_only(service: &str, method: &str) -> HandlerFuture {
    crate::rpc::service::unimplemented_because(format!(
        "`{service}.{method}` is a streaming method: call it on a stream of its own"
    ))
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
