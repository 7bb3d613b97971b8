//! Authorization of user and built-in services, as a caller meets it: a
//! read-only client writing, a certificate that names no role, and a
//! caller nobody verified.

use std::sync::Mutex;

use bytes::Bytes;
use octopii::chunk::{ChunkSource, TransferOptions};
use octopii::rpc::{Code, Context, Policy};
use octopii::transport::tls::{ClusterCa, NodeCredentials, Role};
use octopii::{OctopiiNode, OctopiiRuntime};
use octopii_tests::config;

/// A one-value store.
#[octopii::service]
pub trait Register {
    /// The value.
    async fn get(&self) -> String;
    /// Replaces the value; returns the caller's role as the server saw it.
    async fn put(&self, ctx: &Context, value: String) -> String;
}

#[derive(Default)]
struct Cell(Mutex<String>);

impl Register for Cell {
    async fn get(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    async fn put(&self, ctx: &Context, value: String) -> String {
        *self.0.lock().unwrap() = value;
        ctx.role().to_string()
    }
}

fn node(
    rt: &OctopiiRuntime,
    creds: Result<NodeCredentials, octopii::transport::TransportError>,
) -> OctopiiNode {
    OctopiiNode::new(config(creds.unwrap()), rt).unwrap()
}

#[test]
fn a_read_only_client_may_get_but_not_put() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let server = node(&rt, ca.issue_node("server", 1));
    let reader = node(&rt, ca.issue_client("reader"));
    let ops = node(&rt, ca.issue_admin("ops"));
    let policy = Policy::any_role().method("put", Policy::admins());
    server
        .serve(RegisterServer::new(Cell::default()).authorize(policy))
        .unwrap();
    let addr = server.local_addr();
    rt.block_on(async {
        let admin = RegisterClient::new(&ops, addr);
        assert_eq!(admin.put("v1".into()).await.unwrap(), "admin");
        let client = RegisterClient::new(&reader, addr);
        assert_eq!(client.get().await.unwrap(), "v1");
        let refused = client.put("defaced".into()).await.unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused}");
        assert!(refused.message().contains("client `reader`"), "{refused}");
        assert_eq!(client.get().await.unwrap(), "v1");
    });
}

async fn send(from: &OctopiiNode, to: std::net::SocketAddr) -> octopii::Result<()> {
    let source = ChunkSource::Memory(Bytes::from_static(b"data"));
    let options = TransferOptions::to_memory("blob");
    from.transfer_chunk(source, to, options).await.map(drop)
}

#[test]
fn a_certificate_without_a_role_may_call_user_services_but_not_send_chunks() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let server = node(&rt, ca.issue_node("server", 1));
    server.serve(RegisterServer::new(Cell::default())).unwrap();
    let _inbox = server.serve_chunks().unwrap();
    let legacy = node(&rt, ca.issue("legacy", Role::Unknown));
    let client = node(&rt, ca.issue_client("alice"));
    let addr = server.local_addr();
    rt.block_on(async {
        // User services serve any certificate the cluster CA signed.
        let register = RegisterClient::new(&legacy, addr);
        assert_eq!(register.put("x".into()).await.unwrap(), "no role");
        // ChunkService serves nodes, clients and admins only.
        let refused = send(&legacy, addr).await.unwrap_err().to_string();
        assert!(refused.contains("PermissionDenied"), "{refused}");
        send(&client, addr).await.unwrap();
    });
}

/// A node that accepts any certificate, unverified.
fn insecure_node(rt: &OctopiiRuntime, creds: NodeCredentials) -> OctopiiNode {
    let mut config = config(creds);
    if let Some(tls) = config.tls.as_mut() {
        tls.insecure_accept_any_certificate = true;
    }
    OctopiiNode::new(config, rt).unwrap()
}

#[test]
fn a_refused_caller_nobody_verified_is_unauthenticated() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let server = insecure_node(
        &rt,
        ClusterCa::generate()
            .unwrap()
            .issue_node("server", 1)
            .unwrap(),
    );
    server
        .serve(RegisterServer::new(Cell::default()).authorize(Policy::nodes()))
        .unwrap();
    // Each of another CA: only the insecure opt-in lets them in.
    let eve = insecure_node(
        &rt,
        ClusterCa::generate().unwrap().issue_client("eve").unwrap(),
    );
    let claim = insecure_node(
        &rt,
        ClusterCa::generate().unwrap().issue_node("n", 2).unwrap(),
    );
    rt.block_on(async {
        let register = RegisterClient::new(&eve, server.local_addr());
        let refused = register.get().await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused}");
        // A claim is judged, unverified, as the operator asked.
        let register = RegisterClient::new(&claim, server.local_addr());
        assert_eq!(register.get().await.unwrap(), "");
    });
}
