//! `tower` middleware on both sides of a call: server layers that
//! authorize, limit and time out calls (streaming ones too), and client
//! layers that add metadata and bound a call.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use octopii::rpc::layers::Outgoing;
use octopii::rpc::{Code, Context, Policy, PolicyLayer};
use octopii::transport::tls::{ClusterCa, NodeCredentials};
use octopii::{OctopiiNode, OctopiiRuntime, Streaming};
use octopii_tests::config;
use tower::ServiceBuilder;

/// A service with a fast, a slow and a streaming method.
#[octopii::service]
pub trait Clock {
    /// The caller's `token` metadata, if any.
    async fn token(&self, ctx: &Context) -> Option<String>;
    /// Answers after `millis`.
    async fn sleep(&self, millis: u64) -> u64;
    /// The numbers `0..n`.
    async fn count(&self, n: u64) -> Streaming<u64>;
}

struct Server;

impl Clock for Server {
    async fn token(&self, ctx: &Context) -> Option<String> {
        ctx.metadata("token").map(String::from)
    }

    async fn sleep(&self, millis: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }

    async fn count(&self, n: u64) -> Streaming<u64> {
        Streaming::from_stream(futures::stream::iter(0..n))
    }
}

fn node(
    rt: &OctopiiRuntime,
    creds: Result<NodeCredentials, octopii::transport::TransportError>,
) -> OctopiiNode {
    OctopiiNode::new(config(creds.unwrap()), rt).unwrap()
}

/// A server with three layers: nodes only, one call at a time (others
/// shed), each within 300 ms; a node and a client to call it.
fn cluster() -> (OctopiiRuntime, OctopiiNode, OctopiiNode, OctopiiNode) {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let server = node(&rt, ca.issue_node("server", 1));
    let member = node(&rt, ca.issue_node("member", 2));
    let outsider = node(&rt, ca.issue_client("outsider"));
    let layers = ServiceBuilder::new()
        .layer(PolicyLayer::new(Policy::nodes()))
        .load_shed()
        .concurrency_limit(1)
        .timeout(Duration::from_millis(300));
    server
        .serve(ClockServer::new(Server).layer(layers))
        .unwrap();
    (rt, server, member, outsider)
}

#[test]
fn server_layers_authorize_limit_and_time_out_calls() {
    let (rt, server, member, outsider) = cluster();
    let addr = server.local_addr();
    rt.block_on(async {
        let clock = ClockClient::new(&member, addr);
        assert_eq!(clock.sleep(1).await.unwrap(), 1);

        // The policy layer refuses a client certificate.
        let refused = ClockClient::new(&outsider, addr)
            .sleep(1)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused}");
        assert!(
            refused.message().contains("Clock.sleep is for nodes"),
            "{refused}"
        );

        // The timeout layer ends a handler that takes too long.
        let slow = clock.sleep(5_000).await.unwrap_err();
        assert_eq!(slow.code(), Code::DeadlineExceeded, "{slow}");

        // While one call holds the only permit, the next is shed at once.
        let held = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep(200).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let shed = clock.sleep(1).await.unwrap_err();
        assert_eq!(shed.code(), Code::ResourceExhausted, "{shed}");
        assert_eq!(held.await.unwrap().unwrap(), 200);
        assert_eq!(clock.sleep(1).await.unwrap(), 1);
    });
}

#[test]
fn streaming_calls_pass_through_the_server_layers() {
    let (rt, server, member, outsider) = cluster();
    let addr = server.local_addr();
    rt.block_on(async {
        let numbers: Vec<u64> = ClockClient::new(&member, addr)
            .count(4)
            .await
            .unwrap()
            .map(Result::unwrap)
            .collect()
            .await;
        assert_eq!(numbers, [0, 1, 2, 3]);
        // The refusal reaches the caller on the call's own stream.
        let refused = match ClockClient::new(&outsider, addr).count(4).await {
            Ok(mut items) => items.next().await.unwrap().unwrap_err(),
            Err(refused) => refused,
        };
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused}");
    });
}

#[test]
fn client_layers_add_metadata_bound_calls_and_see_every_call() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let server = node(&rt, ca.issue_node("server", 1));
    let caller = node(&rt, ca.issue_client("caller"));
    server.serve(ClockServer::new(Server)).unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let layers = ServiceBuilder::new()
        .map_request({
            let seen = seen.clone();
            move |mut call: Outgoing| {
                seen.fetch_add(1, Ordering::SeqCst);
                call.insert_metadata("token", format!("{}.{}", call.service(), call.method()));
                call
            }
        })
        .timeout(Duration::from_millis(300));
    let clock = ClockClient::new(&caller, server.local_addr()).layer(layers);
    rt.block_on(async {
        assert_eq!(clock.token().await.unwrap().as_deref(), Some("Clock.token"));
        assert_eq!(clock.sleep(1).await.unwrap(), 1);
        let slow = clock.sleep(5_000).await.unwrap_err();
        assert_eq!(slow.code(), Code::DeadlineExceeded, "{slow}");
        // A deadline set on the client after its layers still applies.
        let bounded = clock.with_deadline(Duration::from_millis(100));
        let error = bounded.sleep(250).await.unwrap_err();
        assert_eq!(error.code(), Code::DeadlineExceeded, "{error}");
        // The client's deadline (or the server's, told it), not the layer's.
        assert!(!error.message().contains("a layer"), "{error}");
    });
    assert_eq!(seen.load(Ordering::SeqCst), 4);
}
