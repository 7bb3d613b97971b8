//! [`OctopiiRuntime`]: Octopii's own tokio thread pool.
//!
//! Octopii never runs on the host application's threads. Every node, accept
//! loop, RPC handler and transfer runs on a multi-thread tokio runtime that
//! this type owns, whose workers are named `octopii-worker-N`. A host that is
//! itself a tokio application (`#[tokio::main]`) can create, use and drop an
//! `OctopiiRuntime` from inside its own async code: the operations that tokio
//! forbids there (blocking on a future, dropping a runtime) are moved onto a
//! helper thread instead of panicking.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

use crate::{OctopiiError, Result};

/// Prefix of every Octopii worker thread's name.
pub const WORKER_THREAD_PREFIX: &str = "octopii-worker-";

/// How long a runtime dropped without [`OctopiiRuntime::shutdown`] waits for
/// its tasks to stop.
const DROP_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// An isolated multi-thread tokio runtime for Octopii's work.
///
/// ```
/// use octopii::OctopiiRuntime;
///
/// let rt = OctopiiRuntime::new(2).unwrap();
/// let name = rt.block_on(async {
///     tokio::spawn(async { std::thread::current().name().map(String::from) })
///         .await
///         .unwrap()
/// });
/// assert!(name.unwrap().starts_with("octopii-worker-"));
/// ```
#[derive(Debug)]
pub struct OctopiiRuntime {
    // `None` after shutdown has taken it, and for a runtime of the caller.
    runtime: Option<Runtime>,
    handle: Handle,
    worker_threads: usize,
}

impl OctopiiRuntime {
    /// Starts a runtime with `worker_threads` workers named `octopii-worker-N`.
    ///
    /// Works from synchronous code and from inside another tokio runtime.
    pub fn new(worker_threads: usize) -> Result<Self> {
        if worker_threads == 0 {
            return Err(OctopiiError::Config {
                field: "worker_threads",
                message: "must be at least 1".into(),
            });
        }
        let next_id = AtomicUsize::new(0);
        let runtime = Builder::new_multi_thread()
            .worker_threads(worker_threads)
            .thread_name_fn(move || {
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                format!("{WORKER_THREAD_PREFIX}{id}")
            })
            .enable_all()
            .build()?;
        Ok(OctopiiRuntime {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            worker_threads,
        })
    }

    /// Runs Octopii on a runtime the caller owns instead of threads of its
    /// own: a simulator that owns the scheduling and the clock, or a host
    /// that wants no isolation. Nodes, accept loops and handlers are
    /// spawned through `handle`; shutting this value down or dropping it
    /// leaves that runtime running.
    ///
    /// ```
    /// use octopii::OctopiiRuntime;
    ///
    /// let host = tokio::runtime::Runtime::new().unwrap();
    /// let octopii = OctopiiRuntime::from_handle(host.handle().clone());
    /// assert_eq!(octopii.block_on(async { 7 }), 7);
    /// ```
    pub fn from_handle(handle: Handle) -> Self {
        OctopiiRuntime {
            worker_threads: handle.metrics().num_workers(),
            runtime: None,
            handle,
        }
    }

    /// The number of worker threads.
    pub fn worker_threads(&self) -> usize {
        self.worker_threads
    }

    /// A handle for spawning onto this runtime from anywhere.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Spawns a task onto Octopii's workers.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// Runs `future` to completion on this runtime, blocking the caller.
    ///
    /// Meant for synchronous callers. Called from inside an async context it
    /// does not panic: the wait happens on a helper thread, but the calling
    /// thread is still blocked, so async code should prefer
    /// `runtime.spawn(future).await`.
    pub fn block_on<F>(&self, future: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        if Handle::try_current().is_err() {
            return self.handle.block_on(future);
        }
        std::thread::scope(|scope| {
            let handle = &self.handle;
            match scope.spawn(move || handle.block_on(future)).join() {
                Ok(output) => output,
                // The future itself panicked: re-raise it where it was awaited.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Stops the runtime, waiting up to `timeout` for its tasks to finish.
    ///
    /// Tasks still running when the timeout passes are abandoned. Safe to call
    /// from synchronous or async code; it blocks the calling thread until the
    /// runtime has stopped or the timeout has passed.
    pub fn shutdown(mut self, timeout: Duration) {
        if let Some(runtime) = self.runtime.take() {
            shutdown_runtime(runtime, timeout, true);
        }
    }
}

impl Drop for OctopiiRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping must not block an async caller: wait only when sync.
            let in_async = Handle::try_current().is_ok();
            shutdown_runtime(runtime, DROP_SHUTDOWN_TIMEOUT, !in_async);
        }
    }
}

/// Shuts `runtime` down with `timeout`, waiting for it when `wait` is set.
///
/// tokio panics when a runtime is shut down inside an async context, so in
/// that case the shutdown happens on a short-lived thread of its own.
fn shutdown_runtime(runtime: Runtime, timeout: Duration, wait: bool) {
    if Handle::try_current().is_err() {
        runtime.shutdown_timeout(timeout);
        return;
    }
    // The runtime travels by channel so that, if no thread can be started,
    // it is still here to stop in the background (allowed anywhere).
    let (give, take) = std::sync::mpsc::channel::<Runtime>();
    let stopper = std::thread::Builder::new()
        .name("octopii-shutdown".into())
        .spawn(move || {
            if let Ok(runtime) = take.recv() {
                runtime.shutdown_timeout(timeout);
            }
        });
    match stopper {
        Ok(thread) => match give.send(runtime) {
            Ok(()) if wait => {
                let _ = thread.join();
            }
            Ok(()) => {}
            Err(std::sync::mpsc::SendError(runtime)) => runtime.shutdown_background(),
        },
        Err(e) => {
            tracing::warn!("no thread for an orderly shutdown ({e}); stopping in the background");
            runtime.shutdown_background();
        }
    }
}

/// The message a panic was raised with, for logs and errors.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_workers_is_refused() {
        let err = OctopiiRuntime::new(0).unwrap_err();
        assert!(err.to_string().contains("worker_threads"));
    }

    #[test]
    fn shutdown_waits_for_running_tasks() {
        let rt = OctopiiRuntime::new(1).unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        rt.spawn(async move {
            tokio::task::spawn_blocking(move || {
                std::thread::sleep(Duration::from_millis(100));
                flag.store(true, Ordering::SeqCst);
            });
        });
        std::thread::sleep(Duration::from_millis(20));
        rt.shutdown(Duration::from_secs(5));
        assert!(done.load(Ordering::SeqCst));
    }
}
