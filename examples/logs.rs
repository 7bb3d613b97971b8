//! Logs: streaming RPCs between two nodes in one process.
//!
//! One node keeps a log; the other appends to it with a client stream,
//! follows it with a server stream that goes on delivering lines as they
//! are appended, and filters lines through a bidirectional stream. Each
//! stream is one QUIC stream with end-to-end backpressure; dropping it
//! cancels the call on the server.
//!
//! Run with `cargo run -p octopii-examples --example logs`.

use std::error::Error;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use octopii::{LocalCluster, Streaming};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Any error, from the node or from a call.
type BoxError = Box<dyn Error + Send + Sync>;

/// One line of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    /// Its position in the log, from 0.
    pub seq: u64,
    /// Its text.
    pub text: String,
}

/// Why a tail cannot start.
#[derive(Debug, Serialize, Deserialize)]
pub enum TailError {
    /// The log has fewer lines than the position asked for.
    PastTheEnd {
        /// Lines in the log.
        len: u64,
    },
}

/// An append-only log.
#[octopii::service]
pub trait Log {
    /// Appends the lines of a stream; answers the log's new length.
    async fn append(&self, lines: Streaming<String>) -> u64;

    /// The lines from `from` on, then every line appended later, for as
    /// long as the caller reads.
    async fn follow(&self, from: u64) -> Result<Streaming<LogLine>, TailError>;

    /// Answers each line that contains `pattern`, as the lines arrive.
    async fn grep(&self, pattern: String, lines: Streaming<String>) -> Streaming<String>;
}

/// The log's lines, and the number of lines, watched by followers.
struct LogStore {
    lines: Arc<Mutex<Vec<LogLine>>>,
    len: watch::Sender<u64>,
}

impl LogStore {
    fn new() -> Self {
        LogStore {
            lines: Arc::default(),
            len: watch::Sender::new(0),
        }
    }
}

impl Log for LogStore {
    async fn append(&self, mut lines: Streaming<String>) -> u64 {
        while let Some(Ok(text)) = lines.next().await {
            let mut log = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
            let seq = log.len() as u64;
            log.push(LogLine { seq, text });
            self.len.send_replace(seq + 1);
        }
        *self.len.borrow()
    }

    async fn follow(&self, from: u64) -> Result<Streaming<LogLine>, TailError> {
        let len = *self.len.borrow();
        if from > len {
            return Err(TailError::PastTheEnd { len });
        }
        let (lines, len) = (self.lines.clone(), self.len.subscribe());
        // Pulled one line at a time, as fast as the follower reads.
        let follow = futures::stream::unfold((from, len), move |(next, mut len)| {
            let lines = lines.clone();
            async move {
                // Wait until line `next` exists (or the log is gone).
                len.wait_for(|&len| len > next).await.ok()?;
                let log = lines.lock().unwrap_or_else(PoisonError::into_inner);
                let line = log.get(next as usize)?.clone();
                Some((line, (next + 1, len)))
            }
        });
        Ok(Streaming::from_stream(follow))
    }

    async fn grep(&self, pattern: String, lines: Streaming<String>) -> Streaming<String> {
        Streaming::from_results(lines.filter(move |line| {
            let keep = line.as_ref().map_or(true, |line| line.contains(&pattern));
            std::future::ready(keep)
        }))
    }
}

fn main() -> Result<(), BoxError> {
    let cluster = LocalCluster::new()?;
    let node = |name: &str| cluster.node(name);
    let server = node("log-server")?;
    server.serve(LogServer::new(LogStore::new()))?;
    let client = node("alice")?;

    cluster.block_on(async {
        let log = LogClient::new(&client, server.local_addr());

        // Client streaming: three lines in, the new length back.
        let boot = vec!["boot".to_string(), "disk ok".into(), "error: fan".into()];
        let len = log.append(boot).await?;
        println!("appended 3 lines, the log has {len}");

        // Server streaming: follow the log from line 1. The stream goes
        // on as lines are appended by another call.
        let mut follow = log.follow(1).await?.map_err(|e| format!("{e:?}"))?;
        let writer = log.clone();
        let more = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let later = Streaming::from_stream(futures::stream::iter([
                "net up".to_string(),
                "error: disk slow".into(),
            ]));
            writer.append(later).await
        });
        for _ in 0..4 {
            if let Some(line) = follow.next().await {
                let line = line?;
                println!("  follow: #{} {}", line.seq, line.text);
            }
        }
        more.await??;
        // Dropping the stream cancels the call: the server stops following.
        drop(follow);

        // An application error before any line.
        match log.follow(99).await? {
            Ok(_) => println!("unexpected: following past the end"),
            Err(e) => println!("follow(99) refused: {e:?}"),
        }

        // Bidirectional: lines go out through a channel, matches come back
        // while the client is still sending.
        let (sender, lines) = Streaming::channel(16);
        let mut matches = log.grep("error".into(), lines).await?;
        for text in ["all good", "error: cpu hot", "still fine", "error: oom"] {
            sender
                .send(text.to_string())
                .await
                .map_err(|_| "grep ended")?;
        }
        drop(sender);
        while let Some(found) = matches.next().await {
            println!("  grep: {}", found?);
        }
        Ok::<_, BoxError>(())
    })?;

    cluster.block_on(client.shutdown());
    cluster.block_on(server.shutdown());
    Ok(())
}
