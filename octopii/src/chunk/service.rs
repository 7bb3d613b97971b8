//! [`ChunkService`]: the receiving end, routed like any other service.
//!
//! It answers the streaming method `Chunk.transfer` (see
//! [`protocol`]); unary calls to it are `Unimplemented`.
//! What it receives is announced to the application through the
//! [`ChunkInbox`] returned with it: files once they are in place, and
//! in-memory transfers as [`Bytes`], unless a [`MemoryHandler`] takes
//! those (see [`ChunkServiceBuilder::memory_handler`]).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::ChunkMetrics;
use super::TransferError;
use super::blocking::run_blocking;
use super::fs_dir::FsDir;
use super::progress::{ProgressFn, Reporter};
use super::protocol::{self, Accept, Destination, METHOD, SERVICE, Status, TransferRequest};
use super::receiver::{self, CommitError, Outcome, Sealed, Sink, TempFile};
use super::recv_dir::RecvDir;
use crate::config::ChunkConfig;
use crate::rpc::{self, CallStream, Code, Context, HandlerFuture, RpcError, Service, StreamFuture};
use crate::transport::PeerInfo;
use crate::wal::WalFs;
use crate::{OctopiiError, Result};

/// Received transfers queued for the application before senders wait.
const INBOX_CAPACITY: usize = 64;

/// A transfer that ended on this node: delivered, or why not.
#[derive(Debug, Clone)]
pub struct Received {
    /// The node that sent it.
    pub peer: PeerInfo,
    /// The destination name (memory) or path (file) the sender gave.
    pub name: String,
    /// The verified data, or why the transfer failed (nothing was kept,
    /// except a resumable partial file after a broken connection, and a
    /// file in place whose directory fsync failed:
    /// [`TransferError::NotDurable`]).
    pub outcome: std::result::Result<ReceivedData, TransferError>,
}

/// Where a received transfer's bytes are.
#[derive(Debug, Clone)]
pub enum ReceivedData {
    /// An in-memory transfer's bytes.
    Memory(Bytes),
    /// The file they were written to, inside the receive directory.
    File(PathBuf),
}

/// Where the application learns of transfers that ended on this node.
///
/// In-memory transfers are acknowledged to their sender only once the
/// inbox took them: an application that stops reading makes in-memory
/// senders fail (status 2) after their stall timeout. File arrivals and
/// failures are announced when there is room and dropped otherwise: a
/// file is in place either way.
pub type ChunkInbox = mpsc::Receiver<Received>;

/// Takes verified in-memory data in place of the [`ChunkInbox`]: called
/// with the sender, the destination name and the bytes, its answer is the
/// transfer's verdict (`Ok` is status 0, `Err(reason)` status 2 with that
/// reason), so the sender learns whether the application accepted the
/// data, not only whether it arrived intact.
pub type MemoryHandler = Arc<
    dyn Fn(PeerInfo, String, Bytes) -> BoxFuture<'static, std::result::Result<(), String>>
        + Send
        + Sync,
>;

/// The built-in bulk-transfer service; serve it with
/// [`OctopiiNode::serve`](crate::OctopiiNode::serve) or
/// [`OctopiiNode::serve_chunks`](crate::OctopiiNode::serve_chunks).
///
/// ```
/// use octopii::chunk::ChunkService;
/// use octopii::config::ChunkConfig;
///
/// let dir = tempfile::tempdir().unwrap();
/// let config = ChunkConfig { recv_dir: Some(dir.path().into()), ..ChunkConfig::default() };
/// let (service, inbox) = ChunkService::builder(&config).build().unwrap();
/// # let _ = (service, inbox);
/// ```
#[derive(Clone)]
pub struct ChunkService {
    state: Arc<State>,
}

impl std::fmt::Debug for ChunkService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkService")
            .field("name", &self.state.name)
            .field(
                "recv_dir",
                &self.state.recv_dir.as_ref().map(ReceiveDir::path),
            )
            .field("max_memory_bytes", &self.state.max_memory)
            .field("max_file_bytes", &self.state.max_file)
            .finish_non_exhaustive()
    }
}

