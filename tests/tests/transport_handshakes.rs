//! Handshakes are a budget: a flood of connection attempts that never
//! finish holds at most `transport.max_concurrent_handshakes` of them, and
//! past `transport.retry_handshakes_above` a client must prove its address
//! (QUIC Retry) before the node spends anything on it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use octopii::transport::TransportStats;
use octopii::transport::tls::{self, ClusterCa};
use octopii::{OctopiiNode, OctopiiRuntime};
use octopii_tests::{Echo, config, echo, echo_node};

/// Sends `count` first flights of handshakes to `server` that are never
/// continued: a real client's Initial packets are caught on a relay socket
/// and sent on from there, and whatever the server answers to the relay is
/// never read. Returns the relay, to keep its address bound.
async fn stalled_handshakes(
    ca: &ClusterCa,
    server: SocketAddr,
    count: usize,
) -> tokio::net::UdpSocket {
    let creds = ca.issue_node("ghost", 9).unwrap();
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(
        tls::client_config(&creds, false).unwrap(),
    )
    .unwrap();
    let relay = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut ghost = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ghost.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    let relay_addr = relay.local_addr().unwrap();
    let ghost_addr = ghost.local_addr().unwrap();
    let attempts: Vec<_> = (0..count)
        .map(|_| ghost.connect(relay_addr, "server").unwrap())
        .collect();
    // One Initial per attempt, told apart by its destination connection id
    // (a retransmission repeats it). The server's answers reach the relay
    // too and must not be counted or sent on as the ghost's.
    let mut seen = HashSet::new();
    let mut buf = [0u8; 2048];
    while seen.len() < count {
        let (len, from) = relay.recv_from(&mut buf).await.unwrap();
        if from != ghost_addr {
            continue;
        }
        let packet = &buf[..len];
        let cid_len = usize::from(packet[5]);
        if seen.insert(packet[6..6 + cid_len].to_vec()) {
            relay.send_to(packet, server).await.unwrap();
        }
    }
    drop(attempts);
    drop(ghost);
    relay
}

/// Waits up to 10 s for `done` to hold of the node's counters.
async fn wait_for(node: &OctopiiNode, done: impl Fn(&TransportStats) -> bool) -> TransportStats {
    for _ in 0..1000 {
        let stats = node.stats();
        if done(&stats) {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.stats()
}

fn server(ca: &ClusterCa, rt: &OctopiiRuntime, max: usize, retry_above: usize) -> OctopiiNode {
    let mut cfg = config(ca.issue_node("server", 1).unwrap());
    cfg.transport.max_concurrent_handshakes = max;
    cfg.transport.retry_handshakes_above = retry_above;
    cfg.transport.handshake_timeout_ms = 3_000;
    OctopiiNode::with_handler(cfg, rt, Arc::new(Echo)).unwrap()
}

#[test]
fn handshakes_beyond_the_cap_are_refused_until_the_stalled_ones_expire() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    // Retry never applies: the threshold is the cap itself.
    let server = server(&ca, &rt, 3, 3);
    let good = echo_node(&ca, "good", &rt);
    let addr = server.local_addr();
    rt.block_on(async {
        let _relay = stalled_handshakes(&ca, addr, 8).await;
        let stats = wait_for(&server, |s| s.handshakes_refused >= 5).await;
        assert_eq!(stats.handshakes_in_progress, 3, "{stats:?}");
        assert_eq!(stats.handshakes_refused, 5, "{stats:?}");
        assert_eq!(stats.handshakes_retried, 0, "{stats:?}");

        // While the stalled ones hold every slot, even a member is refused.
        assert!(good.connect(addr).await.is_err());

        // They time out, free their slots, and members get in again.
        let stats = wait_for(&server, |s| s.handshakes_in_progress == 0).await;
        assert_eq!(stats.handshakes_in_progress, 0, "{stats:?}");
        assert!(stats.handshakes_failed >= 3, "{stats:?}");
        let conn = good.connect(addr).await.unwrap();
        assert_eq!(echo(&conn, b"in").await.unwrap(), b"good:in");
    });
}

#[test]
fn past_the_threshold_clients_must_validate_their_address_first() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let server = server(&ca, &rt, 64, 2);
    let good = echo_node(&ca, "good", &rt);
    let addr = server.local_addr();
    rt.block_on(async {
        // The relay never answers the Retry: those attempts cost nothing.
        let _relay = stalled_handshakes(&ca, addr, 6).await;
        let stats = wait_for(&server, |s| s.handshakes_retried >= 4).await;
        assert_eq!(stats.handshakes_in_progress, 2, "{stats:?}");
        assert_eq!(stats.handshakes_retried, 4, "{stats:?}");
        assert_eq!(stats.handshakes_refused, 0, "{stats:?}");

        // A real client answers the Retry and is served.
        let conn = good.connect(addr).await.unwrap();
        assert_eq!(echo(&conn, b"valid").await.unwrap(), b"good:valid");
        let stats = server.stats();
        assert_eq!(stats.handshakes_retried, 5, "{stats:?}");
        assert_eq!(stats.connections_accepted, 1, "{stats:?}");
    });
}
