//! Keeps quinn's tasks on Octopii's runtime.
//!
//! quinn's stock tokio runtime spawns connection drivers with `tokio::spawn`,
//! that is on whichever runtime the caller of `connect` runs on: the host
//! application's, if it dials from its own async code. This one spawns on,
//! and makes timers of, the runtime whose handle it holds.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use quinn::{AsyncTimer, AsyncUdpSocket, Runtime, TokioRuntime};
use tokio::runtime::Handle;

/// A quinn [`Runtime`] bound to one tokio runtime.
#[derive(Debug)]
pub(crate) struct PinnedRuntime(pub(crate) Handle);

impl Runtime for PinnedRuntime {
    fn new_timer(&self, at: Instant) -> Pin<Box<dyn AsyncTimer>> {
        let _inside = self.0.enter();
        TokioRuntime.new_timer(at)
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        self.0.spawn(future);
    }

    fn wrap_udp_socket(
        &self,
        socket: std::net::UdpSocket,
    ) -> std::io::Result<Arc<dyn AsyncUdpSocket>> {
        let _inside = self.0.enter();
        TokioRuntime.wrap_udp_socket(socket)
    }

    fn now(&self) -> Instant {
        let _inside = self.0.enter();
        TokioRuntime.now()
    }
}
