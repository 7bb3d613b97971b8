//! Several services side by side in one module, each with its own client
//! and server, served from one implementation type.
#![deny(warnings)]

use octopii::rpc::Service;

#[octopii::service]
trait Counter {
    async fn increment(&self, by: u64) -> u64;
}

#[octopii::service]
trait Echo {
    async fn echo(&self, text: String) -> String;
}

#[octopii::service]
trait Health {
    async fn ok(&self) -> bool;
}

struct Node;

impl Counter for Node {
    async fn increment(&self, by: u64) -> u64 {
        by + 1
    }
}

impl Echo for Node {
    async fn echo(&self, text: String) -> String {
        text
    }
}

impl Health for Node {
    async fn ok(&self) -> bool {
        true
    }
}

fn main() {
    let services: Vec<Box<dyn Service>> = vec![
        Box::new(CounterServer::new(Node)),
        Box::new(EchoServer::new(Node)),
        Box::new(HealthServer::new(Node)),
    ];
    let names: Vec<&str> = services.iter().map(|s| s.name()).collect();
    assert_eq!(names, ["Counter", "Echo", "Health"]);
    assert_eq!(CounterClient::SERVICE_NAME, "Counter");
    assert_eq!(EchoClient::SERVICE_NAME, "Echo");
    assert_eq!(HealthClient::SERVICE_NAME, "Health");
}
