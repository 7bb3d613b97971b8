//! A peer that falls silent (gone, or restarted behind a stale
//! connection) is found by the calls that time out on it: once calls have
//! heard nothing for at least 200 ms, the connection is closed and the
//! next call dials afresh, even when each call alone is shorter than that
//! (raft's calls last a few ticks). Simulated network, paused clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use octopii::config::TransportConfig;
use octopii::rpc::Code;
use octopii::{ClusterCa, Config, OctopiiNode, OctopiiRuntime};
use octopii_tests::sim::net::SimNet;
use octopii_tests::sim::registers::{RegistersClient, RegistersServer, Store};

fn node(net: &SimNet, ca: &ClusterCa, id: u64) -> OctopiiNode {
    let addr = SocketAddr::from(([10, 0, 0, id as u8], 7000));
    let config = Config::builder()
        .node_id(id)
        .bind_addr(addr)
        .credentials(ca.issue_node(&format!("n{id}"), id).unwrap())
        .transport(TransportConfig {
            rng_seed: Some(id),
            ..TransportConfig::default()
        })
        .build()
        .unwrap();
    let runtime = OctopiiRuntime::from_handle(tokio::runtime::Handle::current());
    OctopiiNode::with_socket(config, &runtime, net.socket(addr)).unwrap()
}

/// Handshakes the client has made after `silent_calls` calls of 100 ms
/// that the server does not answer, then one answered call.
fn handshakes_after(silent_calls: usize) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let ca = ClusterCa::generate().unwrap();
    runtime.block_on(async {
        let net = SimNet::new(1);
        let server = node(&net, &ca, 1);
        server
            .serve(RegistersServer::from_arc(Arc::new(Store::default())))
            .unwrap();
        let client = node(&net, &ca, 2);
        let stub = RegistersClient::new(&client, server.local_addr())
            .with_deadline(Duration::from_millis(100));
        stub.get("k".into()).await.unwrap().unwrap();
        // Nothing comes back from the server, not even acknowledgements.
        net.cut(server.local_addr(), client.local_addr());
        for _ in 0..silent_calls {
            let err = stub.get("k".into()).await.unwrap_err();
            assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
        }
        net.heal();
        stub.get("k".into()).await.unwrap().unwrap();
        let handshakes = client.stats().pool.handshakes;
        client.shutdown().await;
        server.shutdown().await;
        handshakes
    })
}

#[test]
fn calls_that_hear_nothing_for_200_ms_replace_the_connection() {
    // 100 ms of silence: the connection may just be slow, it is kept.
    assert_eq!(handshakes_after(1), 1);
    // 300 ms over three calls: replaced, the last call dialled afresh.
    assert_eq!(handshakes_after(3), 2);
}
