//! What a peer can make a node hold is bounded: bytes of incomplete frames,
//! call permits (per peer, and raft's own pool), time spent waiting on a
//! slow or idle caller, and the cost of decoding deeply nested arguments.
//! Each test acts as the peer that tries to take more.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use octopii::ClusterCa;
use octopii::codec;
use octopii::rpc::{self, Client, Code, Context, HandlerFuture, Service};
use octopii::transport::PeerConnection;
use octopii::{Config, OctopiiNode, OctopiiRuntime, Streaming};
use octopii_tests::logs::{LogLine, LogsClient, logs_cluster};
use octopii_tests::{config, request_frames};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

/// A type that contains itself, like a JSON value.
#[derive(Debug, Serialize, Deserialize)]
enum Tree {
    Leaf,
    Node(Vec<Tree>),
}

/// Handlers that hold their permit until the test releases them.
struct Hold {
    name: &'static str,
    running: Arc<AtomicUsize>,
    release: Arc<Semaphore>,
}

impl Service for Hold {
    fn name(&self) -> &'static str {
        self.name
    }
    fn methods(&self) -> &'static [&'static str] {
        &["hold", "echo", "depth"]
    }
    fn call(&self, method: &str, _ctx: Context, args: Bytes) -> HandlerFuture {
        let (running, release) = (self.running.clone(), self.release.clone());
        match method {
            "hold" => Box::pin(async move {
                running.fetch_add(1, Ordering::SeqCst);
                let _ = release.acquire().await.map(|p| p.forget());
                running.fetch_sub(1, Ordering::SeqCst);
                rpc::encode_output(&())
            }),
            "echo" => Box::pin(async move {
                let (s,): (String,) = rpc::decode_args(&args)?;
                rpc::encode_output(&s)
            }),
            "depth" => Box::pin(async move {
                let (tree,): (Tree,) = rpc::decode_args(&args)?;
                rpc::encode_output(&matches!(tree, Tree::Node(_)))
            }),
            other => rpc::unimplemented(self.name, other),
        }
    }
}

struct Cluster {
    rt: OctopiiRuntime,
    server: OctopiiNode,
    clients: Vec<OctopiiNode>,
    running: Arc<AtomicUsize>,
    release: Arc<Semaphore>,
}

/// A server (its config tuned by `edit`) serving `Hold` as `Test` and as
/// `RaftService`, and `clients` client nodes, each with its own certificate.
fn cluster(clients: usize, edit: impl Fn(&mut Config)) -> Cluster {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let mut cfg = config(ca.issue_node("server", 1).unwrap());
    edit(&mut cfg);
    cfg.validate().unwrap();
    let server = OctopiiNode::new(cfg, &rt).unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Semaphore::new(0));
    for name in ["Test", "RaftService"] {
        server
            .serve(Hold {
                name,
                running: running.clone(),
                release: release.clone(),
            })
            .unwrap();
    }
    let clients = (0..clients)
        .map(|i| {
            let creds = ca.issue_client(&format!("client-{i}")).unwrap();
            OctopiiNode::new(config(creds), &rt).unwrap()
        })
        .collect();
    Cluster {
        rt,
        server,
        clients,
        running,
        release,
    }
}

impl Cluster {
    fn rpc(&self, client: usize) -> Client {
        Client::new(&self.clients[client], self.server.local_addr())
    }

    async fn conn(&self, client: usize) -> PeerConnection {
        self.clients[client]
            .connect(self.server.local_addr())
            .await
            .unwrap()
    }

    async fn echo(&self, client: usize) -> Result<String, rpc::RpcError> {
        self.rpc(client).call("Test", "echo", &("alive",)).await
    }

    /// Starts `n` `hold` calls of `service` from `client` and waits until
    /// all of them run.
    async fn hold(&self, client: usize, service: &'static str, n: usize) -> Vec<HeldCall> {
        let before = self.running.load(Ordering::SeqCst);
        let calls = (0..n)
            .map(|_| {
                let rpc = self.rpc(client);
                tokio::spawn(async move { rpc.call::<_, ()>(service, "hold", &()).await })
            })
            .collect();
        wait_for(|| self.running.load(Ordering::SeqCst) == before + n).await;
        calls
    }
}

type HeldCall = tokio::task::JoinHandle<Result<(), rpc::RpcError>>;

async fn wait_for(condition: impl Fn() -> bool) {
    for _ in 0..1000 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never became true");
}

/// Reads one response frame: (code, body).
async fn read_response(recv: &mut quinn::RecvStream) -> (u8, String) {
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await.unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(prefix) as usize];
    recv.read_exact(&mut payload).await.unwrap();
    (
        payload[0],
        String::from_utf8_lossy(&payload[1..]).into_owned(),
    )
}

const MIB: u32 = 1024 * 1024;

