//! The client call path: pooled connection, pooled stream, one round trip.
//!
//! A unary call takes an idle bidirectional stream of the peer's connection
//! (or opens one; quinn makes it wait while the peer's stream limit is
//! reached), writes the request header and argument frames in one write,
//! reads the response frame, and gives the stream back. Only a stream whose
//! call completed with a value goes back: a call that is dropped, times out
//! or fails resets its stream, so no stream in an unknown state is reused.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;

use tokio::time::Instant;
use tracing::Instrument;

use futures::future::BoxFuture;
use tower::{BoxError, Layer};

use super::frame::{self, FrameReader, RequestHeader};
use super::lane::{self, client::Lane};
use super::layers::{Direct, Outgoing, Shared};
use super::observe::{CallMetrics, Observed};
use super::retry::{Reached, RetryPolicy, may_retry, never_ran};
use super::trace::{TRACEPARENT, TraceContext};
use super::{CallStream, Code, RpcError};
use crate::codec;
use crate::identity::Role;
use crate::transport::{PeerConnection, Silence, Transport};

/// A connection and the datagrams received on it when a call started.
struct CallOn {
    conn: PeerConnection,
    received: u64,
    started: Instant,
}

impl CallOn {
    fn new(conn: &PeerConnection) -> Self {
        CallOn {
            conn: conn.clone(),
            received: conn.quinn().stats().udp_rx.datagrams,
            started: Instant::now(),
        }
    }

    /// Called when the call timed out. Closes the connection if not one
    /// datagram came from the peer since this call, or an earlier call
    /// that timed out just as silently, started, and that was long ago:
    /// many round trips, not even an acknowledgement of a request. Such a
    /// peer is gone or restarted, and QUIC would find out only at a loss
    /// probe that backs off to seconds; closed, the connection leaves the
    /// pool and the next call dials afresh. Counting across calls lets
    /// short calls (raft's, of a few ticks) find a silent peer too.
    fn timed_out(&self) {
        let quinn = self.conn.quinn();
        let received = quinn.stats().udp_rx.datagrams;
        let mut silence = self.conn.silence();
        if received != self.received {
            // The peer spoke during this call: not silent.
            *silence = None;
            return;
        }
        let since = match *silence {
            Some(earlier) if earlier.received == received => earlier.since,
            _ => self.started,
        };
        *silence = Some(Silence { received, since });
        let silent_for = since.elapsed();
        if silent_for >= SILENCE_FLOOR.max(quinn.rtt() * 4) {
            tracing::info!(
                peer = %self.conn.peer().addr,
                ?silent_for,
                "peer silent through whole calls, replacing the connection"
            );
            quinn.close(SILENT_PEER, b"peer silent through whole calls");
        }
    }
}

/// Shortest silence after which a peer's connection is replaced.
const SILENCE_FLOOR: Duration = Duration::from_millis(200);

/// Application error code of a connection closed because the peer was
/// silent for a whole call.
const SILENT_PEER: quinn::VarInt = quinn::VarInt::from_u32(1);

/// Application error code of a stream reset because its call was abandoned.
pub(crate) const CANCELLED: quinn::VarInt = quinn::VarInt::from_u32(u8::MAX as u32);

/// What a [`Client`] calls through: an [`OctopiiNode`](crate::OctopiiNode).
/// Sealed: only Octopii's own types implement it.
pub trait Connect: sealed::Sealed {
    /// The node's pool of idle streams, over its transport.
    #[doc(hidden)]
    fn stream_pool(&self) -> Arc<StreamPool>;
}

pub(crate) mod sealed {
    /// Keeps [`Connect`](super::Connect) closed to other crates.
    pub trait Sealed {}
    impl Sealed for crate::OctopiiNode {}
    impl Sealed for std::sync::Arc<super::StreamPool> {}
}

impl Connect for Arc<StreamPool> {
    fn stream_pool(&self) -> Arc<StreamPool> {
        self.clone()
    }
}

type Stream = (quinn::SendStream, quinn::RecvStream);

