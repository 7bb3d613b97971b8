//! Bulk transfer's series in the process's `metrics` recorder (see
//! `docs/ARCHITECTURE.md`, "Metrics"). Handles are made once per node or
//! service, so recording is an atomic add.

use metrics::{Counter, Label, counter};

use super::TransferResult;

/// Bytes and transfers, each side labelled with the node id when known.
#[derive(Debug)]
pub(crate) struct ChunkMetrics {
    bytes_sent: Counter,
    bytes_received: Counter,
    sent_ok: Counter,
    sent_failed: Counter,
    received_ok: Counter,
    received_failed: Counter,
}

impl ChunkMetrics {
    /// Series labelled `node="<node>"`, or unlabelled for a service built
    /// without a node id.
    pub(crate) fn new(node: Option<u64>) -> Self {
        let node: Vec<Label> = node
            .map(|id| Label::new("node", id.to_string()))
            .into_iter()
            .collect();
        let transfers = |direction: &'static str, outcome: &'static str| {
            let mut labels = node.clone();
            labels.push(Label::new("direction", direction));
            labels.push(Label::new("outcome", outcome));
            counter!("octopii_chunk_transfers_total", labels)
        };
        ChunkMetrics {
            sent_ok: transfers("sent", "ok"),
            sent_failed: transfers("sent", "failed"),
            received_ok: transfers("received", "ok"),
            received_failed: transfers("received", "failed"),
            bytes_sent: counter!("octopii_chunk_bytes_sent_total", node.clone()),
            bytes_received: counter!("octopii_chunk_bytes_received_total", node),
        }
    }

    /// One peer's attempt of a send, ended.
    pub(crate) fn sent(&self, result: &TransferResult) {
        self.bytes_sent.increment(result.bytes_transferred);
        let transfers = match result.outcome {
            Ok(()) => &self.sent_ok,
            Err(_) => &self.sent_failed,
        };
        transfers.increment(1);
    }

    /// A transfer being received; counted as failed unless marked
    /// [`delivered`](Receiving::delivered) before it is dropped, so every
    /// way out (refusal, broken stream, cancellation) is counted.
    pub(crate) fn receiving(&self) -> Receiving<'_> {
        Receiving {
            metrics: self,
            bytes: 0,
            delivered: false,
        }
    }
}

/// One transfer being received, recorded when dropped.
pub(crate) struct Receiving<'a> {
    metrics: &'a ChunkMetrics,
    bytes: u64,
    delivered: bool,
}

impl Receiving<'_> {
    /// The data bytes this attempt received.
    pub(crate) fn received(&mut self, bytes: u64) {
        self.bytes = bytes;
    }

    /// The data was verified and is in place.
    pub(crate) fn delivered(&mut self) {
        self.delivered = true;
    }
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        let metrics = self.metrics;
        metrics.bytes_received.increment(self.bytes);
        let transfers = if self.delivered {
            &metrics.received_ok
        } else {
            &metrics.received_failed
        };
        transfers.increment(1);
    }
}
