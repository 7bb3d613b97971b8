//! Mutual TLS between nodes: identities are verified both ways, strangers,
//! expired certificates and other protocols are refused, and a refused or
//! vanished peer never stops a node from accepting others.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use octopii::transport::tls::{self, ClusterCa};
use octopii::transport::{RefusedBy, TransportError};
use octopii::{OctopiiError, OctopiiNode, OctopiiRuntime};
use octopii_tests::{Echo, config, echo, echo_node};

fn runtime() -> OctopiiRuntime {
    OctopiiRuntime::new(2).unwrap()
}

/// The error a client sees when it tries to talk to `server` as `client`.
async fn refusal(client: &OctopiiNode, server: &OctopiiNode) -> OctopiiError {
    match client.connect(server.local_addr()).await {
        Err(e) => e,
        Ok(conn) => echo(&conn, b"hello")
            .await
            .expect_err("a refused peer got a reply"),
    }
}

fn assert_tls_refusal(err: &OctopiiError) {
    assert!(
        matches!(
            err,
            OctopiiError::Transport(TransportError::HandshakeRefused { .. })
        ),
        "expected a TLS refusal, got {err:?}"
    );
}

#[test]
fn nodes_verify_each_other_and_see_the_peer_identity() {
    let rt = runtime();
    let ca = ClusterCa::generate().unwrap();
    let a = echo_node(&ca, "alpha", &rt);
    let b = echo_node(&ca, "beta", &rt);
    rt.block_on(async {
        let conn = a.connect(b.local_addr()).await.unwrap();
        assert_eq!(conn.peer().identity, "beta");
        assert!(conn.peer().verified);
        // The server side saw the client's verified name too.
        assert_eq!(echo(&conn, b"hi").await.unwrap(), b"alpha:hi");
    });
}

