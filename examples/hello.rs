//! Hello: the smallest typed service.
//!
//! `#[octopii::service]` turns the `Hello` trait below into `HelloClient`
//! (typed calls to a peer) and `HelloServer` (serves any implementation).
//! Bob serves it; alice calls it. Bob's handler reads who is calling from
//! the call's `Context`: the name in alice's verified certificate, not a
//! name she merely claims.
//!
//! Run with `cargo run -p octopii-examples --example hello`.

use std::error::Error;

/// Any error, from the node or from a call.
type BoxError = Box<dyn Error + Send + Sync>;

use octopii::LocalCluster;
use octopii::rpc::Context;

/// Greets callers.
#[octopii::service]
pub trait Hello {
    /// Greets the caller, who says its name is `name`.
    async fn greet(&self, ctx: &Context, name: String) -> String;
}

/// Bob's implementation of [`Hello`].
struct Greeter;

impl Hello for Greeter {
    async fn greet(&self, ctx: &Context, name: String) -> String {
        let caller = ctx.caller();
        if name == caller {
            format!("hello {name}")
        } else {
            format!("hello {name} (your certificate says {caller})")
        }
    }
}

fn main() -> Result<(), BoxError> {
    // A CA, a runtime, and nodes on loopback with certificates from that CA:
    // see `LocalCluster` for the same setup written out.
    let cluster = LocalCluster::new()?;
    let alice = cluster.node("alice")?;
    let bob = cluster.node("bob")?;
    bob.serve(HelloServer::new(Greeter))?;
    println!(
        "bob serves {} on {}",
        HelloClient::SERVICE_NAME,
        bob.local_addr()
    );

    // A client is cheap: it shares alice's connections to bob.
    let hello = HelloClient::new(&alice, bob.local_addr());
    let honest = cluster.block_on(hello.greet("alice".into()))?;
    println!("bob replied: {honest}");
    let pretending = cluster.block_on(hello.greet("carol".into()))?;
    println!("bob replied: {pretending}");

    cluster.block_on(async {
        alice.shutdown().await;
        bob.shutdown().await;
    });
    Ok(())
}
