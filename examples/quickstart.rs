//! Quickstart: a small cluster on loopback.
//!
//! Two nodes get certificates from an in-memory cluster CA, connect over
//! mutual TLS 1.3 on QUIC, and exchange a message; each side sees the
//! other's verified name.
//!
//! Run with `cargo run -p octopii-examples --example quickstart`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use octopii::transport::tls::ClusterCa;
use octopii::transport::{InboundHandler, PeerConnection};
use octopii::{Config, OctopiiError, OctopiiNode, OctopiiRuntime, Result};

/// Answers each stream with a greeting addressed to the verified caller.
struct Greeter;

impl InboundHandler for Greeter {
    fn handle_stream(
        &self,
        conn: PeerConnection,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(async move {
            let Ok(message) = recv.read_to_end(64 * 1024).await else {
                return;
            };
            let reply = format!(
                "hello {}, you said {:?}",
                conn.peer().identity,
                String::from_utf8_lossy(&message)
            );
            if send.write_all(reply.as_bytes()).await.is_ok() {
                let _ = send.finish();
            }
        })
    }
}

fn main() -> Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let runtime = OctopiiRuntime::new(2)?;
    let ca = ClusterCa::generate()?;
    let config = |name: &str| -> Result<Config> {
        Config::builder()
            .bind_addr(([127, 0, 0, 1], 0).into())
            .credentials(ca.issue_node(name)?)
            .build()
    };
    let alice = OctopiiNode::with_handler(config("alice")?, &runtime, Arc::new(Greeter))?;
    let bob = OctopiiNode::with_handler(config("bob")?, &runtime, Arc::new(Greeter))?;
    println!("alice listens on {}", alice.local_addr());
    println!("bob   listens on {}", bob.local_addr());

    let to_bob = bob.local_addr();
    let reply = runtime.block_on(async {
        let conn = alice.connect(to_bob).await?;
        println!(
            "alice connected to {:?} (verified: {})",
            conn.peer().identity,
            conn.peer().verified
        );
        let (mut send, mut recv) = conn.open_bi().await?;
        let io = |e: &dyn std::fmt::Display| OctopiiError::Transport(e.to_string());
        send.write_all(b"hi bob").await.map_err(|e| io(&e))?;
        send.finish().map_err(|e| io(&e))?;
        recv.read_to_end(64 * 1024).await.map_err(|e| io(&e))
    })?;
    println!("bob replied: {}", String::from_utf8_lossy(&reply));

    runtime.block_on(async {
        alice.shutdown().await;
        bob.shutdown().await;
    });
    println!("quickstart done");
    Ok(())
}
