//! A node says what it is doing: peers connected and lost, and callers
//! refused with their identity, are logged.

use bytes::Bytes;
use octopii::chunk::{ChunkSource, TransferOptions};
use octopii::transport::tls::{ClusterCa, Role};
use octopii::{OctopiiNode, OctopiiRuntime};
use octopii_tests::captured_logs::capture_logs;
use octopii_tests::{chunk_node, config, echo, echo_node};

#[test]
fn peers_connected_and_lost_and_refused_callers_are_logged() {
    let logs = capture_logs();

    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let server = echo_node(&ca, "server", &rt);
    let client = echo_node(&ca, "client", &rt);
    let addr = server.local_addr();
    rt.block_on(async {
        let conn = client.connect(addr).await.unwrap();
        assert_eq!(echo(&conn, b"hi").await.unwrap(), b"client:hi");
        let both = ["peer connected", "inbound", "identity=client"];
        assert!(logs.logged(&both).await, "{}", logs.text());
        let both = ["peer connected", "outbound", "identity=server"];
        assert!(logs.logged(&both).await, "{}", logs.text());

        server.shutdown().await;
        let lost = ["peer disconnected", "identity=server", "node shutting down"];
        assert!(logs.logged(&lost).await, "{}", logs.text());
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
        assert!(logs.logged(&refused).await, "{}", logs.text());
    });
}
