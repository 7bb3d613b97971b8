//! The connection pool: one shared connection per peer, re-dialled after
//! it closes; bad start-up configuration fails with a clear message.

use std::time::Duration;

use octopii::ClusterCa;
use octopii::identity::{CredentialsError, PemItem};
use octopii::transport::TransportError;
use octopii::{Config, OctopiiError, OctopiiNode, OctopiiRuntime};
use octopii_tests::{config, echo, echo_node};

#[test]
fn concurrent_first_dials_share_one_handshake() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let server = echo_node(&ca, "server", &rt);
    let client = echo_node(&ca, "client", &rt);
    let addr = server.local_addr();
    let replies = rt.block_on(async {
        let calls = (0..50).map(|i| {
            let client = client.clone();
            async move {
                let conn = client.connect(addr).await?;
                echo(&conn, format!("{i}").as_bytes()).await
            }
        });
        futures::future::join_all(calls).await
    });
    for (i, reply) in replies.into_iter().enumerate() {
        assert_eq!(reply.unwrap(), format!("client:{i}").into_bytes());
    }
    let stats = client.stats().pool;
    assert_eq!(stats.handshakes, 1);
    assert_eq!(stats.open_connections, 1);
    assert_eq!(server.stats().connections_accepted, 1);
}

#[test]
fn a_closed_connection_is_evicted_and_redialled() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let server = echo_node(&ca, "server", &rt);
    let client = echo_node(&ca, "client", &rt);
    let addr = server.local_addr();
    rt.block_on(async {
        let first = client.connect(addr).await.unwrap();
        first.quinn().close(0u32.into(), b"test closes it");
        assert_eq!(client.stats().pool.open_connections, 0);
        let second = client.connect(addr).await.unwrap();
        assert!(second.is_open());
        assert_ne!(first.quinn().stable_id(), second.quinn().stable_id());
        assert_eq!(echo(&second, b"again").await.unwrap(), b"client:again");
    });
    let stats = client.stats().pool;
    assert_eq!((stats.handshakes, stats.open_connections), (2, 1));
}

#[test]
fn a_peer_that_went_away_is_redialled_when_it_returns() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let client = echo_node(&ca, "client", &rt);
    let server = echo_node(&ca, "server", &rt);
    let addr = server.local_addr();
    rt.block_on(async {
        let conn = client.connect(addr).await.unwrap();
        assert_eq!(echo(&conn, b"1").await.unwrap(), b"client:1");
        server.shutdown().await;
        // The client learns of the close and the pool drops the connection.
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
        assert_eq!(client.stats().pool.open_connections, 0);
    });
    // A new node on the same address.
    let mut cfg = config(ca.issue_node("server", 1).unwrap());
    cfg.bind_addr = addr;
    let again =
        OctopiiNode::with_handler(cfg, &rt, std::sync::Arc::new(octopii_tests::Echo)).unwrap();
    rt.block_on(async {
        let conn = client.connect(again.local_addr()).await.unwrap();
        assert_eq!(echo(&conn, b"2").await.unwrap(), b"client:2");
    });
    assert_eq!(client.stats().pool.handshakes, 2);
}

#[test]
fn dialling_nobody_times_out_with_a_typed_error() {
    let rt = OctopiiRuntime::new(1).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let mut cfg = config(ca.issue_node("lonely", 1).unwrap());
    cfg.transport.handshake_timeout_ms = 200;
    let node = OctopiiNode::new(cfg, &rt).unwrap();
    // A bound UDP socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let err = rt
        .block_on(node.connect(silent.local_addr().unwrap()))
        .unwrap_err();
    let silent = silent.local_addr().unwrap();
    assert!(
        matches!(
            err,
            OctopiiError::Transport(TransportError::HandshakeTimeout { addr, after })
                if addr == silent && after == Duration::from_millis(200)
        ),
        "{err:?}"
    );
    assert_eq!(node.stats().pool.handshakes, 0);
}

#[test]
fn a_peer_that_cannot_be_reached_is_dialled_again_only_after_a_backoff() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let mut cfg = config(ca.issue_node("caller", 1).unwrap());
    cfg.transport.handshake_timeout_ms = 100;
    cfg.transport.redial_backoff_initial_ms = 200;
    cfg.transport.redial_backoff_max_ms = 400;
    let node = OctopiiNode::new(cfg, &rt).unwrap();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    rt.block_on(async {
        let first = node.connect(addr).await.unwrap_err();
        assert!(
            matches!(
                first,
                OctopiiError::Transport(TransportError::HandshakeTimeout { .. })
            ),
            "{first:?}"
        );
        // Held back: refused at once, without a handshake.
        let started = tokio::time::Instant::now();
        let held = node.connect(addr).await.unwrap_err();
        assert!(
            matches!(
                held,
                OctopiiError::Transport(TransportError::Backoff { failures: 1, next_dial_in, .. })
                    if next_dial_in <= Duration::from_millis(200)
            ),
            "{held:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(100));
        // The peer comes up at that address: once the pause has passed,
        // the next dial reaches it.
        drop(silent);
        let mut server_cfg = config(ca.issue_node("server", 2).unwrap());
        server_cfg.bind_addr = addr;
        let server =
            OctopiiNode::with_handler(server_cfg, &rt, std::sync::Arc::new(octopii_tests::Echo))
                .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let conn = node.connect(addr).await.unwrap();
        assert_eq!(echo(&conn, b"up").await.unwrap(), b"caller:up");
        drop(server);
    });
}

#[test]
fn an_unusable_bind_address_fails_at_start_naming_the_field() {
    let rt = OctopiiRuntime::new(1).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cfg = config(ca.issue_node("n", 1).unwrap());
    cfg.bind_addr = taken.local_addr().unwrap();
    let err = OctopiiNode::new(cfg, &rt).unwrap_err();
    assert!(
        matches!(
            err,
            OctopiiError::Config {
                field: "bind_addr",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn unreadable_or_invalid_certificates_fail_at_start_naming_the_file() {
    let rt = OctopiiRuntime::new(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not PEM").unwrap();
    let toml = format!(
        "[tls]\nca_cert = {:?}\ncert = {:?}\nkey = {:?}\n",
        missing, missing, missing
    );
    let cfg = Config::from_toml_str(&toml).unwrap();
    let err = OctopiiNode::new(cfg, &rt).unwrap_err();
    assert!(
        matches!(
            &err,
            OctopiiError::Credentials(CredentialsError::ReadFile { path, source })
                if path == &missing && source.kind() == std::io::ErrorKind::NotFound
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing.pem"), "{err}");

    let toml = format!(
        "[tls]\nca_cert = {:?}\ncert = {:?}\nkey = {:?}\n",
        garbage, garbage, garbage
    );
    let err = OctopiiNode::new(Config::from_toml_str(&toml).unwrap(), &rt).unwrap_err();
    assert!(
        matches!(
            &err,
            OctopiiError::Credentials(CredentialsError::Pem { path: Some(path), what: PemItem::CaCertificate, .. })
                if path.ends_with("garbage.pem")
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("garbage.pem"), "{err}");
}
