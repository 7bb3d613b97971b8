//! Concurrent clients put, get and compare-and-set a few keys while the
//! leader is killed and restarted; the recorded history must be
//! linearizable (checked key by key), over several seeds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use octopii::raft::RaftNode;
use octopii_tests::linearizability::{Event, RegisterOp, RegisterResult, is_linearizable};
use octopii_tests::raft::{Cluster, cas, get, put, test_raft_config};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const KEYS: [&str; 4] = ["w", "x", "y", "z"];
const CLIENTS: usize = 4;
/// Most operations one client makes (a key's history stays well under
/// the checker's 128).
const MAX_OPS_PER_CLIENT: usize = 80;
/// Pause between a client's operations, so the run spans the failure.
const THINK_TIME: Duration = Duration::from_millis(15);

/// The nodes clients may call, updated as nodes stop and restart.
type Members = Arc<Mutex<BTreeMap<u64, RaftNode>>>;

struct Recorded {
    key: &'static str,
    event: Event,
}

async fn client(
    id: usize,
    seed: u64,
    members: Members,
    start: Instant,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<Vec<Recorded>>>,
) {
    let mut rng = StdRng::seed_from_u64(seed * 1000 + id as u64);
    let mut last_seen: Option<String> = None;
    for n in 0..MAX_OPS_PER_CLIENT {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let raft = {
            let members = members.lock().unwrap_or_else(PoisonError::into_inner);
            let ids: Vec<u64> = members.keys().copied().collect();
            members[&ids[rng.gen_range(0..ids.len())]].clone()
        };
        let key = KEYS[rng.gen_range(0..KEYS.len())];
        let value = format!("c{id}-{n}");
        let op = match rng.gen_range(0..3) {
            0 => RegisterOp::Put(value),
            1 => RegisterOp::Get,
            _ => RegisterOp::Cas(last_seen.clone(), value),
        };
        let call = start.elapsed().as_nanos() as u64;
        let result = match &op {
            RegisterOp::Put(v) => put(&raft, key, v).await.map(RegisterResult::Value),
            RegisterOp::Get => get(&raft, key).await.map(RegisterResult::Value),
            RegisterOp::Cas(old, new) => cas(&raft, key, old.as_deref(), new)
                .await
                .map(RegisterResult::Swapped),
        };
        let ret = start.elapsed().as_nanos() as u64;
        let ret = match result {
            Ok(result) => {
                if let RegisterResult::Value(v) = &result {
                    last_seen = v.clone();
                }
                Some((ret, result))
            }
            // A failed read has no effect; a failed write may have had one.
            Err(_) if op == RegisterOp::Get => continue,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                None
            }
        };
        tokio::time::sleep(THINK_TIME).await;
        let event = Event { op, call, ret };
        history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Recorded { key, event });
    }
}

fn run_seed(seed: u64) {
    // Calls to the killed leader give up quickly (their outcome is unknown).
    let config = octopii::raft::RaftConfig {
        request_timeout_ms: 1_000,
        ..test_raft_config()
    };
    let mut cluster = Cluster::start(3, config);
    let leader = cluster.leader();
    let members: Members = Arc::new(Mutex::new(
        cluster
            .running()
            .into_iter()
            .map(|id| (id, cluster.raft(id).clone()))
            .collect(),
    ));
    let history = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let task = client(
                id,
                seed,
                members.clone(),
                start,
                stop.clone(),
                history.clone(),
            );
            cluster.runtime.handle().spawn(task)
        })
        .collect();
    // Kill the leader mid-run, then bring it back.
    std::thread::sleep(Duration::from_millis(100));
    let killed_at = start.elapsed();
    members.lock().unwrap().remove(&leader);
    cluster.stop(leader);
    std::thread::sleep(Duration::from_millis(300));
    cluster.restart(leader).expect("restart the old leader");
    members
        .lock()
        .unwrap()
        .insert(leader, cluster.raft(leader).clone());
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    cluster.runtime.block_on(async {
        for task in clients {
            task.await.expect("client task");
        }
    });
    let history = std::mem::take(&mut *history.lock().unwrap());
    let answered = history.iter().filter(|r| r.event.ret.is_some()).count();
    assert!(
        answered >= history.len() / 2,
        "seed {seed}: only {answered} of {} answered",
        history.len()
    );
    let last_call = history.iter().map(|r| r.event.call).max().unwrap_or(0);
    assert!(
        Duration::from_nanos(last_call) > killed_at,
        "seed {seed}: the clients ran across the leader's failure"
    );
    for key in KEYS {
        let events: Vec<Event> = history
            .iter()
            .filter(|r| r.key == key)
            .map(|r| r.event.clone())
            .collect();
        assert!(
            is_linearizable(&events),
            "seed {seed}: history of {key} is not linearizable: {events:#?}"
        );
    }
}

#[test]
fn concurrent_clients_see_a_linearizable_history_across_leader_failure() {
    for seed in 1..=4 {
        run_seed(seed);
    }
}

fn event(op: RegisterOp, call: u64, ret: u64, result: RegisterResult) -> Event {
    Event {
        op,
        call,
        ret: Some((ret, result)),
    }
}

#[test]
fn the_checker_accepts_overlaps_and_rejects_stale_reads() {
    let put = |v: &str| RegisterOp::Put(v.to_owned());
    let value = |v: Option<&str>| RegisterResult::Value(v.map(str::to_owned));
    // Sequential: put a, then a read sees a.
    let ok = [
        event(put("a"), 0, 10, value(None)),
        event(RegisterOp::Get, 20, 30, value(Some("a"))),
    ];
    assert!(is_linearizable(&ok));
    // A read after the put returned must not see the old value.
    let stale = [
        event(put("a"), 0, 10, value(None)),
        event(RegisterOp::Get, 20, 30, value(None)),
    ];
    assert!(!is_linearizable(&stale));
    // Overlapping, the read may see either.
    let overlap = [
        event(put("a"), 0, 30, value(None)),
        event(RegisterOp::Get, 10, 20, value(None)),
    ];
    assert!(is_linearizable(&overlap));
    // An unanswered put may have happened, later than its call...
    let maybe = [
        Event {
            op: put("b"),
            call: 0,
            ret: None,
        },
        event(RegisterOp::Get, 50, 60, value(Some("b"))),
    ];
    assert!(is_linearizable(&maybe));
    // ...but a swap can only succeed once.
    let cas =
        |old: Option<&str>, new: &str| RegisterOp::Cas(old.map(str::to_owned), new.to_owned());
    let double = [
        event(put("a"), 0, 5, value(None)),
        event(cas(Some("a"), "b"), 10, 20, RegisterResult::Swapped(true)),
        event(cas(Some("a"), "c"), 10, 20, RegisterResult::Swapped(true)),
    ];
    assert!(!is_linearizable(&double));
}
