//! Server streaming: the handler returns `Streaming<T>`, the client method
//! returns `Result<Streaming<T>, RpcError>`; `Streaming` is recognised bare
//! or by a path through `octopii`.
#![deny(warnings)]

use std::future::Future;

use octopii::{RpcError, Streaming};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct LogLine {
    seq: u64,
    text: String,
}

#[octopii::service]
trait Logs {
    async fn tail(&self, from: u64) -> Streaming<LogLine>;
    async fn numbers(&self) -> octopii::rpc::Streaming<u64>;
    async fn ping(&self) -> u64;
}

struct Store;

impl Logs for Store {
    async fn tail(&self, from: u64) -> Streaming<LogLine> {
        Streaming::from(vec![LogLine {
            seq: from,
            text: "hello".into(),
        }])
    }

    async fn numbers(&self) -> Streaming<u64> {
        Streaming::empty()
    }

    async fn ping(&self) -> u64 {
        1
    }
}

fn typed(client: &LogsClient) -> impl Future<Output = Result<Streaming<LogLine>, RpcError>> + '_ {
    client.tail(0)
}

fn main() {
    let _ = typed;
    let _server = LogsServer::new(Store);
}
