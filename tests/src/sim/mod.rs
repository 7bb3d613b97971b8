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
    /// Faults the seed chose (weather, partitions, crashes), in order, each
    /// with its simulated time.
    pub faults: Vec<String>,
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
            self.faults.len(),
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
    let bounded = async { tokio::time::timeout(SIMULATED_LIMIT, simulate(seed, plan)).await };
    runtime.block_on(bounded).unwrap_or_else(|_| Report {
        seed,
        history: History::default(),
        faults: Vec::new(),
        net: net::NetStats::default(),
        simulated: SIMULATED_LIMIT,
        verdict: Err(format!(
            "the run did not end within {SIMULATED_LIMIT:?} of simulated time"
        )),
    })
}

/// Simulated time after which a run that has not ended is a failure (a
/// run takes 10 to 60 s): a stuck client or node must not hang the test.
const SIMULATED_LIMIT: Duration = Duration::from_secs(600);

async fn simulate(seed: u64, plan: Plan) -> Report {
    let started = Instant::now();
    let net = SimNet::new(seed);
    let configs: Vec<Config> = (1..=plan.clients + 1)
        .zip(credentials(plan.clients + 1))
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
            config
        })
        .collect();
    let mut server = Server {
        config: configs[0].clone(),
        // The registers outlive the server's process, as a store on disk would.
        store: Arc::new(Store::default()),
        node: None,
    };
    server.start(&net);
    let clients: Vec<OctopiiNode> = configs[1..].iter().map(|c| start(&net, c)).collect();
    let server_addr = configs[0].bind_addr;

    let history = Arc::new(Mutex::new(History::default()));
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let faults = tokio::spawn(faults(
        seed,
        net.clone(),
        configs.iter().map(|c| c.bind_addr).collect(),
        server,
        started,
        done_rx,
    ));
    let mut workers = Vec::new();
    for (i, node) in clients.iter().enumerate() {
        let client = (i + 1) as u64;
        let stub = RegistersClient::new(node, server_addr);
        let ops = operations(seed, client, plan);
        workers.push(tokio::spawn(run_client(
            client,
            stub,
            ops,
            history.clone(),
            started,
        )));
    }
    for worker in workers {
        worker.await.expect("client task");
    }
    let _ = done_tx.send(true);
    let (faults, server) = faults.await.expect("fault task");

    // Healed, every client reads every key within a few simulated seconds:
    // a restarted server is reachable again, and what was acknowledged is
    // there.
    net.heal();
    net.set_weather(Weather::CALM);
    let healed = started.elapsed();
    let mut stuck = Vec::new();
    for (i, node) in clients.iter().enumerate() {
        let stub = RegistersClient::new(node, server_addr).with_deadline(Duration::from_secs(1));
        for k in 0..plan.keys {
            let key = format!("k{k}");
            if !read_until_answered(&stub, (i + 1) as u64, &key, &history, started).await {
                stuck.push(format!("client {} reading {key}", i + 1));
            }
        }
    }
    for node in clients.iter().chain(server.node.iter()) {
        node.shutdown().await;
    }
    let history = std::mem::take(&mut *history.lock().unwrap_or_else(PoisonError::into_inner));
    let verdict = if stuck.is_empty() {
        linearizable::check(&history)
    } else {
        Err(format!(
            "{} still unanswered {:?} after healing at {healed:?}",
            stuck.join(", "),
            Duration::from_secs(HEALED_WITHIN_SECS)
        ))
    };
    Report {
        seed,
        verdict,
        history,
        faults,
        net: net.stats(),
        simulated: started.elapsed(),
    }
}

/// Simulated seconds after healing within which every client must be
/// answered again.
const HEALED_WITHIN_SECS: u64 = 5;

