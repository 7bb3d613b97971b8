//! QUIC transport: one endpoint per node, mutual TLS, pooled connections.
//!
//! * [`Transport`] owns the node's quinn `Endpoint`, which both listens and
//!   dials, so a peer's outgoing connections come from its listening address.
//! * [`tls`] makes and checks the certificates.
//! * [`ConnectionPool`] shares one connection per peer among all callers.
//!
//! Every connection is a [`PeerConnection`]: the quinn connection plus the
//! peer's verified [`PeerInfo`].

mod endpoint;
mod error;
mod log_limit;
mod metrics;
mod pool;
mod quinn_runtime;
mod redial;
mod restart_keys;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use endpoint::{InboundHandler, Transport, TransportStats};
pub use error::{RefusedBy, TransportError};
pub use pool::{ConnectionPool, PoolStats};

use crate::identity::Role;

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's address (its node's listening address).
    pub addr: SocketAddr,
    /// The subject common name of the peer's certificate.
    pub identity: String,
    /// What the peer's certificate says it is (its `octopii://` SAN URI).
    pub role: Role,
    /// Whether `identity` was verified against the cluster CA (false only
    /// under `insecure_accept_any_certificate`).
    pub verified: bool,
}

/// How long a control stream may take to arrive whole, or to be sent.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(1);

/// Application error code of a connection closed because its control
/// stream carried something other than a go-away.
const BAD_CONTROL_STREAM: quinn::VarInt = quinn::VarInt::from_u32(3);

/// An established connection and the peer it leads to. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PeerConnection {
    connection: quinn::Connection,
    peer: Arc<PeerInfo>,
    silence: Arc<std::sync::Mutex<Option<Silence>>>,
    /// Set when the peer said it is draining (see [`GO_AWAY`]).
    going_away: Arc<AtomicBool>,
}

/// The byte a draining node sends, alone on a unidirectional stream it
/// opens to each peer that dialled it: "make no new calls on this
/// connection". The peer's pool then dials afresh for its next call (which
/// the draining node refuses, so the call goes elsewhere), while calls
/// already on the connection finish.
pub const GO_AWAY: u8 = 1;

/// Calls on a connection that heard nothing from the peer: the count of
/// datagrams received when the first of them started, and when.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Silence {
    pub(crate) received: u64,
    pub(crate) since: tokio::time::Instant,
}

impl PeerConnection {
    /// Since when calls on this connection have heard nothing from the
    /// peer, as the calls that timed out recorded it.
    pub(crate) fn silence(&self) -> std::sync::MutexGuard<'_, Option<Silence>> {
        self.silence
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn new(connection: quinn::Connection, verified: bool) -> Result<Self, TransportError> {
        let cert = connection
            .peer_identity()
            .and_then(|any| any.downcast::<Vec<rustls_pki_types::CertificateDer>>().ok())
            .and_then(|chain| chain.into_iter().next());
        let (identity, role) = cert
            .and_then(|cert| {
                Some((
                    tls::subject_common_name(&cert)?,
                    Role::of_certificate(&cert),
                ))
            })
            .ok_or_else(|| TransportError::NoPeerName {
                addr: connection.remote_address(),
            })?;
        let peer = PeerInfo {
            addr: connection.remote_address(),
            identity,
            role,
            verified,
        };
        Ok(PeerConnection {
            connection,
            peer: Arc::new(peer),
            silence: Arc::default(),
            going_away: Arc::default(),
        })
    }

    /// Whether the peer said it is draining (or closed the connection as
    /// it stopped): no new call should use this connection (calls already
    /// on it finish).
    pub fn is_going_away(&self) -> bool {
        self.going_away.load(Ordering::Relaxed)
    }

    /// Marks the connection as one whose peer is draining or stopped.
    pub(crate) fn mark_going_away(&self) {
        self.going_away.store(true, Ordering::Relaxed);
    }

    /// Reads the control streams the peer opens on this connection until
    /// it closes: a go-away marks it; anything else is a protocol error
    /// that closes it. Each stream is bounded to one byte and a second.
    pub(crate) async fn read_control_streams(&self) {
        while let Ok(mut control) = self.connection.accept_uni().await {
            let read = tokio::time::timeout(CONTROL_TIMEOUT, control.read_to_end(1)).await;
            if let Ok(Ok(bytes)) = read
                && bytes == [GO_AWAY]
            {
                tracing::info!(peer = %self.peer.addr, "peer is draining: new calls go elsewhere");
                self.mark_going_away();
                continue;
            }
            tracing::warn!(peer = %self.peer.addr, "closing a connection whose control stream was not a go-away");
            self.connection
                .close(BAD_CONTROL_STREAM, b"bad control stream");
            return;
        }
    }

    /// Tells the peer this node is draining (see [`GO_AWAY`]), within a
    /// second; a peer that allows no control stream is not told.
    pub(crate) async fn send_go_away(&self) {
        let send = async {
            let mut control = self.connection.open_uni().await.ok()?;
            control.write_all(&[GO_AWAY]).await.ok()?;
            control.finish().ok()
        };
        let _ = tokio::time::timeout(CONTROL_TIMEOUT, send).await;
    }

    /// The peer at the other end.
    pub fn peer(&self) -> &Arc<PeerInfo> {
        &self.peer
    }

    /// The underlying quinn connection: the deliberate escape hatch to raw
    /// QUIC (datagrams, unidirectional streams, a protocol of your own
    /// beside Octopii's), already mutually authenticated as
    /// [`peer`](Self::peer) says. Streams opened on it bypass Octopii's
    /// framing, limits and policies; the peer's router treats a
    /// bidirectional stream as an RPC request, so a custom protocol
    /// belongs on a node started with
    /// [`OctopiiNode::with_handler`](crate::OctopiiNode::with_handler).
    /// quinn's API is not Octopii's: it may change with a quinn upgrade.
    pub fn quinn(&self) -> &quinn::Connection {
        &self.connection
    }

    /// Whether the connection is still usable.
    pub fn is_open(&self) -> bool {
        self.connection.close_reason().is_none()
    }

    /// Opens a bidirectional stream, waiting while the peer's stream limit
    /// is reached.
    pub async fn open_bi(&self) -> Result<(quinn::SendStream, quinn::RecvStream), TransportError> {
        Ok(self.connection.open_bi().await?)
    }

    /// Waits until the connection closes and says why.
    pub async fn closed(&self) -> TransportError {
        self.connection.closed().await.into()
    }
}
