//! A client over several replicas: the less loaded of two picks, a peer
//! that refuses is skipped and the call moves on, writes follow the
//! leader named last.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use octopii::rpc::Replicas;
use octopii::{LocalCluster, OctopiiNode};
use tokio::sync::Semaphore;

#[octopii::service]
pub trait Which {
    /// The serving node's name.
    async fn which(&self) -> String;
    /// Waits until the test lets it go.
    async fn hold(&self);
    /// The serving node's name, at once unless it is `slow`: then only
    /// once the test lets it go.
    async fn which_unless(&self, slow: String) -> String;
}

struct Named(
    &'static str,
    Arc<Semaphore>,
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
);

/// Counts a slow call while it runs on its server.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Running(count.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Which for Named {
    async fn which(&self) -> String {
        self.0.to_owned()
    }

    async fn hold(&self) {
        self.2.fetch_add(1, Ordering::SeqCst);
        self.1.acquire().await.expect("open").forget();
    }

    async fn which_unless(&self, slow: String) -> String {
        if slow == self.0 {
            let _running = Running::new(&self.3);
            self.1.acquire().await.expect("open").forget();
        }
        self.0.to_owned()
    }
}

struct Setup {
    cluster: LocalCluster,
    servers: Vec<OctopiiNode>,
    /// Holds running on any server.
    holding: Arc<AtomicUsize>,
    /// Slow calls running now on any server.
    slow_running: Arc<AtomicUsize>,
    /// The node the replicas call from: its endpoint lives as long.
    client: OctopiiNode,
    release: Arc<Semaphore>,
    replicas: Replicas,
}

fn two_replicas() -> Setup {
    let cluster = LocalCluster::new().expect("cluster");
    let release = Arc::new(Semaphore::new(0));
    let holding = Arc::new(AtomicUsize::new(0));
    let slow_running = Arc::new(AtomicUsize::new(0));
    let servers: Vec<OctopiiNode> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let node = cluster.node(name).expect("node");
            node.serve(WhichServer::new(Named(
                name,
                release.clone(),
                holding.clone(),
                slow_running.clone(),
            )))
            .expect("serve");
            node
        })
        .collect();
    let client = cluster.node("client").expect("client");
    let addrs: Vec<SocketAddr> = servers.iter().map(OctopiiNode::local_addr).collect();
    let replicas = Replicas::new(&client, addrs);
    Setup {
        cluster,
        servers,
        holding,
        slow_running,
        client,
        release,
        replicas,
    }
}

async fn which(replicas: &Replicas) -> String {
    replicas
        .call(|c| async move { WhichClient::from_client(c).which().await })
        .await
        .expect("a replica answers")
}

/// Starts a `hold` through `replicas` and waits until it runs on its
/// server; the address of that server.
async fn hold_one(s: &Setup) -> SocketAddr {
    let replicas = s.replicas.clone();
    tokio::spawn(async move {
        let _ = replicas
            .call(|c| async move { WhichClient::from_client(c).hold().await })
            .await;
    });
    while s.holding.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let peers = s.replicas.peers();
    peers
        .into_iter()
        .find(|a| s.replicas.outstanding(*a) > 0)
        .expect("the hold is outstanding")
}

#[test]
fn calls_go_to_the_less_loaded_replica() {
    let s = two_replicas();
    s.cluster.block_on(async {
        let busy = hold_one(&s).await;
        let idle = s
            .servers
            .iter()
            .find(|n| n.local_addr() != busy)
            .expect("idle");
        let idle_name = if idle.id() == s.servers[0].id() {
            "a"
        } else {
            "b"
        };
        // Of two choices the less loaded wins: every call goes to the idle one.
        for _ in 0..10 {
            assert_eq!(which(&s.replicas).await, idle_name);
        }
        s.release.add_permits(1);
    });
}