struct State {
    /// The service name peers address.
    name: &'static str,
    /// Held while the service lives; `None` refuses transfers to files.
    recv_dir: Option<ReceiveDir>,
    max_memory: u64,
    max_file: u64,
    memory_in_use: AtomicU64,
    stall: Duration,
    /// Destinations with a transfer running, so two never share one.
    in_flight: Mutex<HashSet<PathBuf>>,
    inbox: mpsc::Sender<Received>,
    progress: Option<ProgressFn>,
    memory_handler: Option<MemoryHandler>,
    metrics: ChunkMetrics,
}

impl ChunkService {
    /// Starts a service receiving under `config`: addressed as `Chunk`,
    /// with no progress callback and in-memory data going to the inbox.
    pub fn builder(config: &ChunkConfig) -> ChunkServiceBuilder {
        ChunkServiceBuilder {
            name: SERVICE,
            config: config.clone(),
            progress: None,
            memory_handler: None,
            node_id: None,
            file_system: None,
        }
    }
}

/// Where received files land.
#[derive(Debug)]
enum ReceiveDir {
    /// A directory of the real disk.
    Disk(RecvDir),
    /// A directory of the service's own file system.
    Fs(FsDir),
}

impl ReceiveDir {
    fn path(&self) -> &std::path::Path {
        match self {
            ReceiveDir::Disk(dir) => dir.path(),
            ReceiveDir::Fs(dir) => dir.path(),
        }
    }
}

/// Builds a [`ChunkService`]: [`ChunkService::builder`], the optional
/// settings, then [`build`](Self::build).
///
/// ```
/// use std::sync::Arc;
/// use futures::FutureExt;
/// use octopii::chunk::{ChunkService, MemoryHandler};
/// use octopii::config::ChunkConfig;
///
/// let handler: MemoryHandler = Arc::new(|_peer, _name, data: bytes::Bytes| {
///     async move {
///         if data.starts_with(b"ok") { Ok(()) } else { Err("unexpected data".to_owned()) }
///     }
///     .boxed()
/// });
/// let (service, _inbox) = ChunkService::builder(&ChunkConfig::default())
///     .name("Blobs")
///     .memory_handler(handler)
///     .build()
///     .unwrap();
/// # let _ = service;
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct ChunkServiceBuilder {
    name: &'static str,
    config: ChunkConfig,
    progress: Option<ProgressFn>,
    memory_handler: Option<MemoryHandler>,
    node_id: Option<u64>,
    file_system: Option<Arc<dyn WalFs>>,
}

