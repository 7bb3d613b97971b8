//! [`LocalCluster`]: nodes on loopback in one process, for examples, tests
//! and experiments, in one line each.
//!
//! It is the real setup, shortened, not a different one: a fresh
//! [`ClusterCa`], one [`OctopiiRuntime`], and for each node a certificate
//! with the next raft id, a [`Config`] on `127.0.0.1:0` and an
//! [`OctopiiNode`]. Nodes talk QUIC with mutual TLS as in production.
//! What a node needs beyond that (a data directory, limits, a `[raft]`
//! section) goes on the [`ConfigBuilder`] that
//! [`config`](LocalCluster::config) returns.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::ConfigBuilder;
use crate::identity::NodeCredentials;
use crate::{ClusterCa, Config, OctopiiNode, OctopiiRuntime, Result};

/// Worker threads of a local cluster's runtime.
const WORKER_THREADS: usize = 2;

/// A certificate authority and a runtime that start loopback nodes.
///
/// ```
/// use octopii::LocalCluster;
///
/// #[octopii::service]
/// pub trait Echo {
///     async fn echo(&self, text: String) -> String;
/// }
///
/// struct Parrot;
/// impl Echo for Parrot {
///     async fn echo(&self, text: String) -> String {
///         text
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cluster = LocalCluster::new()?;
/// let (alice, bob) = (cluster.node("alice")?, cluster.node("bob")?);
/// assert_eq!((alice.id(), bob.id()), (1, 2));
/// bob.serve(EchoServer::new(Parrot))?;
/// let echo = EchoClient::new(&alice, bob.local_addr());
/// assert_eq!(cluster.block_on(echo.echo("hi".into()))?, "hi");
/// # Ok(())
/// # }
/// ```
///
/// Without it, the same two nodes take:
///
/// ```
/// use octopii::{ClusterCa, Config, OctopiiNode, OctopiiRuntime};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let runtime = OctopiiRuntime::new(2)?;
/// let ca = ClusterCa::generate()?;
/// let node = |name: &str, id: u64| -> Result<OctopiiNode, Box<dyn std::error::Error>> {
///     let config = Config::builder()
///         .node_id(id)
///         .bind_addr(([127, 0, 0, 1], 0).into())
///         .credentials(ca.issue_node(name, id)?)
///         .build()?;
///     Ok(OctopiiNode::new(config, &runtime)?)
/// };
/// let (alice, bob) = (node("alice", 1)?, node("bob", 2)?);
/// # let _ = (alice, bob);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct LocalCluster {
    ca: ClusterCa,
    runtime: OctopiiRuntime,
    next_id: AtomicU64,
}

impl LocalCluster {
    /// A fresh CA and a runtime of two worker threads.
    pub fn new() -> Result<Self> {
        Ok(LocalCluster {
            ca: ClusterCa::generate()?,
            runtime: OctopiiRuntime::new(WORKER_THREADS)?,
            next_id: AtomicU64::new(1),
        })
    }

    /// Starts a node named `name` with the next raft id (1, 2, …) on an
    /// ephemeral loopback port.
    pub fn node(&self, name: &str) -> Result<OctopiiNode> {
        self.start(self.config(name)?.build()?)
    }

    /// The configuration [`node`](Self::node) would start with, to change
    /// before [`start`](Self::start): node id and certificate (the next
    /// raft id), loopback address, defaults elsewhere.
    pub fn config(&self, name: &str) -> Result<ConfigBuilder> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Ok(loopback(self.ca.issue_node(name, id)?).node_id(id))
    }

    /// Starts a loopback node that presents `credentials` (from
    /// [`ca`](Self::ca): a client's or an admin's, say) instead of a node
    /// certificate of its own.
    pub fn node_with(&self, credentials: NodeCredentials) -> Result<OctopiiNode> {
        self.start(loopback(credentials).build()?)
    }

    /// Starts a node with `config`, on this cluster's runtime.
    pub fn start(&self, config: Config) -> Result<OctopiiNode> {
        OctopiiNode::new(config, &self.runtime)
    }

    /// The cluster's certificate authority, to issue clients, admins and
    /// certificates for nodes of other processes.
    pub fn ca(&self) -> &ClusterCa {
        &self.ca
    }

    /// The runtime the nodes run on.
    pub fn runtime(&self) -> &OctopiiRuntime {
        &self.runtime
    }

    /// Runs `future` to completion on the cluster's runtime.
    pub fn block_on<F>(&self, future: F) -> F::Output
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        self.runtime.block_on(future)
    }
}

/// A node on an ephemeral loopback port presenting `credentials`.
fn loopback(credentials: NodeCredentials) -> ConfigBuilder {
    Config::builder()
        .bind_addr(([127, 0, 0, 1], 0).into())
        .credentials(credentials)
}