#[test]
fn incomplete_frames_are_held_within_the_connection_and_node_budgets() {
    let c = cluster(2, |cfg| {
        cfg.transport.max_frame_size = MIB;
        cfg.rpc.max_incomplete_frame_bytes_per_connection = 4 * MIB as u64;
        cfg.rpc.max_incomplete_frame_bytes = 6 * MIB as u64;
        // The stalled streams are not timed out during the test.
        cfg.rpc.request_read_timeout_ms = 600_000;
    });
    c.rt.block_on(async {
        // Each stream announces a frame of 1 MiB, sends 64 KiB of it, and
        // stalls: first five streams from one peer (the fifth is over its
        // connection's budget), then five from another (three are over the
        // node's).
        let mut conns = Vec::new();
        let mut answers = futures::stream::FuturesUnordered::new();
        for (client, refused, held) in [(0, 1, 4 * MIB as u64), (1, 4, 6 * MIB as u64)] {
            let conn = c.conn(client).await;
            for _ in 0..5 {
                let (mut send, mut recv) = conn.open_bi().await.unwrap();
                send.write_all(&MIB.to_be_bytes()).await.unwrap();
                send.write_all(&vec![0u8; 64 * 1024]).await.unwrap();
                answers.push(async move {
                    let answer = read_response(&mut recv).await;
                    (answer, send.stopped().await.unwrap())
                });
            }
            wait_for(|| c.server.rpc_stats().frames_over_budget == refused).await;
            wait_for(|| c.server.rpc_stats().incomplete_frame_bytes == held).await;
            conns.push(conn);
        }
        // The refused streams are told why, and stopped with code 2; the
        // others are still being read.
        let refusals = tokio::time::timeout(
            Duration::from_secs(10),
            answers.by_ref().take(4).collect::<Vec<_>>(),
        );
        let mut scopes: Vec<_> = refusals
            .await
            .expect("four streams refused")
            .into_iter()
            .map(|((code, message), stop)| {
                assert_eq!(code, Code::ResourceExhausted.to_wire(), "{message}");
                assert_eq!(stop, Some(2u32.into()));
                message.contains("connection's")
            })
            .collect();
        scopes.sort();
        assert_eq!(scopes, [false, false, false, true]);
        assert_eq!(c.server.rpc_stats().incomplete_frame_bytes, 6 * MIB as u64);
        // Every caller, the greedy ones included, is still served.
        assert_eq!(c.echo(0).await.unwrap(), "alive");
        assert_eq!(c.echo(1).await.unwrap(), "alive");
        // Streams that go away give their bytes back.
        drop(answers);
        for conn in &conns {
            conn.quinn().close(0u32.into(), b"done");
        }
        wait_for(|| c.server.rpc_stats().incomplete_frame_bytes == 0).await;
    });
}

#[test]
fn a_request_begun_and_stalled_is_given_up_after_the_read_timeout() {
    let c = cluster(1, |cfg| cfg.rpc.request_read_timeout_ms = 200);
    c.rt.block_on(async {
        let conn = c.conn(0).await;
        // Half a header frame, then nothing.
        let whole = request_frames("Test", "echo", &codec::encode(&("x",)).unwrap(), false);
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&whole[..whole.len() / 2]).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), read_response(&mut recv));
        let (code, message) = answer.await.expect("the server gave up on the stream");
        assert_eq!(code, Code::DeadlineExceeded.to_wire(), "{message}");
        assert_eq!(send.stopped().await.unwrap(), Some(2u32.into()));
        assert_eq!(c.server.rpc_stats().requests_timed_out, 1);

        // A pooled stream may wait idle between calls for longer than that.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        for _ in 0..2 {
            send.write_all(&whole).await.unwrap();
            assert_eq!(read_response(&mut recv).await.0, 0);
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        assert_eq!(c.server.rpc_stats().requests_timed_out, 1);
    });
}

#[test]
fn one_peer_cannot_take_every_call_permit() {
    let c = cluster(2, |cfg| {
        cfg.rpc.max_concurrent_calls = 4;
        cfg.rpc.max_concurrent_calls_per_peer = 2;
    });
    c.rt.block_on(async {
        let held = c.hold(0, "Test", 2).await;
        let err = c.echo(0).await.unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
        assert!(err.message().contains("caller"), "{err}");
        // Another peer is still served.
        assert_eq!(c.echo(1).await.unwrap(), "alive");
        c.release.add_permits(2);
        for call in held {
            call.await.unwrap().unwrap();
        }
        assert_eq!(c.echo(0).await.unwrap(), "alive");
    });
}

#[test]
fn a_flood_of_user_calls_never_takes_raft_permits() {
    let c = cluster(2, |cfg| {
        cfg.rpc.max_concurrent_calls = 2;
        cfg.rpc.max_concurrent_calls_per_peer = 2;
        cfg.rpc.max_concurrent_raft_calls = 1;
    });
    c.rt.block_on(async {
        let held = c.hold(0, "Test", 2).await;
        let flood = futures::future::join_all((0..20).map(|_| c.echo(1))).await;
        for result in flood {
            assert_eq!(result.unwrap_err().code(), Code::ResourceExhausted);
        }
        // Raft traffic has a pool of its own.
        let raft = c.hold(1, "RaftService", 1).await;
        let err = c
            .rpc(0)
            .call::<_, String>("RaftService", "echo", &("x",))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert!(err.message().contains("raft"), "{err}");
        c.release.add_permits(3);
        for call in held.into_iter().chain(raft) {
            call.await.unwrap().unwrap();
        }
    });
}

