//! The RPC layer under bad input and cancellation, driven with a hand-written
//! `Service` and with raw bytes on streams: every failure gets a clear status
//! where the caller can still hear it, and the connection keeps serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use octopii::ClusterCa;
use octopii::codec;
use octopii::rpc::{self, Client, Code, Context, HandlerFuture, Service};
use octopii::{OctopiiNode, OctopiiRuntime};
use octopii_tests::{config, request_frames};

/// Counts handlers that were dropped before finishing.
#[derive(Default)]
struct Probe {
    cancelled: AtomicUsize,
    running: AtomicUsize,
    /// Writes made by `write_then_sleep`.
    written: AtomicUsize,
}

struct DropCounter(Arc<Probe>);
impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        self.0.cancelled.fetch_add(1, Ordering::SeqCst);
    }
}

/// A service written by hand the way `#[octopii::service]` generates one.
struct Test(Arc<Probe>);

impl Service for Test {
    fn name(&self) -> &'static str {
        "Test"
    }
    fn methods(&self) -> &'static [&'static str] {
        &["echo", "sleep", "write_then_sleep", "panic", "whoami"]
    }
    fn call(&self, method: &str, ctx: Context, args: Bytes) -> HandlerFuture {
        let probe = self.0.clone();
        match method {
            "echo" => Box::pin(async move {
                let (s,): (String,) = rpc::decode_args(&args)?;
                rpc::encode_output(&s)
            }),
            "sleep" => Box::pin(async move {
                let (ms,): (u64,) = rpc::decode_args(&args)?;
                probe.running.fetch_add(1, Ordering::SeqCst);
                let guard = DropCounter(probe.clone());
                tokio::time::sleep(Duration::from_millis(ms)).await;
                std::mem::forget(guard);
                probe.running.fetch_sub(1, Ordering::SeqCst);
                rpc::encode_output(&())
            }),
            "write_then_sleep" => Box::pin(async move {
                let (ms,): (u64,) = rpc::decode_args(&args)?;
                probe.written.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                rpc::encode_output(&())
            }),
            "panic" => Box::pin(async move { panic!("handler exploded") }),
            "whoami" => Box::pin(async move {
                let reply = (
                    ctx.caller().to_owned(),
                    ctx.node_id(),
                    ctx.metadata("trace-id").map(str::to_owned),
                    ctx.remaining().is_some(),
                );
                rpc::encode_output(&reply)
            }),
            other => rpc::unimplemented("Test", other),
        }
    }
}

struct Pair {
    rt: OctopiiRuntime,
    server: OctopiiNode,
    client: OctopiiNode,
    probe: Arc<Probe>,
}

fn pair_with(edit: impl Fn(&mut octopii::Config)) -> Pair {
    let rt = OctopiiRuntime::new(2).unwrap();
    let ca = ClusterCa::generate().unwrap();
    let mut cfg = config(ca.issue_node("server", 1).unwrap());
    edit(&mut cfg);
    let server = OctopiiNode::new(cfg, &rt).unwrap();
    let probe = Arc::new(Probe::default());
    server.serve(Test(probe.clone())).unwrap();
    let client = OctopiiNode::new(config(ca.issue_node("client", 2).unwrap()), &rt).unwrap();
    Pair {
        rt,
        server,
        client,
        probe,
    }
}

fn pair() -> Pair {
    pair_with(|_| {})
}

impl Pair {
    fn rpc(&self) -> Client {
        Client::new(&self.client, self.server.local_addr())
    }

    /// Writes `bytes` on a fresh stream, finishes it, and reads the reply.
    async fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        let conn = self.client.connect(self.server.local_addr()).await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(bytes).await.unwrap();
        send.finish().unwrap();
        recv.read_to_end(1 << 20).await.unwrap_or_default()
    }

    /// Checks a normal call still works on the same connection.
    async fn still_serving(&self) {
        let reply: String = self.rpc().call("Test", "echo", &("alive",)).await.unwrap();
        assert_eq!(reply, "alive");
    }
}

/// Splits a raw response frame into (code, body).
fn response(bytes: &[u8]) -> (u8, String) {
    assert!(bytes.len() >= 5, "no response frame: {bytes:?}");
    let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    assert_eq!(len, bytes.len() - 4);
    (bytes[4], String::from_utf8_lossy(&bytes[5..]).into_owned())
}

