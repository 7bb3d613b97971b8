//! [`Streaming<T>`]: a sequence of values that crosses the wire one item at
//! a time, in either direction of a streaming call.
//!
//! A handler returns a `Streaming<T>` built from any stream of items
//! ([`Streaming::from_stream`], a `Vec`, or the receiving half of
//! [`Streaming::channel`]); the client receives a `Streaming<T>` that reads
//! the items off the call's QUIC stream. Either way it is a
//! [`futures::Stream`] of `Result<T, RpcError>`: an `Err` is the last item,
//! after it the stream ends.
//!
//! Memory stays bounded end to end: the sending side pulls the next item
//! only once the previous ones are handed to QUIC, which stops taking bytes
//! when the peer's flow-control window is full; the receiving side reads
//! more bytes only when it is asked for an item and has none decoded. How
//! the items travel is specified in `docs/PROTOCOL.md`, section "Streaming
//! calls".

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::stream::{BoxStream, Stream, StreamExt};
use pin_project_lite::pin_project;
use tokio::sync::mpsc;

pub(crate) mod call;
mod idle;

/// The tags of an item frame, as `docs/PROTOCOL.md` gives them.
pub use call::{END, ITEM};
mod item_sink;
mod item_source;

use super::RpcError;
use call::RemoteItems;

/// A stream of `T`s in a streaming RPC: a [`Stream`] of
/// `Result<T, RpcError>` whose first `Err` is also its last item.
///
/// ```
/// use futures::StreamExt;
/// use octopii::Streaming;
///
/// # futures::executor::block_on(async {
/// let mut lines = Streaming::from(vec!["a".to_string(), "b".to_string()]);
/// assert_eq!(lines.next().await, Some(Ok("a".to_string())));
/// assert_eq!(lines.next().await, Some(Ok("b".to_string())));
/// assert_eq!(lines.next().await, None);
/// # });
/// ```
#[must_use = "a stream does nothing unless polled"]
pub struct Streaming<T> {
    source: Source<T>,
}

/// Where a [`Streaming`]'s items come from. Each source ends itself after
/// an error and releases what it holds at its end, so that polling a
/// `Streaming` passes the item straight through: holding it to look at it
/// would cost a copy per item.
enum Source<T> {
    /// Any stream of the application's.
    Local(BoxStream<'static, Result<T, RpcError>>),
    /// The peer's items off a call's stream, polled without a dynamic call
    /// per item. Boxed: it is far larger than the other variant.
    Remote(Box<RemoteItems<T>>),
}

impl<T: Send + 'static> Streaming<T> {
    /// Items from any stream of values; it is polled only as fast as the
    /// receiver takes them.
    ///
    /// ```
    /// use octopii::Streaming;
    /// let counting: Streaming<u64> = Streaming::from_stream(futures::stream::iter(0..));
    /// ```
    pub fn from_stream(items: impl Stream<Item = T> + Send + 'static) -> Self {
        Self::from_results(items.map(Ok))
    }

    /// Items from a stream of results: an `Err` ends the stream with that
    /// error, which the receiver sees with its code and message.
    ///
    /// ```
    /// use octopii::Streaming;
    /// use octopii::rpc::{Code, RpcError};
    /// let failing: Streaming<u8> = Streaming::from_results(futures::stream::iter([
    ///     Ok(1),
    ///     Err(RpcError::new(Code::Internal, "disk gone")),
    /// ]));
    /// ```
    pub fn from_results(items: impl Stream<Item = Result<T, RpcError>> + Send + 'static) -> Self {
        let items = UntilError { items: Some(items) };
        Streaming {
            source: Source::Local(items.boxed()),
        }
    }

    /// A stream with no items.
    pub fn empty() -> Self {
        Self::from_results(futures::stream::empty())
    }

    /// A bounded channel: what the [`StreamSender`] sends, the `Streaming`
    /// yields. `send` waits while `capacity` items are waiting (at least 1).
    ///
    /// ```
    /// use futures::StreamExt;
    /// use octopii::Streaming;
    ///
    /// # futures::executor::block_on(async {
    /// let (sender, mut messages) = Streaming::channel(8);
    /// sender.send("hello").await.unwrap();
    /// drop(sender);
    /// assert_eq!(messages.next().await, Some(Ok("hello")));
    /// assert_eq!(messages.next().await, None);
    /// # });
    /// ```
    pub fn channel(capacity: usize) -> (StreamSender<T>, Streaming<T>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let items = futures::stream::unfold(rx, |mut rx| async move {
            let item = rx.recv().await?;
            Some((item, rx))
        });
        (StreamSender { tx }, Self::from_results(items))
    }
}