/// Idle streams of one peer's current connection.
#[derive(Default)]
struct IdleStreams {
    connection: usize,
    streams: Vec<Stream>,
    /// Wakes a caller waiting for a stream when one is checked in: idle
    /// streams count against the peer's stream limit, so a caller blocked on
    /// opening a new one may only ever get a returned one.
    returned: Arc<Notify>,
    /// Unary calls to the peer in flight now.
    in_flight: Arc<AtomicUsize>,
    /// The lane overlapping calls share, once opened.
    lane: Option<Arc<Lane>>,
    /// A caller is opening the lane: the others take streams meanwhile.
    lane_opening: bool,
}

/// A node's client side: its transport and a pool of idle streams per
/// peer, which unary calls check out and return.
pub struct StreamPool {
    transport: Arc<Transport>,
    metrics: CallMetrics,
    idle: Mutex<HashMap<SocketAddr, IdleStreams>>,
    max_idle_per_peer: usize,
}

impl std::fmt::Debug for StreamPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamPool").finish_non_exhaustive()
    }
}

impl StreamPool {
    /// Client state over `transport`, keeping up to `max_idle_per_peer`
    /// idle streams per peer.
    pub fn new(transport: Arc<Transport>, max_idle_per_peer: usize) -> Self {
        StreamPool {
            transport,
            metrics: CallMetrics::client(),
            idle: Mutex::new(HashMap::new()),
            max_idle_per_peer,
        }
    }

    /// Idle streams kept for `peer` right now.
    pub fn idle_streams(&self, peer: SocketAddr) -> usize {
        self.lock().get(&peer).map_or(0, |idle| idle.streams.len())
    }

    /// Whether a lane to `peer` is open (calls that overlap share it).
    pub fn has_lane(&self, peer: SocketAddr) -> bool {
        self.lock()
            .get(&peer)
            .and_then(|idle| idle.lane.as_ref())
            .is_some_and(|lane| lane.is_open())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, IdleStreams>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn checkout(self: &Arc<Self>, conn: &PeerConnection) -> Result<StreamGuard, RpcError> {
        let addr = conn.peer().addr;
        let connection = conn.quinn().stable_id();
        let stream = loop {
            let (reused, returned) = {
                let mut idle = self.lock();
                let entry = idle.entry(addr).or_default();
                if entry.connection != connection {
                    // Streams of an older connection are useless: drop them.
                    entry.streams.clear();
                    entry.connection = connection;
                }
                (entry.streams.pop(), entry.returned.clone())
            };
            if let Some(stream) = reused {
                break stream;
            }
            tokio::select! {
                biased;
                opened = conn.open_bi() => break opened?,
                () = returned.notified() => continue,
            }
        };
        Ok(StreamGuard {
            stream: Some(stream),
            pool: self.clone(),
            addr,
            connection,
        })
    }

    /// Counts a call to `peer` in flight until the result drops; a call
    /// that overlaps others gets the peer's lane, if one is open on a
    /// connection that is not going away and whose peer has the `expected`
    /// role.
    fn busy(&self, peer: SocketAddr, expected: Option<Role>) -> Busy {
        let mut idle = self.lock();
        let entry = idle.entry(peer).or_default();
        let overlapping = entry.in_flight.fetch_add(1, Ordering::Relaxed) > 0;
        let lane = entry
            .lane
            .as_ref()
            .filter(|lane| {
                let conn = lane.conn();
                overlapping
                    && lane.is_open()
                    && !conn.is_going_away()
                    && expected.is_none_or(|role| conn.peer().role == role)
            })
            .cloned();
        Busy {
            in_flight: entry.in_flight.clone(),
            overlapping,
            lane,
        }
    }

    /// The lane to `conn`'s peer, opened if there is none; `None` while
    /// another caller opens it, or if it cannot be opened.
    async fn lane(&self, conn: &PeerConnection) -> Option<Arc<Lane>> {
        let addr = conn.peer().addr;
        let connection = conn.quinn().stable_id();
        {
            let mut idle = self.lock();
            let entry = idle.entry(addr).or_default();
            match &entry.lane {
                Some(lane) if lane.conn().quinn().stable_id() == connection && lane.is_open() => {
                    return Some(lane.clone());
                }
                _ if entry.lane_opening => return None,
                _ => entry.lane_opening = true,
            }
        }
        let limits = self.transport.limits();
        let max_calls = limits.max_concurrent_bidi_streams as usize;
        let opened = Lane::open(conn, limits.max_frame_size, max_calls)
            .await
            .ok();
        let mut idle = self.lock();
        let entry = idle.entry(addr).or_default();
        entry.lane_opening = false;
        entry.lane.clone_from(&opened);
        opened
    }

    fn check_in(&self, addr: SocketAddr, connection: usize, stream: Stream) {
        let mut idle = self.lock();
        let entry = idle.entry(addr).or_default();
        if entry.connection == connection && entry.streams.len() < self.max_idle_per_peer {
            entry.streams.push(stream);
            entry.returned.notify_one();
        }
        // Otherwise the stream drops here and is finished cleanly.
    }
}

/// A call in flight to a peer, counted until dropped.
struct Busy {
    in_flight: Arc<AtomicUsize>,
    overlapping: bool,
    /// The open lane, if the call overlaps others.
    lane: Option<Arc<Lane>>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A checked-out stream. Dropped without [`release`](Self::release), it is
/// reset: whatever state it was in, it never goes back to the pool.
struct StreamGuard {
    stream: Option<Stream>,
    pool: Arc<StreamPool>,
    addr: SocketAddr,
    connection: usize,
}

impl StreamGuard {
    fn parts(&mut self) -> &mut Stream {
        // Present until `release` or `drop` takes it.
        self.stream
            .as_mut()
            .expect("stream taken only by release or drop")
    }