#[test]
fn calls_reuse_one_pooled_stream() {
    let p = pair();
    p.rt.block_on(async {
        for i in 0..20 {
            let s: String = p
                .rpc()
                .call("Test", "echo", &(format!("n{i}"),))
                .await
                .unwrap();
            assert_eq!(s, format!("n{i}"));
        }
        let streams = octopii::rpc::Connect::stream_pool(&p.client);
        assert_eq!(streams.idle_streams(p.server.local_addr()), 1);
    });
}

#[test]
fn garbage_bytes_get_invalid_argument_and_the_connection_lives() {
    let p = pair();
    p.rt.block_on(async {
        let mut garbage = 40u32.to_be_bytes().to_vec();
        garbage.extend((0..40).map(|i| (i * 37 + 11) as u8));
        let (code, message) = response(&p.raw(&garbage).await);
        assert_eq!(code, Code::InvalidArgument.to_wire());
        assert!(message.contains("malformed request header"), "{message}");
        p.still_serving().await;
    });
}

#[test]
fn an_oversized_length_prefix_is_refused_before_allocating() {
    let p = pair();
    p.rt.block_on(async {
        // (`FF FF FF FF` is not a length: it opens a lane.)
        let (code, message) = response(&p.raw(&(u32::MAX - 1).to_be_bytes()).await);
        assert_eq!(code, Code::ResourceExhausted.to_wire());
        assert!(message.contains("exceeds the maximum"), "{message}");
        p.still_serving().await;
    });
}

#[test]
fn a_stream_ending_mid_frame_is_dropped_quietly() {
    let p = pair();
    p.rt.block_on(async {
        let full = request_frames("Test", "echo", &[0; 3], false);
        for cut in [2, 4, 9, full.len() - 1] {
            assert!(p.raw(&full[..cut]).await.is_empty(), "cut at {cut}");
        }
        p.still_serving().await;
    });
}

#[test]
fn unknown_service_or_method_is_unimplemented() {
    let p = pair();
    p.rt.block_on(async {
        let err = p.rpc().call::<_, ()>("Nope", "x", &()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
        assert!(err.message().contains("Nope"), "{err}");
        let err = p
            .rpc()
            .call::<_, ()>("Test", "nope", &())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unimplemented);
        assert!(err.message().contains("nope"), "{err}");
        p.still_serving().await;
    });
}

#[test]
fn arguments_that_do_not_decode_are_invalid_argument() {
    let p = pair();
    p.rt.block_on(async {
        // echo wants (String,); a u8 is not one.
        let err = p
            .rpc()
            .call::<_, String>("Test", "echo", &(7u8,))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        // Raw: a string whose length claims far more than the frame holds.
        let mut args = u64::MAX.to_le_bytes().to_vec();
        args.extend_from_slice(b"abc");
        let (code, _) = response(&p.raw(&request_frames("Test", "echo", &args, false)).await);
        assert_eq!(code, Code::InvalidArgument.to_wire());
        p.still_serving().await;
    });
}

#[test]
fn a_panicking_handler_is_internal_and_the_node_survives() {
    let p = pair();
    p.rt.block_on(async {
        let err = p
            .rpc()
            .call::<_, ()>("Test", "panic", &())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Internal);
        assert!(err.message().contains("handler exploded"), "{err}");
        p.still_serving().await;
    });
}

#[test]
fn context_carries_identity_metadata_and_deadline() {
    let p = pair();
    p.rt.block_on(async {
        let rpc = p.rpc().with_metadata("trace-id", "abc");
        // The caller's certificate name and, typed, the raft id it carries.
        let (who, id, trace, has_deadline): (String, Option<u64>, Option<String>, bool) =
            rpc.call("Test", "whoami", &()).await.unwrap();
        assert_eq!(
            (who.as_str(), id, trace.as_deref(), has_deadline),
            ("client", Some(2), Some("abc"), false)
        );
        let timed = rpc.with_deadline(Duration::from_secs(5));
        let (_, _, _, has_deadline): (String, Option<u64>, Option<String>, bool) =
            timed.call("Test", "whoami", &()).await.unwrap();
        assert!(has_deadline);
    });
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let p = pair();
    p.rt.block_on(async {
        let args = |s: &str| codec::encode(&(s.to_string(),)).unwrap();
        let mut bytes = request_frames("Test", "sleep", &codec::encode(&(50u64,)).unwrap(), false);
        bytes.extend(request_frames("Test", "echo", &args("second"), false));
        bytes.extend(request_frames("Test", "echo", &args("third"), false));
        // All three written at once, before any answer.
        let mut reply = &p.raw(&bytes).await[..];
        let mut answers = Vec::new();
        while !reply.is_empty() {
            let len = u32::from_be_bytes(reply[..4].try_into().unwrap()) as usize;
            let (code, body) = (reply[4], &reply[5..4 + len]);
            answers.push((code, body.to_vec()));
            reply = &reply[4 + len..];
        }
        let expected = [
            (0, codec::encode(&()).unwrap()),
            (0, codec::encode("second").unwrap()),
            (0, codec::encode("third").unwrap()),
        ];
        assert_eq!(answers, expected);
    });
}

