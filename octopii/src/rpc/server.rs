//! The server side: a [`Router`] of services serving each inbound stream.
//!
//! A stream carries calls one after another: header frame, arguments frame,
//! response frame, and again, until the client finishes the stream. While a
//! handler runs, the server watches the stream: a stop from the client (its
//! call future was dropped) or a lost connection cancels the handler by
//! dropping it.
//!
//! What a peer can make the server hold is bounded (see [`budget`](super::budget)):
//! call permits, bytes of incomplete frames, and time: a request that has
//! begun must arrive whole within `rpc.request_read_timeout_ms`.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use futures::FutureExt;

use tracing::Instrument;

use super::budget::{Budgets, CallPermit, PeerShare, RpcStats};
use super::frame::{self, FrameError, FrameReader, RequestHeader};
use super::lane;
use super::observe::{CallMetrics, Observed};
use super::{CallStream, Code, Context, RpcError, Service};
use crate::codec;
use crate::config::{RpcConfig, TransportConfig};
use crate::runtime::panic_message;
use crate::transport::{InboundHandler, PeerConnection};

/// Why a service could not be served.
///
/// ```
/// use octopii::rpc::ServeError;
/// let e = ServeError::Duplicate { name: "Calculator".into() };
/// assert_eq!(e.to_string(), "a service named `Calculator` is already served");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// A service of the same name is already served.
    #[error("a service named `{name}` is already served")]
    Duplicate {
        /// The service's name.
        name: String,
    },
    /// The node was started with a custom stream handler, so it serves no
    /// RPC services.
    #[error("this node serves a custom stream handler, not RPC services")]
    CustomHandler,
}

/// Bytes of a response frame before its value: the code.
const RESPONSE_HEAD: usize = 1;

/// Application error code of a stream the server gives up on.
const PROTOCOL_ERROR: quinn::VarInt = quinn::VarInt::from_u32(2);

/// The services of a node, and the limits they are served under.
pub struct Router {
    services: RwLock<HashMap<&'static str, Arc<dyn Service>>>,
    budgets: Arc<Budgets>,
    max_frame_size: u32,
    /// Calls of one lane running or waiting for its writer, at most.
    lane_calls: usize,
    request_read_timeout: Duration,
    stream_idle_timeout: Duration,
    /// Set by [`drain`](Router::drain): new calls are refused.
    draining: AtomicBool,
    metrics: CallMetrics,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}

impl Router {
    /// A router with no services, serving under the limits of `rpc`
    /// (calls beyond them are answered `ResourceExhausted`), accepting
    /// frames up to `transport.max_frame_size` bytes and, on a lane, as
    /// many calls at once as a peer may open streams
    /// (`transport.max_concurrent_bidi_streams`).
    pub fn new(rpc: &RpcConfig, transport: &TransportConfig) -> Self {
        Router {
            services: RwLock::new(HashMap::new()),
            budgets: Arc::new(Budgets::new(rpc)),
            max_frame_size: transport.max_frame_size,
            lane_calls: transport.max_concurrent_bidi_streams as usize,
            request_read_timeout: rpc.request_read_timeout(),
            stream_idle_timeout: rpc.stream_idle_timeout(),
            draining: AtomicBool::new(false),
            metrics: CallMetrics::server(),
        }
    }

