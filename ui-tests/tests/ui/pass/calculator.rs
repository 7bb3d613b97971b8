//! The service from the documentation: the whole generated API, checked by
//! type, and the server driven directly, without a network.
#![deny(warnings, missing_docs)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use octopii::rpc::{Code, Context, Service};
use octopii::transport::PeerInfo;
use octopii::{OctopiiNode, RpcError};
use serde::{Deserialize, Serialize};

/// Why a division failed.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum MathError {
    /// The divisor was zero.
    DivByZero,
}

/// Adds numbers.
#[octopii::service]
pub trait Calculator {
    /// Adds.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// Divides, as seen by the caller named in `ctx`.
    async fn div(&self, ctx: &octopii::rpc::Context, a: i64, b: i64) -> Result<i64, MathError>;
}

struct Calc;

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn div(&self, ctx: &Context, a: i64, b: i64) -> Result<i64, MathError> {
        assert_eq!(ctx.caller(), "alice");
        a.checked_div(b).ok_or(MathError::DivByZero)
    }
}

/// The client's API, checked by type: never called, only compiled.
fn client_api(node: &OctopiiNode, peer: SocketAddr) {
    let client: CalculatorClient = CalculatorClient::new(node, peer)
        .with_deadline(Duration::from_secs(1))
        .with_metadata("trace-id", String::from("42"));
    let wrapped = CalculatorClient::from_client(octopii::rpc::Client::new(node, peer)).clone();
    let _: &dyn std::fmt::Debug = &wrapped;
    let name: &'static str = CalculatorClient::SERVICE_NAME;
    assert_eq!(name, "Calculator");
    // Client futures are `Send`, so they can be spawned.
    fn send<T: Send>(_: &T) {}
    let add = client.add(1, 2);
    send(&add);
    let _: &dyn Future<Output = Result<i64, RpcError>> = &add;
    let div = client.div(1, 0);
    send(&div);
    let _: &dyn Future<Output = Result<Result<i64, MathError>, RpcError>> = &div;
}

fn main() {
    let _: fn(&OctopiiNode, SocketAddr) = client_api;
    assert_eq!(CalculatorClient::SERVICE_NAME, "Calculator");

    let server = CalculatorServer::new(Calc);
    let shared = CalculatorServer::from_arc(Arc::new(Calc)).clone();
    let _: &dyn std::fmt::Debug = &shared;
    let service: Box<dyn Service> = Box::new(server);
    assert_eq!(service.name(), "Calculator");
    assert_eq!(service.methods(), ["add", "div"]);

    let ctx = Context::new(
        Arc::new(PeerInfo {
            addr: ([127, 0, 0, 1], 1).into(),
            identity: "alice".into(),
            role: octopii::transport::tls::Role::Client,
            verified: true,
        }),
        None,
        Vec::new(),
    );
    let call = |method: &str, args: Vec<u8>| {
        let future = service.call(method, ctx.clone(), args.into());
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    };
    let encode = |value: &(i64, i64)| octopii::codec::encode(value).unwrap();

    let sum = call("add", encode(&(2, 3))).unwrap();
    assert_eq!(octopii::codec::decode::<i64>(&sum).unwrap(), 5);

    let quotient = call("div", encode(&(7, 2))).unwrap();
    let quotient: Result<i64, MathError> = octopii::codec::decode(&quotient).unwrap();
    assert_eq!(quotient, Ok(3));

    let by_zero = call("div", encode(&(7, 0))).unwrap();
    let by_zero: Result<i64, MathError> = octopii::codec::decode(&by_zero).unwrap();
    assert_eq!(by_zero, Err(MathError::DivByZero));

    let missing = call("mul", encode(&(7, 2))).unwrap_err();
    assert_eq!(missing.code(), Code::Unimplemented);

    let garbage = call("add", vec![1, 2, 3]).unwrap_err();
    assert_eq!(garbage.code(), Code::InvalidArgument);
}
