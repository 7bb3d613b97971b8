//! Client retries: an idempotent method is tried again until the server
//! takes it; a method that is not is never tried twice once it may have
//! run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use octopii::config::RpcConfig;
use octopii::rpc::{Code, RetryPolicy};
use octopii::{LocalCluster, OctopiiNode};
use tokio::sync::Semaphore;

/// A server whose one call permit per peer `hold` can keep busy.
#[octopii::service]
pub trait Slots {
    /// Waits until the test lets it go.
    async fn hold(&self);
    /// How many times `bump` ran; safe to run twice.
    #[octopii(idempotent)]
    async fn read(&self) -> u32;
    /// Counts a run: running it twice is not running it once.
    async fn bump(&self) -> u32;
}

struct Server {
    release: Semaphore,
    bumps: AtomicU32,
    holding: AtomicU32,
}

impl Slots for Server {
    async fn hold(&self) {
        self.holding.fetch_add(1, Ordering::SeqCst);
        self.release.acquire().await.expect("open").forget();
    }

    async fn read(&self) -> u32 {
        self.bumps.load(Ordering::SeqCst)
    }

    async fn bump(&self) -> u32 {
        self.bumps.fetch_add(1, Ordering::SeqCst) + 1
    }
}

/// A server allowing one call per peer at a time, a client, and the
/// server's state.
fn one_permit() -> (LocalCluster, OctopiiNode, OctopiiNode, Arc<Server>) {
    let cluster = LocalCluster::new().expect("cluster");
    let rpc = RpcConfig {
        max_concurrent_calls_per_peer: 1,
        ..RpcConfig::default()
    };
    let config = cluster.config("server").expect("config").rpc(rpc);
    let server = cluster
        .start(config.build().expect("config"))
        .expect("server");
    let state = Arc::new(Server {
        release: Semaphore::new(0),
        bumps: AtomicU32::new(0),
        holding: AtomicU32::new(0),
    });
    server
        .serve(SlotsServer::from_arc(state.clone()))
        .expect("serve");
    let client = cluster.node("client").expect("client");
    (cluster, server, client, state)
}

/// Starts a `hold`, waits until it runs and so keeps the server's one
/// permit busy (a call without retries is now refused), and returns the
/// server's refusals so far. No other call runs meanwhile: one could take
/// the permit from under the hold's every attempt.
async fn hold_the_permit(
    slots: &SlotsClient,
    state: &Server,
    client: &OctopiiNode,
    server: &OctopiiNode,
) -> (
    tokio::task::JoinHandle<Result<(), octopii::rpc::RpcError>>,
    u64,
) {
    let hold = tokio::spawn({
        let slots = slots.clone();
        async move { slots.hold().await }
    });
    while state.holding.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let refused = SlotsClient::new(client, server.local_addr()).read().await;
    assert_eq!(refused.map_err(|e| e.code()), Err(Code::ResourceExhausted));
    (hold, server.rpc_stats().calls_refused)
}

const POLICY: RetryPolicy = RetryPolicy {
    max_attempts: 10,
    initial_backoff: Duration::from_millis(10),
    max_backoff: Duration::from_millis(40),
};

#[test]
fn an_idempotent_call_is_retried_until_the_server_takes_it() {
    let (cluster, server, client, state) = one_permit();
    let slots = SlotsClient::new(&client, server.local_addr()).with_retry(POLICY);
    cluster.block_on(async {
        let (hold, refused_before) = hold_the_permit(&slots, &state, &client, &server).await;
        let read = tokio::spawn({
            let slots = slots.clone();
            async move { slots.read().await }
        });
        // The server fails the first two attempts, then frees the permit.
        while server.rpc_stats().calls_refused < refused_before + 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(!read.is_finished(), "still retrying");
        state.release.add_permits(1);
        hold.await.expect("hold").expect("hold returns");
        assert_eq!(
            read.await.expect("read"),
            Ok(0),
            "the third attempt or a later one"
        );
    });
}

#[test]
fn a_call_that_may_have_run_is_not_retried_unless_idempotent() {
    let (cluster, server, client, state) = one_permit();
    let slots = SlotsClient::new(&client, server.local_addr()).with_retry(POLICY);
    cluster.block_on(async {
        let (hold, refused) = hold_the_permit(&slots, &state, &client, &server).await;
        // `ResourceExhausted` does not prove the call never ran (a reply
        // too large says the same after the handler), so `bump` gets one
        // attempt.
        let bumped = slots.bump().await;
        assert_eq!(bumped.map_err(|e| e.code()), Err(Code::ResourceExhausted));
        assert_eq!(server.rpc_stats().calls_refused, refused + 1, "one attempt");
        assert_eq!(state.bumps.load(Ordering::SeqCst), 0, "and it never ran");
        state.release.add_permits(1);
        hold.await.expect("hold").expect("hold returns");
        // The permit free, it runs once.
        assert_eq!(slots.bump().await, Ok(1));
    });
}
