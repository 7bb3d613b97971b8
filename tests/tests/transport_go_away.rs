//! The control stream a draining node opens to each peer that dialled it:
//! a go-away takes the connection out of the pool (calls on it finish),
//! anything else closes it. Spoken here by a server of the test's own, as
//! a foreign implementation following `docs/PROTOCOL.md` would.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use octopii::transport::tls::ClusterCa;
use octopii::transport::{GO_AWAY, InboundHandler, PeerConnection};
use octopii::{OctopiiNode, OctopiiRuntime};
use octopii_tests::config;

/// Answers each stream with `sent`, then sends `control` on a control
/// stream of its own.
struct Control {
    control: &'static [u8],
}

impl InboundHandler for Control {
    fn handle_stream(
        &self,
        conn: PeerConnection,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let control = self.control;
        Box::pin(async move {
            let _ = recv.read_to_end(64).await;
            send.write_all(b"sent").await.unwrap();
            send.finish().unwrap();
            // After the reply: a bad control stream closes the connection.
            let _ = send.stopped().await;
            let mut stream = conn.quinn().open_uni().await.unwrap();
            stream.write_all(control).await.unwrap();
            stream.finish().unwrap();
        })
    }
}

/// A caller that has made one exchange with a server sending `control`,
/// with the caller's pooled connection to it.
fn exchanged(control: &'static [u8]) -> (OctopiiRuntime, OctopiiNode, OctopiiNode, PeerConnection) {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let server_config = config(ca.issue_node("server", 1).unwrap());
    let server =
        OctopiiNode::with_handler(server_config, &rt, Arc::new(Control { control })).unwrap();
    let caller = OctopiiNode::new(config(ca.issue_node("caller", 2).unwrap()), &rt).unwrap();
    let conn = rt.block_on(async {
        let conn = caller.connect(server.local_addr()).await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(b"hello").await.unwrap();
        send.finish().unwrap();
        assert_eq!(recv.read_to_end(64).await.unwrap(), b"sent");
        conn
    });
    (rt, server, caller, conn)
}

#[test]
fn a_go_away_takes_the_connection_out_of_the_pool_and_leaves_it_open() {
    let (rt, server, caller, conn) = exchanged(&[GO_AWAY]);
    let addr = server.local_addr();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !conn.is_going_away() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the go-away arrives");
        assert_eq!(caller.stats().pool.going_away, 1);
        // Still open: calls already on it may finish.
        assert!(conn.is_open());
        let again = caller.connect(addr).await.unwrap();
        assert_ne!(again.quinn().stable_id(), conn.quinn().stable_id());
    });
    // The new connection replaced it in the pool.
    let stats = caller.stats().pool;
    assert_eq!((stats.handshakes, stats.going_away), (2, 0));
}

#[test]
fn a_control_stream_that_is_not_a_go_away_closes_the_connection() {
    for control in [&[7u8][..], &[GO_AWAY, GO_AWAY], &[]] {
        let (rt, _server, caller, conn) = exchanged(control);
        let closed = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), conn.quinn().closed()).await
        });
        assert!(
            matches!(closed, Ok(quinn::ConnectionError::LocallyClosed)),
            "{control:?}: {closed:?}"
        );
        assert!(!conn.is_going_away());
        assert_eq!(caller.stats().pool.open_connections, 0);
    }
}