#[test]
fn no_unidirectional_stream_can_be_opened() {
    use futures::FutureExt;
    let p = pair();
    p.rt.block_on(async {
        let conn = p.client.connect(p.server.local_addr()).await.unwrap();
        // The server granted none: opening one waits for credit forever.
        assert!(conn.quinn().open_uni().now_or_never().is_none());
        assert!(conn.quinn().open_bi().now_or_never().is_some());
        p.still_serving().await;
    });
}

#[test]
fn a_deadline_stops_the_call_and_the_server_handler() {
    let p = pair();
    p.rt.block_on(async {
        let err = p
            .rpc()
            .with_deadline(Duration::from_millis(100))
            .call::<_, ()>("Test", "sleep", &(60_000u64,))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded);
        // DeadlineExceeded does not mean the handler did not run: it
        // started, and was dropped where it was.
        wait_for(|| p.probe.cancelled.load(Ordering::SeqCst) == 1).await;
        assert_eq!(p.probe.running.load(Ordering::SeqCst), 0);
        p.still_serving().await;
    });
}

#[test]
fn deadline_exceeded_does_not_mean_the_write_did_not_happen() {
    let p = pair();
    p.rt.block_on(async {
        let err = p
            .rpc()
            .with_deadline(Duration::from_millis(100))
            .call::<_, ()>("Test", "write_then_sleep", &(60_000u64,))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded);
        // The handler's write was made before the deadline passed.
        assert_eq!(p.probe.written.load(Ordering::SeqCst), 1);
        p.still_serving().await;
    });
}

#[test]
fn dropping_the_call_cancels_the_handler_and_discards_the_stream() {
    let p = pair();
    p.rt.block_on(async {
        p.still_serving().await;
        let streams = octopii::rpc::Connect::stream_pool(&p.client);
        assert_eq!(streams.idle_streams(p.server.local_addr()), 1);
        let rpc = p.rpc();
        let call = rpc.call::<_, ()>("Test", "sleep", &(60_000u64,));
        let dropped = tokio::time::timeout(Duration::from_millis(100), call).await;
        assert!(dropped.is_err());
        // The stream the dropped call held was reset, not returned.
        assert_eq!(streams.idle_streams(p.server.local_addr()), 0);
        wait_for(|| p.probe.cancelled.load(Ordering::SeqCst) == 1).await;
        p.still_serving().await;
    });
}

#[test]
fn beyond_the_concurrency_limit_calls_are_resource_exhausted() {
    let p = pair_with(|c| c.rpc.max_concurrent_calls = 2);
    p.rt.block_on(async {
        let slow = |ms: u64| {
            let rpc = p.rpc();
            async move { rpc.call::<_, ()>("Test", "sleep", &(ms,)).await }
        };
        let a = tokio::spawn(slow(500));
        let b = tokio::spawn(slow(500));
        wait_for(|| p.probe.running.load(Ordering::SeqCst) == 2).await;
        let err = slow(1).await.unwrap_err();
        assert_eq!(err.code(), Code::ResourceExhausted);
        a.await.unwrap().unwrap();
        b.await.unwrap().unwrap();
        p.still_serving().await;
    });
}

#[test]
fn more_calls_than_the_stream_limit_wait_instead_of_failing() {
    let p = pair_with(|c| c.transport.max_concurrent_bidi_streams = 4);
    p.rt.block_on(async {
        let calls = (0..32).map(|i| {
            let rpc = p.rpc();
            async move { rpc.call::<_, ()>("Test", "sleep", &(20u64 + i % 3,)).await }
        });
        for result in futures::future::join_all(calls).await {
            result.unwrap();
        }
    });
}

#[test]
fn a_unit_method_completes_only_after_the_server_ran_it() {
    let p = pair();
    p.rt.block_on(async {
        p.rpc()
            .call::<_, ()>("Test", "sleep", &(50u64,))
            .await
            .unwrap();
        // The handler finished (not cancelled) before the reply arrived.
        assert_eq!(p.probe.cancelled.load(Ordering::SeqCst), 0);
        assert_eq!(p.probe.running.load(Ordering::SeqCst), 0);
    });
}

async fn wait_for(condition: impl Fn() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never became true");
}
