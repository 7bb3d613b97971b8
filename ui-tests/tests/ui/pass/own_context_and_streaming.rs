//! A user's own types named `Context` and `Streaming`, in a module of
//! their own, are ordinary types: they travel on the wire as arguments and
//! results. Only Octopii's own, bare or named through `octopii`, are the
//! call context and streams.
#![deny(warnings)]

use std::sync::Arc;

use octopii::RpcError;
use octopii::rpc::Service;
use octopii::codec::{decode, encode};
use octopii::transport::PeerInfo;

mod mine {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct Context {
        pub user: String,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct Streaming<T> {
        pub items: Vec<T>,
    }
}

#[octopii::service]
trait Own {
    /// The user's `Context` first, where the call context would go.
    async fn greet(&self, ctx: mine::Context, greeting: String) -> String;
    /// The user's `Streaming` before another argument, and as the result.
    async fn scale(&self, numbers: mine::Streaming<u32>, factor: u32) -> mine::Streaming<u32>;
    /// Beside Octopii's own context and stream: the user's `Streaming` as
    /// the items of Octopii's, and inside a `Result`.
    async fn mixed(
        &self,
        call: &octopii::Context,
        ctx: mine::Context,
        batches: octopii::Streaming<mine::Streaming<u8>>,
    ) -> Result<mine::Streaming<u8>, String>;
}

struct Server;

impl Own for Server {
    async fn greet(&self, ctx: mine::Context, greeting: String) -> String {
        format!("{greeting}, {}", ctx.user)
    }

    async fn scale(&self, numbers: mine::Streaming<u32>, factor: u32) -> mine::Streaming<u32> {
        mine::Streaming {
            items: numbers.items.iter().map(|n| n * factor).collect(),
        }
    }

    async fn mixed(
        &self,
        call: &octopii::Context,
        ctx: mine::Context,
        _batches: octopii::Streaming<mine::Streaming<u8>>,
    ) -> Result<mine::Streaming<u8>, String> {
        Err(format!("{} for {}", call.caller(), ctx.user))
    }
}

/// The client methods take the user's types as arguments and return them.
async fn client_api(client: &OwnClient) -> Result<(), RpcError> {
    let ann = || mine::Context { user: "ann".into() };
    let _: String = client.greet(ann(), "hi".into()).await?;
    let _: mine::Streaming<u32> = client.scale(mine::Streaming { items: vec![1] }, 2).await?;
    let batches = vec![mine::Streaming { items: vec![1u8] }];
    let _: Result<mine::Streaming<u8>, String> = client.mixed(ann(), batches).await?;
    Ok(())
}

fn main() {
    let _ = client_api;
    let service = OwnServer::new(Server);
    let ctx = octopii::Context::new(
        Arc::new(PeerInfo {
            addr: ([127, 0, 0, 1], 1).into(),
            identity: "bob".into(),
            role: octopii::transport::tls::Role::Client,
            verified: true,
        }),
        None,
        Vec::new(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let call = |method: &str, args: Vec<u8>| {
        runtime
            .block_on(service.call(method, ctx.clone(), args.into()))
            .unwrap()
    };

    let args = (mine::Context { user: "ann".into() }, String::from("hi"));
    let greeting: String = decode(&call("greet", encode(&args).unwrap())).unwrap();
    assert_eq!(greeting, "hi, ann");

    let args = (
        mine::Streaming {
            items: vec![1u32, 2],
        },
        3u32,
    );
    let scaled: mine::Streaming<u32> = decode(&call("scale", encode(&args).unwrap())).unwrap();
    assert_eq!(scaled, mine::Streaming { items: vec![3, 6] });

    // `mixed` takes Octopii's stream: it is served on a stream of its own.
    let unary = runtime.block_on(service.call("mixed", ctx.clone(), encode(&()).unwrap().into()));
    assert_eq!(unary.unwrap_err().code(), octopii::rpc::Code::Unimplemented);
}
