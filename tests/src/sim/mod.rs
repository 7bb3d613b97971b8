//! Deterministic simulation of Octopii nodes in one process: real QUIC,
//! TLS and RPC over a simulated network ([`net`]), on a tokio runtime whose
//! clock is paused and advanced by the simulation, every random choice
//! drawn from one seed. The same seed replays the same run: the report's
//! digest covers the ordered history of every operation with its simulated
//! times.
//!
//! Client nodes call registers ([`registers`]) served by one node or by a
//! raft group ([`servers`]), under loss, delay, reordering, duplication,
//! one-way and symmetric partitions, and crashes of serving nodes whose
//! disks lose what was not synced; the history is checked for
//! linearizability ([`linearizable`]), and after healing every client
//! must be answered again and raft members must agree.
//!
//! Not simulated yet: raft snapshots between members (they travel as
//! ChunkService files on the real disk), membership changes, disk
//! failures other than a crash, clock drift.

pub mod history;
pub mod linearizable;
pub mod memory;
pub mod net;
pub mod registers;
pub mod servers;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use octopii::config::TransportConfig;
use octopii::transport::tls::NodeCredentials;
use octopii::{Config, OctopiiNode, OctopiiRuntime};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use crate::crash_fs::Tear;
use history::{Entry, History, Op, Outcome, Reply};
use net::{SimNet, Weather};
use registers::{Refused, RegistersClient};
use servers::Servers;
pub use servers::Serving;

/// The size of a run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Client nodes, each running operations one after another.
    pub clients: u64,
    /// Operations per client.
    pub ops_per_client: usize,
    /// Keys the operations spread over.
    pub keys: usize,
    /// What serves the registers.
    pub serving: Serving,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            clients: 3,
            ops_per_client: 40,
            keys: 3,
            serving: Serving::One,
        }
    }
}

impl Plan {
    /// The default plan against a raft group of three.
    pub fn raft() -> Self {
        Plan {
            serving: Serving::Raft(3),
            ..Plan::default()
        }
    }

    /// The default plan against a raft group of three that takes
    /// snapshots and changes its membership.
    pub fn raft_changing() -> Self {
        Plan {
            serving: Serving::RaftChanging(3),
            ..Plan::default()
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
    /// Each raft member's state once the run was checked.
    pub members: Vec<String>,
    /// The most heap the run's nodes held at once, in bytes (zero unless
    /// the binary installs [`memory::Counting`]).
    pub heap_peak: u64,
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

/// The cluster's credentials: fixed files (`tests/fixtures/sim`, made by
/// its `make.sh`), the same in every process. Credentials generated per
/// process made runs of one seed differ between processes: ECDSA
/// signatures vary in length, so certificates and handshakes did, and so
/// did which datagrams the seeded network dropped. Ed25519 signatures
/// have one length and are deterministic.
fn credentials(nodes: u64) -> Vec<NodeCredentials> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sim");
    (1..=nodes)
        .map(|id| {
            NodeCredentials::from_pem_files(
                &dir.join("ca.pem"),
                &dir.join(format!("node-{id}.pem")),
                &dir.join(format!("node-{id}.key.pem")),
            )
            .expect("the simulation's fixed credentials")
        })
        .collect()
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
        members: Vec::new(),
        heap_peak: 0,
        simulated: SIMULATED_LIMIT,
        verdict: Err(format!(
            "the run did not end within {SIMULATED_LIMIT:?} of simulated time"
        )),
    })
}

/// The most heap the nodes of a run may hold at once. Seven nodes take 2
/// to 12 MiB; what a node holds for its peers is bounded (queues,
/// windows, budgets), so a run that needs far more holds something
/// without bound.
const MAX_HEAP: u64 = 64 << 20;

/// Simulated time after which a run that has not ended is a failure (a
/// run takes 10 to 60 s): a stuck client or node must not hang the test.
const SIMULATED_LIMIT: Duration = Duration::from_secs(600);

/// When the running simulation started, on its clock: what [`SimTime`]
/// counts from.
static RUN_STARTED: Mutex<Option<Instant>> = Mutex::new(None);

/// Stamps log lines with the simulated time since the run started, so a
/// replayed seed's logs line up with its fault timeline.
pub struct SimTime;

impl tracing_subscriber::fmt::time::FormatTime for SimTime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let started = *RUN_STARTED.lock().unwrap_or_else(PoisonError::into_inner);
        match started {
            Some(started) => write!(w, "{:>12?}", started.elapsed()),
            None => write!(w, "{:>12}", "-"),
        }
    }
}

