//! What a peer can make a server hold, and the budgets that bound it:
//! call permits (per peer, node-wide, and a pool of their own for raft
//! traffic) and bytes buffered in frames not yet complete (per connection
//! and node-wide).
//!
//! A frame reader that has read a frame's length prefix keeps reading the
//! frame into memory, which frees QUIC's flow-control windows: the windows
//! do not bound what incomplete frames hold, so these budgets do.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Code, RpcError};
use crate::config::RpcConfig;
use crate::transport::{PeerConnection, PeerInfo};

/// Services whose calls take permits from the raft pool, so that user
/// calls can never starve raft of them.
pub const RAFT_SERVICES: [&str; 2] = ["RaftService", "RaftSnapshot"];

/// Counters of a server's budgets, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RpcStats {
    /// Bytes announced by frames now being read, all connections together.
    pub incomplete_frame_bytes: u64,
    /// Frames refused because they would have taken a connection's or the
    /// node's incomplete frames above their budget.
    pub frames_over_budget: u64,
    /// Calls answered `ResourceExhausted` for want of a permit.
    pub calls_refused: u64,
    /// Requests whose header and arguments did not arrive within
    /// `rpc.request_read_timeout_ms` once they had begun.
    pub requests_timed_out: u64,
}

/// The budgets of one server.
#[derive(Debug)]
pub(crate) struct Budgets {
    user_calls: Arc<Semaphore>,
    raft_calls: Arc<Semaphore>,
    user_capacity: usize,
    raft_capacity: usize,
    per_peer_calls: usize,
    peers: Arc<Registry<String, Arc<Semaphore>>>,
    node_frames: Arc<ByteBudget>,
    per_connection_frame_bytes: u64,
    connections: Arc<Registry<usize, Arc<ByteBudget>>>,
    frames_over_budget: AtomicU64,
    calls_refused: AtomicU64,
    pub(crate) requests_timed_out: AtomicU64,
}

impl Budgets {
    pub(crate) fn new(config: &RpcConfig) -> Self {
        Budgets {
            user_calls: Arc::new(Semaphore::new(config.max_concurrent_calls)),
            raft_calls: Arc::new(Semaphore::new(config.max_concurrent_raft_calls)),
            user_capacity: config.max_concurrent_calls,
            raft_capacity: config.max_concurrent_raft_calls,
            per_peer_calls: config.max_concurrent_calls_per_peer,
            peers: Arc::new(Registry::default()),
            node_frames: Arc::new(ByteBudget::new(config.max_incomplete_frame_bytes)),
            per_connection_frame_bytes: config.max_incomplete_frame_bytes_per_connection,
            connections: Arc::new(Registry::default()),
            frames_over_budget: AtomicU64::new(0),
            calls_refused: AtomicU64::new(0),
            requests_timed_out: AtomicU64::new(0),
        }
    }

    /// Waits until no call holds a permit, and keeps them all: no call
    /// starts afterwards.
    pub(crate) async fn take_every_call_permit(&self) {
        let pools = [
            (&self.user_calls, self.user_capacity),
            (&self.raft_calls, self.raft_capacity),
        ];
        for (pool, size) in pools {
            let all = u32::try_from(size).unwrap_or(u32::MAX);
            // The pools are never closed: acquiring only waits.
            if let Ok(permits) = pool.acquire_many(all).await {
                permits.forget();
            }
        }
    }

    /// A permit to run a call of `service` for `peer`, or the
    /// `ResourceExhausted` status that refuses it.
    pub(crate) fn call_permit(
        &self,
        service: &str,
        peer: &PeerShare,
    ) -> Result<CallPermit, RpcError> {
        let permit = if RAFT_SERVICES.contains(&service) {
            self.raft_calls
                .clone()
                .try_acquire_owned()
                .map(|node| CallPermit {
                    _peer: None,
                    _node: node,
                })
                .map_err(|_| "the server is at its limit of concurrent raft calls")
        } else {
            self.user_call_permit(peer)
        };
        permit.map_err(|why| {
            self.calls_refused.fetch_add(1, Ordering::Relaxed);
            RpcError::new(Code::ResourceExhausted, why)
        })
    }