    /// Refuses every new call (`Unavailable`, "draining"), then waits
    /// until the calls already running have finished.
    pub async fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.budgets.take_every_call_permit().await;
    }

    /// Current counters of the router's budgets.
    pub fn stats(&self) -> RpcStats {
        self.budgets.stats()
    }

    /// Adds `service`; a second service of the same name is refused.
    pub fn add(&self, service: Arc<dyn Service>) -> Result<(), ServeError> {
        let name = service.name();
        let mut services = self
            .services
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if services.contains_key(name) {
            return Err(ServeError::Duplicate {
                name: name.to_owned(),
            });
        }
        services.insert(name, service);
        Ok(())
    }

    /// Drops every service, releasing what each holds (a chunk receive
    /// directory's lock, say): a stopped node serves nothing.
    pub fn clear(&self) {
        let drained: Vec<_> = self
            .services
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        drop(drained);
    }

    fn service(&self, name: &str) -> Option<Arc<dyn Service>> {
        let services = self.services.read().unwrap_or_else(PoisonError::into_inner);
        services.get(name).cloned()
    }

    /// Serves the calls of one stream until the client finishes it.
    async fn serve_stream(
        self: Arc<Self>,
        conn: PeerConnection,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let mut reader = FrameReader::with_budget(self.budgets.frame_budget(&conn));
        let share = self.budgets.peer_share(conn.peer());
        let caller = Caller { conn, share };
        match self.opens_lane(&mut reader, &mut recv).await {
            Ok(true) => return self.serve_lane(Arc::new(caller), send, recv, reader).await,
            Ok(false) => {}
            Err(_) => return,
        }
        loop {
            let request = match self.read_request(&mut reader, &mut recv).await {
                Ok(Some(request)) => request,
                Ok(None) => {
                    let _ = send.finish();
                    return;
                }
                Err(Abandon::Answer(error)) => {
                    // Framing is lost: answer if the client can still hear,
                    // then end the stream.
                    tracing::debug!(peer = %caller.conn.peer().addr, "bad request: {error}");
                    let _ = recv.stop(PROTOCOL_ERROR);
                    // A peer that does not read its answer does not hold
                    // the stream for it either.
                    let answer = frame::response(&Err(error));
                    let write = send.write_all(&answer);
                    match tokio::time::timeout(self.request_read_timeout, write).await {
                        Ok(_) => {
                            let _ = send.finish();
                        }
                        Err(_) => {
                            let _ = send.reset(PROTOCOL_ERROR);
                        }
                    }
                    return;
                }
                Err(Abandon::Silently) => return,
            };
            let (header, args) = request;
            let service = self.service(&header.service);
            if header.owns_stream {
                // The stream now belongs to this call's own protocol.
                let peer = caller.conn.peer().clone();
                let mut stream = CallStream::new(send, recv, reader, self.max_frame_size, peer);
                stream.set_idle_timeout(self.stream_idle_timeout);
                self.serve_owned(service, &caller, header, args, stream)
                    .await;
                return;
            }
            let Some(result) = self
                .dispatch(
                    &caller,
                    service,
                    (header, args),
                    send.stopped(),
                    RESPONSE_HEAD,
                )
                .await
            else {
                // The caller went away: the handler was dropped; so is the stream.
                return;
            };
            if send.write_all(&frame::response(&result)).await.is_err() {
                return;
            }
        }
    }

    /// Reads the next request. A pooled stream may wait idle for it as long
    /// as the client likes; once its first bytes are in, the header and
    /// arguments must follow within the request read timeout.
    async fn read_request(
        &self,
        reader: &mut FrameReader,
        recv: &mut quinn::RecvStream,
    ) -> Result<Option<(RequestHeader<'static>, bytes::Bytes)>, Abandon> {
        if !reader.has_buffered() && !reader.fill(recv).await? {
            return Ok(None);
        }
        let timeout = self.request_read_timeout;
        let read = tokio::time::timeout(timeout, self.read_begun_request(reader, recv));
        read.await.unwrap_or_else(|_| {
            self.budgets
                .requests_timed_out
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(Abandon::Answer(RpcError::new(
                Code::DeadlineExceeded,
                format!("the request did not arrive whole within {timeout:?}"),
            )))
        })
    }

    async fn read_begun_request(
        &self,
        reader: &mut FrameReader,
        recv: &mut quinn::RecvStream,
    ) -> Result<Option<(RequestHeader<'static>, bytes::Bytes)>, Abandon> {
        let Some(header) = reader.next(recv, self.max_frame_size).await? else {
            return Ok(None);
        };
        let header: RequestHeader = codec::decode(&header).map_err(|e| {
            Abandon::Answer(RpcError::new(
                Code::InvalidArgument,
                format!("malformed request header: {e}"),
            ))
        })?;
        let args = reader
            .next(recv, self.max_frame_size)
            .await?
            .ok_or(Abandon::Silently)?;
        Ok(Some((header, args)))
    }

    /// Runs one call whose reply frame has `head` bytes before the value
    /// (the code; on a lane also the call id). `None` when the client
    /// cancelled it.
    async fn dispatch(
        &self,
        caller: &Caller,
        service: Option<Arc<dyn Service>>,
        (header, args): (RequestHeader<'static>, bytes::Bytes),
        cancelled: impl Future,
        head: usize,
    ) -> Option<Result<Vec<u8>, RpcError>> {
        let (observed, admitted) = self.admit(service, caller, header);
        let (call, _permit) = match admitted {
            Ok(admitted) => admitted,
            Err(refused) => {
                observed.finish(Some(refused.code()));
                return Some(Err(refused));
            }
        };
        let Admitted {
            service,
            method,
            ctx,
            timeout,
        } = call;
        let trace = ctx.trace();
        let handler = AssertUnwindSafe(service.call(&method, ctx, args)).catch_unwind();
        let handler = async {
            match handler.await {
                Ok(result) => result,
                Err(panic) => Err(RpcError::new(
                    Code::Internal,
                    format!("the handler panicked: {}", panic_message(&*panic)),
                )),
            }
        };
        let bounded: Pin<Box<dyn Future<Output = _> + Send>> = match timeout {
            None => Box::pin(handler),
            Some(t) => Box::pin(async move {
                tokio::time::timeout(t, handler).await.unwrap_or_else(|_| {
                    Err(RpcError::new(
                        Code::DeadlineExceeded,
                        format!("the handler did not finish within {t:?}"),
                    ))
                })
            }),
        };
        // The handler runs in its call's span and trace, so the calls it
        // makes continue the trace.
        let bounded = trace.scope(bounded).instrument(observed.span().clone());
        // The handler is polled first: one that is ready at once never
        // pays for watching the stream.
        let result = tokio::select! {
            biased;
            result = bounded => result,
            _ = cancelled => {
                observed.finish(Some(Code::Cancelled));
                return None;
            }
        };
        let result = result.and_then(|value| {
            if value.len() + head > self.max_frame_size as usize {
                Err(RpcError::new(
                    Code::ResourceExhausted,
                    format!(
                        "reply of {} bytes exceeds the maximum frame of {}",
                        value.len(),
                        self.max_frame_size
                    ),
                ))
            } else {
                Ok(value)
            }
        });
        observed.finish(result.as_ref().err().map(RpcError::code));
        Some(result)
    }
}

