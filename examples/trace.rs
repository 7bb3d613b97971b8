//! A trace through two hops: `client` calls `a`, whose handler calls `b`.
//! Each call is a `tracing` span on both sides; the three print as they
//! close, every one with the same `trace_id`, which travelled in the
//! requests' headers.
//!
//! ```sh
//! cargo run -p octopii-examples --example trace
//! ```
//!
//! To send the spans to an OpenTelemetry collector instead, install a
//! `tracing-opentelemetry` layer in place of the `fmt` one: the spans are
//! the same, and their `trace_id` field joins them.

use octopii::LocalCluster;
use octopii::rpc::Context;
use tracing_subscriber::fmt::format::FmtSpan;

/// Asks where a request has been.
#[octopii::service]
pub trait Route {
    /// The names of the nodes the request went through, and its trace id.
    async fn route(&self, ctx: &Context) -> (Vec<String>, String);
}

/// A node that adds its name, then passes the request on if it can.
struct Hop {
    name: &'static str,
    next: Option<RouteClient>,
}

impl Route for Hop {
    async fn route(&self, ctx: &Context) -> (Vec<String>, String) {
        let mut path = vec![self.name.to_owned()];
        if let Some(next) = &self.next {
            match next.route().await {
                Ok((rest, _)) => path.extend(rest),
                Err(e) => path.push(format!("({e})")),
            }
        }
        (path, format!("{:032x}", ctx.trace().trace_id()))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter("octopii::rpc=info")
        .with_span_events(FmtSpan::CLOSE)
        .init();
    let cluster = LocalCluster::new()?;
    let (client, a, b) = (
        cluster.node("client")?,
        cluster.node("a")?,
        cluster.node("b")?,
    );
    b.serve(RouteServer::new(Hop {
        name: "b",
        next: None,
    }))?;
    let next = Some(RouteClient::new(&a, b.local_addr()));
    a.serve(RouteServer::new(Hop { name: "a", next }))?;

    let route = RouteClient::new(&client, a.local_addr());
    let (path, trace_id) = cluster.block_on(route.route())?;
    println!("path {path:?}, trace {trace_id}");
    Ok(())
}
