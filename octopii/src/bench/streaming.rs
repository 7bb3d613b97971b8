//! A server stream of small items: an Octopii `Streaming<T>` call
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
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::rpc::frame;
use crate::rpc::streaming::call::{END, ITEM};
use crate::transport::tls::ClusterCa;
use crate::transport::{InboundHandler, PeerConnection};
use crate::{Config, OctopiiNode, OctopiiRuntime, Result, Streaming};

/// A small item, as a metrics or log stream carries: 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    /// Its position in the stream.
    pub seq: u64,
    /// A value.
    pub value: u64,
}

impl Tick {
    fn at(seq: u64) -> Tick {
        Tick {
            seq,
            value: seq.wrapping_mul(3),
        }
    }
}

/// A log line: a sequence number and a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// Its position in the log.
    pub seq: u64,
    /// Its text.
    pub text: String,
}

/// The measured service.
#[crate::service]
pub trait StreamBench {
    /// `count` ticks.
    async fn ticks(&self, count: u64) -> Streaming<Tick>;
    /// `count` lines of `size`-byte texts.
    async fn lines(&self, count: u64, size: u64) -> Streaming<Line>;
}

struct Producer;

impl StreamBench for Producer {
    async fn ticks(&self, count: u64) -> Streaming<Tick> {
        Streaming::from_stream(futures::stream::iter(0..count).map(Tick::at))
    }

    async fn lines(&self, count: u64, size: u64) -> Streaming<Line> {
        let text = "x".repeat(size as usize);
        Streaming::from_stream(futures::stream::iter(0..count).map(move |seq| Line {
            seq,
            text: text.clone(),
        }))
    }
}

/// What each measured stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// [`Tick`]s.
    Ticks,
    /// [`Line`]s whose texts have this many bytes.
    Lines(u64),
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
    payload: Payload,
    request: Vec<u8>,
}

impl StreamingBench {
    /// Starts the three nodes on `runtime`; each stream carries `items`
    /// items of `payload`.
    pub fn start(runtime: &OctopiiRuntime, items: u64, payload: Payload) -> Result<Self> {
        let ca = ClusterCa::generate()?;
        let config = |name: &str| -> Result<Config> {
            Config::builder()
                .bind_addr(([127, 0, 0, 1], 0).into())
                .credentials(ca.issue_node(name, 1)?)
                .build()
        };
        let (request, reply) = wire_bytes(items, payload)?;
        let raw = RawItems {
            request: request.len(),
            reply,
        };
        let raw_server = OctopiiNode::with_handler(config("raw-server")?, runtime, Arc::new(raw))?;
        let rpc_server = OctopiiNode::new(config("rpc-server")?, runtime)?;
        rpc_server.serve(StreamBenchServer::new(Producer))?;
        let client = OctopiiNode::new(config("client")?, runtime)?;
        Ok(StreamingBench {
            client,
            raw_server,
            rpc_server,
            items,
            payload,
            request,
        })
    }

    /// Items per stream.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// One baseline stream: sends the request, counts the item frames.
    pub async fn raw_stream(&self) -> Result<()> {
        let conn = self.client.connect(self.raw_server.local_addr()).await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&self.request)
            .await
            .map_err(std::io::Error::from)?;
        let _ = send.finish();
        let mut frames = FrameCounter::default();
        while let Some(chunk) = recv
            .read_chunk(usize::MAX, true)
            .await
            .map_err(std::io::Error::from)?
        {
            frames.feed(&chunk.bytes);
        }
        // The head and the end frame are frames too.
        self.check(frames.complete().saturating_sub(2))
    }

    /// One Octopii stream: decodes every item.
    pub async fn rpc_stream(&self) -> Result<()> {
        let client = StreamBenchClient::new(&self.client, self.rpc_server.local_addr());
        let count = match self.payload {
            Payload::Ticks => count(client.ticks(self.items).await?).await?,
            Payload::Lines(size) => count(client.lines(self.items, size).await?).await?,
        };
        self.check(count)
    }

    fn check(&self, received: u64) -> Result<()> {
        if received != self.items {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("received {received} items, expected {}", self.items),
            )
            .into());
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

/// Counts the items of a stream, failing on an error item.
async fn count<T>(mut items: Streaming<T>) -> Result<u64> {
    let mut count = 0;
    while let Some(item) = items.next().await {
        item?;
        count += 1;
    }
    Ok(count)
}

/// The request and the reply of one call, as Octopii sends them.
fn wire_bytes(items: u64, payload: Payload) -> Result<(Vec<u8>, Bytes)> {
    let method = match payload {
        Payload::Ticks => "ticks",
        Payload::Lines(_) => "lines",
    };
    let header = frame::RequestHeader {
        service: StreamBenchClient::SERVICE_NAME.into(),
        method: method.into(),
        timeout_micros: None,
        metadata: Vec::new().into(),
        owns_stream: true,
        trace: None,
        signature: None,
    };
    let mut request = Vec::new();
    frame::put_encoded(&mut request, &header)?;
    match payload {
        Payload::Ticks => frame::put_encoded(&mut request, &(items,))?,
        Payload::Lines(size) => frame::put_encoded(&mut request, &(items, size))?,
    }

    let mut reply = frame::response(&Ok(Vec::new()));
    for seq in 0..items {
        let item = match payload {
            Payload::Ticks => codec::encode(&Tick::at(seq))?,
            Payload::Lines(size) => codec::encode(&Line {
                seq,
                text: "x".repeat(size as usize),
            })?,
        };
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
        let (_, reply) = wire_bytes(3, Payload::Lines(5)).unwrap();
        for split in 1..reply.len() {
            let mut counter = FrameCounter::default();
            for chunk in reply.chunks(split) {
                counter.feed(chunk);
            }
            assert_eq!(counter.complete(), 5, "chunks of {split}");
        }
    }
}