impl std::fmt::Debug for ChunkServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkServiceBuilder")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ChunkServiceBuilder {
    /// Addresses the service as `name` instead of `Chunk`; a sender reaches
    /// it with [`TransferOptions::service`](super::TransferOptions::service).
    /// Lets a layer such as raft receive its own bulk data next to the
    /// node's `Chunk` service.
    pub fn name(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// Calls `progress` as data arrives.
    pub fn on_progress(mut self, progress: ProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Hands verified in-memory transfers to `handler` rather than to the
    /// inbox, whose answer is the transfer's verdict. The inbox still
    /// announces files and failures.
    pub fn memory_handler(mut self, handler: MemoryHandler) -> Self {
        self.memory_handler = Some(handler);
        self
    }

    /// Labels the service's metrics `node="<id>"` (a node's own
    /// [`serve_chunks`](crate::OctopiiNode::serve_chunks) does); without
    /// it they carry no node label.
    pub fn node_id(mut self, id: u64) -> Self {
        self.node_id = Some(id);
        self
    }

    /// Keeps received files on `fs` instead of the real disk, in the
    /// receive directory itself: a destination is one plain file name
    /// there. Raft receives its snapshots onto the file system that holds
    /// the rest of its state; a simulation passes a simulated disk. A
    /// file system that [never blocks](WalFs::never_blocks) is written on
    /// the task that receives, not on a blocking thread.
    pub fn file_system(mut self, fs: Arc<dyn WalFs>) -> Self {
        self.file_system = Some(fs);
        self
    }

    /// The service and the inbox of what it receives.
    ///
    /// Its receive directory is created if missing (durably: the parent of
    /// each directory created is fsynced), locked for as long as the
    /// service lives (a second service on the same directory is refused),
    /// and cleared of the temporary files a previous receiver left there.
    /// Partial files kept for resuming are left in place.
    pub fn build(self) -> Result<(ChunkService, ChunkInbox)> {
        let config = &self.config;
        let recv_dir = match (&config.recv_dir, self.file_system) {
            (None, _) => None,
            (Some(dir), None) => Some(ReceiveDir::Disk(
                RecvDir::open(dir).map_err(|e| OctopiiError::file(dir, e))?,
            )),
            (Some(dir), Some(fs)) => Some(ReceiveDir::Fs(
                FsDir::open(fs, dir).map_err(|e| OctopiiError::file(dir, e))?,
            )),
        };
        let (inbox, taken) = mpsc::channel(INBOX_CAPACITY);
        let state = State {
            name: self.name,
            recv_dir,
            max_memory: config.max_memory_bytes,
            max_file: config.max_file_bytes,
            memory_in_use: AtomicU64::new(0),
            stall: config.stall_timeout(),
            in_flight: Mutex::new(HashSet::new()),
            inbox,
            progress: self.progress,
            memory_handler: self.memory_handler,
            metrics: ChunkMetrics::new(self.node_id),
        };
        Ok((
            ChunkService {
                state: Arc::new(state),
            },
            taken,
        ))
    }
}

impl Service for ChunkService {
    fn name(&self) -> &'static str {
        self.state.name
    }

    fn methods(&self) -> &'static [&'static str] {
        &[METHOD]
    }

    /// Nodes, clients and admins (`octopii send` runs with a client
    /// certificate); not a certificate that names no role.
    fn authorize(&self, call: &rpc::Call<'_>) -> std::result::Result<(), String> {
        rpc::Policy::any_role().check(call)
    }

    fn call(&self, method: &str, _ctx: Context, _args: Bytes) -> HandlerFuture {
        rpc::unimplemented(self.state.name, method)
    }

    fn serve_stream(
        &self,
        method: &str,
        ctx: Context,
        args: Bytes,
        stream: CallStream,
    ) -> StreamFuture {
        if method != METHOD {
            let error = RpcError::new(
                Code::Unimplemented,
                format!("service `{}` has no method `{method}`", self.state.name),
            );
            return Box::pin(stream.fail(error));
        }
        Box::pin(self.state.clone().serve(ctx, args, stream))
    }
}

/// What a transfer holds while it runs; released when it ends.
enum Claim {
    Memory { state: Arc<State>, bytes: u64 },
    File { state: Arc<State>, dest: PathBuf },
}

impl Drop for Claim {
    fn drop(&mut self) {
        match self {
            Claim::Memory { state, bytes } => {
                state.memory_in_use.fetch_sub(*bytes, Ordering::AcqRel);
            }
            Claim::File { state, dest } => {
                state.in_flight().remove(dest);
            }
        }
    }
}

/// A transfer accepted: where its bytes go and what is already there.
struct Landing {
    sink: Sink,
    held: u64,
    hasher: Sha256,
    _claim: Claim,
}

