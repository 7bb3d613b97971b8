//! Read-only clients: a service that lets every client read and only
//! admins write.
//!
//! Certificates say what their holder is. `reader` holds a client
//! certificate (`octopii certs client`), `ops` an admin certificate
//! (`octopii certs admin`). The store is served under a policy: any
//! certificate with a role may call `get`, only admins and nodes may call
//! `put`. The reader's `put` is answered `PermissionDenied`, and the store
//! logs who was refused and why.
//!
//! Run with `cargo run -p octopii-examples --example read_only`.

use std::collections::HashMap;
use std::error::Error;
use std::sync::Mutex;

use octopii::LocalCluster;
use octopii::rpc::{Code, Policy};

/// Any error, from the node or from a call.
type BoxError = Box<dyn Error + Send + Sync>;

/// A small key-value store.
#[octopii::service]
pub trait Store {
    /// The value under `key`, if any.
    async fn get(&self, key: String) -> Option<String>;
    /// Sets `key` to `value`.
    async fn put(&self, key: String, value: String);
}

/// The store's contents.
#[derive(Default)]
struct Memory(Mutex<HashMap<String, String>>);

impl Store for Memory {
    async fn get(&self, key: String) -> Option<String> {
        self.0.lock().ok()?.get(&key).cloned()
    }

    async fn put(&self, key: String, value: String) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(key, value);
        }
    }
}

fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter("octopii=warn")
        .init();
    // Loopback nodes of one CA; the reader and ops run with a client's and
    // an admin's certificate instead of a node's.
    let cluster = LocalCluster::new()?;
    let server = cluster.node("store")?;
    let reader = cluster.node_with(cluster.ca().issue_client("reader")?)?;
    let ops = cluster.node_with(cluster.ca().issue_admin("ops")?)?;

    let writers = Policy::admins().or(Policy::nodes());
    let policy = Policy::any_role().method("put", writers);
    server.serve(StoreServer::new(Memory::default()).authorize(policy))?;

    let addr = server.local_addr();
    cluster.block_on(async {
        let admin = StoreClient::new(&ops, addr);
        admin.put("motd".into(), "hello".into()).await?;
        println!("ops wrote motd");

        let store = StoreClient::new(&reader, addr);
        let motd = store.get("motd".into()).await?;
        println!("reader read motd = {motd:?}");
        match store.put("motd".into(), "defaced".into()).await {
            Err(e) if e.code() == Code::PermissionDenied => println!("reader may not write: {e}"),
            other => return Err(format!("a reader's put answered {other:?}").into()),
        }
        let motd = store.get("motd".into()).await?;
        println!("motd is still {motd:?}");
        Ok::<_, BoxError>(())
    })?;

    cluster.block_on(async {
        reader.shutdown().await;
        ops.shutdown().await;
        server.shutdown().await;
    });
    Ok(())
}