    /// The share of call permits of `peer`, to look up once per stream or
    /// lane rather than per call.
    pub(crate) fn peer_share(&self, peer: &PeerInfo) -> PeerShare {
        // Without verification every peer may claim any name: its address
        // is then what tells peers apart.
        let key = if peer.verified {
            peer.identity.clone()
        } else {
            peer.addr.to_string()
        };
        self.peers
            .get_or_insert(key, || Arc::new(Semaphore::new(self.per_peer_calls)))
    }

    fn user_call_permit(&self, share: &PeerShare) -> Result<CallPermit, &'static str> {
        let Ok(peer_permit) = share.value.clone().try_acquire_owned() else {
            return Err("the caller is at its limit of concurrent calls on this server");
        };
        let Ok(node) = self.user_calls.clone().try_acquire_owned() else {
            return Err("the server is at its limit of concurrent calls");
        };
        Ok(CallPermit {
            _peer: Some((peer_permit, share.clone())),
            _node: node,
        })
    }

    /// The frame budget of the streams of `conn`.
    pub(crate) fn frame_budget(self: &Arc<Self>, conn: &PeerConnection) -> FrameBudget {
        let connection = self
            .connections
            .get_or_insert(conn.quinn().stable_id(), || {
                Arc::new(ByteBudget::new(self.per_connection_frame_bytes))
            });
        FrameBudget {
            connection,
            budgets: self.clone(),
        }
    }

    pub(crate) fn stats(&self) -> RpcStats {
        RpcStats {
            incomplete_frame_bytes: self.node_frames.used.load(Ordering::Relaxed),
            frames_over_budget: self.frames_over_budget.load(Ordering::Relaxed),
            calls_refused: self.calls_refused.load(Ordering::Relaxed),
            requests_timed_out: self.requests_timed_out.load(Ordering::Relaxed),
        }
    }
}

/// A peer's share of the user call permits, registered by peer while a
/// stream or lane of that peer holds it.
pub(crate) type PeerShare = Arc<Entry<String, Arc<Semaphore>>>;

/// Held while a call runs; its permits return when it is dropped.
#[derive(Debug)]
pub(crate) struct CallPermit {
    // The peer's share stays registered while its permit is out.
    _peer: Option<(OwnedSemaphorePermit, PeerShare)>,
    _node: OwnedSemaphorePermit,
}

/// The incomplete-frame budgets a stream's reader draws on: its
/// connection's and the node's.
#[derive(Debug, Clone)]
pub struct FrameBudget {
    connection: Arc<Entry<usize, Arc<ByteBudget>>>,
    budgets: Arc<Budgets>,
}

impl FrameBudget {
    /// Reserves `bytes` for a frame being read, or says which budget
    /// refuses them.
    pub(crate) fn reserve(&self, bytes: u64) -> Result<FrameReservation, OverBudget> {
        let refused = |scope, limit| {
            self.budgets
                .frames_over_budget
                .fetch_add(1, Ordering::Relaxed);
            OverBudget { scope, limit }
        };
        let connection = &self.connection.value;
        if !connection.try_take(bytes) {
            return Err(refused("connection", connection.limit));
        }
        let node = &self.budgets.node_frames;
        if !node.try_take(bytes) {
            connection.give_back(bytes);
            return Err(refused("node", node.limit));
        }
        Ok(FrameReservation {
            bytes,
            budget: self.clone(),
        })
    }
}

/// A frame would take incomplete frames above a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    /// `"connection"` or `"node"`.
    pub scope: &'static str,
    /// That budget, in bytes.
    pub limit: u64,
}

/// Bytes of a frame being read; given back when dropped.
#[derive(Debug)]
pub(crate) struct FrameReservation {
    bytes: u64,
    budget: FrameBudget,
}

impl Drop for FrameReservation {
    fn drop(&mut self) {
        self.budget.connection.value.give_back(self.bytes);
        self.budget.budgets.node_frames.give_back(self.bytes);
    }
}

/// A count of bytes held, up to a limit.
#[derive(Debug)]
struct ByteBudget {
    limit: u64,
    used: AtomicU64,
}

