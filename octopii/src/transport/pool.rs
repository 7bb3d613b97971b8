//! One shared connection per peer.
//!
//! Callers ask the pool for a peer's connection; the first one dials and
//! everyone who asks meanwhile waits for that same handshake instead of
//! starting their own. A connection that has closed (idle timeout, peer gone,
//! error) is evicted, and the next caller dials again.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;

use super::{PeerConnection, TransportError};

type Slot = Arc<OnceCell<PeerConnection>>;

/// Counters of a [`ConnectionPool`], for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Pooled connections that are currently open.
    pub open_connections: usize,
    /// Handshakes the pool has completed since it was made.
    pub handshakes: u64,
    /// Open connections whose peer said it is draining: no new call uses
    /// them, and the next call to that peer dials afresh.
    pub going_away: usize,
}

/// Connections to peers, keyed by peer address.
#[derive(Debug, Default)]
pub struct ConnectionPool {
    slots: Mutex<HashMap<SocketAddr, Slot>>,
    handshakes: AtomicU64,
}

impl ConnectionPool {
    /// An empty pool.
    pub fn new() -> Self {
        Self::default()
    }

    /// The open connection to `addr`, or a new one made by `dial`.
    ///
    /// Concurrent callers for the same peer share one `dial`. If it fails,
    /// the error goes to the caller that ran it and the next waiter dials.
    pub async fn get<F, Fut>(
        &self,
        addr: SocketAddr,
        dial: F,
    ) -> Result<PeerConnection, TransportError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<PeerConnection, TransportError>>,
    {
        loop {
            let slot = self.slot(addr);
            let conn = slot
                .get_or_try_init(|| async {
                    let conn = dial().await?;
                    self.handshakes.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, TransportError>(conn)
                })
                .await?;
            if conn.is_open() && !conn.is_going_away() {
                return Ok(conn.clone());
            }
            self.evict(addr, &slot);
        }
    }

    /// Drops the pooled connection to `addr` if it is still `slot`.
    fn evict(&self, addr: SocketAddr, slot: &Slot) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.get(&addr).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(&addr);
        }
    }

    fn slot(&self, addr: SocketAddr) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.entry(addr).or_default().clone()
    }

    /// Whether the last pooled connection to `addr` heard that its peer
    /// is draining, or was closed by the peer as it stopped, and no dial
    /// has replaced it since.
    pub fn going_away(&self, addr: SocketAddr) -> bool {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots
            .get(&addr)
            .and_then(|slot| slot.get())
            .is_some_and(PeerConnection::is_going_away)
    }

    /// All pooled connections that are still open.
    pub fn connections(&self) -> Vec<PeerConnection> {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots
            .values()
            .filter_map(|slot| slot.get())
            .filter(|conn| conn.is_open())
            .cloned()
            .collect()
    }

    /// Current counters.
    pub fn stats(&self) -> PoolStats {
        let open = self.connections();
        PoolStats {
            open_connections: open.len(),
            handshakes: self.handshakes.load(Ordering::Relaxed),
            going_away: open.iter().filter(|c| c.is_going_away()).count(),
        }
    }
}
