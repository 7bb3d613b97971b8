//! `Result<Streaming<T>, E>`: the handler may answer an application error
//! before the stream starts; the client sees `Ok(Err(e))`, or `Ok(Ok(items))`.
#![deny(warnings)]

use std::future::Future;

use octopii::{Context, RpcError, Streaming};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
enum OpenError {
    NoSuchLog(String),
}

#[octopii::service]
trait Logs {
    async fn open(&self, ctx: &Context, name: String) -> Result<Streaming<String>, OpenError>;
    async fn replay(&self, lines: Streaming<String>) -> std::result::Result<Streaming<u64>, String>;
}

struct Store;

impl Logs for Store {
    async fn open(&self, _ctx: &Context, name: String) -> Result<Streaming<String>, OpenError> {
        Err(OpenError::NoSuchLog(name))
    }

    async fn replay(&self, _lines: Streaming<String>) -> Result<Streaming<u64>, String> {
        Ok(Streaming::from(vec![1, 2, 3]))
    }
}

fn typed(
    client: &LogsClient,
) -> impl Future<Output = Result<Result<Streaming<String>, OpenError>, RpcError>> + '_ {
    client.open("main".into())
}

fn main() {
    let _ = typed;
    let _server = LogsServer::new(Store);
}