impl ByteBudget {
    fn new(limit: u64) -> Self {
        ByteBudget {
            limit,
            used: AtomicU64::new(0),
        }
    }

    fn try_take(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&sum| sum <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Values shared by key (a peer, a connection) while anyone holds them,
/// forgotten when the last holder lets go.
#[derive(Debug)]
struct Registry<K: Eq + Hash + Clone, V> {
    map: Mutex<HashMap<K, Weak<Entry<K, V>>>>,
}

impl<K: Eq + Hash + Clone, V> Default for Registry<K, V> {
    fn default() -> Self {
        Registry {
            map: Mutex::new(HashMap::new()),
        }
    }
}

/// A value in a [`Registry`], removed from it when dropped.
#[derive(Debug)]
pub(crate) struct Entry<K: Eq + Hash + Clone, V> {
    key: K,
    value: V,
    registry: Weak<Registry<K, V>>,
}

impl<K: Eq + Hash + Clone, V> Registry<K, V> {
    fn get_or_insert(self: &Arc<Self>, key: K, make: impl FnOnce() -> V) -> Arc<Entry<K, V>> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = map.get(&key).and_then(Weak::upgrade) {
            return entry;
        }
        let entry = Arc::new(Entry {
            key: key.clone(),
            value: make(),
            registry: Arc::downgrade(self),
        });
        map.insert(key, Arc::downgrade(&entry));
        entry
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl<K: Eq + Hash + Clone, V> Drop for Entry<K, V> {
    fn drop(&mut self) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let mut map = registry.map.lock().unwrap_or_else(PoisonError::into_inner);
        // A new entry may already have taken the key's place.
        if map.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str) -> PeerInfo {
        PeerInfo {
            addr: "127.0.0.1:1".parse().unwrap(),
            identity: name.into(),
            role: crate::identity::Role::Client,
            verified: true,
        }
    }

    fn budgets(edit: impl FnOnce(&mut RpcConfig)) -> Budgets {
        let mut config = RpcConfig::default();
        edit(&mut config);
        Budgets::new(&config)
    }

    #[test]
    fn one_peer_takes_at_most_its_share_of_call_permits() {
        let b = budgets(|c| {
            c.max_concurrent_calls = 3;
            c.max_concurrent_calls_per_peer = 2;
        });
        let greedy: Vec<_> = (0..2)
            .map(|_| {
                b.call_permit("Svc", &b.peer_share(&peer("greedy")))
                    .unwrap()
            })
            .collect();
        let err = b
            .call_permit("Svc", &b.peer_share(&peer("greedy")))
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        let other = b.call_permit("Svc", &b.peer_share(&peer("other"))).unwrap();
        // The node-wide limit still holds.
        assert!(b.call_permit("Svc", &b.peer_share(&peer("third"))).is_err());
        drop(other);
        drop(greedy);
        assert_eq!(b.peers.len(), 0, "shares of idle peers are forgotten");
        assert_eq!(b.stats().calls_refused, 2);
    }

    #[test]
    fn raft_calls_have_a_pool_user_calls_cannot_take() {
        let b = budgets(|c| {
            c.max_concurrent_calls = 1;
            c.max_concurrent_raft_calls = 1;
        });
        let _user = b.call_permit("Svc", &b.peer_share(&peer("a"))).unwrap();
        assert!(b.call_permit("Svc", &b.peer_share(&peer("b"))).is_err());
        let raft = b
            .call_permit("RaftService", &b.peer_share(&peer("b")))
            .unwrap();
        assert!(
            b.call_permit("RaftSnapshot", &b.peer_share(&peer("c")))
                .is_err()
        );
        drop(raft);
        b.call_permit("RaftSnapshot", &b.peer_share(&peer("c")))
            .unwrap();
    }

    #[test]
    fn byte_budgets_refuse_what_would_pass_them_and_take_back_on_drop() {
        let budget = ByteBudget::new(10);
        assert!(budget.try_take(6));
        assert!(!budget.try_take(5));
        assert!(budget.try_take(4));
        assert!(!budget.try_take(u64::MAX));
        budget.give_back(10);
        assert!(budget.try_take(10));
    }
}