#[test]
fn an_argument_nested_a_million_levels_is_invalid_argument() {
    let c = cluster(1, |_| {});
    c.rt.block_on(async {
        // `(Tree,)` a million levels deep: 12 MB, under the 16 MiB maximum.
        let mut args = Vec::new();
        for _ in 0..1_000_000 {
            args.extend_from_slice(&1u32.to_le_bytes());
            args.extend_from_slice(&1u64.to_le_bytes());
        }
        args.extend_from_slice(&0u32.to_le_bytes());
        let conn = c.conn(0).await;
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&request_frames("Test", "depth", &args, false))
            .await
            .unwrap();
        let (code, message) = read_response(&mut recv).await;
        assert_eq!(code, Code::InvalidArgument.to_wire(), "{message}");
        assert!(message.contains("nests deeper"), "{message}");
        // The node lives, and a shallow tree is fine.
        let shallow: bool = c
            .rpc(0)
            .call("Test", "depth", &(Tree::Node(vec![Tree::Leaf]),))
            .await
            .unwrap();
        assert!(shallow);
    });
}

#[test]
fn a_streaming_call_whose_caller_sends_nothing_ends_at_the_idle_timeout() {
    let (rt, server, client, probes) = logs_cluster(|cfg| cfg.rpc.stream_idle_timeout_ms = 200);
    rt.block_on(async {
        let logs = LogsClient::new(&client, server.local_addr());
        // No deadline, and an upload that never sends a line nor its end.
        let lines = Streaming::from_stream(futures::stream::pending::<LogLine>());
        let upload = logs.upload("p".into(), lines);
        let count = tokio::time::timeout(Duration::from_secs(10), upload)
            .await
            .expect("the server gave up waiting")
            .unwrap();
        assert_eq!(count, 0);
        let err = probes.upload_error().expect("the handler saw why");
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    });
}

#[test]
fn a_streaming_call_whose_caller_reads_nothing_ends_at_the_idle_timeout() {
    let (rt, server, client, probes) = logs_cluster(|cfg| cfg.rpc.stream_idle_timeout_ms = 200);
    rt.block_on(async {
        let logs = LogsClient::new(&client, server.local_addr());
        // Items of 64 KiB as fast as they go, read by nobody: the server's
        // writes wait on flow control until it gives up.
        let mut items = logs.forever(64 * 1024, 0).await.unwrap();
        let stopped = tokio::time::timeout(Duration::from_secs(10), probes.producer_stopped());
        assert!(stopped.await.expect("the producer was dropped"));
        // What was sent before is still there; then the reset.
        let mut last = None;
        while let Some(item) = items.next().await {
            last = Some(item);
        }
        let err = last.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
    });
}

#[test]
fn the_documented_call_limits_and_timeouts_are_the_code_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
    let protocol = std::fs::read_to_string(path).unwrap();
    let defaults = octopii::config::RpcConfig::default();
    // The call limits table: `| name | default | counts |`, the default
    // written with a space between thousands.
    for (name, value) in [
        ("rpc.max_concurrent_calls", defaults.max_concurrent_calls),
        (
            "rpc.max_concurrent_calls_per_peer",
            defaults.max_concurrent_calls_per_peer,
        ),
        (
            "rpc.max_concurrent_raft_calls",
            defaults.max_concurrent_raft_calls,
        ),
    ] {
        let row = protocol
            .lines()
            .find(|line| line.starts_with(&format!("| `{name}` ")))
            .unwrap_or_else(|| panic!("docs/PROTOCOL.md has a row for {name}"));
        let documented = row.split('|').nth(2).unwrap().replace(' ', "");
        assert_eq!(documented, value.to_string(), "{name}");
    }
    // Defaults given in the running text, whose lines break anywhere.
    let text = protocol.split_whitespace().collect::<Vec<_>>().join(" ");
    const MIB: u64 = 1024 * 1024;
    for phrase in [
        format!(
            "(`rpc.max_incomplete_frame_bytes_per_connection`, default {} MiB)",
            defaults.max_incomplete_frame_bytes_per_connection / MIB
        ),
        format!(
            "(`rpc.max_incomplete_frame_bytes`, default {} MiB)",
            defaults.max_incomplete_frame_bytes / MIB
        ),
    ] {
        assert!(text.contains(&phrase), "docs/PROTOCOL.md says {phrase}");
    }
    let millis = |name: &str| {
        let at = text
            .find(&format!("`{name}` (default "))
            .unwrap_or_else(|| panic!("docs/PROTOCOL.md gives the default of {name}"));
        let rest = &text[at + name.len() + "`` (default ".len()..];
        rest[..rest.find(" ms)").unwrap()].replace(' ', "")
    };
    assert_eq!(
        millis("rpc.request_read_timeout_ms"),
        defaults.request_read_timeout_ms.to_string()
    );
    assert_eq!(
        millis("rpc.stream_idle_timeout_ms"),
        defaults.stream_idle_timeout_ms.to_string()
    );
}
