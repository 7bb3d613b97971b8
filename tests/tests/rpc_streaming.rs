//! Streaming RPCs from `#[octopii::service]`, end to end: server, client
//! and bidirectional streams, an application error before the stream, a
//! server error ending the stream, and unary calls beside them.

use futures::StreamExt;
use octopii::Streaming;
use octopii::rpc::{Client, Code};
use octopii_tests::logs::{LogError, LogLine, LogsClient, logs_cluster};

fn line(seq: u64) -> LogLine {
    LogLine {
        seq,
        text: format!("line {seq}"),
    }
}

#[test]
fn server_streaming_delivers_every_item_in_order_then_ends() {
    let (rt, server, client, _) = logs_cluster(|_| {});
    rt.block_on(async {
        let logs = LogsClient::new(&client, server.local_addr());
        let lines: Vec<LogLine> = logs
            .tail(5, 1000)
            .await
            .unwrap()
            .map(|line| line.unwrap())
            .collect()
            .await;
        assert_eq!(lines, (5..1005).map(line).collect::<Vec<_>>());

        // An empty stream is a clean end straight away.
        let mut empty = logs.tail(0, 0).await.unwrap();
        assert!(empty.next().await.is_none());
        // After the end, the stream stays ended.
        assert!(empty.next().await.is_none());
    });
    assert_eq!(client.stats().pool.handshakes, 1);
}

#[test]
fn client_streaming_sends_every_item_and_gets_one_reply() {
    let (rt, server, client, probes) = logs_cluster(|_| {});
    rt.block_on(async {
        let logs = LogsClient::new(&client, server.local_addr());
        // From a Vec…
        let count = logs
            .upload("a:".into(), vec![line(1), line(2)])
            .await
            .unwrap();
        assert_eq!(count, 2);
        // …from any stream…
        let lines = futures::stream::iter(10..510).map(line);
        let count = logs
            .upload("b:".into(), Streaming::from_stream(lines))
            .await
            .unwrap();
        assert_eq!(count, 500);
        // …and an empty one.
        assert_eq!(logs.upload("c:".into(), Vec::new()).await.unwrap(), 0);
    });
    let uploaded = probes.uploaded();
    assert_eq!(uploaded.len(), 502);
    assert_eq!(uploaded[0].text, "a:line 1");
    assert_eq!(uploaded[501].text, "b:line 509");
    assert_eq!(probes.upload_error(), None);
}

#[test]
fn bidirectional_streaming_answers_while_the_client_still_sends() {
    let (rt, server, client, _) = logs_cluster(|_| {});
    rt.block_on(async {
        let logs = LogsClient::new(&client, server.local_addr());
        let (sender, messages) = Streaming::channel(4);
        let mut replies = logs.chat("> ".into(), messages).await.unwrap();
        // Each reply arrives before the next message is sent: the two
        // directions really are concurrent.
        for i in 0..20 {
            sender.send(format!("hello {i}")).await.unwrap();
            let reply = replies.next().await.unwrap().unwrap();
            assert_eq!(reply, format!("> hello {i}"));
        }
        drop(sender);
        assert!(replies.next().await.is_none());

        // The client ending its side with an error: the server's stream
        // yields it, and the handler passes it back.
        let (sender, messages) = Streaming::channel(4);
        let mut replies = logs.chat("".into(), messages).await.unwrap();
        sender.send("one".to_string()).await.unwrap();
        sender
            .fail(octopii::RpcError::new(Code::Cancelled, "typing stopped"))
            .await;
        assert_eq!(replies.next().await.unwrap().unwrap(), "one");
        let err = replies.next().await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::Cancelled);
        assert_eq!(err.message(), "typing stopped");
        assert!(replies.next().await.is_none());
    });
}

#[test]
fn an_application_error_comes_before_the_stream() {
    let (rt, server, client, _) = logs_cluster(|_| {});
    rt.block_on(async {
        let logs = LogsClient::new(&client, server.local_addr());
        let numbers = logs.open("main".into(), 3).await.unwrap().unwrap();
        let numbers: Vec<u64> = numbers.map(|n| n.unwrap()).collect().await;
        assert_eq!(numbers, [0, 1, 2]);

        let err = logs.open("other".into(), 3).await.unwrap().unwrap_err();
        assert_eq!(err, LogError::NotFound("other".into()));
    });
}

#[test]
fn a_server_error_ends_the_clients_stream_with_its_code_and_message() {
    let (rt, server, client, _) = logs_cluster(|_| {});
    rt.block_on(async {
        let logs = LogsClient::new(&client, server.local_addr());
        let mut numbers = logs.fail_after(3).await.unwrap();
        for n in 0..3 {
            assert_eq!(numbers.next().await.unwrap().unwrap(), n);
        }
        let err = numbers.next().await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::Internal);
        assert_eq!(err.message(), "disk gone");
        assert!(numbers.next().await.is_none());
        // The connection serves on.
        assert_eq!(logs.ping().await.unwrap(), 7);
    });
}

#[test]
fn unary_and_streaming_calls_share_one_connection_and_stay_apart() {
    let (rt, server, client, _) = logs_cluster(|_| {});
    rt.block_on(async {
        let logs = LogsClient::new(&client, server.local_addr());
        // Streams and unary calls interleaved, concurrently.
        let mut tail = logs.tail(0, 100).await.unwrap();
        let mut seen = 0;
        while let Some(line) = tail.next().await {
            assert_eq!(line.unwrap().seq, seen);
            if seen % 10 == 0 {
                assert_eq!(logs.ping().await.unwrap(), 7);
            }
            seen += 1;
        }
        assert_eq!(seen, 100);

        // A unary request for a streaming method is refused, and so is a
        // streaming request for a unary one.
        let rpc = Client::new(&client, server.local_addr());
        let err = rpc
            .call::<_, u64>("Logs", "tail", &(0u64, 1u64))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
        assert!(err.message().contains("streaming method"), "{err}");
        let mut stream = rpc.open_stream("Logs", "ping", &()).await.unwrap();
        let reply = stream.read_frame().await.unwrap().unwrap();
        let err = octopii::rpc::frame::parse_response(reply).unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
        assert_eq!(logs.ping().await.unwrap(), 7);
    });
    assert_eq!(client.stats().pool.handshakes, 1);
}

#[test]
fn a_refused_stream_call_fails_at_the_call_not_in_the_stream() {
    let (rt, server, client, probes) = logs_cluster(|config| config.rpc.max_concurrent_calls = 1);
    rt.block_on(async {
        let logs = LogsClient::new(&client, server.local_addr());
        // A streaming call holds its place under the call limit while it
        // streams…
        let mut first = logs.forever(8, 0).await.unwrap();
        assert!(first.next().await.unwrap().is_ok());
        let err = logs.tail(0, 1).await.unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
        // …and gives it back when it ends.
        drop(first);
        assert!(probes.producer_stopped().await);
        let mut served = false;
        for _ in 0..100 {
            if let Ok(tail) = logs.tail(0, 2).await {
                assert_eq!(tail.collect::<Vec<_>>().await.len(), 2);
                served = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(served, "the call limit was not given back");
    });

    // A node that does not serve `Logs` at all.
    let (rt, _, client, _) = logs_cluster(|_| {});
    let elsewhere = client.local_addr();
    rt.block_on(async {
        let logs = LogsClient::new(&client, elsewhere);
        let err = logs.tail(0, 1).await.unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented, "{err}");
        let err = logs.upload("p".into(), vec![line(1)]).await.unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented, "{err}");
        let err = logs.chat("".into(), Vec::new()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented, "{err}");
    });
}