    fn release(mut self) {
        if let Some(stream) = self.stream.take() {
            self.pool.check_in(self.addr, self.connection, stream);
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Some((mut send, mut recv)) = self.stream.take() {
            let _ = send.reset(CANCELLED);
            let _ = recv.stop(CANCELLED);
        }
    }
}

/// A client for one peer's services; the generated `XClient` wraps it.
/// Cheap to clone: clones share the node's connection and streams.
#[derive(Clone)]
pub struct Client {
    pool: Arc<StreamPool>,
    peer: SocketAddr,
    deadline: Option<Duration>,
    metadata: Arc<Vec<(String, String)>>,
    expected: Option<Role>,
    retry: Option<RetryPolicy>,
    /// The fingerprint of the method a generated client is calling.
    signature: Option<u64>,
    /// The layers its unary calls pass through, if any.
    layers: Option<Layers>,
}

/// A client's layers, shared by its clones.
type Layers = Arc<dyn Fn(Outgoing) -> BoxFuture<'static, Result<Bytes, RpcError>> + Send + Sync>;

/// A request's arguments: a value to encode, or bytes a layer holds.
pub(crate) trait PutArgs {
    /// Appends the arguments frame to `out`.
    fn put(&self, out: &mut Vec<u8>) -> Result<(), RpcError>;
}

/// Arguments to encode.
struct Typed<'a, A: ?Sized>(&'a A);

impl<A: Serialize + ?Sized> PutArgs for Typed<'_, A> {
    fn put(&self, out: &mut Vec<u8>) -> Result<(), RpcError> {
        frame::put_encoded(out, self.0)
    }
}

impl PutArgs for Bytes {
    fn put(&self, out: &mut Vec<u8>) -> Result<(), RpcError> {
        frame::put_bytes(out, self)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.peer)
            .field("deadline", &self.deadline)
            .field("metadata", &self.metadata)
            .field("expected", &self.expected)
            .field("retry", &self.retry)
            .field("signature", &self.signature)
            .field("layered", &self.layers.is_some())
            .finish()
    }
}

impl Client {
    /// A client of the node at `peer`, through `node`'s connections.
    pub fn new(node: &impl Connect, peer: SocketAddr) -> Self {
        Client {
            pool: node.stream_pool(),
            peer,
            deadline: None,
            metadata: Arc::new(Vec::new()),
            expected: None,
            retry: None,
            signature: None,
            layers: None,
        }
    }

    /// The peer this client calls.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the peer said it is draining (a go-away on the pooled
    /// connection); its next call dials afresh.
    pub(crate) fn peer_going_away(&self) -> bool {
        self.pool.transport.going_away(self.peer)
    }

    /// How long each call may take, if it is bounded.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// A copy whose calls give up after `deadline`; the server is told and
    /// stops the handler when it passes.
    pub fn with_deadline(&self, deadline: Duration) -> Self {
        Client {
            deadline: Some(deadline),
            ..self.clone()
        }
    }

