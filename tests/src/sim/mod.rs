//! Deterministic simulation of Octopii nodes in one process: real QUIC,
//! TLS and RPC over a simulated network ([`net`]), on a tokio runtime whose
//! clock is paused and advanced by the simulation, every random choice
//! drawn from one seed. The same seed replays the same run: the report's
//! digest covers the ordered history of every operation with its simulated
//! times.
//!
//! What runs today: a register store served by one node and called by
//! several client nodes, under loss, delay, reordering, duplication and
//! one-way or symmetric partitions, checked for linearizability
//! ([`linearizable`]). Raft nodes do not run here yet: the WAL writes on a
//! thread of its own and raft snapshots on blocking threads, outside the
//! simulated scheduler.

pub mod history;
pub mod linearizable;
pub mod net;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use octopii::config::TransportConfig;
use octopii::transport::tls::NodeCredentials;
use octopii::{ClusterCa, Config, OctopiiNode, OctopiiRuntime};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use history::{Entry, History, Op, Outcome, Reply};
use net::{SimNet, Weather};

/// The service under test: registers by key.
#[octopii::service]
pub trait Registers {
    /// Sets `key` to `value`; the previous value.
    async fn put(&self, key: String, value: String) -> Option<String>;
    /// The value of `key`.
    async fn get(&self, key: String) -> Option<String>;
    /// Sets `key` to `new` if it holds `expected`; whether it did.
    async fn cas(&self, key: String, expected: Option<String>, new: String) -> bool;
}

/// The registers, in memory.
#[derive(Default)]
struct Store(Mutex<BTreeMap<String, String>>);

impl Registers for Store {
    async fn put(&self, key: String, value: String) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, value)
    }

    async fn get(&self, key: String) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned()
    }

    async fn cas(&self, key: String, expected: Option<String>, new: String) -> bool {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(&key) != expected.as_ref() {
            return false;
        }
        map.insert(key, new);
        true
    }
}

/// The size of a run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Client nodes, each running operations one after another.
    pub clients: u64,
    /// Operations per client.
    pub ops_per_client: usize,
    /// Keys the operations spread over.
    pub keys: usize,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            clients: 3,
            ops_per_client: 40,
            keys: 3,
        }
    }
}

/// What a run did and found.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub history: History,
    /// Faults the seed chose (weather changes and partitions).
    pub faults: u64,
    pub net: net::NetStats,
    /// Simulated time the run took.
    pub simulated: Duration,
    /// `Ok`, or why the history is not linearizable.
    pub verdict: Result<(), String>,
}

impl Report {
    /// The one line a run prints.
    pub fn line(&self) -> String {
        format!(
            "seed={} ops={} faults={} digest={}",
            self.seed,
            self.history.entries.len(),
            self.faults,
            self.history.digest()
        )
    }
}

/// The cluster's credentials, made once per process: key generation
/// draws from the operating system, and certificates of one size keep
/// every run's handshakes the same length.
fn credentials(nodes: u64) -> Vec<NodeCredentials> {
    static CREDENTIALS: OnceLock<Vec<NodeCredentials>> = OnceLock::new();
    let all = CREDENTIALS.get_or_init(|| {
        let ca = ClusterCa::generate().expect("CA");
        (1..=16)
            .map(|id| {
                ca.issue_node(&format!("sim-{id}"), id)
                    .expect("node certificate")
            })
            .collect()
    });
    all[..nodes as usize].to_vec()
}

fn addr_of(id: u64) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, id as u8], 7000))
}

/// Runs the seed's simulation to its end and checks its history.
pub fn run(seed: u64, plan: Plan) -> Report {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("simulation runtime");
    runtime.block_on(simulate(seed, plan))
}

