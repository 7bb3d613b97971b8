//! A client over several replicas: the less loaded of two picks, a peer
//! that refuses is skipped and the call moves on, writes follow the
//! leader named last.

use std::net::SocketAddr;
use std::sync::Arc;
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
}

struct Named(&'static str, Arc<Semaphore>);

impl Which for Named {
    async fn which(&self) -> String {
        self.0.to_owned()
    }

    async fn hold(&self) {
        self.1.acquire().await.expect("open").forget();
    }
}

struct Setup {
    cluster: LocalCluster,
    servers: Vec<OctopiiNode>,
    /// The node the replicas call from: its endpoint lives as long.
    _client: OctopiiNode,
    release: Arc<Semaphore>,
    replicas: Replicas,
}

fn two_replicas() -> Setup {
    let cluster = LocalCluster::new().expect("cluster");
    let release = Arc::new(Semaphore::new(0));
    let servers: Vec<OctopiiNode> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let node = cluster.node(name).expect("node");
            node.serve(WhichServer::new(Named(name, release.clone())))
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
        _client: client,
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

/// Starts a `hold` through `replicas`; the address of the peer it went to.
async fn hold_one(replicas: &Replicas) -> SocketAddr {
    let holding = replicas.clone();
    tokio::spawn(async move {
        let _ = holding
            .call(|c| async move { WhichClient::from_client(c).hold().await })
            .await;
    });
    loop {
        if let Some(addr) = replicas
            .peers()
            .into_iter()
            .find(|a| replicas.outstanding(*a) > 0)
        {
            return addr;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[test]
fn calls_go_to_the_less_loaded_replica() {
    let s = two_replicas();
    s.cluster.block_on(async {
        let busy = hold_one(&s.replicas).await;
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
        let busy = hold_one(&s.replicas).await;
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
