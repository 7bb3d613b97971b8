//! Two versions of one service side by side in one cluster: a method whose
//! signature changed is refused by name, never decoded as the other
//! version's arguments; the methods both versions share keep working.

use octopii::LocalCluster;
use octopii::rpc::Code;

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

/// The next: `put` takes a time to live, and there is a new method.
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
        Some("v1".into())
    }
    async fn get(&self, _key: String) -> Option<String> {
        Some("v1".into())
    }
}

struct New;

impl v2::Store for New {
    async fn put(&self, _key: String, _value: String, _ttl: Option<u64>) -> Option<String> {
        Some("v2".into())
    }
    async fn get(&self, _key: String) -> Option<String> {
        Some("v2".into())
    }
    async fn len(&self) -> u64 {
        2
    }
}

#[test]
fn an_old_and_a_new_version_serve_side_by_side() {
    let cluster = LocalCluster::new().expect("cluster");
    let (old, new, client) = (
        cluster.node("old").expect("node"),
        cluster.node("new").expect("node"),
        cluster.node("client").expect("node"),
    );
    old.serve(v1::StoreServer::new(Old)).expect("serve v1");
    new.serve(v2::StoreServer::new(New)).expect("serve v2");
    let (v1_on_new, v2_on_old) = (
        v1::StoreClient::new(&client, new.local_addr()),
        v2::StoreClient::new(&client, old.local_addr()),
    );
    cluster.block_on(async {
        // What did not change works both ways.
        assert_eq!(v1_on_new.get("k".into()).await, Ok(Some("v2".into())));
        assert_eq!(v2_on_old.get("k".into()).await, Ok(Some("v1".into())));

        // What changed is refused by name, with the server's signature.
        let e = v1_on_new
            .put("k".into(), "v".into())
            .await
            .expect_err("another signature");
        assert_eq!(e.code(), Code::Unimplemented, "{e}");
        assert!(
            e.message()
                .contains("`Store.put(String,String,Option<u64>)->Option<String>` here"),
            "{e}"
        );
        let e = v2_on_old
            .put("k".into(), "v".into(), Some(60))
            .await
            .expect_err("another signature");
        assert_eq!(e.code(), Code::Unimplemented, "{e}");
        assert!(
            e.message()
                .contains("`Store.put(String,String)->Option<String>` here"),
            "{e}"
        );

        // A new method is unknown to the old version.
        let e = v2_on_old.len().await.expect_err("no such method");
        assert_eq!(e.code(), Code::Unimplemented, "{e}");

        // Without the fingerprint (a hand-written client), the server
        // decodes what it gets, as before: here a v1 `put` on v2 fails to
        // decode, which the fingerprint turns into the clear error above.
        let raw = octopii::rpc::Client::new(&client, new.local_addr());
        let garbled: Result<Option<String>, _> = raw
            .call("Store", "put", &("k".to_owned(), "v".to_owned()))
            .await;
        assert_eq!(garbled.map_err(|e| e.code()), Err(Code::InvalidArgument));
        // A forged fingerprint is refused like a wrong one.
        let forged = raw.with_signature(0x0123_4567_89ab_cdef);
        let refused: Result<Option<String>, _> =
            forged.call("Store", "get", &("k".to_owned(),)).await;
        assert_eq!(refused.map_err(|e| e.code()), Err(Code::Unimplemented));
    });
}