#[test]
fn a_replica_that_refuses_is_skipped_and_the_call_moves_on() {
    let s = two_replicas();
    s.cluster.block_on(async {
        let busy = hold_one(&s).await;
        let draining = s
            .servers
            .iter()
            .find(|n| n.local_addr() == busy)
            .expect("busy")
            .clone();
        let other = if draining.id() == s.servers[0].id() {
            "b"
        } else {
            "a"
        };
        // Draining, it refuses new calls before running them ("Unavailable")
        // while its held call goes on.
        let drain = tokio::spawn(async move { draining.drain(Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Named leader, the draining replica is tried first, refuses, and
        // the call moves on; from then on it is skipped.
        assert!(s.replicas.set_leader(busy));
        let answer = s
            .replicas
            .call_leader(|c| async move { WhichClient::from_client(c).which().await })
            .await;
        assert_eq!(answer.as_deref(), Ok(other));
        for _ in 0..5 {
            assert_eq!(which(&s.replicas).await, other);
        }
        s.release.add_permits(1);
        assert!(drain.await.expect("drain"), "the held call finished");
    });
}

#[test]
fn writes_follow_the_leader_named_last() {
    let s = two_replicas();
    s.cluster.block_on(async {
        for (i, name) in [(1, "b"), (0, "a")] {
            assert!(s.replicas.set_leader(s.servers[i].local_addr()));
            assert_eq!(s.replicas.leader(), Some(s.servers[i].local_addr()));
            for _ in 0..3 {
                let answer = s
                    .replicas
                    .call_leader(|c| async move { WhichClient::from_client(c).which().await })
                    .await;
                assert_eq!(answer.as_deref(), Ok(name));
            }
        }
        assert!(!s.replicas.set_leader("127.0.0.1:1".parse().expect("addr")));
    });
}

#[test]
fn a_hedged_call_is_answered_by_another_replica_when_the_first_is_slow() {
    let s = two_replicas();
    let tried_slow = AtomicUsize::new(0);
    s.cluster.block_on(async {
        let slow = s.servers[0].local_addr();
        for _ in 0..30 {
            // Fresh replicas: the first pick is either server at random.
            let replicas = Replicas::from_clients(
                s.replicas
                    .peers()
                    .into_iter()
                    .map(|addr| octopii::rpc::Client::new(&s.client, addr)),
            );
            let answer = replicas
                .call_hedged(Duration::from_millis(50), |c| {
                    if c.peer() == slow {
                        tried_slow.fetch_add(1, Ordering::SeqCst);
                    }
                    async move { WhichClient::from_client(c).which_unless("a".into()).await }
                })
                .await;
            assert_eq!(answer.as_deref(), Ok("b"));
        }
        assert!(
            tried_slow.load(Ordering::SeqCst) > 0,
            "the slow replica was never picked first"
        );
        // The attempts that lost were cancelled on their server.
        tokio::time::timeout(Duration::from_secs(5), async {
            while s.slow_running.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the slow attempts are cancelled");
    });
}

#[test]
fn a_hedged_call_answered_in_time_goes_to_one_replica() {
    let s = two_replicas();
    let attempts = AtomicUsize::new(0);
    s.cluster.block_on(async {
        for _ in 0..10 {
            let answer = s
                .replicas
                .call_hedged(Duration::from_secs(10), |c| {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    async move { WhichClient::from_client(c).which().await }
                })
                .await;
            assert!(matches!(answer.as_deref(), Ok("a" | "b")), "{answer:?}");
        }
    });
    assert_eq!(attempts.load(Ordering::SeqCst), 10);
}

#[test]
fn a_call_whose_deadline_passes_while_dialling_never_ran_and_moves_on() {
    let s = two_replicas();
    // Nobody answers there: a dial waits for its handshake timeout.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
    let nowhere = silent.local_addr().expect("addr");
    let clients = [nowhere, s.servers[1].local_addr()].map(|addr| {
        octopii::rpc::Client::new(&s.client, addr).with_deadline(Duration::from_millis(300))
    });
    let replicas = Replicas::from_clients(clients);
    assert!(replicas.set_leader(nowhere));
    s.cluster.block_on(async {
        let first = WhichClient::from_client(
            octopii::rpc::Client::new(&s.client, nowhere).with_deadline(Duration::from_millis(300)),
        )
        .which()
        .await
        .expect_err("nobody answers");
        assert_eq!(
            first.code(),
            octopii::rpc::Code::DeadlineExceeded,
            "{first}"
        );
        assert!(first.never_ran(), "{first}");
        // Tried first, the silent peer's timeout proves nothing ran: the
        // call moves on.
        let answer = replicas
            .call_leader(|c| async move { WhichClient::from_client(c).which().await })
            .await;
        assert_eq!(answer.as_deref(), Ok("b"));
    });
}
