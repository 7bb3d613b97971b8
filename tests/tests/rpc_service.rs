//! The user's view of `#[octopii::service]`: typed calls, typed application
//! errors, deadlines, metadata, caller identity, several services per node.

use std::time::Duration;

use octopii::ClusterCa;
use octopii::rpc::{Code, Context};
use octopii::{OctopiiNode, OctopiiRuntime};
use octopii_tests::config;
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum MathError {
    DivByZero,
}

/// Arithmetic.
#[octopii::service]
pub trait Calculator {
    /// Adds.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// Divides, refusing zero.
    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError>;
    /// Sleeps, then answers.
    async fn slow(&self, ms: u64);
}

/// Who is calling.
#[octopii::service]
pub trait Whoami {
    /// The caller's verified name, its `trace-id`, and whether it set a deadline.
    async fn whoami(&self, ctx: &Context) -> (String, Option<String>, bool);
    /// No arguments, no result.
    async fn ping(&self);
}

struct Calc;
impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
        if b == 0 {
            Err(MathError::DivByZero)
        } else {
            Ok(a / b)
        }
    }
    async fn slow(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

struct Who;
impl Whoami for Who {
    async fn whoami(&self, ctx: &Context) -> (String, Option<String>, bool) {
        let trace = ctx.metadata("trace-id").map(str::to_owned);
        (ctx.caller().to_owned(), trace, ctx.deadline().is_some())
    }
    async fn ping(&self) {}
}

fn cluster() -> (OctopiiRuntime, OctopiiNode, OctopiiNode) {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let server = OctopiiNode::new(config(ca.issue_node("server", 1).unwrap()), &rt).unwrap();
    server.serve(CalculatorServer::new(Calc)).unwrap();
    server.serve(WhoamiServer::new(Who)).unwrap();
    let client = OctopiiNode::new(config(ca.issue_node("client", 1).unwrap()), &rt).unwrap();
    (rt, server, client)
}

#[test]
fn typed_calls_and_typed_application_errors() {
    let (rt, server, client) = cluster();
    rt.block_on(async {
        let calc = CalculatorClient::new(&client, server.local_addr());
        assert_eq!(calc.add(2, 3).await.unwrap(), 5);
        assert_eq!(calc.div(7, 2).await.unwrap(), Ok(3));
        assert_eq!(calc.div(1, 0).await.unwrap(), Err(MathError::DivByZero));
        // A clone shares the connection.
        let again = calc.clone();
        assert_eq!(again.add(-1, 1).await.unwrap(), 0);
    });
    assert_eq!(client.stats().pool.handshakes, 1);
}

#[test]
fn several_services_on_one_node_and_context() {
    let (rt, server, client) = cluster();
    rt.block_on(async {
        let who = WhoamiClient::new(&client, server.local_addr());
        who.ping().await.unwrap();
        let (name, trace, deadline) = who.whoami().await.unwrap();
        assert_eq!((name.as_str(), trace, deadline), ("client", None, false));
        let tagged = who
            .with_deadline(Duration::from_secs(10))
            .with_metadata("trace-id", "abc");
        let (_, trace, deadline) = tagged.whoami().await.unwrap();
        assert_eq!((trace.as_deref(), deadline), (Some("abc"), true));
    });
}

#[test]
fn a_deadline_ends_the_call_with_deadline_exceeded() {
    let (rt, server, client) = cluster();
    rt.block_on(async {
        let calc = CalculatorClient::new(&client, server.local_addr());
        let err = calc
            .with_deadline(Duration::from_millis(50))
            .slow(10_000)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded);
        assert_eq!(calc.add(1, 1).await.unwrap(), 2);
    });
}

#[test]
fn a_service_name_is_served_once() {
    let (_rt, server, _client) = cluster();
    let err = server.serve(CalculatorServer::new(Calc)).unwrap_err();
    assert!(err.to_string().contains("Calculator"), "{err}");
}

#[test]
fn calling_a_peer_that_is_gone_is_unavailable() {
    let (rt, server, client) = cluster();
    let addr = server.local_addr();
    rt.block_on(async {
        let calc = CalculatorClient::new(&client, addr).with_deadline(Duration::from_millis(300));
        assert_eq!(calc.add(1, 2).await.unwrap(), 3);
        server.shutdown().await;
        let err = calc.add(1, 2).await.unwrap_err();
        assert!(
            matches!(err.code(), Code::Unavailable | Code::DeadlineExceeded),
            "{err}"
        );
    });
}
