//! Calculator: application errors, deadlines and metadata.
//!
//! A method declared `-> Result<i64, MathError>` sends its `Err` as a value:
//! the client gets `Ok(Err(MathError::DivByZero))`, while a failed call
//! (unreachable peer, deadline passed, unknown method) is the outer
//! `Err(RpcError)`. The client also sets a deadline, which the server sees
//! in the handler's `Context` and enforces, and metadata, which the
//! handler reads from the same `Context`.
//!
//! Run with `cargo run -p octopii-examples --example calculator`.

use std::error::Error;

/// Any error, from the node or from a call.
type BoxError = Box<dyn Error + Send + Sync>;
use std::time::Duration;

use octopii::LocalCluster;
use octopii::rpc::{Code, Context};
use serde::{Deserialize, Serialize};

/// Why a calculation has no answer.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum MathError {
    /// The divisor was zero.
    DivByZero,
}

/// Integer arithmetic.
#[octopii::service]
pub trait Calculator {
    /// `a + b`, wrapping on overflow.
    async fn add(&self, a: i64, b: i64) -> i64;

    /// `a / b`, or [`MathError::DivByZero`].
    async fn div(&self, ctx: &Context, a: i64, b: i64) -> Result<i64, MathError>;

    /// Sleeps for `millis` milliseconds, then answers `millis`.
    async fn slow(&self, millis: u64) -> u64;
}

/// The server's implementation of [`Calculator`].
struct Calc;

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }

    async fn div(&self, ctx: &Context, a: i64, b: i64) -> Result<i64, MathError> {
        let request = ctx.metadata("request-id").unwrap_or("-");
        let deadline = match ctx.remaining() {
            Some(left) => format!("due in {}ms", left.as_millis()),
            None => "no deadline".to_owned(),
        };
        println!(
            "  [server] div({a}, {b}) from {}, request {request}, {deadline}",
            ctx.caller()
        );
        a.checked_div(b).ok_or(MathError::DivByZero)
    }

    async fn slow(&self, millis: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }
}

fn main() -> Result<(), BoxError> {
    let cluster = LocalCluster::new()?;
    let node = |name: &str| cluster.node(name);
    let client_node = node("alice")?;
    let server_node = node("calc")?;
    server_node.serve(CalculatorServer::new(Calc))?;

    let calc = CalculatorClient::new(&client_node, server_node.local_addr());
    cluster.block_on(async {
        println!("add(2, 40) = {}", calc.add(2, 40).await?);

        // Metadata and a deadline travel with every call made through
        // this client; the handler reads both from its `Context`.
        let traced = calc
            .with_metadata("request-id", "42")
            .with_deadline(Duration::from_secs(5));
        let quotient = traced.div(84, 2).await?;
        println!("div(84, 2) = {quotient:?}");
        assert_eq!(quotient, Ok(42));

        // The application error is a value: the call itself succeeded.
        let by_zero = traced.div(1, 0).await?;
        println!("div(1, 0) = {by_zero:?}");
        assert_eq!(by_zero, Err(MathError::DivByZero));

        // A deadline bounds the whole call: past it the client gives up
        // with `DeadlineExceeded`, and the server stops the handler.
        let hurried = calc.with_deadline(Duration::from_millis(100));
        println!("slow(10) within 100ms = {:?}", hurried.slow(10).await);
        match hurried.slow(1_000).await {
            Err(e) if e.code() == Code::DeadlineExceeded => {
                println!("slow(1000) within 100ms: {e}")
            }
            other => panic!("expected a deadline error, got {other:?}"),
        }
        Ok::<(), BoxError>(())
    })?;

    cluster.block_on(async {
        client_node.shutdown().await;
        server_node.shutdown().await;
    });
    Ok(())
}