async fn simulate(seed: u64, plan: Plan) -> Report {
    let heap = memory::Usage::start();
    let started = Instant::now();
    *RUN_STARTED.lock().unwrap_or_else(PoisonError::into_inner) = Some(started);
    let net = SimNet::new(seed);
    let serving = plan.serving.nodes();
    let configs: Vec<Config> = (1..=serving + plan.clients)
        .zip(credentials(serving + plan.clients))
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
    let (server_configs, client_configs) = configs.split_at(serving as usize);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED_FA17);
    let servers = Servers::start(plan.serving, server_configs, &net, &mut rng);
    let server_addrs = servers.addrs();
    let clients: Vec<OctopiiNode> = client_configs.iter().map(|c| start(&net, c)).collect();

    let history = Arc::new(Mutex::new(History::default()));
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let faults = tokio::spawn(faults(
        rng,
        net.clone(),
        configs.iter().map(|c| c.bind_addr).collect(),
        servers,
        started,
        done_rx,
    ));
    let mut workers = Vec::new();
    for (i, node) in clients.iter().enumerate() {
        let client = (i + 1) as u64;
        let stubs = stubs(node, &server_addrs, Duration::from_secs(2));
        let ops = operations(seed, client, plan);
        workers.push(tokio::spawn(run_client(
            client,
            stubs,
            ops,
            history.clone(),
            started,
        )));
    }
    for worker in workers {
        worker.await.expect("client task");
    }
    let _ = done_tx.send(true);
    let (mut faults, mut servers) = faults.await.expect("fault task");
    servers.calm_disks();
    for id in servers.restart_stopped(&net, &mut rng_after(seed)).await {
        faults.push(format!(
            "{:?} restart member {id}, which stopped",
            started.elapsed()
        ));
    }

    // Healed, every client reads every key within a few simulated seconds:
    // a restarted server is reachable again, and what was acknowledged is
    // there. Raft members agree.
    net.heal();
    net.set_weather(Weather::CALM);
    let healed = started.elapsed();
    let mut stuck = Vec::new();
    let group = servers.group_addrs();
    for (i, node) in clients.iter().enumerate() {
        let stubs = stubs(node, &group, Duration::from_secs(1));
        for k in 0..plan.keys {
            let key = format!("k{k}");
            let stub = &stubs[k % stubs.len()];
            if !read_until_answered(stub, (i + 1) as u64, &key, &history, started).await {
                stuck.push(format!("client {} reading {key}", i + 1));
            }
        }
    }
    let agreed = servers.agree(Duration::from_secs(HEALED_WITHIN_SECS)).await;
    let members = servers.summary();
    for node in &clients {
        node.shutdown().await;
    }
    servers.shutdown().await;
    let history = std::mem::take(&mut *history.lock().unwrap_or_else(PoisonError::into_inner));
    // The nodes' heap, before the checker takes its own.
    let heap_peak = heap.peak();
    let verdict = if heap_peak > MAX_HEAP {
        Err(format!(
            "the nodes held {} MiB of heap at once, more than {} MiB",
            heap_peak >> 20,
            MAX_HEAP >> 20
        ))
    } else if !stuck.is_empty() {
        Err(format!(
            "{} still unanswered {:?} after healing at {healed:?}",
            stuck.join(", "),
            Duration::from_secs(HEALED_WITHIN_SECS)
        ))
    } else {
        agreed.and_then(|()| linearizable::check(&history))
    };
    Report {
        seed,
        verdict,
        history,
        faults,
        net: net.stats(),
        members,
        heap_peak,
        simulated: started.elapsed(),
    }
}

/// The random source of what follows the faults (restarts of members).
fn rng_after(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ 0xAF7E_2000)
}

/// A stub per serving node, with `deadline`.
fn stubs(node: &OctopiiNode, servers: &[SocketAddr], deadline: Duration) -> Vec<RegistersClient> {
    servers
        .iter()
        .map(|&addr| RegistersClient::new(node, addr).with_deadline(deadline))
        .collect()
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

/// A node of `config` on the simulated network, on the simulation's runtime.
fn start(net: &SimNet, config: &Config) -> OctopiiNode {
    let runtime = OctopiiRuntime::from_handle(tokio::runtime::Handle::current());
    OctopiiNode::with_socket(config.clone(), &runtime, net.socket(config.bind_addr)).expect("node")
}

/// The operations of `client`, chosen by the seed.
/// Each is the serving node to call, the key, the operation and the pause
/// after it.
fn operations(seed: u64, client: u64, plan: Plan) -> Vec<(usize, String, Op, Duration)> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(client));
    let servers = plan.serving.nodes() as usize;
    (0..plan.ops_per_client)
        .map(|n| {
            let target = if servers > 1 {
                rng.gen_range(0..servers)
            } else {
                0
            };
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
            (target, key, op, think)
        })
        .collect()
}