impl<T> Streaming<T> {
    /// The peer's items, as a streaming call receives them.
    pub(crate) fn remote(items: RemoteItems<T>) -> Self {
        Streaming {
            source: Source::Remote(Box::new(items)),
        }
    }
}

impl<T> Stream for Streaming<T> {
    type Item = Result<T, RpcError>;

    #[inline]
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut self.source {
            Source::Local(items) => items.poll_next_unpin(cx),
            Source::Remote(items) => items.poll_next_unpin(cx),
        }
    }
}

pin_project! {
    /// A stream that ends after its first error, dropping its source at
    /// its end.
    struct UntilError<S> {
        #[pin]
        items: Option<S>,
    }
}

impl<T, S: Stream<Item = Result<T, RpcError>>> Stream for UntilError<S> {
    type Item = Result<T, RpcError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut items = self.project().items;
        let Some(source) = items.as_mut().as_pin_mut() else {
            return Poll::Ready(None);
        };
        let next = ready!(source.poll_next(cx));
        if !matches!(next, Some(Ok(_))) {
            items.set(None);
        }
        Poll::Ready(next)
    }
}

impl<T: Send + 'static> From<Vec<T>> for Streaming<T> {
    fn from(items: Vec<T>) -> Self {
        Self::from_stream(futures::stream::iter(items))
    }
}

impl<T> fmt::Debug for Streaming<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streaming")
            .field(
                "from",
                &match self.source {
                    Source::Local(_) => "local",
                    Source::Remote(_) => "remote",
                },
            )
            .finish_non_exhaustive()
    }
}

/// The sending half of [`Streaming::channel`]. Dropping every clone ends
/// the stream cleanly; [`fail`](Self::fail) ends it with an error.
#[derive(Debug)]
pub struct StreamSender<T> {
    tx: mpsc::Sender<Result<T, RpcError>>,
}

impl<T> Clone for StreamSender<T> {
    fn clone(&self) -> Self {
        StreamSender {
            tx: self.tx.clone(),
        }
    }
}

impl<T> StreamSender<T> {
    /// Sends `item`, waiting while the channel is full. Gives `item` back
    /// when the receiving side is gone (the peer cancelled the call).
    pub async fn send(&self, item: T) -> Result<(), T> {
        match self.tx.reserve().await {
            Ok(permit) => {
                permit.send(Ok(item));
                Ok(())
            }
            Err(_) => Err(item),
        }
    }

    /// Ends the stream with `error` after the items already sent.
    pub async fn fail(self, error: RpcError) {
        let _ = self.tx.send(Err(error)).await;
    }

    /// Resolves when the receiving side is gone.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Whether the receiving side is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::Code;

    #[test]
    fn nothing_comes_after_an_error() {
        futures::executor::block_on(async {
            let failure = RpcError::new(Code::Internal, "broken");
            let mut items = Streaming::from_results(futures::stream::iter([
                Ok(1),
                Err(failure.clone()),
                Ok(2),
            ]));
            assert_eq!(items.next().await, Some(Ok(1)));
            assert_eq!(items.next().await, Some(Err(failure)));
            assert_eq!(items.next().await, None);
            assert_eq!(items.next().await, None);
        });
    }

    #[test]
    fn a_local_source_is_released_at_its_error() {
        futures::executor::block_on(async {
            let (sender, mut items) = Streaming::<u8>::channel(1);
            let watcher = sender.clone();
            let failure = RpcError::new(Code::Internal, "broken");
            sender.fail(failure.clone()).await;
            assert_eq!(items.next().await, Some(Err(failure)));
            // `items` is still alive, but the channel behind it is gone.
            assert!(watcher.is_closed());
        });
    }

    #[test]
    fn a_sender_learns_that_the_receiver_is_gone() {
        futures::executor::block_on(async {
            let (sender, items) = Streaming::<u8>::channel(1);
            assert!(!sender.is_closed());
            drop(items);
            assert!(sender.is_closed());
            assert_eq!(sender.send(7).await, Err(7));
        });
    }
}
