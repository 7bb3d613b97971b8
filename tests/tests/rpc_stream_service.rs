//! Calls that own their stream share the connection with unary calls and
//! are routed by the same request header.

use bytes::Bytes;
use octopii::ClusterCa;
use octopii::codec;
use octopii::rpc::{
    self, CallStream, Client, Code, Context, HandlerFuture, RpcError, Service, StreamFuture,
};
use octopii::{OctopiiNode, OctopiiRuntime};
use octopii_tests::config;

/// `sum`: adds the u64 frames the client sends until it finishes, replies
/// with one response frame.
struct Summer;

impl Service for Summer {
    fn name(&self) -> &'static str {
        "Summer"
    }
    fn methods(&self) -> &'static [&'static str] {
        &["sum"]
    }
    fn call(&self, method: &str, _ctx: Context, _args: Bytes) -> HandlerFuture {
        rpc::unimplemented("Summer", method)
    }
    fn serve_stream(
        &self,
        method: &str,
        _ctx: Context,
        args: Bytes,
        mut stream: CallStream,
    ) -> StreamFuture {
        let method = method.to_owned();
        Box::pin(async move {
            if method != "sum" {
                let err = RpcError::new(Code::Unimplemented, format!("no method `{method}`"));
                return stream.fail(err).await;
            }
            let (start,): (u64,) = match rpc::decode_args(&args) {
                Ok(v) => v,
                Err(e) => return stream.fail(e).await,
            };
            let mut total = start;
            loop {
                match stream.read_frame().await {
                    Ok(Some(frame)) => match codec::decode::<u64>(&frame) {
                        Ok(n) => total += n,
                        Err(e) => return stream.fail(e.into()).await,
                    },
                    Ok(None) => break,
                    Err(_) => return,
                }
            }
            let _ = stream.respond(&rpc::encode_output(&total)).await;
            stream.finish();
        })
    }
}

#[test]
fn a_stream_call_and_unary_calls_share_the_connection() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let server = OctopiiNode::new(config(ca.issue_node("server", 1).unwrap()), &rt).unwrap();
    server.serve(Summer).unwrap();
    let client = OctopiiNode::new(config(ca.issue_node("client", 1).unwrap()), &rt).unwrap();
    rt.block_on(async {
        let rpc = Client::new(&client, server.local_addr());
        let mut stream = rpc.open_stream("Summer", "sum", &(100u64,)).await.unwrap();
        for n in 1..=10u64 {
            stream
                .write_frame(&codec::encode(&n).unwrap())
                .await
                .unwrap();
        }
        stream.finish();
        let reply = stream.read_frame().await.unwrap().unwrap();
        let total: u64 = codec::decode(&rpc::frame::parse_response(reply).unwrap()).unwrap();
        assert_eq!(total, 155);

        // Unknown method: a status, then the end of the stream.
        let mut stream = rpc.open_stream("Summer", "nope", &()).await.unwrap();
        let reply = stream.read_frame().await.unwrap().unwrap();
        let err = rpc::frame::parse_response(reply).unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
        assert!(stream.read_frame().await.unwrap().is_none());

        // A unary call of a streaming method on a pooled stream is refused.
        let err = rpc
            .call::<_, u64>("Summer", "sum", &(1u64,))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);

        // So is a stream call of a service that has none.
        let mut stream = rpc.open_stream("Nobody", "sum", &()).await.unwrap();
        let reply = stream.read_frame().await.unwrap().unwrap();
        let err = rpc::frame::parse_response(reply).unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
    });
    assert_eq!(client.stats().pool.handshakes, 1);
}

#[test]
fn finished_stream_calls_give_their_stream_credit_back() {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let limited = |name: &str| {
        let mut config = config(ca.issue_node(name, 1).unwrap());
        config.transport.max_concurrent_bidi_streams = 4;
        config
    };
    let server = OctopiiNode::new(limited("server"), &rt).unwrap();
    server.serve(Summer).unwrap();
    let client = OctopiiNode::new(limited("client"), &rt).unwrap();
    rt.block_on(async {
        let rpc = Client::new(&client, server.local_addr());
        for n in 0..40u64 {
            let call = async {
                let mut stream = rpc.open_stream("Summer", "sum", &(n,)).await.unwrap();
                stream.finish();
                let reply = stream.read_frame().await.unwrap().unwrap();
                let total: u64 =
                    codec::decode(&rpc::frame::parse_response(reply).unwrap()).unwrap();
                assert_eq!(total, n);
            };
            tokio::time::timeout(std::time::Duration::from_secs(5), call)
                .await
                .unwrap_or_else(|_| panic!("stream call {n} waited for stream credit"));
        }
    });
}