impl Router {
    /// Whether the stream begins with a lane's marker (consumed if so).
    /// Waits idle for the first bytes; the rest of the marker must follow
    /// within the request read timeout.
    async fn opens_lane(
        &self,
        reader: &mut FrameReader,
        recv: &mut quinn::RecvStream,
    ) -> Result<bool, FrameError> {
        if !reader.has_buffered() && !reader.fill(recv).await? {
            return Ok(false);
        }
        let rest = async {
            while reader.buffered() < lane::MARKER.len() {
                if !reader.fill(recv).await? {
                    break;
                }
            }
            Ok::<_, FrameError>(())
        };
        match tokio::time::timeout(self.request_read_timeout, rest).await {
            Ok(read) => read?,
            // Not whole in time: the request reader answers that.
            Err(_) => return Ok(false),
        }
        Ok(reader.skip_prefix(&lane::MARKER))
    }

    /// Serves a lane: reads calls and cancellations, answers a call whose
    /// handler is ready at once, runs any other in a task of its own, and
    /// sends replies through one writer. A call holds one of the lane's
    /// slots until its reply is queued; with none free, the lane is not
    /// read, so a peer that does not read its replies is held back by flow
    /// control instead of growing the queue. A frame that breaks the lane's
    /// framing, an unknown tag, a call id that does not increase or a
    /// cancellation of a call never sent closes the lane (its calls are
    /// cancelled); the connection and its other streams go on.
    async fn serve_lane(
        self: Arc<Self>,
        caller: Arc<Caller>,
        send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        mut reader: FrameReader,
    ) {
        let (replies, queued) = tokio::sync::mpsc::channel(self.lane_calls);
        let slots = Arc::new(tokio::sync::Semaphore::new(self.lane_calls));
        let (reset, broken) = tokio::sync::oneshot::channel();
        let broken = async move {
            match broken.await {
                Ok(()) => PROTOCOL_ERROR,
                // Not broken: the lane ended and the writer finishes.
                Err(_) => std::future::pending().await,
            }
        };
        let writer = tokio::spawn(lane::write(send, queued, Vec::new(), broken));
        let running: Arc<Mutex<HashMap<u64, tokio::sync::oneshot::Sender<()>>>> = Arc::default();
        let mut last_id = 0;
        let failure = loop {
            let payload = match reader.next(&mut recv, self.max_frame_size).await {
                Ok(Some(payload)) => payload,
                Ok(None) => break None,
                Err(e) => break Some(RpcError::from(e)),
            };
            let (id, tag, body) = match lane::parse(payload) {
                Ok(frame) => frame,
                Err(e) => break Some(e),
            };
            match tag {
                lane::CANCEL if id <= last_id => {
                    // Dropping the sender cancels the call (if it still runs).
                    lock(&running).remove(&id);
                }
                lane::CANCEL => {
                    break Some(RpcError::new(
                        Code::InvalidArgument,
                        format!("cancel of lane call {id}, which was never sent"),
                    ));
                }
                lane::CALL if id > last_id => {
                    last_id = id;
                    // Never closed, so always a permit.
                    let slot = slots.clone().acquire_owned().await.ok();
                    let (cancel, cancelled) = tokio::sync::oneshot::channel();
                    let mut call =
                        Box::pin(self.clone().lane_call(caller.clone(), body, cancelled));
                    // A handler ready at once is answered from here, without
                    // a task and its wake-ups; one that waits goes on in a
                    // task of its own, so it holds up nobody.
                    if let Some(result) = (&mut call).now_or_never() {
                        if let Some(result) = result {
                            let _ = replies.send(lane::reply(id, &result)).await;
                        }
                        continue;
                    }
                    lock(&running).insert(id, cancel);
                    let (replies, running) = (replies.clone(), running.clone());
                    tokio::spawn(async move {
                        let result = call.await;
                        let answered = lock(&running).remove(&id);
                        if let (Some(result), Some(_)) = (result, answered) {
                            let _ = replies.send(lane::reply(id, &result)).await;
                        }
                        drop(slot);
                    });
                }
                lane::CALL => {
                    break Some(RpcError::new(
                        Code::InvalidArgument,
                        format!("lane call id {id} does not follow {last_id}"),
                    ));
                }
                tag => {
                    break Some(RpcError::new(
                        Code::InvalidArgument,
                        format!("unknown lane tag {tag}"),
                    ));
                }
            }
        };
        if let Some(failure) = failure {
            tracing::debug!(peer = %caller.conn.peer().addr, "closing a lane: {failure}");
            // Before the queue closes, or the writer would finish cleanly.
            let _ = reset.send(());
            let _ = recv.stop(PROTOCOL_ERROR);
            // Cancels every call still running on the lane.
            lock(&running).clear();
        }
        drop(replies);
        let _ = writer.await;
    }

