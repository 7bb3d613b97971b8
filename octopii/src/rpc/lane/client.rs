//! A client's lane to one peer: calls in flight by id, a writer task that
//! batches frames, a reader task that hands replies to their callers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{CALL, CANCEL, MARKER, QUEUE, frame, parse};
use crate::rpc::frame::FrameReader;
use crate::rpc::retry::Reached;
use crate::rpc::{Code, RpcError};
use crate::transport::PeerConnection;

/// Each waiting call's answer: its reply, or why it failed and how far it
/// got (answered by the server, or sent on a lane that broke, so it may
/// have run).
type Answer = Result<Bytes, (RpcError, Reached)>;
type Waiting = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Answer>>>>>;

/// One lane: calls are sent through `frames`, answered through `waiting`
/// (`None` once the lane has closed).
pub(crate) struct Lane {
    /// The connection the lane runs on, checked and open when it was made.
    conn: PeerConnection,
    /// The id of the next call; shared with the reader, which refuses
    /// replies to ids not yet sent.
    next_id: Arc<AtomicU64>,
    waiting: Waiting,
    frames: mpsc::Sender<Vec<u8>>,
    /// Calls in flight on the lane, at most as many as the streams a peer
    /// grants: past that, callers wait, as they would for stream credit.
    slots: Semaphore,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("connection", &self.conn.quinn().stable_id())
            .finish_non_exhaustive()
    }
}

impl Lane {
    /// Opens a lane on `conn`; replies are read under `max_frame`.
    pub async fn open(
        conn: &PeerConnection,
        max_frame: u32,
        max_calls: usize,
    ) -> Result<Arc<Lane>, RpcError> {
        let (send, recv) = conn.open_bi().await?;
        let (frames, queued) = mpsc::channel(QUEUE);
        let waiting: Waiting = Arc::new(Mutex::new(Some(HashMap::new())));
        let next_id = Arc::new(AtomicU64::new(1));
        // Never broken from this side: a dropped lane finishes its stream.
        tokio::spawn(super::write(
            send,
            queued,
            MARKER.to_vec(),
            std::future::pending(),
        ));
        tokio::spawn(read(recv, waiting.clone(), next_id.clone(), max_frame));
        Ok(Arc::new(Lane {
            conn: conn.clone(),
            next_id,
            waiting,
            frames,
            slots: Semaphore::new(max_calls.max(1)),
        }))
    }

    /// The connection the lane runs on.
    pub fn conn(&self) -> &PeerConnection {
        &self.conn
    }

    /// Whether calls may still be sent on it.
    pub fn is_open(&self) -> bool {
        lock(&self.waiting).is_some() && !self.frames.is_closed()
    }

    /// Sends `request` (its header and arguments frames) and waits for the
    /// reply; dropped before it, the call is cancelled on the server.
    pub async fn call(&self, request: &[u8]) -> Result<Bytes, (RpcError, Reached)> {
        let Ok(_slot) = self.slots.acquire().await else {
            return Err((closed(), Reached::NotSent));
        };
        let frame_slot = self.frames.reserve().await;
        let Ok(slot) = frame_slot else {
            return Err((closed(), Reached::NotSent));
        };
        let (answer, answered) = oneshot::channel();
        let id = {
            // Ids are drawn and queued under one lock, so they reach the
            // wire in increasing order, as the server requires.
            let mut waiting = lock(&self.waiting);
            let Some(waiting) = waiting.as_mut() else {
                return Err((closed(), Reached::NotSent));
            };
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            waiting.insert(id, answer);
            slot.send(frame(id, CALL, request));
            id
        };
        let mut call = Pending {
            lane: self,
            id,
            done: false,
        };
        let reply = answered.await;
        call.done = true;
        match reply {
            Ok(answer) => answer,
            Err(_) => Err((closed(), Reached::Sent)),
        }
    }
}

/// A call waiting for its reply; dropped first, it cancels the call.
struct Pending<'a> {
    lane: &'a Lane,
    id: u64,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(waiting) = lock(&self.lane.waiting).as_mut() {
            waiting.remove(&self.id);
        }
        // Best effort: a full queue means the lane is backed up, and the
        // server's deadline ends the call anyway.
        let _ = self.lane.frames.try_send(frame(self.id, CANCEL, &[]));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn closed() -> RpcError {
    RpcError::new(Code::Unavailable, "the lane to the peer closed")
}

/// Hands each reply to its caller until the stream ends; then fails the
/// calls still waiting. A reply to no call waiting is dropped: it answers
/// a call its caller cancelled. A reply to a call never sent breaks the
/// lane.
async fn read(
    mut recv: quinn::RecvStream,
    waiting: Waiting,
    next_id: Arc<AtomicU64>,
    max_frame: u32,
) {
    let mut reader = FrameReader::new();
    let why = loop {
        let payload = match reader.next(&mut recv, max_frame).await {
            Ok(Some(payload)) => payload,
            Ok(None) => break closed(),
            Err(e) => break RpcError::from(e),
        };
        let (id, code, body) = match parse(payload) {
            Ok(frame) => frame,
            Err(e) => break e,
        };
        let Some(answer) = lock(&waiting).as_mut().and_then(|w| w.remove(&id)) else {
            // A cancelled call's reply may still come; one to a call never
            // sent is a lie.
            if id >= next_id.load(Ordering::Relaxed) {
                break RpcError::new(
                    Code::Unavailable,
                    format!("the peer answered lane call {id}, which was never sent"),
                );
            }
            continue;
        };
        let reply = match code {
            0 => Ok(body),
            code => Err((
                RpcError::new(
                    Code::from_wire(code),
                    String::from_utf8_lossy(&body).into_owned(),
                ),
                Reached::Answered,
            )),
        };
        let _ = answer.send(reply);
    };
    let _ = recv.stop(crate::rpc::client::CANCELLED);
    let left = lock(&waiting).take().unwrap_or_default();
    for (_, answer) in left {
        let failed = RpcError::new(why.code(), why.message().to_owned());
        let _ = answer.send(Err((failed, Reached::Sent)));
    }
}
