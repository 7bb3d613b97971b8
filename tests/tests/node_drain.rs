//! `OctopiiNode::drain`: calls already running finish, new calls and
//! connections are refused, `Health` says `NotServing`, and a drain that
//! runs out of time says so.

use std::sync::Arc;
use std::time::Duration;

use octopii::LocalCluster;
use octopii::health::{HealthClient, ServingStatus};
use octopii::rpc::Code;
use tokio::sync::Notify;

#[octopii::service]
pub trait Slow {
    /// Answers once the test lets it go.
    async fn wait(&self) -> u32;
}

struct Gate {
    entered: Arc<Notify>,
    release: Arc<Notify>,
}

impl Slow for Gate {
    async fn wait(&self) -> u32 {
        self.entered.notify_one();
        self.release.notified().await;
        7
    }
}

fn gated(cluster: &LocalCluster) -> (octopii::OctopiiNode, Arc<Notify>, Arc<Notify>) {
    let node = cluster.node("server").unwrap();
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let gate = Gate {
        entered: entered.clone(),
        release: release.clone(),
    };
    node.serve(SlowServer::new(gate)).unwrap();
    (node, entered, release)
}

#[test]
fn a_drain_lets_running_calls_finish_and_refuses_new_ones() {
    let cluster = LocalCluster::new().unwrap();
    let (server, entered, release) = gated(&cluster);
    let (caller, latecomer) = (
        cluster.node("caller").unwrap(),
        cluster.node("late").unwrap(),
    );
    // The latecomer's connection exists before the drain: its new call is
    // refused by the router, not by the handshake.
    let health = HealthClient::new(&latecomer, server.local_addr());
    let before = cluster.block_on(health.check(String::new())).unwrap();
    assert_eq!(before, ServingStatus::Serving);

    let running = SlowClient::new(&caller, server.local_addr());
    let running = cluster.runtime().spawn(async move { running.wait().await });
    cluster.block_on(entered.notified());

    let draining = {
        let server = server.clone();
        cluster
            .runtime()
            .spawn(async move { server.drain(Duration::from_secs(10)).await })
    };
    let status = cluster.block_on(async {
        // Until the drain has begun, the node still says it serves.
        loop {
            match health.check(String::new()).await {
                Ok(ServingStatus::Serving) => tokio::time::sleep(Duration::from_millis(5)).await,
                other => break other,
            }
        }
    });
    assert!(
        matches!(&status, Ok(ServingStatus::NotServing))
            || matches!(&status, Err(e) if e.code() == Code::Unavailable),
        "{status:?}"
    );
    let refused = cluster
        .block_on(
            SlowClient::new(&latecomer, server.local_addr())
                .with_deadline(Duration::from_secs(2))
                .wait(),
        )
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused}");
    assert!(!draining.is_finished(), "the running call holds the drain");

    release.notify_one();
    assert_eq!(cluster.block_on(running).unwrap().unwrap(), 7);
    assert!(
        cluster.block_on(draining).unwrap(),
        "every call finished in time"
    );
}

#[test]
fn a_drain_that_runs_out_of_time_says_so() {
    let cluster = LocalCluster::new().unwrap();
    let (server, entered, _never) = gated(&cluster);
    let caller = cluster.node("caller").unwrap();
    let stuck = SlowClient::new(&caller, server.local_addr());
    let stuck = cluster.runtime().spawn(async move { stuck.wait().await });
    cluster.block_on(entered.notified());
    assert!(!cluster.block_on(server.drain(Duration::from_millis(200))));
    // The stuck call ends with the node, not with a reply.
    assert!(cluster.block_on(stuck).unwrap().is_err());
}