async fn run_client(
    client: u64,
    stubs: Vec<RegistersClient>,
    ops: Vec<(usize, String, Op, Duration)>,
    history: Arc<Mutex<History>>,
    started: Instant,
) {
    for (target, key, op, think) in ops {
        perform(&stubs[target], client, key, op, &history, started).await;
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
        Op::Put(value) => stub
            .put(key.clone(), value.clone())
            .await
            .map(|r| r.map(Reply::Value)),
        Op::Get => stub.get(key.clone()).await.map(|r| r.map(Reply::Value)),
        Op::Cas { expected, new } => stub
            .cas(key.clone(), expected.clone(), new.clone())
            .await
            .map(|r| r.map(Reply::Swapped)),
    };
    // A call that failed, or a server that could not say, may or may not
    // have taken effect.
    let outcome = match result {
        Ok(Ok(reply)) => Outcome::Ok(reply),
        Ok(Err(Refused::NotApplied(why))) => Outcome::Failed(why),
        Ok(Err(Refused::MaybeApplied(why))) => Outcome::Indeterminate(why),
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
/// cut link, a node cut off both ways, healing, or a crash of a serving
/// node (its socket unplugged, so it tells nobody; its disk keeping what
/// the seed says of what it had not synced) and its restart after a
/// while. Returns the faults it chose, and the servers.
async fn faults(
    mut rng: StdRng,
    net: SimNet,
    addrs: Vec<SocketAddr>,
    mut servers: Servers,
    started: Instant,
    mut done: tokio::sync::watch::Receiver<bool>,
) -> (Vec<String>, Servers) {
    let mut faults = Vec::new();
    let mut log = |what: String| faults.push(format!("{:?} {what}", started.elapsed()));
    let serving = servers.addrs().len();
    let plan = servers.serving();
    loop {
        let pause = Duration::from_millis(rng.gen_range(30..300));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = done.changed() => break,
        }
        // A raft member that stopped on a disk error is restarted, as a
        // supervisor would.
        for id in servers.restart_stopped(&net, &mut rng).await {
            log(format!("restart member {id}, which stopped"));
        }
        // One server runs no WAL to fail; only a changing group changes.
        let kinds = match plan {
            Serving::One => 5,
            Serving::Raft(_) => 6,
            Serving::RaftChanging(_) => 9,
        };
        match rng.gen_range(0..kinds) {
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
                let i = if serving > 1 {
                    rng.gen_range(0..serving)
                } else {
                    0
                };
                let down = Duration::from_millis(rng.gen_range(0..3000));
                let (writes, tear) = if serving > 1 {
                    (
                        rng.gen_range(0..8),
                        [Tear::DropAll, Tear::KeepAll, Tear::TearLast][rng.gen_range(0..3)],
                    )
                } else {
                    (0, Tear::DropAll)
                };
                log(format!(
                    "crash {} after {writes} writes ({tear:?}), restart it after {down:?}",
                    addrs[i]
                ));
                servers.crash(i, writes, down, tear, &net, &mut rng).await;
            }
            5 => {
                let i = rng.gen_range(0..serving);
                let writes = rng.gen_range(0..20);
                let kind = [std::io::ErrorKind::Other, std::io::ErrorKind::StorageFull]
                    [rng.gen_range(0..2)];
                log(format!(
                    "disk of {} fails after {writes} writes ({kind})",
                    addrs[i]
                ));
                servers.disk_fails(i, writes, kind);
            }
            6 => {
                if let Some(change) = servers.change_membership(&mut rng).await {
                    log(change);
                }
            }
            7 => {
                let i = rng.gen_range(0..serving);
                let delay = Duration::from_millis(rng.gen_range(0..60));
                log(format!("disk of {} takes {delay:?} per sync", addrs[i]));
                servers.slow_disk(i, delay);
            }
            8 => {
                // The leader loses its followers, both ways, and keeps
                // its clients.
                if let Some(i) = servers.leader() {
                    let leader = addrs[i];
                    log(format!("cut leader {leader} off from the other members"));
                    for &member in addrs[..serving].iter().filter(|&&a| a != leader) {
                        net.cut(leader, member);
                        net.cut(member, leader);
                    }
                }
            }
            _ => {
                log("heal".to_owned());
                net.heal();
                net.set_weather(Weather::CALM);
            }
        }
    }
    (faults, servers)
}
