//! A node says what it is doing: peers connected and lost, and callers
//! refused with their identity, are logged.
//!
//! Its own test binary, because it installs the process-wide subscriber
//! (the node logs from its runtime's threads).

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use octopii::chunk::{ChunkSource, TransferOptions};
use octopii::transport::tls::{ClusterCa, Role};
use octopii::{OctopiiNode, OctopiiRuntime};
use octopii_tests::{chunk_node, config, echo, echo_node};

/// Everything logged, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Waits up to 5 s for a line containing every one of `parts`.
async fn logged(logs: &Captured, parts: &[&str]) -> bool {
    for _ in 0..500 {
        if logs
            .text()
            .lines()
            .any(|line| parts.iter().all(|part| line.contains(part)))
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[test]
fn peers_connected_and_lost_and_refused_callers_are_logged() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("octopii=info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let server = echo_node(&ca, "server", &rt);
    let client = echo_node(&ca, "client", &rt);
    let addr = server.local_addr();
    rt.block_on(async {
        let conn = client.connect(addr).await.unwrap();
        assert_eq!(echo(&conn, b"hi").await.unwrap(), b"client:hi");
        let both = ["peer connected", "inbound", "identity=client"];
        assert!(logged(&logs, &both).await, "{}", logs.text());
        let both = ["peer connected", "outbound", "identity=server"];
        assert!(logged(&logs, &both).await, "{}", logs.text());

        server.shutdown().await;
        let lost = ["peer disconnected", "identity=server", "node shutting down"];
        assert!(logged(&logs, &lost).await, "{}", logs.text());
    });

    // A certificate that names no role may not send chunks; the refusal
    // is logged with who was refused and why.
    let (store, _inbox) = chunk_node(&ca, "store", &rt, Default::default());
    let creds = ca.issue("legacy", Role::Unknown).unwrap();
    let legacy = OctopiiNode::new(config(creds), &rt).unwrap();
    rt.block_on(async {
        let source = ChunkSource::Memory(Bytes::from_static(b"data"));
        let options = TransferOptions::to_memory("blob");
        let sent = legacy
            .transfer_chunk(source, store.local_addr(), options)
            .await;
        assert!(sent.is_err(), "a certificate without a role sent chunks");
        let refused = ["refused a call", "name=legacy", "role=no role"];
        assert!(logged(&logs, &refused).await, "{}", logs.text());
    });
}