#[test]
fn a_node_from_another_ca_is_refused_as_client_and_as_server() {
    let rt = runtime();
    let ours = ClusterCa::generate().unwrap();
    let theirs = ClusterCa::generate().unwrap();
    let member = echo_node(&ours, "member", &rt);
    let member2 = echo_node(&ours, "member2", &rt);
    let stranger = echo_node(&theirs, "stranger", &rt);
    rt.block_on(async {
        // Stranger as client: the member refuses its certificate.
        assert_tls_refusal(&refusal(&stranger, &member).await);
        // Stranger as server: the member refuses to talk to it.
        let err = refusal(&member, &stranger).await;
        assert_tls_refusal(&err);
        assert!(
            matches!(
                err,
                OctopiiError::Transport(TransportError::HandshakeRefused {
                    by: RefusedBy::ThisNode,
                    ..
                })
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("this node"), "{err}");
        // The member still serves its own cluster.
        let conn = member2.connect(member.local_addr()).await.unwrap();
        assert_eq!(echo(&conn, b"ok").await.unwrap(), b"member2:ok");
    });
    assert!(member.stats().handshakes_failed >= 1);
}

#[test]
fn an_expired_certificate_is_refused() {
    let rt = runtime();
    let ca = ClusterCa::generate().unwrap();
    let year = Duration::from_secs(365 * 24 * 3600);
    let expired = ca
        .issue_valid(
            "old",
            tls::Role::Node { id: 1 },
            SystemTime::now() - 2 * year,
            year,
        )
        .unwrap();
    let old = OctopiiNode::with_handler(config(expired), &rt, Arc::new(Echo)).unwrap();
    let fresh = echo_node(&ca, "fresh", &rt);
    rt.block_on(async {
        assert_tls_refusal(&refusal(&old, &fresh).await);
        let err = refusal(&fresh, &old).await;
        assert_tls_refusal(&err);
        assert!(err.to_string().to_lowercase().contains("expired"), "{err}");
    });
}

#[test]
fn insecure_opt_in_connects_across_cas_without_verification() {
    let rt = runtime();
    let server_ca = ClusterCa::generate().unwrap();
    let server = echo_node(&server_ca, "server", &rt);
    let mut insecure = octopii::config::TlsConfig::from_credentials(
        ClusterCa::generate()
            .unwrap()
            .issue_node("client", 1)
            .unwrap(),
    );
    insecure.insecure_accept_any_certificate = true;
    let mut cfg = config(ClusterCa::generate().unwrap().issue_node("x", 1).unwrap());
    cfg.tls = Some(insecure);
    let client = OctopiiNode::new(cfg, &rt).unwrap();
    rt.block_on(async {
        // Our side accepts the server, unverified; the server still verifies us.
        let conn = client.connect(server.local_addr()).await.unwrap();
        assert!(!conn.peer().verified);
        assert_eq!(conn.peer().identity, "server");
        assert_tls_refusal(&echo(&conn, b"x").await.unwrap_err());
    });
}

#[test]
fn a_peer_speaking_another_alpn_is_refused_and_others_are_served() {
    let rt = runtime();
    let ca = ClusterCa::generate().unwrap();
    let server = echo_node(&ca, "server", &rt);
    let good = echo_node(&ca, "good", &rt);
    let creds = ca.issue_node("other-protocol", 1).unwrap();
    let mut client_tls = tls::client_config(&creds, false).unwrap();
    client_tls.alpn_protocols = vec![b"h3".to_vec()];
    rt.block_on(async {
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(client_tls).unwrap();
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let result = endpoint
            .connect(server.local_addr(), "server")
            .unwrap()
            .await;
        let err = result.expect_err("wrong ALPN was accepted");
        assert!(
            err.to_string().contains("ALPN") || err.to_string().contains("120"),
            "{err}"
        );
        let conn = good.connect(server.local_addr()).await.unwrap();
        assert_eq!(
            echo(&conn, b"still here").await.unwrap(),
            b"good:still here"
        );
    });
    assert!(server.stats().handshakes_failed >= 1);
}

#[test]
fn a_peer_vanishing_mid_handshake_or_sending_garbage_does_not_stop_the_node() {
    let rt = runtime();
    let ca = ClusterCa::generate().unwrap();
    let mut cfg = config(ca.issue_node("server", 1).unwrap());
    cfg.transport.handshake_timeout_ms = 300;
    let server = OctopiiNode::with_handler(cfg, &rt, Arc::new(Echo)).unwrap();
    let good = echo_node(&ca, "good", &rt);
    rt.block_on(async {
        // Garbage datagrams at the QUIC port.
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for size in [1usize, 20, 1200, 1500] {
            let junk: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
            socket.send_to(&junk, server.local_addr()).await.unwrap();
        }
        // A client that starts a handshake and then falls silent: its first
        // flight is caught on a relay socket and sent on from there, and
        // whatever the server answers to the relay is never read.
        let creds = ca.issue_node("ghost", 1).unwrap();
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(
            tls::client_config(&creds, false).unwrap(),
        )
        .unwrap();
        let relay = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut ghost = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        ghost.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
        let connecting = ghost
            .connect(relay.local_addr().unwrap(), "server")
            .unwrap();
        let mut initial = [0u8; 2048];
        let (len, _) = relay.recv_from(&mut initial).await.unwrap();
        relay
            .send_to(&initial[..len], server.local_addr())
            .await
            .unwrap();
        drop(connecting);
        drop(ghost);

        let conn = good.connect(server.local_addr()).await.unwrap();
        assert_eq!(echo(&conn, b"ping").await.unwrap(), b"good:ping");

        // The ghost's half-done handshake ends as a counted failure.
        let mut given_up = false;
        for _ in 0..500 {
            if server.stats().handshakes_failed >= 1 {
                given_up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(given_up, "the vanished handshake was never given up");
    });
}

#[test]
fn a_node_of_the_previous_protocol_version_is_named_as_such() {
    let rt = runtime();
    let ca = ClusterCa::generate().unwrap();
    let node = echo_node(&ca, "new", &rt);
    // A server of version 1, which offers ALPN `octopii`.
    let creds = ca.issue_node("old", 2).unwrap();
    let mut server_tls = tls::server_config(&creds, false).unwrap();
    server_tls.alpn_protocols = vec![b"octopii".to_vec()];
    let err = rt.block_on(async {
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(server_tls).unwrap();
        let old = quinn::Endpoint::server(
            quinn::ServerConfig::with_crypto(Arc::new(quic)),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let addr = old.local_addr().unwrap();
        tokio::spawn(async move {
            while let Some(incoming) = old.accept().await {
                let _ = incoming.await;
            }
        });
        node.connect(addr).await.unwrap_err()
    });
    match &err {
        octopii::OctopiiError::Transport(
            octopii::transport::TransportError::HandshakeRefused {
                alert: 120, reason, ..
            },
        ) => assert!(reason.contains("does not speak octopii/2"), "{reason}"),
        other => panic!("{other:?}"),
    }
}
