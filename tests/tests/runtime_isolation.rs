//! `OctopiiRuntime` keeps Octopii off the host application's threads and
//! can be created, used and dropped from inside the host's own runtime.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use octopii::OctopiiRuntime;
use octopii::runtime::WORKER_THREAD_PREFIX;

fn thread_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed>")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_on_octopii_workers_not_on_the_hosts() {
    let runtime = OctopiiRuntime::new(2).unwrap();
    let host_thread = thread_name();
    let mut names = HashSet::new();
    for _ in 0..32 {
        let name = runtime
            .spawn(async {
                tokio::task::yield_now().await;
                thread_name()
            })
            .await
            .unwrap();
        names.insert(name);
    }
    assert!(!names.contains(&host_thread));
    for name in &names {
        assert!(name.starts_with(WORKER_THREAD_PREFIX), "task ran on {name}");
    }
    // Dropped here, inside the host's async context: must not panic.
}

#[tokio::test(flavor = "current_thread")]
async fn host_stays_responsive_while_octopii_is_saturated() {
    let runtime = OctopiiRuntime::new(2).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let spinning = Arc::new(AtomicUsize::new(0));
    // More busy tasks than workers: every Octopii worker is pinned.
    for _ in 0..4 {
        let (stop, spinning) = (stop.clone(), spinning.clone());
        runtime.spawn(async move {
            spinning.fetch_add(1, Ordering::SeqCst);
            while !stop.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
            spinning.fetch_sub(1, Ordering::SeqCst);
        });
    }
    while spinning.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The host (a single thread here) keeps doing its own async work. Were
    // Octopii's spinners on the host's thread, this would never finish.
    let host_work = async {
        for i in 0..100u32 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            assert_eq!(tokio::spawn(async move { i * 2 }).await.unwrap(), i * 2);
        }
    };
    let finished = tokio::time::timeout(Duration::from_secs(20), host_work).await;
    assert!(finished.is_ok(), "host runtime starved");
    assert_eq!(
        spinning.load(Ordering::SeqCst),
        2,
        "Octopii was still saturated"
    );
    stop.store(true, Ordering::Relaxed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn block_on_and_shutdown_work_inside_async_context() {
    let runtime = OctopiiRuntime::new(1).unwrap();
    let name = runtime.block_on(async { tokio::spawn(async { thread_name() }).await.unwrap() });
    assert!(name.starts_with(WORKER_THREAD_PREFIX), "{name}");
    runtime.spawn(tokio::time::sleep(Duration::from_secs(3600)));
    runtime.shutdown(Duration::from_secs(5));
}

#[tokio::test(flavor = "current_thread")]
async fn drop_inside_async_context_with_pending_tasks_is_safe() {
    let runtime = OctopiiRuntime::new(2).unwrap();
    let dropped = Arc::new(AtomicBool::new(false));
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let guard = SetOnDrop(dropped.clone());
    runtime.spawn(async move {
        let _guard = guard;
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    drop(runtime);
    // The runtime stops on a helper thread; its tasks are dropped soon after.
    for _ in 0..500 {
        if dropped.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the pending task was never dropped");
}

#[test]
fn synchronous_callers_use_block_on() {
    let runtime = OctopiiRuntime::new(1).unwrap();
    assert_eq!(runtime.worker_threads(), 1);
    let value = runtime.block_on(async { 40 + 2 });
    assert_eq!(value, 42);
    let handle = runtime.handle().clone();
    assert_eq!(runtime.block_on(handle.spawn(async { 7 })).unwrap(), 7);
}

/// A node on a runtime the caller gives (a simulator's, one day): its
/// accept loop and handlers run on that runtime's threads, a call between
/// two such nodes completes, and shutting Octopii down leaves the
/// caller's runtime running.
#[test]
fn nodes_run_on_a_runtime_the_caller_gives() {
    #[octopii::service]
    pub trait Where {
        async fn thread(&self) -> String;
    }
    struct Here;
    impl Where for Here {
        async fn thread(&self) -> String {
            thread_name()
        }
    }

    let host = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("host-worker")
        .enable_all()
        .build()
        .unwrap();
    let runtime = OctopiiRuntime::from_handle(host.handle().clone());
    let ca = octopii::ClusterCa::generate().unwrap();
    let node = |name: &str, id: u64| {
        let config = octopii::Config::builder()
            .node_id(id)
            .bind_addr(([127, 0, 0, 1], 0).into())
            .credentials(ca.issue_node(name, id).unwrap())
            .build()
            .unwrap();
        octopii::OctopiiNode::new(config, &runtime).unwrap()
    };
    let (server, client) = (node("server", 1), node("client", 2));
    server.serve(WhereServer::new(Here)).unwrap();
    let remote = WhereClient::new(&client, server.local_addr());
    let ran_on = host.block_on(remote.thread()).unwrap();
    assert_eq!(
        ran_on, "host-worker",
        "the handler ran on the given runtime"
    );
    host.block_on(async {
        server.shutdown().await;
        client.shutdown().await;
    });
    runtime.shutdown(Duration::from_secs(1));
    assert_eq!(
        host.block_on(async { 1 + 1 }),
        2,
        "the host runtime still runs"
    );
}