    /// A copy whose calls carry `key = value` as metadata.
    pub fn with_metadata(&self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let mut metadata = (*self.metadata).clone();
        metadata.push((key.into(), value.into()));
        Client {
            metadata: Arc::new(metadata),
            ..self.clone()
        }
    }

    /// A copy whose unary calls are retried under `policy`: a call that
    /// never ran, and one that may have run if its method is idempotent
    /// (see [`RetryPolicy`]). Without it, no call is retried.
    pub fn with_retry(&self, policy: RetryPolicy) -> Self {
        Client {
            retry: Some(policy),
            ..self.clone()
        }
    }

    /// A copy whose calls carry a method's fingerprint (see
    /// `docs/PROTOCOL.md`, "Request"); the generated clients use it.
    #[doc(hidden)]
    pub fn with_signature(&self, fingerprint: u64) -> Self {
        Client {
            signature: Some(fingerprint),
            ..self.clone()
        }
    }

    /// A copy whose unary calls pass through `layer` (a
    /// `tower::ServiceBuilder` stacks several into one), replacing any
    /// layers given before. The layers run inside the call's span and
    /// around its retries; see [`layers`](super::layers).
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn f(node: &octopii::OctopiiNode, peer: std::net::SocketAddr) {
    /// // At most 8 calls in flight to this peer, each within a second.
    /// let client = octopii::rpc::Client::new(node, peer).layer(
    ///     tower::ServiceBuilder::new()
    ///         .concurrency_limit(8)
    ///         .timeout(Duration::from_secs(1)),
    /// );
    /// # let _ = client; }
    /// ```
    pub fn layer<L>(&self, layer: L) -> Self
    where
        L: Layer<Direct>,
        L::Service: tower::Service<
                Outgoing,
                Response = Bytes,
                Error: Into<BoxError>,
                Future: Send + 'static,
            > + Send
            + 'static,
    {
        let stack = Shared::new(layer.layer(Direct));
        Client {
            layers: Some(Arc::new(move |call| stack.call(call))),
            ..self.clone()
        }
    }

    /// A copy that calls only a peer whose certificate has `role` (say,
    /// `Role::Node { id: 2 }`): a call reaching another certificate's
    /// holder at the address fails with [`Code::Unauthenticated`] before
    /// any request byte is sent.
    pub fn expect_peer(&self, role: Role) -> Self {
        Client {
            expected: Some(role),
            ..self.clone()
        }
    }

    /// The connection to the peer, if it is the one expected.
    async fn connect(&self) -> Result<PeerConnection, RpcError> {
        let conn = self.pool.transport.connect(self.peer).await?;
        match self.expected {
            Some(expected) if conn.peer().role != expected => {
                let found = conn.peer();
                tracing::warn!(
                    peer = %self.peer,
                    name = %found.identity,
                    role = %found.role,
                    %expected,
                    "refusing to call a peer that is not the one expected"
                );
                Err(RpcError::new(
                    Code::Unauthenticated,
                    format!(
                        "{} answered as {} `{}`, not as {expected}",
                        self.peer, found.role, found.identity
                    ),
                ))
            }
            _ => Ok(conn),
        }
    }

    /// Calls `service.method(args)` and decodes its result.
    ///
    /// The call continues the trace of the handler it is made from, if any
    /// ([`TraceContext::current`]), else starts one, and is observed (see
    /// the [`rpc`](super) module).
    ///
    /// With a [`RetryPolicy`] ([`with_retry`](Self::with_retry)), a call
    /// that never ran is tried again.
    pub async fn call<A, R>(
        &self,
        service: &'static str,
        method: &'static str,
        args: &A,
    ) -> Result<R, RpcError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.observed_call((service, method), args, false).await
    }

