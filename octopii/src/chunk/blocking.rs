//! Where the chunk layer's file and hashing work runs: on a blocking
//! thread, never on the threads that drive QUIC connections, unless it
//! costs less where it is asked for (one buffer or less in memory) or its
//! file system never blocks (memory, as a simulation's disk is, so the
//! simulation schedules the work).

/// Runs `job` on a blocking thread, or here if it is `inline`.
pub(crate) async fn run_blocking<T: Send + 'static>(
    inline: bool,
    job: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    if inline {
        return job();
    }
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| format!("blocking thread failed: {e}"))?
}
