//! Middleware: `tower` layers around a served service and a client.
//!
//! The server stacks four layers: a log line per call, the authorization
//! policy (only admins may `put`), a concurrency limit that sheds calls
//! beyond two at once, and a timeout of half a second per call. The
//! client stacks one that gives every call a request id.
//!
//! Run with `cargo run -p octopii-examples --example middleware`.

use std::collections::HashMap;
use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use octopii::LocalCluster;
use octopii::rpc::layers::{Outgoing, Request};
use octopii::rpc::{Code, Context, Policy, PolicyLayer};
use tower::ServiceBuilder;

/// Any error, from the node or from a call.
type BoxError = Box<dyn Error + Send + Sync>;

/// A small key-value store.
#[octopii::service]
pub trait Store {
    /// The value under `key`, if any.
    async fn get(&self, ctx: &Context, key: String) -> Option<String>;
    /// Sets `key` to `value`.
    async fn put(&self, key: String, value: String);
    /// Answers after `millis`.
    async fn slow(&self, millis: u64);
}

/// The store's contents.
#[derive(Default)]
struct Memory(Mutex<HashMap<String, String>>);

impl Store for Memory {
    async fn get(&self, ctx: &Context, key: String) -> Option<String> {
        println!("  get runs for request {:?}", ctx.metadata("request-id"));
        self.0.lock().ok()?.get(&key).cloned()
    }

    async fn put(&self, key: String, value: String) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(key, value);
        }
    }

    async fn slow(&self, millis: u64) {
        tokio::time::sleep(Duration::from_millis(millis)).await;
    }
}

fn main() -> Result<(), BoxError> {
    let cluster = LocalCluster::new()?;
    let server = cluster.node("store")?;
    let reader = cluster.node_with(cluster.ca().issue_client("reader")?)?;
    let ops = cluster.node_with(cluster.ca().issue_admin("ops")?)?;

    let server_layers = ServiceBuilder::new()
        .map_request(|call: Request| {
            let caller = call.context().caller().to_owned();
            println!(
                "server: {caller} calls {}.{}",
                call.service(),
                call.method()
            );
            call
        })
        .layer(PolicyLayer::new(
            Policy::any_role().method("put", Policy::admins()),
        ))
        .load_shed()
        .concurrency_limit(2)
        .timeout(Duration::from_millis(500));
    server.serve(StoreServer::new(Memory::default()).layer(server_layers))?;

    let next_id = Arc::new(AtomicU64::new(1));
    let client_layers = ServiceBuilder::new().map_request(move |mut call: Outgoing| {
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        call.insert_metadata("request-id", id.to_string());
        call
    });

    let addr = server.local_addr();
    cluster.block_on(async {
        StoreClient::new(&ops, addr)
            .put("motd".into(), "hello".into())
            .await?;
        let store = StoreClient::new(&reader, addr).layer(client_layers);
        println!("reader reads motd = {:?}", store.get("motd".into()).await?);

        let expect = |what: &str, code: Code, result: Result<(), octopii::RpcError>| match result {
            Err(e) if e.code() == code => {
                println!("{what}: {e}");
                Ok(())
            }
            other => Err(format!("{what} answered {other:?}")),
        };
        expect(
            "the policy layer",
            Code::PermissionDenied,
            store.put("motd".into(), "defaced".into()).await,
        )?;
        expect(
            "the timeout layer",
            Code::DeadlineExceeded,
            store.slow(2_000).await,
        )?;
        // Two slow calls take both permits; a third is shed at once.
        let (a, b, c) = tokio::join!(store.slow(200), store.slow(200), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            store.slow(1).await
        });
        a?;
        b?;
        expect("the concurrency limit", Code::ResourceExhausted, c)?;
        Ok::<_, BoxError>(())
    })?;

    cluster.block_on(async {
        reader.shutdown().await;
        ops.shutdown().await;
        server.shutdown().await;
    });
    Ok(())
}
