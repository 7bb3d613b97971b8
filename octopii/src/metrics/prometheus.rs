//! The Prometheus exporter: the process's global recorder, scraped over
//! HTTP.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Buckets of every `_seconds` histogram: 50 µs to 10 s, a fast fsync or
/// call to a stalled one.
const SECONDS_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];
/// Buckets of `octopii_wal_records_per_fsync`: powers of two to 4096.
const RECORDS_BUCKETS: [f64; 13] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// Where this process serves its metrics, once it does.
static SERVED: Mutex<Option<SocketAddr>> = Mutex::new(None);

/// Why the Prometheus endpoint could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrometheusError {
    /// This process already serves its metrics (the recorder is global,
    /// so there is one endpoint per process).
    #[error("this process already serves its metrics on {served}")]
    AlreadyServed {
        /// The address they are served on.
        served: SocketAddr,
    },
    /// The exporter did not start: the address could not be bound, or
    /// another `metrics` recorder is installed.
    #[error("cannot serve metrics on {addr}: {reason}")]
    Start {
        /// The address asked for.
        addr: SocketAddr,
        /// What the exporter said.
        reason: String,
    },
}

/// Installs the Prometheus exporter as the process's `metrics` recorder,
/// answering scrapes (`GET` on any path, e.g. `/metrics`) on `addr`.
///
/// The exporter runs on a thread of its own, never on the caller's or a
/// node's runtime. Call it before starting nodes (see the
/// [module docs](super)). Once per process: a second call fails with
/// [`PrometheusError::AlreadyServed`].
///
/// ```no_run
/// octopii::metrics::serve_prometheus("127.0.0.1:9100".parse().unwrap()).unwrap();
/// ```
pub fn serve_prometheus(addr: SocketAddr) -> Result<(), PrometheusError> {
    let mut served = SERVED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(served) = *served {
        return Err(PrometheusError::AlreadyServed { served });
    }
    let start = |reason: String| PrometheusError::Start { addr, reason };
    // Histograms with buckets, not the exporter's default summaries:
    // buckets add up across nodes and processes.
    let builder = PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("octopii_wal_records_per_fsync".into()),
                &RECORDS_BUCKETS,
            )
        })
        .map_err(|e| start(e.to_string()))?;
    // Called outside any tokio runtime, the exporter makes one of its own
    // on its own thread; inside one, it would spawn onto the caller's.
    let installed = std::thread::scope(|scope| scope.spawn(|| builder.install()).join());
    installed
        .map_err(|_| start("the exporter panicked while starting".into()))?
        .map_err(|e| start(e.to_string()))?;
    *served = Some(addr);
    Ok(())
}

/// As [`serve_prometheus`], but content if this process already serves
/// its metrics on `addr`: every node configured with the same
/// `metrics_addr` shares the one endpoint.
pub(super) fn serve_once(addr: SocketAddr) -> Result<(), PrometheusError> {
    match serve_prometheus(addr) {
        Err(PrometheusError::AlreadyServed { served }) if served == addr => Ok(()),
        other => other,
    }
}
