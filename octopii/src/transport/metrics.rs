//! The transport's series in the process's `metrics` recorder (see
//! `docs/ARCHITECTURE.md`, "Metrics"). Handles are made once per node, so
//! recording is an atomic add.

use metrics::{Counter, Gauge, counter, gauge};

/// A node's connection and handshake series, labelled with its id.
#[derive(Debug)]
pub(crate) struct TransportMetrics {
    connections_open: Gauge,
    inbound_completed: Counter,
    inbound_failed: Counter,
    inbound_refused: Counter,
    outbound_completed: Counter,
    outbound_failed: Counter,
}

impl TransportMetrics {
    pub(crate) fn new(node: u64) -> Self {
        let node = node.to_string();
        let handshakes = |direction: &'static str, outcome: &'static str| {
            counter!(
                "octopii_handshakes_total",
                "node" => node.clone(),
                "direction" => direction,
                "outcome" => outcome
            )
        };
        TransportMetrics {
            inbound_completed: handshakes("inbound", "completed"),
            inbound_failed: handshakes("inbound", "failed"),
            inbound_refused: handshakes("inbound", "refused"),
            outbound_completed: handshakes("outbound", "completed"),
            outbound_failed: handshakes("outbound", "failed"),
            connections_open: gauge!("octopii_connections_open", "node" => node),
        }
    }

    pub(crate) fn inbound(&self, completed: bool) {
        let counter = if completed {
            &self.inbound_completed
        } else {
            &self.inbound_failed
        };
        counter.increment(1);
    }

    pub(crate) fn outbound(&self, completed: bool) {
        let counter = if completed {
            &self.outbound_completed
        } else {
            &self.outbound_failed
        };
        counter.increment(1);
    }

    /// An attempt refused before any TLS work (too many handshakes).
    pub(crate) fn refused(&self) {
        self.inbound_refused.increment(1);
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub(crate) fn open_connection(&self) -> OpenConnection {
        self.connections_open.increment(1.0);
        OpenConnection(self.connections_open.clone())
    }
}

/// One open connection in `octopii_connections_open`, until dropped.
pub(crate) struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
