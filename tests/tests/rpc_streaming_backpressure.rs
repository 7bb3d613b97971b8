//! Backpressure end to end: an endless producer (1 GiB and more, were it
//! let run) feeding a slow consumer never gets more than a bounded number
//! of items ahead, in either direction. The bound comes from the QUIC
//! windows, made small here so the test is fast.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use octopii_tests::logs::{LogsClient, Probes, endless, logs_cluster};

const ITEM: usize = 1024;
const WINDOW: u32 = 64 * 1024;

/// Small windows on both nodes: at most `WINDOW` unread bytes per stream,
/// `WINDOW` unacknowledged bytes per connection.
fn small_windows(config: &mut octopii::Config) {
    config.transport.stream_receive_window = WINDOW;
    config.transport.receive_window = WINDOW;
    config.transport.send_window = WINDOW as u64;
}

/// Items that may be produced but not consumed: what fits in the receive
/// window, the send buffer and a reader's buffer, one write batch (64 KiB)
/// being assembled, and slack for framing: 272 items, a quarter of a MiB,
/// however far the producer would go.
const BOUND: u64 = (3 * WINDOW as u64 + 64 * 1024) / ITEM as u64 + 16;

#[test]
fn a_slow_client_holds_back_an_endless_server_producer() {
    let (rt, server, client, probes) = logs_cluster(small_windows);
    rt.block_on(async {
        let logs = LogsClient::new(&client, server.local_addr());
        let mut items = logs.forever(ITEM as u64, 0).await.unwrap();
        let mut consumed = 0u64;
        let mut most_ahead = 0;
        for round in 0..20 {
            // Slow: a pause lets the producer run as far ahead as it can.
            tokio::time::sleep(Duration::from_millis(10)).await;
            most_ahead = most_ahead.max(probes.produced() - consumed);
            for _ in 0..100 {
                let item = items.next().await.unwrap().unwrap();
                assert_eq!(item.len(), ITEM);
                assert_eq!(item[..8], consumed.to_le_bytes(), "round {round}");
                consumed += 1;
            }
        }
        // Waiting longer lets it go no further.
        tokio::time::sleep(Duration::from_millis(200)).await;
        most_ahead = most_ahead.max(probes.produced() - consumed);
        assert!(
            most_ahead <= BOUND,
            "{most_ahead} items produced but not consumed (bound {BOUND})"
        );
        // It did run ahead: the bound is what held it.
        assert!(most_ahead >= 32, "{most_ahead}");
        drop(items);
        assert!(probes.producer_stopped().await);
    });
}

#[test]
fn a_slow_server_holds_back_an_endless_client_producer() {
    let (rt, server, client, _) = logs_cluster(small_windows);
    rt.block_on(async {
        let logs = LogsClient::new(&client, server.local_addr());
        let mine = Arc::new(Probes::default());
        // The server takes 300 items, pausing 1 ms after each.
        let taken = logs
            .take(300, 1, endless(ITEM, 0, mine.clone()))
            .await
            .unwrap();
        assert_eq!(taken, 300);
        assert!(mine.producer_stopped().await);
        let ahead = mine.produced() - taken;
        assert!(
            ahead <= BOUND,
            "{ahead} items produced but not consumed (bound {BOUND})"
        );
    });
}
