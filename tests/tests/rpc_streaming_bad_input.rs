//! A peer that breaks the streaming protocol: an item that does not
//! decode, an oversized frame, a reset or an end without the end frame.
//! The other side gets a clear error in its stream, and the other calls on
//! the connection go on.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use octopii::ClusterCa;
use octopii::codec;
use octopii::rpc::streaming::{END, ITEM};
use octopii::rpc::{
    self, CallStream, Client, Code, Context, HandlerFuture, RpcError, Service, StreamFuture,
};
use octopii::{OctopiiNode, OctopiiRuntime};
use octopii_tests::config;
use octopii_tests::logs::{LogLine, LogsClient, Probes, logs_cluster};

/// An item frame whose body is `body`.
fn item_frame(body: &[u8]) -> Vec<u8> {
    let mut frame = ((1 + body.len()) as u32).to_be_bytes().to_vec();
    frame.push(ITEM);
    frame.extend_from_slice(body);
    frame
}

fn good_line() -> Vec<u8> {
    let line = LogLine {
        seq: 1,
        text: "fine".into(),
    };
    item_frame(&codec::encode(&line).unwrap())
}

/// A frame prefix announcing 32 MiB, above the default 16 MiB maximum.
fn oversized_prefix() -> Vec<u8> {
    (32u32 << 20).to_be_bytes().to_vec()
}