impl State {
    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn serve(self: Arc<Self>, ctx: Context, args: Bytes, mut stream: CallStream) {
        let mut tally = self.metrics.receiving();
        let request: TransferRequest = match rpc::decode_args(&args) {
            Ok(request) => request,
            Err(e) => return stream.fail(e).await,
        };
        let landing = match self.clone().prepare(&request).await {
            Ok(landing) => landing,
            Err(e) => {
                tracing::debug!(peer = %ctx.peer().addr, "chunk transfer refused: {e}");
                return stream.fail(e).await;
            }
        };
        let accept = Accept {
            offset: landing.held,
        };
        if stream.respond(&rpc::encode_output(&accept)).await.is_err() {
            return;
        }
        let mut reporter = Reporter::new(
            self.progress.clone(),
            ctx.peer().addr,
            request.destination.name(),
            request.size,
        );
        reporter.resume_from(landing.held);
        let Landing {
            sink,
            held,
            hasher,
            _claim: claim,
        } = landing;
        let outcome = receiver::receive_data(
            &mut stream,
            request.size,
            held,
            (sink, hasher),
            self.stall,
            &mut reporter,
        )
        .await;
        tally.received(reporter.this_attempt());
        let (status, reason) = match outcome {
            Outcome::Verified(sealed) => self.deliver(ctx.peer(), &request, sealed).await,
            Outcome::Mismatch => (
                Status::ChecksumMismatch,
                "the data does not match its SHA-256".to_owned(),
            ),
            Outcome::Failed(reason) => (Status::Error, reason),
            Outcome::Broken(reason) => {
                tracing::debug!(peer = %ctx.peer().addr, "chunk transfer broken: {reason}");
                drop(claim);
                self.announce_failure(ctx.peer(), &request, TransferError::Connection(reason));
                return;
            }
        };
        match status {
            Status::Ok => tally.delivered(),
            Status::ChecksumMismatch => {
                self.announce_failure(ctx.peer(), &request, TransferError::ChecksumMismatch);
            }
            Status::Error => {
                tracing::debug!(peer = %ctx.peer().addr, "chunk transfer failed: {reason}");
                let error = TransferError::Receiver(reason.clone());
                self.announce_failure(ctx.peer(), &request, error);
            }
            Status::NotDurable => {
                tracing::warn!(peer = %ctx.peer().addr, "chunk transfer not durable: {reason}");
                let error = TransferError::NotDurable(reason.clone());
                self.announce_failure(ctx.peer(), &request, error);
            }
        }
        // Free the destination before the sender hears the verdict, so
        // its next transfer to the same name is not refused as running.
        drop(claim);
        let _ = protocol::write_status(&mut stream, status, &reason).await;
        stream.finish();
    }

    /// Checks the request and makes room for its bytes, before any is read.
    async fn prepare(self: Arc<Self>, request: &TransferRequest) -> Result<Landing, RpcError> {
        match &request.destination {
            Destination::Memory { .. } => self.prepare_memory(request.size),
            Destination::File { path } => {
                let Some(root) = &self.recv_dir else {
                    return Err(RpcError::new(
                        Code::Unavailable,
                        "this node has no receive directory for files",
                    ));
                };
                if request.size > self.max_file {
                    return Err(RpcError::new(
                        Code::ResourceExhausted,
                        format!(
                            "{} bytes exceed the limit of {} bytes per file \
                             (chunk.max_file_bytes)",
                            request.size, self.max_file
                        ),
                    ));
                }
                let dest = match root {
                    ReceiveDir::Disk(dir) => receiver::resolve(dir.path(), path),
                    ReceiveDir::Fs(dir) => dir.resolve(path),
                }
                .map_err(|reason| RpcError::new(Code::InvalidArgument, reason))?;
                if !self.in_flight().insert(dest.clone()) {
                    return Err(RpcError::new(
                        Code::Unavailable,
                        format!("a transfer to {path:?} is already running"),
                    ));
                }
                let claim = Claim::File {
                    state: self.clone(),
                    dest: dest.clone(),
                };
                let (size, resume) = (request.size, request.resume);
                let cannot = |e: String| {
                    RpcError::new(
                        Code::Internal,
                        format!("cannot write into the directory of {path:?}: {e}"),
                    )
                };
                let (sink, held, hasher) = match root {
                    ReceiveDir::Disk(_) => {
                        run_blocking(false, move || {
                            let (temp, held, hasher) =
                                TempFile::create(&dest, size, resume).map_err(|e| e.to_string())?;
                            Ok((Sink::File(temp), held, hasher))
                        })
                        .await
                    }
                    ReceiveDir::Fs(dir) => {
                        let dir = dir.clone();
                        run_blocking(dir.never_blocks(), move || {
                            let (temp, held, hasher) =
                                dir.create(&dest, size, resume).map_err(|e| e.to_string())?;
                            Ok((Sink::FsFile(temp), held, hasher))
                        })
                        .await
                    }
                }
                .map_err(cannot)?;
                Ok(Landing {
                    sink,
                    held,
                    hasher,
                    _claim: claim,
                })
            }
        }
    }

