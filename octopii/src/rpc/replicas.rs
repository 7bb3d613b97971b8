//! [`Replicas`]: one client over several peers that serve the same service.
//!
//! Each call goes to one peer, picked by the power of two choices: two
//! peers at random, the one with fewer calls outstanding. A peer that
//! cannot take the call (it could not be reached, or refused the call
//! before running it, or the connection broke) is skipped for a while; a
//! peer that said it is draining (a go-away) is picked only when no other
//! is left. The call moves on to another peer only if it never ran
//! ([`RpcError::never_ran`]), so it reaches one peer's handler at most
//! once. For a service where one
//! peer leads (a raft group), [`Replicas::call_leader`] goes to the peer
//! last named leader, and [`Replicas::set_leader`] follows a redirect.
//!
//! ```
//! use octopii::LocalCluster;
//! use octopii::rpc::Replicas;
//!
//! #[octopii::service]
//! pub trait Echo {
//!     async fn echo(&self, text: String) -> String;
//! }
//!
//! struct Parrot;
//! impl Echo for Parrot {
//!     async fn echo(&self, text: String) -> String {
//!         text
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = LocalCluster::new()?;
//! let client = cluster.node("client")?;
//! let mut servers = Vec::new();
//! for name in ["a", "b", "c"] {
//!     let node = cluster.node(name)?;
//!     node.serve(EchoServer::new(Parrot))?;
//!     servers.push(node);
//! }
//! let replicas = Replicas::new(&client, servers.iter().map(|n| n.local_addr()));
//! let reply = cluster.block_on(replicas.call(|c| async move {
//!     EchoClient::from_client(c).echo("hi".into()).await
//! }))?;
//! assert_eq!(reply, "hi");
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rand::Rng;
use tokio::time::Instant;

use super::{Client, Code, Connect, RpcError};

/// How long a peer that could not be reached is skipped.
pub const SKIP_UNREACHABLE: Duration = Duration::from_secs(1);

/// One client over several peers of one service. Cheap to clone: clones
/// share the peers' counts and state.
#[derive(Clone, Debug)]
pub struct Replicas {
    peers: Arc<[Peer]>,
    leader: Arc<Mutex<Option<usize>>>,
}

#[derive(Debug)]
struct Peer {
    client: Client,
    outstanding: AtomicUsize,
    skipped_until: Mutex<Option<Instant>>,
}

/// Counts a call as outstanding on its peer while it lives.
struct Outstanding<'a>(&'a Peer);

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Peer {
    fn skipped(&self, now: Instant) -> bool {
        let until = self
            .skipped_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        until.is_some_and(|until| now < until)
    }

    fn skip_for(&self, pause: Duration) {
        *self
            .skipped_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + pause);
    }
}

impl Replicas {
    /// Replicas at `peers`, called through `node`'s connections.
    pub fn new(node: &impl Connect, peers: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self::from_clients(peers.into_iter().map(|addr| Client::new(node, addr)))
    }

    /// Replicas over existing clients (with their deadlines, metadata and
    /// retry policies), one per peer.
    pub fn from_clients(clients: impl IntoIterator<Item = Client>) -> Self {
        let peers = clients
            .into_iter()
            .map(|client| Peer {
                client,
                outstanding: AtomicUsize::new(0),
                skipped_until: Mutex::new(None),
            })
            .collect();
        Replicas {
            peers,
            leader: Arc::new(Mutex::new(None)),
        }
    }

    /// The peers' addresses, in the order given.
    pub fn peers(&self) -> Vec<SocketAddr> {
        self.peers.iter().map(|p| p.client.peer()).collect()
    }

    /// Calls outstanding on the peer at `addr` right now.
    pub fn outstanding(&self, addr: SocketAddr) -> usize {
        self.peers
            .iter()
            .filter(|p| p.client.peer() == addr)
            .map(|p| p.outstanding.load(Ordering::Relaxed))
            .sum()
    }