/// Reads `key` until a reply comes, for up to [`HEALED_WITHIN_SECS`];
/// whether one came. Every attempt goes into the history.
async fn read_until_answered(
    stub: &RegistersClient,
    client: u64,
    key: &str,
    history: &Arc<Mutex<History>>,
    started: Instant,
) -> bool {
    let give_up = Instant::now() + Duration::from_secs(HEALED_WITHIN_SECS);
    while Instant::now() < give_up {
        let answered = perform(stub, client, key.to_owned(), Op::Get, history, started).await;
        if answered {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The node that serves the registers, and what restarts it.
struct Server {
    config: Config,
    store: Arc<Store>,
    node: Option<OctopiiNode>,
}

impl Server {
    /// Starts (or restarts) the server's process, serving its store.
    fn start(&mut self, net: &SimNet) {
        let node = start(net, &self.config);
        node.serve(RegistersServer::from_arc(self.store.clone()))
            .expect("serve");
        self.node = Some(node);
    }
}

/// A node of `config` on the simulated network, on the simulation's runtime.
fn start(net: &SimNet, config: &Config) -> OctopiiNode {
    let runtime = OctopiiRuntime::from_handle(tokio::runtime::Handle::current());
    OctopiiNode::with_socket(config.clone(), &runtime, net.socket(config.bind_addr)).expect("node")
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
        perform(&stub, client, key, op, &history, started).await;
        tokio::time::sleep(think).await;
    }
}

/// Runs `op` on `key` and records it in `history`; whether it was answered.
async fn perform(
    stub: &RegistersClient,
    client: u64,
    key: String,
    op: Op,
    history: &Mutex<History>,
    started: Instant,
) -> bool {
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
    let answered = matches!(outcome, Outcome::Ok(_));
    let entry = Entry {
        client,
        key,
        op,
        invoked,
        completed: started.elapsed(),
        outcome,
    };
    history
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(entry);
    answered
}

/// Until `done`, every few hundred simulated milliseconds: new weather, a
/// cut link, a node cut off both ways, healing, or a crash of the server
/// (its socket unplugged, so it tells nobody) and its restart from its
/// store after a while. Returns how many faults it chose, and the server.
async fn faults(
    seed: u64,
    net: SimNet,
    addrs: Vec<SocketAddr>,
    mut server: Server,
    started: Instant,
    mut done: tokio::sync::watch::Receiver<bool>,
) -> (Vec<String>, Server) {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_FA17);
    let mut faults = Vec::new();
    let mut log = |what: String| faults.push(format!("{:?} {what}", started.elapsed()));
    loop {
        let pause = Duration::from_millis(rng.gen_range(30..300));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = done.changed() => break,
        }
        match rng.gen_range(0..5) {
            0 => {
                let weather = Weather {
                    loss: rng.gen_range(0.0..0.2),
                    duplicate: rng.gen_range(0.0..0.05),
                    min_delay: Duration::from_micros(100),
                    max_delay: Duration::from_millis(rng.gen_range(1..50)),
                };
                log(format!("weather {weather:?}"));
                net.set_weather(weather);
            }
            1 => {
                let from = addrs[rng.gen_range(0..addrs.len())];
                let to = addrs[rng.gen_range(0..addrs.len())];
                log(format!("cut {from} -> {to}"));
                net.cut(from, to);
            }
            2 => {
                let node = addrs[rng.gen_range(0..addrs.len())];
                log(format!("isolate {node}"));
                for &other in &addrs {
                    net.cut(node, other);
                    net.cut(other, node);
                }
            }
            3 => {
                let down = Duration::from_millis(rng.gen_range(0..3000));
                log(format!("crash the server, restart it after {down:?}"));
                net.unplug(server.config.bind_addr);
                // Dropped, not shut down: a crashed process closes nothing
                // (and its socket is unplugged, so nothing it sends leaves).
                // Dropped, not shut down: a crashed process closes nothing
                // (and its socket is unplugged, so nothing it sends leaves).
                drop(server.node.take());
                tokio::time::sleep(down).await;
                server.start(&net);
            }
            _ => {
                log("heal".to_owned());
                net.heal();
                net.set_weather(Weather::CALM);
            }
        }
    }
    (faults, server)
}
