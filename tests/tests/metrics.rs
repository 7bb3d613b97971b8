//! The Prometheus endpoint: installed once per process (a node's
//! `metrics_addr` or `serve_prometheus`), it shows the series of every
//! layer after a chunk transfer and a raft group's proposals. In a file of
//! its own: the recorder is global to the process.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use octopii::chunk::{ChunkSource, TransferOptions};
use octopii::metrics::{PrometheusError, serve_prometheus};
use octopii::{ClusterCa, OctopiiError, OctopiiNode, OctopiiRuntime};
use octopii_tests::raft::{Cluster, put, test_raft_config};
use octopii_tests::{config, next_received};

/// A loopback port nobody listens on right now.
fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The endpoint's whole answer to an HTTP/1.0 `GET /metrics`.
fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    response
}

/// The sum of the samples of series `name` whose labels include every
/// one of `labels` (`key="value"`); `None` if there is no such sample.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let (series_labels, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.split_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            let wanted = labels
                .iter()
                .all(|label| series_labels.split(',').any(|have| have == *label));
            wanted.then(|| value.trim().parse::<f64>().ok()).flatten()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// `sample`, failing the test with the scrape when the series is absent.
fn value(text: &str, name: &str, labels: &[&str]) -> f64 {
    sample(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
}

#[test]
fn one_endpoint_per_process_shows_every_layer() {
    let addr = free_addr();
    let runtime = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();

    // The first node whose config names `metrics_addr` installs the
    // exporter; another naming the same address shares it.
    let mut sender_config = config(ca.issue_node("sender", 11).unwrap());
    sender_config.node_id = 11;
    sender_config.metrics_addr = Some(addr);
    let sender = OctopiiNode::new(sender_config.clone(), &runtime).unwrap();
    let mut receiver_config = config(ca.issue_node("receiver", 12).unwrap());
    receiver_config.node_id = 12;
    receiver_config.metrics_addr = Some(addr);
    let receiver = OctopiiNode::new(receiver_config, &runtime).unwrap();
    let mut inbox = receiver.serve_chunks().unwrap();

    // A second endpoint is refused, with a clear error and no panic.
    match serve_prometheus(free_addr()) {
        Err(PrometheusError::AlreadyServed { served }) => assert_eq!(served, addr),
        other => panic!("expected AlreadyServed, got {other:?}"),
    }
    sender_config.metrics_addr = Some(free_addr());
    match OctopiiNode::new(sender_config, &runtime) {
        Err(OctopiiError::Config { field, .. }) => assert_eq!(field, "metrics_addr"),
        other => panic!("expected a config error, got {other:?}"),
    }

    let data = vec![7u8; 100_000];
    let result = runtime
        .block_on(sender.transfer_chunk(
            ChunkSource::Memory(data.clone().into()),
            receiver.local_addr(),
            TransferOptions::to_memory("blob"),
        ))
        .unwrap();
    assert!(result.outcome.is_ok(), "{result:?}");
    next_received(&runtime, &mut inbox).outcome.unwrap();

    // A raft group (nodes 1 to 3) replicates a few writes.
    let cluster = Cluster::start(3, test_raft_config());
    let leader = cluster.leader();
    cluster.runtime.block_on(async {
        for i in 0..5 {
            put(cluster.raft(leader), &format!("k{i}"), "v")
                .await
                .unwrap();
        }
    });
    let applied = cluster.raft(leader).status().applied_index;
    for id in cluster.running() {
        cluster.wait_applied(id, applied, Duration::from_secs(5));
    }
    let commit = cluster.raft(leader).status().commit_index;
    let term = cluster.raft(leader).status().term;

    let text = scrape(addr);

    // Transport: the pair's connection, open on both ends.
    assert!(value(&text, "octopii_connections_open", &[r#"node="11""#]) >= 1.0);
    assert!(value(&text, "octopii_connections_open", &[r#"node="12""#]) >= 1.0);
    let handshakes = |node: &str, direction: &str| {
        let node = format!(r#"node="{node}""#);
        let direction = format!(r#"direction="{direction}""#);
        value(
            &text,
            "octopii_handshakes_total",
            &[&node, &direction, r#"outcome="completed""#],
        )
    };
    assert!(handshakes("11", "outbound") >= 1.0);
    assert!(handshakes("12", "inbound") >= 1.0);

    // Chunk: the 100 000 bytes, counted on each side, and one transfer each.
    let sent = [r#"node="11""#];
    assert_eq!(
        value(&text, "octopii_chunk_bytes_sent_total", &sent),
        100_000.0
    );
    let received = [r#"node="12""#];
    assert_eq!(
        value(&text, "octopii_chunk_bytes_received_total", &received),
        100_000.0
    );
    let transfers = |node: &str, direction: &str| {
        let node = format!(r#"node="{node}""#);
        let direction = format!(r#"direction="{direction}""#);
        value(
            &text,
            "octopii_chunk_transfers_total",
            &[&node, &direction, r#"outcome="ok""#],
        )
    };
    assert_eq!(transfers("11", "sent"), 1.0);
    assert_eq!(transfers("12", "received"), 1.0);

    // WAL: the raft members' logs appended and fsynced.
    assert!(value(&text, "octopii_wal_records_appended_total", &[]) >= 5.0);
    let fsyncs = value(&text, "octopii_wal_fsyncs_total", &[]);
    assert!(fsyncs >= 1.0);
    assert_eq!(
        value(&text, "octopii_wal_fsync_duration_seconds_count", &[]),
        fsyncs
    );
    assert!(
        value(
            &text,
            "octopii_wal_fsync_duration_seconds_bucket",
            &[r#"le="+Inf""#]
        ) >= 1.0
    );
    assert!(value(&text, "octopii_wal_records_per_fsync_sum", &[]) >= 5.0);

    // Raft: the leader's view, its role, and what it did.
    let node = format!(r#"node="{leader}""#);
    let leader_label = [node.as_str()];
    assert_eq!(
        value(&text, "octopii_raft_term", &leader_label),
        term as f64
    );
    assert!(value(&text, "octopii_raft_commit_index", &leader_label) >= commit as f64);
    assert!(value(&text, "octopii_raft_applied_index", &leader_label) >= applied as f64);
    assert_eq!(
        value(&text, "octopii_raft_role", &[&node, r#"role="leader""#]),
        1.0
    );
    assert_eq!(
        value(&text, "octopii_raft_role", &[&node, r#"role="follower""#]),
        0.0
    );
    assert!(value(&text, "octopii_raft_proposals_total", &leader_label) >= 5.0);
    assert!(value(&text, "octopii_raft_elections_total", &leader_label) >= 1.0);
    for kind in ["taken", "installed"] {
        let kind = format!(r#"kind="{kind}""#);
        let snapshots = sample(&text, "octopii_raft_snapshots_total", &[&node, &kind]);
        assert!(snapshots.is_some(), "no snapshot counter {kind} in\n{text}");
    }
    for id in 1..=3 {
        let node = format!(r#"node="{id}""#);
        assert!(value(&text, "octopii_raft_commit_index", &[&node]) >= 1.0);
    }
}
