//! `Logs`: the streaming service the streaming tests call, with probes
//! that show what its producers and consumers did.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use octopii::ClusterCa;
use octopii::rpc::{Code, RpcError};
use octopii::{OctopiiNode, OctopiiRuntime, Streaming};
use serde::{Deserialize, Serialize};

use crate::config;

/// One line of a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Its position in the log.
    pub seq: u64,
    /// Its text.
    pub text: String,
}

/// Why a log cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogError {
    /// No log of that name.
    NotFound(String),
}

/// A log service exercising every streaming pattern.
#[octopii::service]
pub trait Logs {
    /// Server streaming: `count` lines from `from`.
    async fn tail(&self, from: u64, count: u64) -> Streaming<LogLine>;
    /// Client streaming: stores the lines, answers how many arrived.
    async fn upload(&self, prefix: String, lines: Streaming<LogLine>) -> u64;
    /// Bidirectional: answers each message with `prefix` + the message.
    async fn chat(&self, prefix: String, messages: Streaming<String>) -> Streaming<String>;
    /// An application error before the stream, or the numbers `0..n`.
    async fn open(&self, name: String, n: u64) -> Result<Streaming<u64>, LogError>;
    /// `n` numbers, then the error `Internal: disk gone`.
    async fn fail_after(&self, n: u64) -> Streaming<u64>;
    /// Numbers of `size` bytes each for as long as they are read, one per
    /// `pause_ms` (none: as fast as they are taken).
    async fn forever(&self, size: u64, pause_ms: u64) -> Streaming<Vec<u8>>;
    /// Client streaming: takes `n` items, one per `pause_ms`, then answers
    /// how many it got, leaving the rest unread.
    async fn take(&self, n: u64, pause_ms: u64, items: Streaming<Vec<u8>>) -> u64;
    /// A unary method beside the streaming ones.
    async fn ping(&self) -> u64;
}

/// What the service's producers and consumers observed.
#[derive(Debug, Default)]
pub struct Probes {
    /// Items the `forever` producer has made.
    pub produced: AtomicU64,
    /// Set when a `forever` producer is dropped (its call ended).
    pub producer_dropped: AtomicBool,
    /// Set when a `take` handler ends, returned or dropped.
    pub take_ended: AtomicBool,
    /// Lines `upload` received, in order.
    pub uploaded: Mutex<Vec<LogLine>>,
    /// The error `upload`'s stream ended with, if any.
    pub upload_error: Mutex<Option<RpcError>>,
}