    fn prepare_memory(self: Arc<Self>, size: u64) -> Result<Landing, RpcError> {
        let over = || {
            RpcError::new(
                Code::ResourceExhausted,
                format!(
                    "{size} bytes exceed the memory cap of {} bytes for received data",
                    self.max_memory
                ),
            )
        };
        let reserved =
            self.memory_in_use
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                    used.checked_add(size)
                        .filter(|&total| total <= self.max_memory)
                });
        if reserved.is_err() {
            return Err(over());
        }
        let claim = Claim::Memory {
            state: self.clone(),
            bytes: size,
        };
        let capacity = usize::try_from(size).map_err(|_| over())?;
        Ok(Landing {
            sink: Sink::Memory(BytesMut::with_capacity(capacity)),
            held: 0,
            hasher: Sha256::new(),
            _claim: claim,
        })
    }

    fn announce_failure(&self, peer: &PeerInfo, request: &TransferRequest, error: TransferError) {
        let _ = self.inbox.try_send(Received {
            peer: peer.clone(),
            name: request.destination.name().to_owned(),
            outcome: Err(error),
        });
    }

    /// Puts verified bytes in place and tells the application; returns
    /// the verdict for the sender.
    async fn deliver(
        &self,
        peer: &PeerInfo,
        request: &TransferRequest,
        sealed: Sealed,
    ) -> (Status, String) {
        let name = request.destination.name().to_owned();
        let failed = |reason: String| (Status::Error, reason);
        match sealed.sink {
            Sink::Memory(buffer) => {
                if let Some(handler) = &self.memory_handler {
                    let handled = handler(peer.clone(), name, buffer.freeze());
                    return match tokio::time::timeout(self.stall, handled).await {
                        Ok(Ok(())) => (Status::Ok, String::new()),
                        Ok(Err(reason)) => failed(reason),
                        Err(_) => failed(format!(
                            "the receiving application took no decision for {:?}",
                            self.stall
                        )),
                    };
                }
                let received = Received {
                    peer: peer.clone(),
                    name,
                    outcome: Ok(ReceivedData::Memory(buffer.freeze())),
                };
                match tokio::time::timeout(self.stall, self.inbox.send(received)).await {
                    Ok(Ok(())) => (Status::Ok, String::new()),
                    Ok(Err(_)) => failed("the receiving application takes no data".into()),
                    Err(_) => failed(format!(
                        "the receiving application took no data for {:?}",
                        self.stall
                    )),
                }
            }
            Sink::File(temp) => {
                let committed = run_blocking(false, move || Ok(temp.commit())).await;
                self.placed(peer, name, committed)
            }
            Sink::FsFile(temp) => {
                let inline = temp.never_blocks();
                let committed = run_blocking(inline, move || Ok(temp.commit())).await;
                self.placed(peer, name, committed)
            }
        }
    }

    /// Tells the application of a file put in place; the verdict for the
    /// sender.
    fn placed(
        &self,
        peer: &PeerInfo,
        name: String,
        committed: std::result::Result<std::result::Result<PathBuf, CommitError>, String>,
    ) -> (Status, String) {
        let failed = |reason: String| (Status::Error, reason);
        match committed {
            Err(e) => failed(format!("commit task failed: {e}")),
            Ok(Ok(path)) => {
                let _ = self.inbox.try_send(Received {
                    peer: peer.clone(),
                    name,
                    outcome: Ok(ReceivedData::File(path)),
                });
                (Status::Ok, String::new())
            }
            Ok(Err(CommitError::NotPlaced(reason))) => {
                failed(format!("putting the file in place: {reason}"))
            }
            Ok(Err(CommitError::NotDurable(reason))) => (Status::NotDurable, reason),
        }
    }
}
