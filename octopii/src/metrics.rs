//! What Octopii records through the [`metrics`] facade, and a
//! Prometheus scrape endpoint for it.
//!
//! Every layer records into the process's global `metrics` recorder:
//! connections and handshakes, bulk transfers, WAL appends and fsyncs,
//! raft's term, role, indexes, proposals, elections and snapshots.
//! `docs/ARCHITECTURE.md` ("Metrics") lists each series with its type,
//! labels and meaning; all are named `octopii_…` and, where a node is at
//! hand, labelled `node="<node id>"`, since several nodes may share a
//! process (and its recorder).
//!
//! Install a recorder before starting nodes, WALs or raft members: each
//! takes its metric handles when it starts, and with no recorder then, it
//! records nothing for the rest of its life (at the cost of an atomic
//! add). Any `metrics` recorder works; with the `prometheus` feature,
//! `serve_prometheus` installs one that serves the Prometheus text
//! format over HTTP, and so does a node whose [`Config::metrics_addr`] is
//! set.

#[cfg(feature = "prometheus")]
mod prometheus;

#[cfg(feature = "prometheus")]
pub use prometheus::{PrometheusError, serve_prometheus};

use crate::{Config, Result};

/// Serves the process's metrics where `config` asks, unless a node of
/// this process already serves them there.
pub(crate) fn serve_configured(config: &Config) -> Result<()> {
    #[cfg(feature = "prometheus")]
    if let Some(addr) = config.metrics_addr {
        // A config refused later must not leave an endpoint behind.
        config.validate()?;
        prometheus::serve_once(addr).map_err(|e| crate::OctopiiError::Config {
            field: "metrics_addr",
            message: e.to_string(),
        })?;
    }
    // Without the feature, `Config::validate` refuses `metrics_addr`.
    #[cfg(not(feature = "prometheus"))]
    let _ = config;
    Ok(())
}