impl Probes {
    /// Lines `upload` received so far.
    pub fn uploaded(&self) -> Vec<LogLine> {
        self.uploaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The error `upload`'s stream last ended with.
    pub fn upload_error(&self) -> Option<RpcError> {
        self.upload_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Items produced so far.
    pub fn produced(&self) -> u64 {
        self.produced.load(Ordering::SeqCst)
    }

    /// Waits (up to 5 s) until a `forever` producer has been dropped.
    pub async fn producer_stopped(&self) -> bool {
        for _ in 0..500 {
            if self.producer_dropped.load(Ordering::SeqCst) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

/// The `Logs` implementation.
#[derive(Debug, Default)]
pub struct LogStore {
    /// Shared with the test.
    pub probes: Arc<Probes>,
}

/// Sets its flag when dropped: tells that a producer went away.
struct DropFlag(Arc<Probes>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.producer_dropped.store(true, Ordering::SeqCst);
    }
}

/// Sets `take_ended` when dropped: tells that a `take` handler ended.
struct EndFlag(Arc<Probes>);

impl Drop for EndFlag {
    fn drop(&mut self) {
        self.0.take_ended.store(true, Ordering::SeqCst);
    }
}

impl Logs for LogStore {
    async fn tail(&self, from: u64, count: u64) -> Streaming<LogLine> {
        Streaming::from_stream(
            futures::stream::iter(from..from + count).map(|seq| LogLine {
                seq,
                text: format!("line {seq}"),
            }),
        )
    }

    async fn upload(&self, prefix: String, mut lines: Streaming<LogLine>) -> u64 {
        let mut count = 0;
        while let Some(line) = lines.next().await {
            match line {
                Ok(mut line) => {
                    line.text.insert_str(0, &prefix);
                    self.probes
                        .uploaded
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(line);
                    count += 1;
                }
                Err(e) => {
                    *self
                        .probes
                        .upload_error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(e);
                }
            }
        }
        count
    }

    async fn chat(&self, prefix: String, messages: Streaming<String>) -> Streaming<String> {
        Streaming::from_results(messages.map(move |m| m.map(|m| format!("{prefix}{m}"))))
    }

    async fn open(&self, name: String, n: u64) -> Result<Streaming<u64>, LogError> {
        if name == "main" {
            Ok(Streaming::from_stream(futures::stream::iter(0..n)))
        } else {
            Err(LogError::NotFound(name))
        }
    }

    async fn fail_after(&self, n: u64) -> Streaming<u64> {
        let items = futures::stream::iter(0..n).map(Ok);
        let failure = RpcError::new(Code::Internal, "disk gone");
        Streaming::from_results(items.chain(futures::stream::iter([Err(failure)])))
    }

    async fn forever(&self, size: u64, pause_ms: u64) -> Streaming<Vec<u8>> {
        endless(size as usize, pause_ms, self.probes.clone())
    }

    async fn take(&self, n: u64, pause_ms: u64, mut items: Streaming<Vec<u8>>) -> u64 {
        self.probes.take_ended.store(false, Ordering::SeqCst);
        let _ended = EndFlag(self.probes.clone());
        let mut taken = 0;
        while taken < n {
            match items.next().await {
                Some(Ok(_)) => taken += 1,
                _ => break,
            }
            if pause_ms > 0 {
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            }
        }
        taken
    }

    async fn ping(&self) -> u64 {
        7
    }
}

/// Items of `size` bytes (the first 8 count up) for as long as they are
/// taken, one per `pause_ms` (0: as fast as they are taken), counted in
/// `probes.produced`; `probes.producer_dropped` is set when it is dropped.
pub fn endless(size: usize, pause_ms: u64, probes: Arc<Probes>) -> Streaming<Vec<u8>> {
    probes.producer_dropped.store(false, Ordering::SeqCst);
    let flag = DropFlag(probes.clone());
    let items = futures::stream::unfold(0u64, move |n| {
        let probes = probes.clone();
        async move {
            if pause_ms > 0 {
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            }
            probes.produced.fetch_add(1, Ordering::SeqCst);
            let mut item = vec![0u8; size];
            let counter = size.min(8);
            item[..counter].copy_from_slice(&n.to_le_bytes()[..counter]);
            Some((item, n + 1))
        }
    });
    // The flag lives as long as the producer.
    Streaming::from_stream(items.map(move |item| {
        let _alive = &flag;
        item
    }))
}

/// A runtime, a node serving `Logs` (with the returned probes), and a
/// client node; `tune` adjusts both nodes' configs.
pub fn logs_cluster(
    tune: impl Fn(&mut octopii::Config),
) -> (OctopiiRuntime, OctopiiNode, OctopiiNode, Arc<Probes>) {
    let rt = OctopiiRuntime::new(2).expect("runtime");
    let ca = ClusterCa::generate().expect("cluster CA");
    let node = |name: &str| {
        let mut config = config(ca.issue_node(name, 1).expect("certificate"));
        tune(&mut config);
        OctopiiNode::new(config, &rt).expect("start node")
    };
    let server = node("server");
    let store = LogStore::default();
    let probes = store.probes.clone();
    server.serve(LogsServer::new(store)).expect("serve Logs");
    let client = node("client");
    (rt, server, client, probes)
}
