//! A rolling upgrade: version 1 and version 2 of a service serve side by
//! side in one cluster while clients of both versions call them.
//!
//! Version 2 adds an argument to `put` (a change: a new signature) and a
//! new method `len` (an addition). Every generated call carries its
//! method's signature fingerprint, so a `put` of one version reaching the
//! other is refused by name, `Unimplemented`, instead of being decoded as
//! garbage; `get`, unchanged, works across versions. The rules for evolving
//! a service and a replicated state machine are in `docs/ARCHITECTURE.md`,
//! "Evolving a service".
//!
//! Run with `cargo run -p octopii-examples --example versions`.

use std::error::Error;

use octopii::LocalCluster;

/// Any error, from the node or from a call.
type BoxError = Box<dyn Error + Send + Sync>;

/// The first version.
mod v1 {
    #[octopii::service]
    pub trait Store {
        /// Sets `key`; the previous value.
        async fn put(&self, key: String, value: String) -> Option<String>;
        /// The value of `key`.
        async fn get(&self, key: String) -> Option<String>;
    }
}

/// The second: `put` takes a time to live; `len` is new.
mod v2 {
    #[octopii::service]
    pub trait Store {
        /// Sets `key` for `ttl_secs`; the previous value.
        async fn put(&self, key: String, value: String, ttl_secs: Option<u64>) -> Option<String>;
        /// The value of `key`.
        async fn get(&self, key: String) -> Option<String>;
        /// How many keys are set.
        async fn len(&self) -> u64;
    }
}

struct Old;

impl v1::Store for Old {
    async fn put(&self, _key: String, _value: String) -> Option<String> {
        None
    }
    async fn get(&self, key: String) -> Option<String> {
        Some(format!("{key} from version 1"))
    }
}

struct New;

impl v2::Store for New {
    async fn put(&self, _key: String, _value: String, _ttl: Option<u64>) -> Option<String> {
        None
    }
    async fn get(&self, key: String) -> Option<String> {
        Some(format!("{key} from version 2"))
    }
    async fn len(&self) -> u64 {
        0
    }
}

fn main() -> Result<(), BoxError> {
    let cluster = LocalCluster::new()?;
    let (old, new, caller) = (
        cluster.node("old")?,
        cluster.node("new")?,
        cluster.node("caller")?,
    );
    old.serve(v1::StoreServer::new(Old))?;
    new.serve(v2::StoreServer::new(New))?;

    cluster.block_on(async {
        let v1_on_new = v1::StoreClient::new(&caller, new.local_addr());
        let v2_on_old = v2::StoreClient::new(&caller, old.local_addr());
        println!(
            "v1 client, get on v2: {:?}",
            v1_on_new.get("a".into()).await?
        );
        println!(
            "v2 client, get on v1: {:?}",
            v2_on_old.get("a".into()).await?
        );
        match v1_on_new.put("a".into(), "x".into()).await {
            Err(e) => println!("v1 client, put on v2: {e}"),
            Ok(v) => return Err(format!("a changed method answered {v:?}").into()),
        }
        match v2_on_old.len().await {
            Err(e) => println!("v2 client, len on v1: {e}"),
            Ok(v) => return Err(format!("a method version 1 lacks answered {v}").into()),
        }
        Ok::<_, BoxError>(())
    })?;

    cluster.block_on(async {
        for node in [&caller, &old, &new] {
            node.shutdown().await;
        }
    });
    Ok(())
}
