//! A server stream of small items: an Octopii `Streaming<Vec<u8>>` call
//! beside a raw quinn stream carrying exactly the bytes that call carries
//! (request, head, item frames, end frame). The raw server writes them
//! pre-built; the raw client walks the frame prefixes to count the items
//! without decoding them. So the difference is the whole streaming layer:
//! producing, encoding and batching the items, reading, checking and
//! decoding them, and the `Stream` machinery on both sides.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes};
use futures::StreamExt;

use crate::rpc::streaming_call::{END, ITEM};
use crate::rpc::{codec, frame};
use crate::transport::tls::ClusterCa;
use crate::transport::{InboundHandler, PeerConnection};
use crate::{Config, OctopiiError, OctopiiNode, OctopiiRuntime, Result, Streaming};

/// The measured service.
#[crate::service]
pub trait StreamBench {
    /// `count` copies of a `size`-byte item.
    async fn items(&self, count: u64, size: u64) -> Streaming<Vec<u8>>;
}

struct Items;

impl StreamBench for Items {
    async fn items(&self, count: u64, size: u64) -> Streaming<Vec<u8>> {
        let item = vec![7u8; size as usize];
        Streaming::from_stream(futures::stream::repeat(item).take(count as usize))
    }
}

/// The baseline server: reads a request of a known size, writes the
/// pre-built reply and finishes the stream.
struct RawItems {
    request: usize,
    reply: Bytes,
}

impl InboundHandler for RawItems {
    fn handle_stream(
        &self,
        _conn: PeerConnection,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let (mut request, reply) = (vec![0; self.request], self.reply.clone());
        Box::pin(async move {
            if recv.read_exact(&mut request).await.is_err() {
                return;
            }
            let mut at = 0;
            while at < reply.len() {
                let end = (at + 64 * 1024).min(reply.len());
                if send.write_chunk(reply.slice(at..end)).await.is_err() {
                    return;
                }
                at = end;
            }
            let _ = send.finish();
        })
    }
}

/// A client node, an Octopii server and a raw server on loopback.
#[derive(Debug)]
pub struct StreamingBench {
    client: OctopiiNode,
    raw_server: OctopiiNode,
    rpc_server: OctopiiNode,
    items: u64,
    size: u64,
    request: Vec<u8>,
}

impl StreamingBench {
    /// Starts the three nodes on `runtime`; each stream carries `items`
    /// items of `size` bytes.
    pub fn start(runtime: &OctopiiRuntime, items: u64, size: u64) -> Result<Self> {
        let ca = ClusterCa::generate()?;
        let config = |name: &str| -> Result<Config> {
            Config::builder()
                .bind_addr(([127, 0, 0, 1], 0).into())
                .credentials(ca.issue_node(name)?)
                .build()
        };
        let (request, reply) = wire_bytes(items, size)?;
        let raw = RawItems {
            request: request.len(),
            reply,
        };
        let raw_server = OctopiiNode::with_handler(config("raw-server")?, runtime, Arc::new(raw))?;
        let rpc_server = OctopiiNode::new(config("rpc-server")?, runtime)?;
        rpc_server.serve(StreamBenchServer::new(Items))?;
        let client = OctopiiNode::new(config("client")?, runtime)?;
        Ok(StreamingBench {
            client,
            raw_server,
            rpc_server,
            items,
            size,
            request,
        })
    }

    /// Items per stream.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// One baseline stream: sends the request, counts the item frames.
    pub async fn raw_stream(&self) -> Result<()> {
        let io = |e: &dyn std::fmt::Display| OctopiiError::Transport(e.to_string());
        let conn = self.client.connect(self.raw_server.local_addr()).await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&self.request).await.map_err(|e| io(&e))?;
        let _ = send.finish();
        let mut frames = FrameCounter::default();
        while let Some(chunk) = recv
            .read_chunk(usize::MAX, true)
            .await
            .map_err(|e| io(&e))?
        {
            frames.feed(&chunk.bytes);
        }
        // The head and the end frame are frames too.
        self.check(frames.complete().saturating_sub(2))
    }

    /// One Octopii stream: calls `items`, decodes every item.
    pub async fn rpc_stream(&self) -> Result<()> {
        let client = StreamBenchClient::new(&self.client, self.rpc_server.local_addr());
        let mut items = client.items(self.items, self.size).await?;
        let mut count = 0;
        while let Some(item) = items.next().await {
            item?;
            count += 1;
        }
        self.check(count)
    }

    fn check(&self, received: u64) -> Result<()> {
        if received != self.items {
            return Err(OctopiiError::Transport(format!(
                "received {received} items, expected {}",
                self.items
            )));
        }
        Ok(())
    }

    /// Stops the three nodes.
    pub async fn shutdown(&self) {
        for node in [&self.client, &self.raw_server, &self.rpc_server] {
            node.shutdown().await;
        }
    }
}

/// The request and the reply of one `items` call, as Octopii sends them.
fn wire_bytes(items: u64, size: u64) -> Result<(Vec<u8>, Bytes)> {
    let header = frame::RequestHeader {
        service: StreamBenchClient::SERVICE_NAME.into(),
        method: "items".into(),
        timeout_micros: None,
        metadata: Vec::new().into(),
        owns_stream: true,
    };
    let mut request = Vec::new();
    frame::put_encoded(&mut request, &header)?;
    frame::put_encoded(&mut request, &(items, size))?;

    let item = codec::encode(&vec![7u8; size as usize])?;
    let mut reply = frame::response(&Ok(Vec::new()));
    reply.reserve(items as usize * (frame::PREFIX + 1 + item.len()) + 5);
    for _ in 0..items {
        reply.put_u32(1 + item.len() as u32);
        reply.put_u8(ITEM);
        reply.extend_from_slice(&item);
    }
    reply.put_u32(1);
    reply.put_u8(END);
    Ok((request, reply.into()))
}

/// Counts the frames in a byte stream by walking their length prefixes.
#[derive(Debug, Default)]
struct FrameCounter {
    prefix: [u8; frame::PREFIX],
    prefix_len: usize,
    /// Payload bytes still to skip in the current frame.
    skip: usize,
    complete: u64,
}

impl FrameCounter {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                if self.skip == 0 {
                    self.complete += 1;
                }
                continue;
            }
            let n = (frame::PREFIX - self.prefix_len).min(bytes.len());
            self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&bytes[..n]);
            self.prefix_len += n;
            bytes = &bytes[n..];
            if self.prefix_len == frame::PREFIX {
                self.prefix_len = 0;
                self.skip = u32::from_be_bytes(self.prefix) as usize;
                if self.skip == 0 {
                    self.complete += 1;
                }
            }
        }
    }

    fn complete(&self) -> u64 {
        self.complete
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_counted_across_chunk_boundaries() {
        let (_, reply) = wire_bytes(3, 5).unwrap();
        for split in 1..reply.len() {
            let mut counter = FrameCounter::default();
            for chunk in reply.chunks(split) {
                counter.feed(chunk);
            }
            assert_eq!(counter.complete(), 5, "chunks of {split}");
        }
    }
}
