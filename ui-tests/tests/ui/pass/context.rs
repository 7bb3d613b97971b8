//! A method may take the call's context first, named bare or by a path
//! through `octopii`; it is not part of the client method or of the wire.
#![deny(warnings)]

use std::future::Future;
use std::sync::Arc;

use octopii::RpcError;
use octopii::rpc::{Context, Service};
use octopii::transport::PeerInfo;

#[octopii::service]
pub trait Whoami {
    async fn full_path(&self, ctx: &octopii::rpc::Context) -> String;
    async fn imported(&self, ctx: &Context, suffix: String) -> String;
    async fn reexport(&self, context: &octopii::Context, a: u8, b: u8) -> Option<String>;
    async fn none(&self, a: u8) -> u8;
}

struct Server;

impl Whoami for Server {
    async fn full_path(&self, ctx: &Context) -> String {
        ctx.caller().to_owned()
    }

    async fn imported(&self, ctx: &Context, suffix: String) -> String {
        format!("{}{suffix}", ctx.caller())
    }

    async fn reexport(&self, context: &Context, a: u8, b: u8) -> Option<String> {
        context
            .metadata("trace-id")
            .map(|id| format!("{id}:{a}:{b}"))
    }

    async fn none(&self, a: u8) -> u8 {
        a
    }
}

/// The client methods take only the wire arguments.
fn client_api(
    client: &WhoamiClient,
) -> impl Future<Output = Result<Option<String>, RpcError>> + '_ {
    drop(client.full_path());
    drop(client.imported(String::from("!")));
    client.reexport(1, 2)
}

fn main() {
    let _ = client_api;
    let service = WhoamiServer::new(Server);
    let ctx = Context::new(
        Arc::new(PeerInfo {
            addr: ([127, 0, 0, 1], 1).into(),
            identity: "bob".into(),
            role: octopii::transport::tls::Role::Client,
            verified: true,
        }),
        None,
        vec![("trace-id".into(), "7".into())],
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let call = |method: &str, args: Vec<u8>| {
        runtime
            .block_on(service.call(method, ctx.clone(), args.into()))
            .unwrap()
    };
    use octopii::codec::{decode, encode};

    let name: String = decode(&call("full_path", encode(&()).unwrap())).unwrap();
    assert_eq!(name, "bob");
    let name: String = decode(&call("imported", encode(&(String::from("!"),)).unwrap())).unwrap();
    assert_eq!(name, "bob!");
    let traced: Option<String> = decode(&call("reexport", encode(&(1u8, 2u8)).unwrap())).unwrap();
    assert_eq!(traced.as_deref(), Some("7:1:2"));

    // A policy on the generated server: the router asks it before a call.
    let guarded = WhoamiServer::new(Server).authorize(octopii::rpc::Policy::nodes());
    let call = octopii::rpc::Call::new(ctx.peer(), guarded.name(), "full_path");
    assert!(guarded.authorize(&call).is_err());
    assert_eq!(ctx.role(), octopii::transport::tls::Role::Client);
}
