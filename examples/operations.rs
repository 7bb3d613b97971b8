//! Running a service on three replicas, as operations see it: a client
//! over all of them that retries what is safe to retry, hedges a slow
//! read, and moves off a replica that drains.
//!
//! * `Replicas` spreads calls by the power of two choices.
//! * `get` is `#[octopii(idempotent)]`, so a `RetryPolicy` may try it
//!   again after a failure that may pass; `add` is not, and is retried
//!   only when it provably never ran.
//! * `call_hedged` sends a read to a second replica when the first is slow.
//! * `drain` tells the replica's callers to go away (their connections
//!   take no new calls), lets running calls finish, then stops; `Health`
//!   says `NotServing` meanwhile.
//!
//! Run with `cargo run -p octopii-examples --example operations`.

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use octopii::LocalCluster;
use octopii::health::{HealthClient, ServingStatus};
use octopii::rpc::{Client, Replicas, RetryPolicy};

/// Any error, from the node or from a call.
type BoxError = Box<dyn Error + Send + Sync>;

/// A counter on each replica.
#[octopii::service]
pub trait Counter {
    /// The replica's name and count; slow on the replica named `slow`.
    #[octopii(idempotent)]
    async fn get(&self) -> (String, u64);
    /// Adds `n` to the replica's count.
    async fn add(&self, n: u64) -> u64;
}

struct Replica {
    name: String,
    count: AtomicU64,
}

impl Counter for Replica {
    async fn get(&self) -> (String, u64) {
        if self.name == "slow" {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        (self.name.clone(), self.count.load(Ordering::SeqCst))
    }

    async fn add(&self, n: u64) -> u64 {
        self.count.fetch_add(n, Ordering::SeqCst) + n
    }
}

fn main() -> Result<(), BoxError> {
    let cluster = LocalCluster::new()?;
    let mut replicas = Vec::new();
    for name in ["one", "two", "slow"] {
        let node = cluster.node(name)?;
        node.serve(CounterServer::new(Replica {
            name: name.to_owned(),
            count: AtomicU64::new(0),
        }))?;
        replicas.push(node);
    }
    let caller = cluster.node("caller")?;
    // Every call within a second, retried under the default policy.
    let clients = replicas.iter().map(|node| {
        Client::new(&caller, node.local_addr())
            .with_deadline(Duration::from_secs(1))
            .with_retry(RetryPolicy::default())
    });
    let counters = Replicas::from_clients(clients);

    cluster.block_on(async {
        for n in 1..=6 {
            let total = counters
                .call(|c| async move { CounterClient::from_client(c).add(n).await })
                .await?;
            println!("add({n}) -> a replica now counts {total}");
        }

        // A hedged read: a replica that has not answered in 50 ms gets
        // company, and the first answer wins.
        for _ in 0..3 {
            let (name, count) = counters
                .call_hedged(Duration::from_millis(50), |c| async move {
                    CounterClient::from_client(c).get().await
                })
                .await?;
            println!("hedged get -> {name} counts {count}");
        }

        // Replica "one" drains: its callers hear a go-away, and calls
        // go to the others while it finishes and stops.
        let one = replicas[0].clone();
        let health =
            HealthClient::new(&caller, one.local_addr()).with_deadline(Duration::from_millis(500));
        println!("one says {:?}", health.check(String::new()).await?);
        let drained = tokio::spawn(async move { one.drain(Duration::from_secs(5)).await });
        while caller.stats().pool.going_away == 0 && !drained.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for _ in 0..4 {
            let (name, _) = counters
                .call(|c| async move { CounterClient::from_client(c).get().await })
                .await?;
            println!("after the go-away, get -> {name}");
            assert_ne!(name, "one", "a draining replica was called");
        }
        println!("one drained in time: {}", drained.await?);
        let after = health.check(String::new()).await;
        println!(
            "one's health now: {}",
            match after {
                Ok(ServingStatus::Serving) => "serving".to_owned(),
                Ok(other) => format!("{other:?}"),
                Err(e) => format!("no answer, it has stopped ({})", e.code()),
            }
        );
        Ok::<_, BoxError>(())
    })?;

    cluster.block_on(async {
        caller.shutdown().await;
        for node in &replicas {
            node.shutdown().await;
        }
    });
    Ok(())
}
