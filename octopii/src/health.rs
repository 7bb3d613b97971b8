//! The built-in `Health` service: whether a node, or one service on it,
//! is serving, for scripts, load balancers and `octopii health`.
//!
//! Every node started with [`OctopiiNode::new`](crate::OctopiiNode::new)
//! serves it. A service the node [`serve`](crate::OctopiiNode::serve)s is
//! [`Serving`](ServingStatus::Serving) until the application says otherwise
//! with [`OctopiiNode::set_serving`](crate::OctopiiNode::set_serving); the
//! empty name asks about the node as a whole.
//!
//! ```
//! use octopii::health::{HealthClient, ServingStatus};
//! use octopii::LocalCluster;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = LocalCluster::new()?;
//! let (node, prober) = (cluster.node("node")?, cluster.node("prober")?);
//! let health = HealthClient::new(&prober, node.local_addr());
//! assert_eq!(cluster.block_on(health.check(String::new()))?, ServingStatus::Serving);
//! node.set_serving("", false);
//! assert_eq!(cluster.block_on(health.check(String::new()))?, ServingStatus::NotServing);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::rpc::Policy;

/// Whether a node or a service serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServingStatus {
    /// It takes calls.
    Serving,
    /// It is there but takes no calls now (starting, draining, told so).
    NotServing,
    /// The node serves no service of that name.
    Unknown,
}

/// The health of a node's services.
#[crate::service]
pub trait Health {
    /// The status of `service`, or of the node as a whole for `""`.
    async fn check(&self, service: String) -> ServingStatus;
}

/// What a node says of itself and of each of its services.
#[derive(Debug, Clone)]
pub(crate) struct HealthState(Arc<RwLock<BTreeMap<String, bool>>>);

impl HealthState {
    /// A node that serves, with no services yet.
    pub(crate) fn new() -> Self {
        HealthState(Arc::new(RwLock::new(BTreeMap::from([(
            String::new(),
            true,
        )]))))
    }

    /// Records whether `service` (`""`: the node) serves.
    pub(crate) fn set(&self, service: &str, serving: bool) {
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        map.insert(service.to_owned(), serving);
    }

    fn status(&self, service: &str) -> ServingStatus {
        let map = self.0.read().unwrap_or_else(PoisonError::into_inner);
        match map.get(service) {
            // A node that does not serve serves none of its services.
            Some(true) if map.get("") == Some(&true) => ServingStatus::Serving,
            Some(_) => ServingStatus::NotServing,
            None => ServingStatus::Unknown,
        }
    }

    /// The service that answers from this state, to any certificate the
    /// cluster issued (nodes, clients, admins): probes run as clients.
    pub(crate) fn server(&self) -> crate::rpc::Authorized<HealthServer<HealthState>> {
        HealthServer::new(self.clone()).authorize(Policy::any_role())
    }
}

impl Health for HealthState {
    async fn check(&self, service: String) -> ServingStatus {
        self.status(&service)
    }
}