    /// As [`call`](Self::call), for a method that is idempotent
    /// (`#[octopii(idempotent)]`): with a [`RetryPolicy`], a call that may
    /// have run is tried again too.
    pub async fn call_idempotent<A, R>(
        &self,
        service: &'static str,
        method: &'static str,
        args: &A,
    ) -> Result<R, RpcError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.observed_call((service, method), args, true).await
    }

    async fn observed_call<A, R>(
        &self,
        (service, method): (&'static str, &'static str),
        args: &A,
        idempotent: bool,
    ) -> Result<R, RpcError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let call = |trace| async move {
            let reply = match &self.layers {
                None => {
                    let args = &Typed(args);
                    self.traced_call((service, method), args, idempotent, trace)
                        .await?
                }
                Some(layers) => {
                    let call = Outgoing {
                        client: Client {
                            layers: None,
                            ..self.clone()
                        },
                        service,
                        method,
                        args: codec::encode(args)?.into(),
                        idempotent,
                        trace,
                    };
                    layers(call).await?
                }
            };
            codec::decode(&reply).map_err(|e| {
                RpcError::new(
                    Code::Internal,
                    format!("{service}.{method} reply does not decode: {e}"),
                )
            })
        };
        self.observed((service, method), call).await
    }

    /// Runs `call` in a span of its own, continuing the current trace (or
    /// starting one), and records how it ended.
    async fn observed<T, F>(
        &self,
        (service, method): (&'static str, &'static str),
        call: impl FnOnce(TraceContext) -> F,
    ) -> Result<T, RpcError>
    where
        F: Future<Output = Result<T, RpcError>>,
    {
        let trace = TraceContext::current().map_or_else(TraceContext::new_root, |t| t.child());
        let observed = Observed::client(&self.pool.metrics, service, method, self.peer, &trace);
        let result = call(trace).instrument(observed.span().clone()).await;
        observed.finish(result.as_ref().err().map(RpcError::code));
        result
    }

    /// A unary call in `trace`, with retries; the reply's encoded value.
    pub(crate) async fn traced_call(
        &self,
        (service, method): (&'static str, &'static str),
        args: &(impl PutArgs + ?Sized),
        idempotent: bool,
        trace: TraceContext,
    ) -> Result<Bytes, RpcError> {
        let give_up = self.deadline.map(|d| Instant::now() + d);
        let mut attempt = 1;
        let reply = loop {
            // Every attempt tells the server what is left of the deadline.
            let left = give_up.map(|t| t.saturating_duration_since(Instant::now()));
            let request = self.request(service, method, args, false, &trace, left)?;
            let (error, reached) = match self.attempt(&request, left, (service, method)).await {
                Ok(reply) => break reply,
                Err((error, reached)) if never_ran(error.code(), reached) => {
                    (error.not_run(), reached)
                }
                Err(failed) => failed,
            };
            let Some(policy) = self.retry else {
                return Err(error);
            };
            let pause = policy.pause_with(attempt + 1, self.pool.transport.jitter());
            let in_time = give_up.is_none_or(|t| Instant::now() + pause < t);
            if attempt >= policy.max_attempts
                || !in_time
                || !may_retry(error.code(), reached, idempotent)
            {
                return Err(error);
            }
            tracing::debug!(peer = %self.peer, service, method, attempt, ?pause, "retrying after: {error}");
            tokio::time::sleep(pause).await;
            attempt += 1;
        };
        Ok(reply)
    }

    /// One attempt of a unary call, given `left` if it is bounded.
    async fn attempt(
        &self,
        request: &[u8],
        left: Option<Duration>,
        (service, method): (&'static str, &'static str),
    ) -> Result<Bytes, (RpcError, Reached)> {
        let Some(left) = left else {
            return self.round_trip(request, None).await;
        };
        let on = OnceLock::new();
        match tokio::time::timeout(left, self.round_trip(request, Some(&on))).await {
            Ok(reply) => reply,
            Err(_) => {
                let deadline = self.deadline.unwrap_or(left);
                let Some(call) = on.get() else {
                    // Still dialling: nothing was sent.
                    let error = RpcError::new(
                        Code::DeadlineExceeded,
                        format!(
                            "{service}.{method}: no connection to {} within {deadline:?}",
                            self.peer
                        ),
                    );
                    return Err((error, Reached::NotSent));
                };
                call.timed_out();
                let error = RpcError::new(
                    Code::DeadlineExceeded,
                    format!("{service}.{method} gave no reply within {deadline:?}"),
                );
                Err((error, Reached::Sent))
            }
        }
    }

    /// Starts a call that owns a fresh stream (a streaming RPC or a bulk
    /// transfer): sends the request header and `args`, then hands the
    /// stream over for the call's own protocol. It carries the trace
    /// context as [`call`](Self::call) does; its span covers the opening.
    pub async fn open_stream<A>(
        &self,
        service: &'static str,
        method: &'static str,
        args: &A,
    ) -> Result<CallStream, RpcError>
    where
        A: Serialize + ?Sized,
    {
        let open = |trace| self.open_traced_stream(service, method, args, trace);
        self.observed((service, method), open).await
    }

    async fn open_traced_stream<A>(
        &self,
        service: &'static str,
        method: &'static str,
        args: &A,
        trace: TraceContext,
    ) -> Result<CallStream, RpcError>
    where
        A: Serialize + ?Sized,
    {
        let args = &Typed(args);
        let request = self.request(service, method, args, true, &trace, self.deadline)?;
        let conn = self.connect().await?;
        let (mut send, recv) = conn.open_bi().await?;
        send.write_all(&request)
            .await
            .map_err(|e| RpcError::new(Code::Unavailable, format!("sending the request: {e}")))?;
        let max = self.pool.transport.limits().max_frame_size;
        Ok(CallStream::new(
            send,
            recv,
            FrameReader::new(),
            max,
            conn.peer().clone(),
        ))
    }

    /// The header and arguments frames of a request due within `timeout`,
    /// in `trace`, unless the caller set a `traceparent` of its own.
    fn request(
        &self,
        service: &'static str,
        method: &'static str,
        args: &(impl PutArgs + ?Sized),
        owns_stream: bool,
        trace: &TraceContext,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, RpcError> {
        // A `traceparent` the caller set is the trace; else the header's.
        let own_trace = self.metadata.iter().any(|(k, _)| k == TRACEPARENT);
        let header = RequestHeader {
            service: service.into(),
            method: method.into(),
            timeout_micros: timeout.map(|d| d.as_micros().min(u64::MAX as u128) as u64),
            metadata: self.metadata.as_slice().into(),
            owns_stream,
            trace: (!own_trace).then_some(*trace),
            signature: self.signature,
        };
        let mut request = Vec::with_capacity(128);
        frame::put_encoded(&mut request, &header)?;
        args.put(&mut request)?;
        Ok(request)
    }

    /// Sends `request` and reads its response; `on`, if given, is set to
    /// the connection it went over as soon as there is one. A failure says
    /// how far the request got.
    async fn round_trip(
        &self,
        request: &[u8],
        on: Option<&OnceLock<CallOn>>,
    ) -> Result<Bytes, (RpcError, Reached)> {
        let max = self.pool.transport.limits().max_frame_size;
        let not_sent = |e: RpcError| (e, Reached::NotSent);
        let sent = |e: RpcError| (e, Reached::Sent);
        // Calls that overlap share a lane; a lone call takes a stream.
        // A request too large for one lane frame takes a stream, where its
        // header and arguments are framed apart.
        let fits_a_lane = request.len() + lane::HEAD <= max as usize;
        let mut busy = self.pool.busy(self.peer, self.expected);
        // An open lane's connection is already dialled and checked.
        if let Some(lane) = busy.lane.take().filter(|_| fits_a_lane) {
            if let Some(on) = on {
                let _ = on.set(CallOn::new(lane.conn()));
            }
            return lane.call(request).await;
        }
        let conn = self.connect().await.map_err(not_sent)?;
        if let Some(on) = on {
            let _ = on.set(CallOn::new(&conn));
        }
        if busy.overlapping && fits_a_lane {
            if let Some(lane) = self.pool.lane(&conn).await {
                return lane.call(request).await;
            }
        }
        let mut stream = self.pool.checkout(&conn).await.map_err(not_sent)?;
        let (send, recv) = stream.parts();
        send.write_all(request).await.map_err(|e| {
            sent(RpcError::new(
                Code::Unavailable,
                format!("sending the request: {e}"),
            ))
        })?;
        let mut reader = FrameReader::new();
        let response = reader
            .next(recv, max)
            .await
            .map_err(|e| sent(e.into()))?
            .ok_or_else(|| {
                sent(RpcError::new(
                    Code::Unavailable,
                    "the server closed the stream",
                ))
            })?;
        let value = frame::parse_response(response).map_err(|e| (e, Reached::Answered))?;
        // Bytes beyond the response mean the stream is out of step: drop it.
        if !reader.has_buffered() {
            stream.release();
        }
        Ok(value)
    }
}
