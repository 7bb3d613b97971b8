//! `OctopiiNode::drain`: calls already running finish, new calls and
//! connections are refused, `Health` says `NotServing`, and a drain that
//! runs out of time says so.

use std::sync::Arc;
use std::time::Duration;

use octopii::LocalCluster;
use octopii::health::{HealthClient, ServingStatus};
use octopii::rpc::{Code, Replicas};
use tokio::sync::Notify;

#[octopii::service]
pub trait Slow {
    /// Answers once the test lets it go.
    async fn wait(&self) -> u32;
    /// Answers at once with the server's number.
    async fn number(&self) -> u32;
}

struct Gate {
    number: u32,
    entered: Arc<Notify>,
    release: Arc<Notify>,
}

impl Slow for Gate {
    async fn wait(&self) -> u32 {
        self.entered.notify_one();
        self.release.notified().await;
        7
    }

    async fn number(&self) -> u32 {
        self.number
    }
}

fn gated(cluster: &LocalCluster) -> (octopii::OctopiiNode, Arc<Notify>, Arc<Notify>) {
    gated_numbered(cluster, 1)
}

fn gated_numbered(
    cluster: &LocalCluster,
    number: u32,
) -> (octopii::OctopiiNode, Arc<Notify>, Arc<Notify>) {
    let node = cluster.node(&format!("server-{number}")).unwrap();
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let gate = Gate {
        number,
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
    // refused by the router, or, once the go-away has reached it, by the
    // handshake of a new connection.
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

#[test]
fn a_draining_node_tells_its_callers_to_go_away_and_replicas_call_the_others() {
    let cluster = LocalCluster::new().unwrap();
    let (draining, entered, release) = gated_numbered(&cluster, 1);
    let (staying, _, _) = gated_numbered(&cluster, 2);
    let caller = cluster.node("caller").unwrap();
    let peers = [draining.local_addr(), staying.local_addr()];

    let running = SlowClient::new(&caller, draining.local_addr());
    let running = cluster.runtime().spawn(async move { running.wait().await });
    cluster.block_on(entered.notified());
    let drained = {
        let draining = draining.clone();
        cluster
            .runtime()
            .spawn(async move { draining.drain(Duration::from_secs(10)).await })
    };
    // The caller hears the go-away while its call still runs.
    cluster.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), async {
            while caller.stats().pool.going_away == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the caller hears the go-away")
    });

    // Fresh replicas (no peer skipped yet) never try the draining node:
    // each would pick it half the time if it did not know.
    let tried = Arc::new(std::sync::Mutex::new(Vec::new()));
    for _ in 0..20 {
        let replicas = Replicas::new(&caller, peers);
        let number = cluster
            .block_on(replicas.call(|client| {
                tried.lock().unwrap().push(client.peer());
                async move { SlowClient::from_client(client).number().await }
            }))
            .unwrap();
        assert_eq!(number, 2);
    }
    assert!(
        !tried.lock().unwrap().contains(&draining.local_addr()),
        "a replica that said go away was called"
    );

    release.notify_one();
    assert_eq!(cluster.block_on(running).unwrap().unwrap(), 7);
    assert!(cluster.block_on(drained).unwrap());
}
