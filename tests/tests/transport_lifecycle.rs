//! A node lives as long as its handles: dropping the last one stops its
//! endpoint, its accept loop and the tasks started with `run`, as
//! `shutdown` does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use octopii::ClusterCa;
use octopii::{OctopiiError, OctopiiNode, OctopiiRuntime};
use octopii_tests::{echo, echo_node};

/// Sets its flag when dropped: the task holding it was ended.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Starts a task on `node` with `run` that never finishes by itself, and
/// stops waiting for it; the flag is set once the task is dropped.
async fn start_endless_task(node: &OctopiiNode) -> Arc<AtomicBool> {
    let ended = Arc::new(AtomicBool::new(false));
    let guard = SetOnDrop(ended.clone());
    let task = node.run(async move {
        let _guard = guard;
        std::future::pending::<()>().await;
        Ok(())
    });
    let waited = tokio::time::timeout(Duration::from_millis(50), task).await;
    assert!(waited.is_err(), "the endless task finished: {waited:?}");
    assert!(
        !ended.load(Ordering::SeqCst),
        "the task ended with its caller"
    );
    ended
}

/// Polls `done` for up to 5 s.
async fn eventually(done: impl Fn() -> bool) -> bool {
    for _ in 0..500 {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

#[test]
fn dropping_the_last_handle_stops_endpoint_accept_loop_and_tasks() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let server = echo_node(&ca, "server", &rt);
    let client = echo_node(&ca, "client", &rt);
    let addr = server.local_addr();
    rt.block_on(async {
        let conn = client.connect(addr).await.unwrap();
        assert_eq!(echo(&conn, b"hi").await.unwrap(), b"client:hi");
        let ended = start_endless_task(&server).await;
        let second = server.clone();
        drop(server);
        // Another handle keeps the node alive.
        assert_eq!(echo(&conn, b"still").await.unwrap(), b"client:still");
        assert!(!ended.load(Ordering::SeqCst));

        drop(second);
        assert!(
            eventually(|| ended.load(Ordering::SeqCst)).await,
            "the run task outlived the node"
        );
        // The peer is told: its connection closes at once, not at the idle timeout.
        let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
        assert!(closed.is_ok(), "the peer was not told the node stopped");
        // The port is free: another process could listen there.
        assert!(
            eventually(|| std::net::UdpSocket::bind(addr).is_ok()).await,
            "the port is still held"
        );
    });
}

#[test]
fn shutdown_ends_run_tasks_and_their_waiting_callers() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let node = echo_node(&ca, "node", &rt);
    rt.block_on(async {
        let ended = start_endless_task(&node).await;
        let waiting = tokio::time::timeout(
            Duration::from_secs(5),
            node.run(async {
                std::future::pending::<()>().await;
                Ok(())
            }),
        );
        let (result, ()) = tokio::join!(waiting, async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            node.shutdown().await;
        });
        assert!(
            matches!(result, Ok(Err(OctopiiError::Shutdown(_)))),
            "{result:?}"
        );
        assert!(
            eventually(|| ended.load(Ordering::SeqCst)).await,
            "the run task survived shutdown"
        );
    });
}
