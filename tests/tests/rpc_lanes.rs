//! Lanes: calls to one peer that overlap share one stream, each with its
//! own id; a lone call keeps a pooled stream. Cancellation, a slow call and
//! bad input on a lane, as a caller and as a foreign client meet them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use octopii::rpc::{Code, Connect};
use octopii::{LocalCluster, OctopiiNode};
use tokio::sync::Semaphore;

#[octopii::service]
pub trait Lanes {
    /// Returns `text`.
    async fn echo(&self, text: String) -> String;
    /// Waits until the test lets it go, then answers 7.
    async fn hold(&self) -> u32;
    /// `n` bytes.
    async fn bytes(&self, n: u64) -> Vec<u8>;
}

#[derive(Default)]
struct Probe {
    running: AtomicUsize,
    cancelled: AtomicUsize,
    /// Calls of `bytes` served.
    served: AtomicUsize,
}

/// Counts a `hold` while it runs; dropped before it ends, a cancellation.
struct Holding(Arc<Probe>, bool);

impl Drop for Holding {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        if !self.1 {
            self.0.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

struct Server(Arc<Probe>, Arc<Semaphore>);

impl Lanes for Server {
    async fn echo(&self, text: String) -> String {
        text
    }

    async fn hold(&self) -> u32 {
        self.0.running.fetch_add(1, Ordering::SeqCst);
        let mut holding = Holding(self.0.clone(), false);
        self.1.acquire().await.expect("open").forget();
        holding.1 = true;
        7
    }

    async fn bytes(&self, n: u64) -> Vec<u8> {
        self.0.served.fetch_add(1, Ordering::SeqCst);
        vec![1; n as usize]
    }
}

struct Setup {
    cluster: LocalCluster,
    server: OctopiiNode,
    client: OctopiiNode,
    probe: Arc<Probe>,
    release: Arc<Semaphore>,
}

fn setup() -> Setup {
    setup_with(|_| {})
}

fn setup_with(edit: impl Fn(&mut octopii::Config)) -> Setup {
    let cluster = LocalCluster::new().expect("cluster");
    let start = |name: &str| {
        let mut config = cluster
            .config(name)
            .expect("config")
            .build()
            .expect("build");
        edit(&mut config);
        cluster.start(config).expect("node")
    };
    let server = start("server");
    let (probe, release) = (Arc::new(Probe::default()), Arc::new(Semaphore::new(0)));
    server
        .serve(LanesServer::new(Server(probe.clone(), release.clone())))
        .expect("serve");
    let client = start("client");
    Setup {
        cluster,
        server,
        client,
        probe,
        release,
    }
}

impl Setup {
    fn lanes(&self) -> LanesClient {
        LanesClient::new(&self.client, self.server.local_addr())
    }

    /// Starts `n` holds and waits until they all run.
    async fn hold(&self, n: usize) -> Vec<tokio::task::JoinHandle<Result<u32, octopii::RpcError>>> {
        let before = self.probe.running.load(Ordering::SeqCst);
        let holds = (0..n)
            .map(|_| {
                let lanes = self.lanes();
                tokio::spawn(async move { lanes.hold().await })
            })
            .collect();
        self.until(|| self.probe.running.load(Ordering::SeqCst) == before + n)
            .await;
        holds
    }

    async fn until(&self, done: impl Fn() -> bool) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .expect("in time");
    }
}

#[test]
fn overlapping_calls_share_one_lane_and_a_lone_call_keeps_a_stream() {
    let s = setup();
    let peer = s.server.local_addr();
    let pool = s.client.stream_pool();
    s.cluster.block_on(async {
        assert_eq!(s.lanes().echo("alone".into()).await.unwrap(), "alone");
        assert!(!pool.has_lane(peer), "a lone call opened a lane");
        let holds = s.hold(16).await;
        assert!(pool.has_lane(peer));
        s.release.add_permits(16);
        for hold in holds {
            assert_eq!(hold.await.unwrap().unwrap(), 7);
        }
        // The first call took a stream of its own, and so may the few that
        // started while the lane was being opened; the rest shared it.
        assert!(pool.idle_streams(peer) < 8, "{}", pool.idle_streams(peer));
        assert_eq!(s.lanes().echo("again".into()).await.unwrap(), "again");
    });
}

#[test]
fn a_call_dropped_on_a_lane_is_cancelled_on_the_server_and_the_lane_goes_on() {
    let s = setup();
    s.cluster.block_on(async {
        let first = s.hold(1).await;
        // Overlapping the first, this one travels on the lane.
        let second = s.hold(1).await;
        second[0].abort();
        s.until(|| s.probe.cancelled.load(Ordering::SeqCst) == 1)
            .await;
        // Calls behind it on the lane are served.
        let echoes = futures::future::join_all((0..8).map(|i| {
            let lanes = s.lanes();
            async move { lanes.echo(format!("{i}")).await }
        }))
        .await;
        for (i, echo) in echoes.into_iter().enumerate() {
            assert_eq!(echo.unwrap(), format!("{i}"));
        }
        s.release.add_permits(1);
        for hold in first {
            assert_eq!(hold.await.unwrap().unwrap(), 7);
        }
    });
}

#[test]
fn a_call_expecting_another_peer_never_rides_the_open_lane() {
    let s = setup();
    let peer = s.server.local_addr();
    s.cluster.block_on(async {
        let holds = s.hold(2).await;
        assert!(s.client.stream_pool().has_lane(peer));
        // Overlapping the holds, but expecting a certificate the server
        // does not hold: refused, as on a connection of its own.
        let expecting = octopii::rpc::Client::new(&s.client, peer)
            .expect_peer(octopii::transport::tls::Role::Node { id: 9 });
        let refused = LanesClient::from_client(expecting)
            .echo("wrong peer".into())
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused}");
        // A call expecting the server's own role rides the lane.
        let role = s
            .client
            .transport()
            .connect(peer)
            .await
            .unwrap()
            .peer()
            .role;
        let right = octopii::rpc::Client::new(&s.client, peer).expect_peer(role);
        let echoed = LanesClient::from_client(right).echo("right".into()).await;
        assert_eq!(echoed.unwrap(), "right");
        s.release.add_permits(2);
        for hold in holds {
            assert_eq!(hold.await.unwrap().unwrap(), 7);
        }
    });
}

