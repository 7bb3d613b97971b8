//! `octopii health ADDR`: asks a node's built-in `Health` service whether
//! it, or one of its services, is serving; for scripts and load balancers.

use std::net::SocketAddr;
use std::time::Duration;

use octopii::health::{HealthClient, ServingStatus};
use octopii::{OctopiiNode, OctopiiRuntime};

use crate::Result;
use crate::node_args::TlsArgs;

/// Arguments of `octopii health`.
#[derive(Debug, clap::Args)]
pub struct HealthArgs {
    /// The node to ask.
    pub addr: SocketAddr,
    /// The service to ask about; the node as a whole if not given.
    #[arg(long, default_value = "")]
    pub service: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Address to ask from.
    #[arg(long, default_value = "0.0.0.0:0")]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Prints `SERVING`, `NOT_SERVING` or `UNKNOWN`; true only for `SERVING`.
pub fn run(args: HealthArgs) -> Result<bool> {
    let mut config = args.tls.base_config()?;
    config.bind_addr = args.bind;
    config.worker_threads = 1;
    config.validate()?;
    let runtime = OctopiiRuntime::new(1)?;
    let node = OctopiiNode::new(config, &runtime)?;
    let health =
        HealthClient::new(&node, args.addr).with_deadline(Duration::from_millis(args.timeout_ms));
    let status = runtime.block_on(health.check(args.service));
    runtime.block_on(node.shutdown());
    let status = status?;
    println!(
        "{}",
        match status {
            ServingStatus::Serving => "SERVING",
            ServingStatus::NotServing => "NOT_SERVING",
            ServingStatus::Unknown => "UNKNOWN",
        }
    );
    Ok(status == ServingStatus::Serving)
}