    /// Runs `call` with the client of a peer picked by the power of two
    /// choices among those not skipped. After a failure that proves the
    /// call never ran there, or `Unavailable`, the peer is skipped for
    /// [`SKIP_UNREACHABLE`]; a call that never ran is tried on another
    /// peer. Fails with the last such error, or `Unavailable`, when no
    /// peer is left.
    pub async fn call<T, F, Fut>(&self, call: F) -> Result<T, RpcError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        self.call_from(None, call).await
    }

    /// As [`call`](Self::call), trying first the peer last named leader
    /// ([`set_leader`](Self::set_leader)), for a write to a group where
    /// one peer leads.
    pub async fn call_leader<T, F, Fut>(&self, call: F) -> Result<T, RpcError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let leader = *self.leader.lock().unwrap_or_else(PoisonError::into_inner);
        self.call_from(leader, call).await
    }

    /// As [`call`](Self::call), hedged: if no peer has answered `after`
    /// the call started, the same call also goes to another peer, and so
    /// on every `after` while peers are left; the first reply wins and the
    /// other attempts are dropped (their servers cancel them). For reads
    /// and idempotent methods only: the call may run on several peers. A
    /// failure that proves the call never ran, `Unavailable` or
    /// `ResourceExhausted` starts the next attempt at once; any other
    /// failure is the answer, as every peer would give it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # #[octopii::service] pub trait Echo { async fn echo(&self, s: String) -> String; }
    /// # async fn f(replicas: octopii::rpc::Replicas) -> Result<(), octopii::RpcError> {
    /// // A slow replica costs at most 20 ms more than the fastest other.
    /// let reply = replicas
    ///     .call_hedged(Duration::from_millis(20), |c| async move {
    ///         EchoClient::from_client(c).echo("hi".into()).await
    ///     })
    ///     .await?;
    /// # let _ = reply; Ok(()) }
    /// ```
    pub async fn call_hedged<T, F, Fut>(&self, after: Duration, call: F) -> Result<T, RpcError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let mut tried = vec![false; self.peers.len()];
        let mut running = FuturesUnordered::new();
        let mut last_error = None;
        // Each turn starts one more attempt: at first, after `after` with
        // no answer, and after a failure another peer may not share.
        loop {
            if let Some(i) = self.pick(&tried) {
                tried[i] = true;
                let peer = &self.peers[i];
                let call = call(peer.client.clone());
                running.push(async move {
                    peer.outstanding.fetch_add(1, Ordering::Relaxed);
                    let _counted = Outstanding(peer);
                    (peer, call.await)
                });
            }
            if running.is_empty() {
                return Err(last_error.unwrap_or_else(|| {
                    RpcError::new(Code::Unavailable, "no replica can be reached")
                }));
            }
            let more = tried.iter().any(|t| !t);
            tokio::select! {
                biased;
                Some((peer, result)) = running.next() => match result {
                    Err(e) if e.never_ran() || matches!(e.code(), Code::Unavailable | Code::ResourceExhausted) => {
                        if e.never_ran() || e.code() == Code::Unavailable {
                            peer.skip_for(SKIP_UNREACHABLE);
                        }
                        last_error = Some(e);
                    }
                    result => return result,
                },
                () = tokio::time::sleep(after), if more => {}
            }
        }
    }

    /// Names the peer at `addr` leader (say, from a "not the leader, try
    /// X" answer); `false` if it is not one of the peers.
    pub fn set_leader(&self, addr: SocketAddr) -> bool {
        let index = self.peers.iter().position(|p| p.client.peer() == addr);
        *self.leader.lock().unwrap_or_else(PoisonError::into_inner) = index;
        index.is_some()
    }

    /// The peer last named leader.
    pub fn leader(&self) -> Option<SocketAddr> {
        let leader = *self.leader.lock().unwrap_or_else(PoisonError::into_inner);
        leader.map(|i| self.peers[i].client.peer())
    }

    async fn call_from<T, F, Fut>(&self, first: Option<usize>, call: F) -> Result<T, RpcError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, RpcError>>,
    {
        let mut tried = vec![false; self.peers.len()];
        let mut next = first;
        let mut last_error = None;
        loop {
            let Some(i) = next.take().or_else(|| self.pick(&tried)) else {
                return Err(last_error.unwrap_or_else(|| {
                    RpcError::new(Code::Unavailable, "no replica can be reached")
                }));
            };
            tried[i] = true;
            let peer = &self.peers[i];
            peer.outstanding.fetch_add(1, Ordering::Relaxed);
            let _counted = Outstanding(peer);
            match call(peer.client.clone()).await {
                // It never reached the peer's handler: safe elsewhere.
                Err(e) if e.never_ran() => {
                    peer.skip_for(SKIP_UNREACHABLE);
                    last_error = Some(e);
                }
                Err(e) if e.code() == Code::Unavailable => {
                    peer.skip_for(SKIP_UNREACHABLE);
                    return Err(e);
                }
                result => return result,
            }
        }
    }

    /// Two untried, unskipped peers at random, the one with fewer calls
    /// outstanding; a lone candidate; or `None`.
    fn pick(&self, tried: &[bool]) -> Option<usize> {
        let now = Instant::now();
        let mut candidates: Vec<usize> = (0..self.peers.len())
            .filter(|&i| !tried[i] && !self.peers[i].skipped(now))
            .collect();
        // Peers that said they are draining only when no other is left.
        let staying: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| !self.peers[i].client.peer_going_away())
            .collect();
        if !staying.is_empty() {
            candidates = staying;
        }
        let mut rng = rand::thread_rng();
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0]),
            n => {
                let a = candidates[rng.gen_range(0..n)];
                let mut b = candidates[rng.gen_range(0..n - 1)];
                if b == a {
                    b = candidates[n - 1];
                }
                let load = |i: usize| self.peers[i].outstanding.load(Ordering::Relaxed);
                Some(if load(b) < load(a) { b } else { a })
            }
        }
    }
}
