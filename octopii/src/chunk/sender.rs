//! The sending side: one source, read once, to any number of peers at once.
//!
//! ```text
//! reader thread ──► distributor ──► lane (bounded) ──► peer task ──► QUIC stream
//!  (read + hash)     (clones Bytes) ─► lane ──────────► peer task ──► …
//! ```
//!
//! Memory stays bounded: the reader waits while the distributor is behind,
//! and the distributor waits while a lane is full. A peer whose stream
//! takes no byte for a whole stall timeout loses its lane and fails with
//! [`TransferError::Stalled`], and the others go on; a slow peer that keeps
//! taking bytes is waited for. A peer that fails for any other reason
//! drops its lane at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::TransferError;
use super::progress::{ProgressFn, Reporter};
use super::protocol::{self, Accept, Destination, METHOD, SERVICE, Status, TransferRequest};
use super::source::{ChunkSource, Piece};
use crate::codec;
use crate::rpc::{CallStream, Client, RpcError, StreamPool, frame};

/// Buffers (of 64 KiB) queued per peer: what one slow peer may lag behind.
const LANE_BUFFERS: usize = 32;
/// Buffers queued between the reader thread and the distributor.
const READ_AHEAD: usize = 4;
/// Application error code of a stream the sender abandons.
const ABANDONED: u32 = 3;
/// Default of [`TransferOptions::stall_timeout`].
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How a transfer is made.
///
/// ```
/// use octopii::chunk::TransferOptions;
/// use std::time::Duration;
///
/// let options = TransferOptions::to_file("backups/today.tar")
///     .resume(true)
///     .stall_timeout(Duration::from_secs(10));
/// # let _ = options;
/// ```
#[derive(Clone)]
pub struct TransferOptions {
    /// Where the receiver puts the bytes.
    pub destination: Destination,
    /// The service name the receiver serves its `ChunkService` under:
    /// `Chunk` unless it was built with
    /// [`ChunkServiceBuilder::memory_handler`](super::ChunkServiceBuilder::memory_handler).
    pub service: &'static str,
    /// Resume from a partial file the receiver kept, and have it keep this
    /// transfer's partial file if it is interrupted.
    pub resume: bool,
    /// A peer whose stream takes no byte for this long, or that does not
    /// accept within it, fails as stalled (default
    /// [`DEFAULT_STALL_TIMEOUT`], 30 s). The verdict after the data may
    /// take this plus the time the data took.
    pub stall_timeout: Duration,
    /// Called as each peer's transfer progresses.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for TransferOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransferOptions")
            .field("destination", &self.destination)
            .field("service", &self.service)
            .field("resume", &self.resume)
            .field("stall_timeout", &self.stall_timeout)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl TransferOptions {
    /// Options for a transfer to `destination`, with the defaults.
    pub fn new(destination: Destination) -> Self {
        TransferOptions {
            destination,
            service: SERVICE,
            resume: false,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            progress: None,
        }
    }

    /// Into the file `path` below the receiver's receive directory.
    pub fn to_file(path: impl Into<String>) -> Self {
        Self::new(Destination::File { path: path.into() })
    }

    /// Into the receiver's memory, handed to its application as `name`.
    pub fn to_memory(name: impl Into<String>) -> Self {
        Self::new(Destination::Memory { name: name.into() })
    }

    /// Sets [`service`](Self::service).
    pub fn service(mut self, name: &'static str) -> Self {
        self.service = name;
        self
    }

    /// Sets [`resume`](Self::resume).
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Sets [`stall_timeout`](Self::stall_timeout).
    pub fn stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// Sets the [`progress`](Self::progress) callback.
    pub fn progress(mut self, callback: ProgressFn) -> Self {
        self.progress = Some(callback);
        self
    }
}

/// The outcome of a transfer to one peer.
#[derive(Debug, Clone)]
pub struct TransferResult {
    /// The peer's address.
    pub peer: SocketAddr,
    /// `Ok`: the receiver found the SHA-256 of the whole data correct and
    /// acknowledged it with status `0`, so it is in place and durable.
    /// `Err` says why not; [`TransferError::NotDurable`] is the one error
    /// after which the data was verified and is in place, but its
    /// directory could not be synced.
    pub outcome: Result<(), TransferError>,
    /// Data bytes this attempt sent (a resumed offset excluded).
    pub bytes_transferred: u64,
    /// Bytes the receiver already held when this attempt started.
    pub resumed_from: u64,
    /// Time from the start of the transfer to this peer's verdict.
    pub duration: Duration,
}

/// Sends `source` to every peer at once; one result per peer, in order.
/// Dropping the future abandons every peer's transfer (their streams are
/// reset or end early, so receivers keep nothing).
pub(crate) async fn transfer(
    streams: Arc<StreamPool>,
    source: ChunkSource,
    peers: &[SocketAddr],
    options: TransferOptions,
) -> Vec<TransferResult> {
    let started = Instant::now();
    let opened = if source.opens_inline() {
        source.open()
    } else {
        tokio::task::spawn_blocking(move || source.open())
            .await
            .unwrap_or_else(|e| Err(TransferError::Source(format!("open task failed: {e}"))))
    };
    let source = match opened {
        Ok(source) => source,
        Err(e) => {
            return peers
                .iter()
                .map(|&peer| TransferResult::failed(peer, e.clone(), started.elapsed()))
                .collect();
        }
    };
    let request = TransferRequest {
        destination: options.destination.clone(),
        size: source.size(),
        resume: options.resume,
    };
    let mut lanes = Vec::with_capacity(peers.len());
    // A JoinSet aborts its tasks when dropped.
    let mut tasks = JoinSet::new();
    for (index, &peer) in peers.iter().enumerate() {
        let (lane, pieces) = mpsc::channel(LANE_BUFFERS);
        let taken = Arc::new(AtomicU64::new(0));
        lanes.push(Lane {
            pieces: lane,
            taken: taken.clone(),
        });
        let client = Client::new(&streams, peer);
        let peer_side = PeerSide { pieces, taken };
        let task = send_to_peer(client, request.clone(), peer_side, options.clone(), started);
        tasks.spawn(async move { (index, task.await) });
    }
    let (read, read_out) = mpsc::channel(READ_AHEAD);
    source.spawn_reader(read);
    let mut distributor = JoinSet::new();
    distributor.spawn(distribute(read_out, lanes, options.stall_timeout));

    let mut results: Vec<Option<TransferResult>> = vec![None; peers.len()];
    while let Some(joined) = tasks.join_next().await {
        if let Ok((index, result)) = joined {
            results[index] = Some(result);
        }
    }
    results
        .into_iter()
        .zip(peers)
        .map(|(result, &peer)| {
            result.unwrap_or_else(|| {
                let error = TransferError::Connection("the transfer task failed".into());
                TransferResult::failed(peer, error, started.elapsed())
            })
        })
        .collect()
}

impl TransferResult {
    /// The result of a peer that failed with `error` after `duration`.
    pub(crate) fn failed(peer: SocketAddr, error: TransferError, duration: Duration) -> Self {
        TransferResult {
            peer,
            outcome: Err(error),
            bytes_transferred: 0,
            resumed_from: 0,
            duration,
        }
    }
}

/// The distributor's end of one peer's lane.
struct Lane {
    pieces: mpsc::Sender<Piece>,
    /// Bytes the peer's stream has taken so far: a full lane whose count
    /// still grows belongs to a slow peer, not a stalled one.
    taken: Arc<AtomicU64>,
}

/// The peer task's end of its lane.
struct PeerSide {
    pieces: mpsc::Receiver<Piece>,
    taken: Arc<AtomicU64>,
}

/// Hands each piece to every live lane; a lane that stays full while its
/// peer takes no byte for `stall` is dropped (its peer then fails as
/// stalled).
async fn distribute(mut pieces: mpsc::Receiver<Piece>, mut lanes: Vec<Lane>, stall: Duration) {
    while let Some(piece) = pieces.recv().await {
        let mut live = Vec::with_capacity(lanes.len());
        for lane in lanes {
            if hand_on(&lane, piece.clone(), stall).await {
                live.push(lane);
            }
        }
        lanes = live;
        if lanes.is_empty() {
            // Dropping `pieces` stops the reader thread.
            return;
        }
    }
}

/// Puts `piece` into `lane`; `false` when its peer is gone, or its lane
/// stayed full for a whole `stall` period in which the peer took no byte.
async fn hand_on(lane: &Lane, piece: Piece, stall: Duration) -> bool {
    let send = lane.pieces.send(piece);
    tokio::pin!(send);
    let mut seen = lane.taken.load(Ordering::Relaxed);
    loop {
        match tokio::time::timeout(stall, &mut send).await {
            Ok(sent) => return sent.is_ok(),
            Err(_) => {
                let now = lane.taken.load(Ordering::Relaxed);
                if now == seen {
                    return false;
                }
                seen = now;
            }
        }
    }
}

/// What one peer's attempt got through, kept when it fails half-way.
#[derive(Default)]
struct Sent {
    bytes: u64,
    offset: u64,
}

async fn send_to_peer(
    client: Client,
    request: TransferRequest,
    lane: PeerSide,
    options: TransferOptions,
    started: Instant,
) -> TransferResult {
    let peer = client.peer();
    let mut sent = Sent::default();
    // Connecting is bounded by the transport's handshake timeout.
    let outcome = match client.open_stream(options.service, METHOD, &request).await {
        Ok(mut stream) => {
            let outcome = exchange(&mut stream, &request, lane, &options, &mut sent).await;
            if outcome.is_err() {
                stream.reset(ABANDONED);
            }
            outcome
        }
        Err(e) => Err(e.into()),
    };
    TransferResult {
        peer,
        outcome,
        bytes_transferred: sent.bytes,
        resumed_from: sent.offset,
        duration: started.elapsed(),
    }
}

/// Runs `op`, failing as stalled after `stall`.
async fn within<T>(
    stall: Duration,
    op: impl std::future::Future<Output = T>,
) -> Result<T, TransferError> {
    tokio::time::timeout(stall, op)
        .await
        .map_err(|_| TransferError::Stalled(stall))
}

/// Writes `bytes`, failing as stalled only when the stream takes none of
/// them for a whole `stall` period: a slow peer that keeps reading is
/// waited for. The outer error is the stall, the inner one the stream's.
async fn write_watched(
    stream: &mut CallStream,
    mut bytes: Bytes,
    stall: Duration,
    taken: &AtomicU64,
) -> Result<Result<(), RpcError>, TransferError> {
    while !bytes.is_empty() {
        match within(stall, stream.write_some(&mut bytes)).await? {
            Ok(n) => {
                taken.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(()))
}

/// The protocol of one peer, from the accept to the verdict.
async fn exchange(
    stream: &mut CallStream,
    request: &TransferRequest,
    lane: PeerSide,
    options: &TransferOptions,
    sent: &mut Sent,
) -> Result<(), TransferError> {
    let PeerSide { mut pieces, taken } = lane;
    let taken = &*taken;
    let stall = options.stall_timeout;
    let size = request.size;
    let offset = read_accept(stream, stall, size).await?;
    sent.offset = offset;
    let mut reporter = Reporter::new(
        options.progress.clone(),
        stream.peer().addr,
        request.destination.name(),
        size,
    );
    reporter.resume_from(offset);

    let data_started = Instant::now();
    let header = protocol::size_header(size);
    let header = Bytes::copy_from_slice(&header);
    if let Err(e) = write_watched(stream, header, stall, taken).await? {
        return Err(verdict_after_write_error(stream, stall, e.into()).await);
    }
    let mut position = 0u64;
    let hash = loop {
        let Some(piece) = pieces.recv().await else {
            return Err(TransferError::Stalled(stall));
        };
        let buffer = match piece {
            Piece::Data(buffer) => buffer,
            Piece::End(hash) => break hash,
            Piece::Failed(reason) => return Err(TransferError::Source(reason)),
        };
        let start = position;
        position += buffer.len() as u64;
        if position <= offset {
            continue;
        }
        let buffer = if start < offset {
            buffer.slice((offset - start) as usize..)
        } else {
            buffer
        };
        let len = buffer.len() as u64;
        if let Err(e) = write_watched(stream, buffer, stall, taken).await? {
            return Err(verdict_after_write_error(stream, stall, e.into()).await);
        }
        sent.bytes += len;
        reporter.update(position);
    };
    let hash = Bytes::copy_from_slice(&hash);
    if let Err(e) = write_watched(stream, hash, stall, taken).await? {
        return Err(verdict_after_write_error(stream, stall, e.into()).await);
    }
    stream.finish();
    // The receiver may still be reading up to a flow-control window of
    // data, then fsyncs: give it as long again as the data took to go out,
    // on top of the stall timeout, since the sender cannot see its reads.
    let patience = stall + data_started.elapsed();
    let (status, reason) = within(patience, protocol::read_status(stream)).await??;
    verdict(status, reason)
}

/// Reads the receiver's first answer: the offset to send from, or why not.
async fn read_accept(
    stream: &mut CallStream,
    stall: Duration,
    size: u64,
) -> Result<u64, TransferError> {
    let answer = within(stall, stream.read_frame()).await??.ok_or_else(|| {
        TransferError::Connection("the receiver closed the stream before answering".into())
    })?;
    let value = frame::parse_response(answer).map_err(|e| TransferError::Refused {
        code: e.code(),
        reason: e.message().to_owned(),
    })?;
    let accept: Accept = codec::decode(&value)
        .map_err(|e| TransferError::Protocol(format!("accept frame does not decode: {e}")))?;
    if accept.offset > size {
        return Err(TransferError::Protocol(format!(
            "the receiver claims {} bytes of a {size}-byte transfer",
            accept.offset
        )));
    }
    Ok(accept.offset)
}

/// A receiver that fails stops reading and answers its status: prefer
/// that status to the bare write error.
async fn verdict_after_write_error(
    stream: &mut CallStream,
    stall: Duration,
    write_error: TransferError,
) -> TransferError {
    match within(stall, protocol::read_status(stream)).await {
        Ok(Ok((status, reason))) => verdict(status, reason).err().unwrap_or(write_error),
        _ => write_error,
    }
}

fn verdict(status: Status, reason: String) -> Result<(), TransferError> {
    match status {
        Status::Ok => Ok(()),
        Status::ChecksumMismatch => Err(TransferError::ChecksumMismatch),
        Status::Error => Err(TransferError::Receiver(reason)),
        Status::NotDurable => Err(TransferError::NotDurable(reason)),
    }
}