/// Writes `frames` on a new stream as a lane, finishes it, and reads what
/// comes back: the bytes, or the reset code.
async fn raw_lane(s: &Setup, frames: &[Vec<u8>]) -> Result<Vec<u8>, u64> {
    let conn = s.client.connect(s.server.local_addr()).await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let mut bytes = vec![0xFF; 4];
    for frame in frames {
        bytes.extend_from_slice(frame);
    }
    send.write_all(&bytes).await.unwrap();
    send.finish().unwrap();
    match recv.read_to_end(1 << 20).await {
        Ok(bytes) => Ok(bytes),
        Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => Err(code.into_inner()),
        Err(e) => panic!("{e}"),
    }
}

/// A lane frame: `[u32 length][u64 id LE][u8 tag][body]`.
fn lane_frame(id: u64, tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = ((9 + body.len()) as u32).to_be_bytes().to_vec();
    out.extend(id.to_le_bytes());
    out.push(tag);
    out.extend_from_slice(body);
    out
}

/// The body of a call of `Lanes.echo(text)`: header and arguments frames.
fn echo_call(text: &str) -> Vec<u8> {
    call("echo", &(text,))
}

/// The body of a call of `Lanes.method(args)`.
fn call(method: &str, args: &impl serde::Serialize) -> Vec<u8> {
    let args = octopii::codec::encode(args).unwrap();
    octopii_tests::request_frames("Lanes", method, &args, false)
}

/// Splits reply frames into (id, code, body), sorted by id.
fn replies(mut bytes: &[u8]) -> Vec<(u64, u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        let id = u64::from_le_bytes(bytes[4..12].try_into().unwrap());
        out.push((id, bytes[12], bytes[13..4 + len].to_vec()));
        bytes = &bytes[4 + len..];
    }
    out.sort();
    out
}

#[test]
fn a_foreign_client_speaks_a_lane_as_documented() {
    let s = setup();
    let value = |text: &str| octopii::codec::encode(&text).unwrap();
    s.cluster.block_on(async {
        let frames = [
            lane_frame(1, 0, &echo_call("a")),
            lane_frame(2, 0, &echo_call("b")),
        ];
        let got = replies(&raw_lane(&s, &frames).await.unwrap());
        // Each reply as documented, in whatever order they came.
        assert_eq!(got, vec![(1, 0, value("a")), (2, 0, value("b"))]);

        // A call that is not two frames fails alone; the lane goes on.
        let frames = [lane_frame(1, 0, b"junk"), lane_frame(2, 0, &echo_call("c"))];
        let got = replies(&raw_lane(&s, &frames).await.unwrap());
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!((got[0].0, got[0].1), (1, Code::InvalidArgument.to_wire()));
        assert_eq!(got[1], (2, 0, value("c")));
    });
}

#[test]
fn bad_framing_on_a_lane_closes_that_lane_only() {
    let s = setup();
    s.cluster.block_on(async {
        for frames in [
            // An unknown tag.
            vec![lane_frame(1, 9, b"")],
            // A call id that does not increase.
            vec![
                lane_frame(5, 0, &echo_call("a")),
                lane_frame(3, 0, &echo_call("b")),
            ],
            // A frame too short for its id and tag.
            vec![vec![0, 0, 0, 2, 1, 2]],
            // A cancellation of a call never sent.
            vec![lane_frame(1, 0, &echo_call("a")), lane_frame(2, 1, b"")],
        ] {
            assert_eq!(raw_lane(&s, &frames).await, Err(2), "{frames:?}");
        }
        // The connection and its other calls are unaffected.
        assert_eq!(s.lanes().echo("still".into()).await.unwrap(), "still");
    });
}

