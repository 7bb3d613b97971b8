//! Quickstart: a small cluster on loopback.
//!
//! Two nodes get certificates from an in-memory cluster CA, connect over
//! mutual TLS 1.3 on QUIC, and make typed calls to each other's `Greeter`
//! service; the handler sees the caller's verified name.
//!
//! Run with `cargo run -p octopii-examples --example quickstart`.

use std::time::Duration;

use octopii::rpc::Context;
use octopii::transport::tls::ClusterCa;
use octopii::{Config, OctopiiNode, OctopiiRuntime, Result};

/// Greets whoever calls.
#[octopii::service]
pub trait Greeter {
    /// Returns a greeting for the verified caller.
    async fn greet(&self, ctx: &Context, message: String) -> String;
}

struct Hello;

impl Greeter for Hello {
    async fn greet(&self, ctx: &Context, message: String) -> String {
        format!("hello {}, you said {message:?}", ctx.caller())
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let runtime = OctopiiRuntime::new(2)?;
    let ca = ClusterCa::generate()?;
    let start = |name: &str| -> Result<OctopiiNode> {
        let config = Config::builder()
            .bind_addr(([127, 0, 0, 1], 0).into())
            .credentials(ca.issue_node(name)?)
            .build()?;
        let node = OctopiiNode::new(config, &runtime)?;
        node.serve(GreeterServer::new(Hello))?;
        println!("{name:<5} listens on {}", node.local_addr());
        Ok(node)
    };
    let alice = start("alice")?;
    let bob = start("bob")?;

    runtime.block_on(async {
        let to_bob = GreeterClient::new(&alice, bob.local_addr());
        let reply = to_bob.greet("hi bob".into()).await?;
        println!("service call   alice -> bob: {reply}");
        let to_alice =
            GreeterClient::new(&bob, alice.local_addr()).with_deadline(Duration::from_secs(1));
        let reply = to_alice.greet("hi alice".into()).await?;
        println!("service call   bob -> alice: {reply}");
        Ok::<_, octopii::RpcError>(())
    })?;

    runtime.block_on(async {
        alice.shutdown().await;
        bob.shutdown().await;
    });
    println!("quickstart done");
    Ok(())
}