async fn simulate(seed: u64, plan: Plan) -> Report {
    let started = Instant::now();
    let net = SimNet::new(seed);
    let runtime = OctopiiRuntime::from_handle(tokio::runtime::Handle::current());
    let credentials = credentials(plan.clients + 1);
    let nodes: Vec<OctopiiNode> = (1..=plan.clients + 1)
        .zip(credentials)
        .map(|(id, creds)| {
            let mut config = Config::builder()
                .node_id(id)
                .bind_addr(addr_of(id))
                .credentials(creds)
                .transport(TransportConfig {
                    rng_seed: Some(seed ^ (id << 56)),
                    ..TransportConfig::default()
                })
                .build()
                .expect("node config");
            config.worker_threads = 1;
            OctopiiNode::with_socket(config, &runtime, net.socket(addr_of(id))).expect("node")
        })
        .collect();
    let server = &nodes[0];
    server
        .serve(RegistersServer::new(Store::default()))
        .expect("serve");

    let history = Arc::new(Mutex::new(History::default()));
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let faults = tokio::spawn(weather_and_partitions(
        seed,
        net.clone(),
        (1..=plan.clients + 1).map(addr_of).collect(),
        done_rx,
    ));
    let mut clients = Vec::new();
    for (i, node) in nodes[1..].iter().enumerate() {
        let client = (i + 1) as u64;
        let stub = RegistersClient::new(node, server.local_addr());
        let ops = operations(seed, client, plan);
        clients.push(tokio::spawn(run_client(
            client,
            stub,
            ops,
            history.clone(),
            started,
        )));
    }
    for client in clients {
        client.await.expect("client task");
    }
    let _ = done_tx.send(true);
    let faults = faults.await.expect("fault task");

    // After healing, one more read of every key by every client: what was
    // acknowledged must be there.
    net.heal();
    net.set_weather(Weather::CALM);
    for (i, node) in nodes[1..].iter().enumerate() {
        let stub = RegistersClient::new(node, server.local_addr());
        let reads = (0..plan.keys)
            .map(|k| (format!("k{k}"), Op::Get, Duration::ZERO))
            .collect();
        run_client((i + 1) as u64, stub, reads, history.clone(), started).await;
    }
    for node in &nodes {
        node.shutdown().await;
    }
    let history = std::mem::take(&mut *history.lock().unwrap_or_else(PoisonError::into_inner));
    Report {
        seed,
        verdict: linearizable::check(&history),
        history,
        faults,
        net: net.stats(),
        simulated: started.elapsed(),
    }
}

/// The operations of `client`, chosen by the seed.
fn operations(seed: u64, client: u64, plan: Plan) -> Vec<(String, Op, Duration)> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(client));
    (0..plan.ops_per_client)
        .map(|n| {
            let key = format!("k{}", rng.gen_range(0..plan.keys));
            let value = format!("c{client}-{n}");
            let op = match rng.gen_range(0..3) {
                0 => Op::Put(value),
                1 => Op::Get,
                _ => Op::Cas {
                    expected: rng.gen_bool(0.5).then(|| {
                        format!(
                            "c{}-{}",
                            rng.gen_range(1..=plan.clients),
                            rng.gen_range(0..n.max(1))
                        )
                    }),
                    new: value,
                },
            };
            let think = Duration::from_millis(rng.gen_range(1..40));
            (key, op, think)
        })
        .collect()
}

async fn run_client(
    client: u64,
    stub: RegistersClient,
    ops: Vec<(String, Op, Duration)>,
    history: Arc<Mutex<History>>,
    started: Instant,
) {
    let stub = stub.with_deadline(Duration::from_secs(2));
    for (key, op, think) in ops {
        let invoked = started.elapsed();
        let result = match &op {
            Op::Put(value) => stub.put(key.clone(), value.clone()).await.map(Reply::Value),
            Op::Get => stub.get(key.clone()).await.map(Reply::Value),
            Op::Cas { expected, new } => stub
                .cas(key.clone(), expected.clone(), new.clone())
                .await
                .map(Reply::Swapped),
        };
        let outcome = match result {
            Ok(reply) => Outcome::Ok(reply),
            Err(e) => Outcome::Indeterminate(format!("{:?}", e.code())),
        };
        history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Entry {
                client,
                key,
                op,
                invoked,
                completed: started.elapsed(),
                outcome,
            });
        tokio::time::sleep(think).await;
    }
}

/// Until `done`, every few hundred simulated milliseconds: new weather, a
/// cut link, a node cut off both ways, or healing. Returns how many
/// faults it chose.
async fn weather_and_partitions(
    seed: u64,
    net: SimNet,
    addrs: Vec<SocketAddr>,
    mut done: tokio::sync::watch::Receiver<bool>,
) -> u64 {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_FA17);
    let mut faults = 0;
    loop {
        let pause = Duration::from_millis(rng.gen_range(30..300));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = done.changed() => return faults,
        }
        faults += 1;
        match rng.gen_range(0..4) {
            0 => net.set_weather(Weather {
                loss: rng.gen_range(0.0..0.2),
                duplicate: rng.gen_range(0.0..0.05),
                min_delay: Duration::from_micros(100),
                max_delay: Duration::from_millis(rng.gen_range(1..50)),
            }),
            1 => {
                let from = addrs[rng.gen_range(0..addrs.len())];
                let to = addrs[rng.gen_range(0..addrs.len())];
                net.cut(from, to);
            }
            2 => {
                let node = addrs[rng.gen_range(0..addrs.len())];
                for &other in &addrs {
                    net.cut(node, other);
                    net.cut(other, node);
                }
            }
            _ => {
                net.heal();
                net.set_weather(Weather::CALM);
            }
        }
    }
}