#[test]
fn a_reply_too_large_for_a_lane_frame_fails_alone() {
    // 1024 bytes at most per frame, on both sides.
    let s = setup_with(|config| config.transport.max_frame_size = 1024);
    s.cluster.block_on(async {
        // The first holds a stream, the second waits on the lane.
        let held = s.hold(2).await;
        // On the lane too: 1010 bytes are a value of 1018, which fits a
        // response frame (1 + 1018) but not a lane frame (9 + 1018). The
        // caller gets a status, and the lane, with the call waiting on it,
        // goes on.
        let too_large = s.lanes().bytes(1010).await.unwrap_err();
        assert_eq!(too_large.code(), Code::ResourceExhausted, "{too_large}");
        assert_eq!(s.lanes().bytes(1000).await.unwrap().len(), 1000);
        s.release.add_permits(2);
        for hold in held {
            assert_eq!(hold.await.unwrap().unwrap(), 7);
        }
        // Alone, on a stream of its own, the same reply fits.
        assert_eq!(s.lanes().bytes(1010).await.unwrap().len(), 1010);
    });
}

#[test]
fn a_client_that_never_reads_its_replies_is_held_back_not_buffered() {
    // Eight calls at once per lane; a 1 MiB window for unread replies.
    let s = setup_with(|config| {
        config.transport.max_concurrent_bidi_streams = 8;
        config.transport.stream_receive_window = 1 << 20;
    });
    const CALLS: u64 = 1000;
    s.cluster.block_on(async {
        let conn = s.client.connect(s.server.local_addr()).await.unwrap();
        let (mut send, _never_read) = conn.open_bi().await.unwrap();
        // A thousand calls for 64 KiB each, 64 MB of replies, never read.
        let mut bytes = vec![0xFF; 4];
        for id in 1..=CALLS {
            bytes.extend(lane_frame(id, 0, &call("bytes", &(65_536u64,))));
        }
        let writer = tokio::spawn(async move {
            let _ = send.write_all(&bytes).await;
            send
        });
        // The server serves until the window, its queue and its slots are
        // full, then stops reading the lane.
        let served = || s.probe.served.load(Ordering::SeqCst);
        let mut last = usize::MAX;
        while served() != last {
            last = served();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // 16 replies in the window, a writer's batch of 4, then 8 queued
        // and 8 running: about 40, far from the thousand asked.
        assert!(last <= 64, "{last} calls served for a peer that reads none");
        // The connection's other calls go on.
        assert_eq!(s.lanes().echo("other".into()).await.unwrap(), "other");
        writer.abort();
    });
}

/// A server that holds each pooled call unanswered (counting it) and
/// answers each lane call under an id the client never sent. Its waits are
/// bounded, so the node can stop.
#[derive(Default)]
struct Liar {
    pooled: Arc<AtomicUsize>,
}

impl octopii::transport::InboundHandler for Liar {
    fn handle_stream(
        &self,
        _conn: octopii::transport::PeerConnection,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        let pooled = self.pooled.clone();
        Box::pin(async move {
            let mut marker = [0; 4];
            if recv.read_exact(&mut marker).await.is_err() || marker != [0xFF; 4] {
                pooled.fetch_add(1, Ordering::SeqCst);
                let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
                return;
            }
            let mut len = [0; 4];
            recv.read_exact(&mut len).await.unwrap();
            let mut frame = vec![0; u32::from_be_bytes(len) as usize];
            recv.read_exact(&mut frame).await.unwrap();
            let value = octopii::codec::encode(&"lie").unwrap();
            send.write_all(&lane_frame(1 << 40, 0, &value))
                .await
                .unwrap();
            let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
        })
    }
}

#[test]
fn a_reply_to_a_call_never_sent_breaks_the_clients_lane() {
    let cluster = LocalCluster::new().expect("cluster");
    let config = cluster.config("liar").unwrap().build().unwrap();
    let liar = Liar::default();
    let pooled = liar.pooled.clone();
    let liar = OctopiiNode::with_handler(config, cluster.runtime(), Arc::new(liar)).unwrap();
    let client = cluster.node("client").unwrap();
    let lanes = LanesClient::new(&client, liar.local_addr());
    cluster.block_on(async {
        let held = tokio::spawn({
            let lanes = lanes.clone();
            async move { lanes.echo("held".into()).await }
        });
        while pooled.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Overlapping the held call, this one takes the lane.
        let call = lanes.echo("on the lane".into());
        let lied_to = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("the lane broke in time")
            .unwrap_err();
        assert_eq!(lied_to.code(), Code::Unavailable, "{lied_to}");
        assert!(lied_to.message().contains("never sent"), "{lied_to}");
        // It was sent on a lane that broke: it may have run.
        assert!(!lied_to.never_ran(), "{lied_to:?}");
        held.abort();
    });
}