/// Waits (up to 5 s) for `upload` to record the error its stream ended with.
async fn upload_error(probes: &Probes) -> RpcError {
    for _ in 0..500 {
        if let Some(e) = probes.upload_error.lock().unwrap().take() {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("upload saw no error");
}

/// Opens `upload` by hand, sends one good line and then `tail`, and
/// returns the stream.
async fn upload_with(rpc: &Client, tail: &[u8]) -> CallStream {
    let mut stream = rpc
        .open_stream("Logs", "upload", &("p".to_string(),))
        .await
        .unwrap();
    stream.write_raw(&good_line()).await.unwrap();
    stream.write_raw(tail).await.unwrap();
    stream
}

/// The `upload` reply: how many good lines the server took.
async fn reply(stream: &mut CallStream) -> u64 {
    let frame = stream.read_frame().await.unwrap().unwrap();
    codec::decode(&rpc::frame::parse_response(frame).unwrap()).unwrap()
}

#[test]
fn a_client_sending_bad_items_gets_a_clear_error_on_the_server() {
    let (rt, server, client, probes) = logs_cluster(|_| {});
    rt.block_on(async {
        let rpc = Client::new(&client, server.local_addr());
        let logs = LogsClient::new(&client, server.local_addr());

        // An item that does not decode as a `LogLine`.
        let mut stream = upload_with(&rpc, &item_frame(&[1, 2, 3])).await;
        assert_eq!(reply(&mut stream).await, 1);
        let err = upload_error(&probes).await;
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("does not decode"), "{err}");
        assert_eq!(logs.ping().await.unwrap(), 7);

        // A frame longer than the maximum: refused before it is read.
        let mut stream = upload_with(&rpc, &oversized_prefix()).await;
        assert_eq!(reply(&mut stream).await, 1);
        let err = upload_error(&probes).await;
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert!(err.message().contains("exceeds the maximum"), "{err}");

        // A reset in the middle of the stream.
        let mut stream = upload_with(&rpc, &good_line()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        stream.reset(7);
        let err = upload_error(&probes).await;
        assert_eq!(err.code(), Code::Unavailable);
        assert!(err.message().contains("reset"), "{err}");

        // An end without the end frame is not a clean end…
        let mut stream = upload_with(&rpc, &[]).await;
        stream.finish();
        assert_eq!(reply(&mut stream).await, 1);
        let err = upload_error(&probes).await;
        assert_eq!(err.code(), Code::Unavailable);
        assert!(err.message().contains("without its end frame"), "{err}");

        // …and the end frame is.
        let mut stream = upload_with(&rpc, &[0, 0, 0, 1, END]).await;
        stream.finish();
        assert_eq!(reply(&mut stream).await, 1);

        // An end frame must be empty.
        let mut stream = upload_with(&rpc, &[0, 0, 0, 2, END, 0]).await;
        stream.finish();
        assert_eq!(reply(&mut stream).await, 1);
        let err = upload_error(&probes).await;
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("end frame with a body"), "{err}");

        // Through it all, the connection served the others.
        let lines: Vec<_> = logs.tail(0, 3).await.unwrap().collect().await;
        assert_eq!(lines.len(), 3);
        assert_eq!(logs.ping().await.unwrap(), 7);
    });
    assert_eq!(probes.upload_error(), None);
    assert_eq!(client.stats().pool.handshakes, 1);
}

#[test]
fn a_stream_of_its_own_for_a_unary_method_is_refused_and_stopped() {
    let (rt, server, client, _probes) = logs_cluster(|_| {});
    rt.block_on(async {
        let conn = client.connect(server.local_addr()).await.unwrap();
        for (service, method) in [("Logs", "ping"), ("Logs", "nope"), ("Nope", "ping")] {
            let header = rpc::frame::RequestHeader {
                service: service.into(),
                method: method.into(),
                timeout_micros: None,
                metadata: vec![].into(),
                owns_stream: true,
                trace: None,
                signature: None,
            };
            let mut request = Vec::new();
            rpc::frame::put_encoded(&mut request, &header).unwrap();
            rpc::frame::put_bytes(&mut request, &[]).unwrap();
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            send.write_all(&request).await.unwrap();
            // The answer, then the end of the server's side.
            let answer = recv.read_to_end(1024).await.unwrap();
            assert_eq!(
                answer[4],
                Code::Unimplemented.to_wire(),
                "{service}.{method}"
            );
            // What the client would send next is not wanted.
            let stopped = send.stopped().await.unwrap();
            assert_eq!(stopped, Some(255u32.into()), "{service}.{method}");
        }
        let logs = LogsClient::new(&client, server.local_addr());
        assert_eq!(logs.ping().await.unwrap(), 7);
    });
}

/// A `Logs` impostor whose `tail` sends a head and a good line, then
/// breaks the protocol as its `from` argument says.
struct Broken;

impl Service for Broken {
    fn name(&self) -> &'static str {
        "Logs"
    }
    fn methods(&self) -> &'static [&'static str] {
        &["tail", "ping"]
    }
    fn call(&self, method: &str, _ctx: Context, _args: Bytes) -> HandlerFuture {
        match method {
            "ping" => Box::pin(async { rpc::encode_output(&7u64) }),
            _ => rpc::unimplemented("Logs", method),
        }
    }
    fn serve_stream(
        &self,
        _method: &str,
        _ctx: Context,
        args: Bytes,
        mut stream: CallStream,
    ) -> StreamFuture {
        Box::pin(async move {
            let Ok((mode, _)): Result<(u64, u64), _> = rpc::decode_args(&args) else {
                return;
            };
            let _ = stream.respond(&Ok(Vec::new())).await;
            let _ = stream.write_raw(&good_line()).await;
            match mode {
                0 => {
                    let _ = stream.write_raw(&item_frame(b"??")).await;
                }
                1 => {
                    let _ = stream.write_raw(&oversized_prefix()).await;
                }
                2 => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    stream.reset(7);
                    return;
                }
                _ => {
                    // Half a frame, then the end of the stream.
                    let _ = stream.write_raw(&[0, 0, 0, 9, ITEM]).await;
                }
            }
            stream.finish();
            // Stay until the client has read everything.
            stream.stopped().await;
        })
    }
}

#[test]
fn a_server_sending_bad_items_ends_the_clients_stream_with_a_clear_error() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let server = OctopiiNode::new(config(ca.issue_node("server", 1).unwrap()), &rt).unwrap();
    server.serve(Broken).unwrap();
    let client = OctopiiNode::new(config(ca.issue_node("client", 1).unwrap()), &rt).unwrap();
    rt.block_on(async {
        let logs = LogsClient::new(&client, server.local_addr());
        let cases = [
            (0, Code::InvalidArgument, "does not decode"),
            (1, Code::ResourceExhausted, "exceeds the maximum"),
            (2, Code::Unavailable, "reset"),
            (3, Code::Unavailable, "mid-frame"),
        ];
        for (mode, code, message) in cases {
            let mut lines = logs.tail(mode, 0).await.unwrap();
            assert_eq!(lines.next().await.unwrap().unwrap().text, "fine");
            let err = lines.next().await.unwrap().unwrap_err();
            assert_eq!(err.code(), code, "case {mode}: {err}");
            assert!(err.message().contains(message), "case {mode}: {err}");
            assert!(lines.next().await.is_none());
            assert_eq!(logs.ping().await.unwrap(), 7, "case {mode}");
        }
    });
    assert_eq!(client.stats().pool.handshakes, 1);
}
