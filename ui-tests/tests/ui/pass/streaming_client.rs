//! Client streaming: the last argument is `Streaming<T>`, the result one
//! value. The client method takes anything that converts into the stream
//! (a `Vec<T>`, or a `Streaming<T>` built from any stream).
#![deny(warnings)]

use std::future::Future;

use octopii::{Context, RpcError, Streaming};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct LogLine {
    seq: u64,
    text: String,
}

#[octopii::service]
trait Logs {
    async fn upload(&self, lines: Streaming<LogLine>) -> u64;
    async fn upload_to(&self, ctx: &Context, file: String, lines: Streaming<LogLine>) -> Result<u64, String>;
    async fn drain(&self, lines: Streaming<LogLine>);
}

struct Store;

impl Logs for Store {
    async fn upload(&self, _lines: Streaming<LogLine>) -> u64 {
        0
    }

    async fn upload_to(&self, _ctx: &Context, _file: String, _lines: Streaming<LogLine>) -> Result<u64, String> {
        Ok(0)
    }

    async fn drain(&self, _lines: Streaming<LogLine>) {}
}

fn from_vec(client: &LogsClient) -> impl Future<Output = Result<u64, RpcError>> + '_ {
    client.upload(vec![LogLine { seq: 0, text: String::new() }])
}

fn from_stream(
    client: &LogsClient,
    lines: Streaming<LogLine>,
) -> impl Future<Output = Result<Result<u64, String>, RpcError>> + '_ {
    client.upload_to("app.log".into(), lines)
}

fn main() {
    let _ = (from_vec, from_stream);
    let _server = LogsServer::new(Store);
}
