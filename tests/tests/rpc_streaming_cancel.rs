//! Cancellation of streaming calls, both ways, and deadlines over the
//! whole call.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use octopii::Streaming;
use octopii::rpc::Code;
use octopii_tests::logs::{LogsClient, Probes, endless, logs_cluster};

/// Whether `probes.produced` stays put for a while: the producer is idle.
async fn production_stopped(probes: &Probes) -> bool {
    let before = probes.produced();
    tokio::time::sleep(Duration::from_millis(200)).await;
    probes.produced() == before
}

#[test]
fn dropping_a_server_stream_stops_the_servers_producer() {
    let (rt, server, client, probes) = logs_cluster(|_| {});
    rt.block_on(async {
        let logs = LogsClient::new(&client, server.local_addr());
        let mut items = logs.forever(16, 0).await.unwrap();
        for n in 0..10u64 {
            let item = items.next().await.unwrap().unwrap();
            assert_eq!(item[..8], n.to_le_bytes());
        }
        assert!(
            !probes
                .producer_dropped
                .load(std::sync::atomic::Ordering::SeqCst)
        );
        drop(items);
        assert!(
            probes.producer_stopped().await,
            "the producer was not dropped"
        );
        assert!(production_stopped(&probes).await);

        // An idle producer (nothing to send yet) is stopped as well.
        let mut items = logs.forever(16, 60_000).await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), items.next())
                .await
                .is_err()
        );
        drop(items);
        assert!(
            probes.producer_stopped().await,
            "the idle producer was not dropped"
        );
        assert_eq!(logs.ping().await.unwrap(), 7);
    });
}

#[test]
fn a_server_that_stops_reading_stops_the_clients_producer() {
    let (rt, server, client, _) = logs_cluster(|_| {});
    rt.block_on(async {
        let logs = LogsClient::new(&client, server.local_addr());
        let mine = Arc::new(Probes::default());
        let taken = logs.take(5, 0, endless(64, 0, mine.clone())).await.unwrap();
        assert_eq!(taken, 5);
        assert!(
            mine.producer_stopped().await,
            "the client's producer lives on"
        );
        assert!(production_stopped(&mine).await);
    });
}

#[test]
fn a_client_giving_up_on_a_client_stream_drops_the_servers_handler() {
    let (rt, server, client, probes) = logs_cluster(|_| {});
    rt.block_on(async {
        let logs = LogsClient::new(&client, server.local_addr());
        let mine = Arc::new(Probes::default());
        // The handler takes one item, then pauses for a minute.
        let call = logs.take(2, 60_000, endless(8, 0, mine.clone()));
        assert!(
            tokio::time::timeout(Duration::from_millis(200), call)
                .await
                .is_err()
        );
        let mut ended = false;
        for _ in 0..500 {
            ended = probes.take_ended.load(Ordering::SeqCst);
            if ended {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ended, "the handler runs on after the client left");
        assert!(mine.producer_stopped().await);
        assert_eq!(logs.ping().await.unwrap(), 7);
    });
}

#[test]
fn dropping_a_bidirectional_stream_stops_both_producers() {
    let (rt, server, client, _) = logs_cluster(|_| {});
    rt.block_on(async {
        let logs = LogsClient::new(&client, server.local_addr());
        let mine = Arc::new(Probes::default());
        let words = endless(4, 0, mine.clone()).map(|item| {
            let bytes = item.expect("a local item");
            format!("{:?}", &bytes[..4])
        });
        let mut replies = logs
            .chat("> ".into(), Streaming::from_stream(words))
            .await
            .unwrap();
        for _ in 0..10 {
            assert!(replies.next().await.unwrap().unwrap().starts_with("> "));
        }
        drop(replies);
        assert!(
            mine.producer_stopped().await,
            "the client's producer lives on"
        );
        assert!(production_stopped(&mine).await);
        assert_eq!(logs.ping().await.unwrap(), 7);
    });
}

#[test]
fn a_deadline_ends_a_long_server_stream_with_deadline_exceeded() {
    let (rt, server, client, probes) = logs_cluster(|_| {});
    rt.block_on(async {
        let logs = LogsClient::new(&client, server.local_addr());
        let began = Instant::now();
        let mut items = logs
            .with_deadline(Duration::from_millis(300))
            .forever(8, 5)
            .await
            .unwrap();
        let mut received = 0;
        let err = loop {
            match items.next().await.unwrap() {
                Ok(_) => received += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
        assert!(received > 0);
        let elapsed = began.elapsed();
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        assert!(items.next().await.is_none());
        assert!(
            probes.producer_stopped().await,
            "the producer outlived the deadline"
        );
    });
}

#[test]
fn a_deadline_bounds_client_and_bidirectional_streams() {
    let (rt, server, client, _) = logs_cluster(|_| {});
    rt.block_on(async {
        let logs =
            LogsClient::new(&client, server.local_addr()).with_deadline(Duration::from_millis(200));
        // The server waits for items that come too slowly.
        let mine = Arc::new(Probes::default());
        let err = logs
            .take(1000, 0, endless(8, 50, mine.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
        assert!(mine.producer_stopped().await);

        let (sender, messages) = Streaming::channel(1);
        let mut replies = logs.chat("".into(), messages).await.unwrap();
        sender.send("hi".to_string()).await.unwrap();
        assert_eq!(replies.next().await.unwrap().unwrap(), "hi");
        let err = replies.next().await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
        // The call is over: its sending side sees the receiver gone.
        tokio::time::timeout(Duration::from_secs(5), sender.closed())
            .await
            .unwrap();
    });
}
