//! Bidirectional streaming: a `Streaming<T>` argument and a `Streaming<U>`
//! result; the handler may answer the client's stream as it arrives.
#![deny(warnings)]

use std::future::Future;

use octopii::{RpcError, Streaming};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Msg {
    from: String,
    text: String,
}

#[octopii::service]
trait Chat {
    async fn chat(&self, room: String, msgs: Streaming<Msg>) -> Streaming<Msg>;
}

struct Echo;

impl Chat for Echo {
    async fn chat(&self, _room: String, msgs: Streaming<Msg>) -> Streaming<Msg> {
        Streaming::from_results(msgs)
    }
}

fn typed(client: &ChatClient) -> impl Future<Output = Result<Streaming<Msg>, RpcError>> + '_ {
    let (_sender, msgs) = Streaming::channel(16);
    client.chat("lobby".into(), msgs)
}

fn main() {
    let _ = typed;
    let _server = ChatServer::new(Echo);
}