    /// Runs one call of a lane, whose `body` is its header and arguments
    /// frames; `None` if `cancelled` first.
    async fn lane_call(
        self: Arc<Self>,
        caller: Arc<Caller>,
        body: bytes::Bytes,
        cancelled: tokio::sync::oneshot::Receiver<()>,
    ) -> Option<Result<Vec<u8>, RpcError>> {
        let (header, args) = match self.lane_request(body) {
            Ok(request) => request,
            Err(refused) => return Some(Err(refused)),
        };
        let service = self.service(&header.service);
        let cancelled = async {
            let _ = cancelled.await;
        };
        self.dispatch(&caller, service, (header, args), cancelled, lane::HEAD)
            .await
    }

    /// The header and arguments of a lane call: a unary request.
    fn lane_request(
        &self,
        body: bytes::Bytes,
    ) -> Result<(RequestHeader<'static>, bytes::Bytes), RpcError> {
        let (header, args) = lane::split_call(body).ok_or_else(|| {
            RpcError::new(
                Code::InvalidArgument,
                "a lane call is not a header frame and an arguments frame",
            )
        })?;
        let header: RequestHeader<'static> = codec::decode(&header).map_err(|e| {
            RpcError::new(
                Code::InvalidArgument,
                format!("malformed request header: {e}"),
            )
        })?;
        if header.owns_stream {
            return Err(RpcError::new(
                Code::InvalidArgument,
                "a call that owns its stream cannot travel on a lane",
            ));
        }
        Ok((header, args))
    }
}

