//! The built-in `Health` service: every node serves it, it answers for the
//! node and each served service, the application can take either out of
//! service, and a client certificate may ask.

use octopii::LocalCluster;
use octopii::error::OctopiiError;
use octopii::health::{HealthClient, ServingStatus};
use octopii::rpc::ServeError;

#[octopii::service]
pub trait Echo {
    async fn echo(&self, text: String) -> String;
}

struct Parrot;

impl Echo for Parrot {
    async fn echo(&self, text: String) -> String {
        text
    }
}

#[test]
fn a_node_and_its_services_say_whether_they_serve() {
    let cluster = LocalCluster::new().unwrap();
    let node = cluster.node("node").unwrap();
    node.serve(EchoServer::new(Parrot)).unwrap();
    let probe = cluster
        .node_with(cluster.ca().issue_client("probe").unwrap())
        .unwrap();
    let health = HealthClient::new(&probe, node.local_addr());
    let status = |service: &str| cluster.block_on(health.check(service.to_owned())).unwrap();

    assert_eq!(status(""), ServingStatus::Serving);
    assert_eq!(status("Echo"), ServingStatus::Serving);
    assert_eq!(status("Nope"), ServingStatus::Unknown);

    node.set_serving("Echo", false);
    assert_eq!(status("Echo"), ServingStatus::NotServing);
    assert_eq!(status(""), ServingStatus::Serving);
    node.set_serving("Echo", true);

    // A node out of service takes every service with it, in what it tells
    // probes; calls are still answered.
    node.set_serving("", false);
    assert_eq!(status(""), ServingStatus::NotServing);
    assert_eq!(status("Echo"), ServingStatus::NotServing);
    let echo = EchoClient::new(&probe, node.local_addr());
    assert_eq!(
        cluster.block_on(echo.echo("still".into())).unwrap(),
        "still"
    );
}

#[test]
fn the_health_service_name_is_taken() {
    #[octopii::service]
    pub trait Health {
        async fn ok(&self) -> bool;
    }
    struct Mine;
    impl Health for Mine {
        async fn ok(&self) -> bool {
            true
        }
    }
    let cluster = LocalCluster::new().unwrap();
    let node = cluster.node("node").unwrap();
    let refused = node.serve(HealthServer::new(Mine)).unwrap_err();
    assert!(
        matches!(refused, OctopiiError::Serve(ServeError::Duplicate { .. })),
        "{refused:?}"
    );
}