/// Who a stream or lane serves: its connection, and the peer's share of
/// call permits, looked up once rather than per call.
struct Caller {
    conn: PeerConnection,
    share: PeerShare,
}

/// A call that may run: its service, method and context.
struct Admitted {
    service: Arc<dyn Service>,
    method: String,
    ctx: Context,
    timeout: Option<Duration>,
}

impl Router {
    /// What every call passes before its handler runs, unary or owning its
    /// stream: the service exists, its policy admits the caller, and a
    /// call permit is free (held for as long as the returned permit).
    /// Admitted or not, the call is observed from here on.
    fn admit(
        &self,
        service: Option<Arc<dyn Service>>,
        caller: &Caller,
        mut header: RequestHeader<'static>,
    ) -> (Observed, Result<(Admitted, CallPermit), RpcError>) {
        let timeout = header.timeout_micros.map(Duration::from_micros);
        let ctx = Context::of_request(
            caller.conn.peer().clone(),
            timeout.map(|t| Instant::now() + t),
            std::mem::take(&mut header.metadata).into_owned(),
            header.trace,
            header.signature,
        );
        let observed = Observed::server(
            &self.metrics,
            (&header.service, &header.method),
            service.as_deref(),
            caller.conn.peer(),
            &ctx.trace(),
            ctx.trace_parent(),
        );
        let admitted = self
            .check(service, caller, &header)
            .map(|(service, permit)| {
                let call = Admitted {
                    service,
                    method: header.method.into_owned(),
                    ctx,
                    timeout,
                };
                (call, permit)
            });
        (observed, admitted)
    }

    /// The checks of [`admit`](Self::admit).
    fn check(
        &self,
        service: Option<Arc<dyn Service>>,
        caller: &Caller,
        header: &RequestHeader<'static>,
    ) -> Result<(Arc<dyn Service>, CallPermit), RpcError> {
        let Some(service) = service else {
            return Err(RpcError::new(
                Code::Unimplemented,
                format!("no service named `{}`", header.service),
            ));
        };
        super::policy::admit(&*service, caller.conn.peer(), &header.method)?;
        if self.draining.load(Ordering::SeqCst) {
            return Err(RpcError::new(
                Code::Unavailable,
                "the node is draining: call another node",
            ));
        }
        let permit = self.budgets.call_permit(&header.service, &caller.share)?;
        Ok((service, permit))
    }

    /// Runs a call that owns its stream, under the call limit and deadline.
    async fn serve_owned(
        &self,
        service: Option<Arc<dyn Service>>,
        caller: &Caller,
        header: RequestHeader<'static>,
        args: bytes::Bytes,
        stream: CallStream,
    ) {
        let (observed, admitted) = self.admit(service, caller, header);
        let (call, _permit) = match admitted {
            Ok(admitted) => admitted,
            Err(refused) => {
                observed.finish(Some(refused.code()));
                return stream.fail(refused).await;
            }
        };
        let Admitted {
            service,
            method,
            ctx,
            timeout,
        } = call;
        let trace = ctx.trace();
        let call =
            AssertUnwindSafe(service.serve_stream(&method, ctx, args, stream)).catch_unwind();
        let call = trace.scope(call).instrument(observed.span().clone());
        let outcome = match timeout {
            None => Ok(call.await),
            Some(t) => tokio::time::timeout(t, call).await,
        };
        // Dropping the call on timeout drops its stream, which resets it.
        // The stream's own protocol carries its status; here, how it ended.
        let failed = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(panic)) => {
                tracing::warn!("stream handler panicked: {}", panic_message(&*panic));
                Some(Code::Internal)
            }
            Err(_) => Some(Code::DeadlineExceeded),
        };
        observed.finish(failed);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How a request that cannot be served ends.
enum Abandon {
    /// Tell the client why, then close the stream.
    Answer(RpcError),
    /// Nobody is left to tell (the stream broke or ended mid-frame).
    Silently,
}

impl From<FrameError> for Abandon {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge { .. } | FrameError::OverBudget { .. } => {
                Abandon::Answer(e.into())
            }
            FrameError::Truncated | FrameError::Stream(_) => Abandon::Silently,
        }
    }
}

impl InboundHandler for Arc<Router> {
    fn handle_stream(
        &self,
        conn: PeerConnection,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(self.clone().serve_stream(conn, send, recv))
    }
}
