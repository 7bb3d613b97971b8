//! A simulated UDP network: every node's QUIC endpoint sends and receives
//! through a [`SimSocket`], and the network decides, from its seeded
//! random source, what each datagram meets: loss, delay (and so
//! reordering), duplication, or a partition. Delivery is a timer on
//! tokio's clock, so under a paused runtime the whole network runs in
//! simulated time.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What the network does to datagrams, drawn per datagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weather {
    /// Chance that a datagram is lost.
    pub loss: f64,
    /// Chance that a datagram is delivered twice.
    pub duplicate: f64,
    /// Shortest one-way delay.
    pub min_delay: Duration,
    /// Longest one-way delay; delays in between reorder datagrams.
    pub max_delay: Duration,
}

impl Weather {
    /// A LAN that loses and reorders nothing.
    pub const CALM: Weather = Weather {
        loss: 0.0,
        duplicate: 0.0,
        min_delay: Duration::from_micros(200),
        max_delay: Duration::from_micros(200),
    };
}

/// Counts of what the network did, for the run's report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    /// Datagrams handed to the network.
    pub sent: u64,
    /// Lost to the weather.
    pub lost: u64,
    /// Dropped at a partition.
    pub cut: u64,
    /// Delivered twice.
    pub duplicated: u64,
}

/// The network every [`SimSocket`] of one simulation shares.
#[derive(Clone)]
pub struct SimNet(Arc<Mutex<State>>);

struct State {
    rng: StdRng,
    weather: Weather,
    /// Directed links that drop everything: `(from, to)`.
    cut: BTreeSet<(SocketAddr, SocketAddr)>,
    inboxes: HashMap<SocketAddr, Inbox>,
    stats: NetStats,
}

#[derive(Default)]
struct Inbox {
    /// Bumped when a new socket takes the address (a restarted node): the
    /// old one then neither sends nor receives.
    generation: u64,
    datagrams: VecDeque<(SocketAddr, Vec<u8>)>,
    waker: Option<Waker>,
}

impl fmt::Debug for SimNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimNet").finish_non_exhaustive()
    }
}

impl SimNet {
    /// A network whose every random choice comes from `seed`.
    pub fn new(seed: u64) -> Self {
        SimNet(Arc::new(Mutex::new(State {
            rng: StdRng::seed_from_u64(seed),
            weather: Weather::CALM,
            cut: BTreeSet::new(),
            inboxes: HashMap::new(),
            stats: NetStats::default(),
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A socket at `addr` on this network. A socket already there is
    /// unplugged, as a crashed process's: what is queued for it is lost.
    pub fn socket(&self, addr: SocketAddr) -> Arc<SimSocket> {
        let mut state = self.state();
        let inbox = state.inboxes.entry(addr).or_default();
        inbox.generation += 1;
        inbox.datagrams.clear();
        if let Some(waker) = inbox.waker.take() {
            waker.wake();
        }
        Arc::new(SimSocket {
            net: self.clone(),
            addr,
            generation: inbox.generation,
        })
    }

    /// Unplugs the socket at `addr`, as when its process crashes: it
    /// neither sends nor receives again, and datagrams to the address are
    /// lost until a new socket takes it.
    pub fn unplug(&self, addr: SocketAddr) {
        if let Some(inbox) = self.state().inboxes.get_mut(&addr) {
            inbox.generation += 1;
            inbox.datagrams.clear();
            if let Some(waker) = inbox.waker.take() {
                waker.wake();
            }
        }
    }

    /// Whether `socket` is still the one at its address.
    fn plugged(&self, socket: &SimSocket) -> bool {
        self.state()
            .inboxes
            .get(&socket.addr)
            .is_some_and(|inbox| inbox.generation == socket.generation)
    }

    /// Sets what datagrams meet from now on.
    pub fn set_weather(&self, weather: Weather) {
        self.state().weather = weather;
    }

    /// Drops everything `from` sends to `to` (one way).
    pub fn cut(&self, from: SocketAddr, to: SocketAddr) {
        self.state().cut.insert((from, to));
    }

    /// Heals every cut link.
    pub fn heal(&self) {
        self.state().cut.clear();
    }

    /// What the network did so far.
    pub fn stats(&self) -> NetStats {
        self.state().stats
    }

    /// Hands `datagram` from `from` to the network, which delivers it
    /// after its delay, twice, or not at all.
    fn send(&self, from: SocketAddr, to: SocketAddr, datagram: Vec<u8>) {
        let deliveries = {
            let mut state = self.state();
            state.stats.sent += 1;
            if state.cut.contains(&(from, to)) {
                state.stats.cut += 1;
                return;
            }
            let weather = state.weather;
            if state.rng.gen_bool(weather.loss) {
                state.stats.lost += 1;
                return;
            }
            let copies = if state.rng.gen_bool(weather.duplicate) {
                state.stats.duplicated += 1;
                2
            } else {
                1
            };
            (0..copies)
                .map(|_| state.rng.gen_range(weather.min_delay..=weather.max_delay))
                .collect::<Vec<_>>()
        };
        for delay in deliveries {
            let (net, datagram) = (self.clone(), datagram.clone());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                net.deliver(from, to, datagram);
            });
        }
    }

    fn deliver(&self, from: SocketAddr, to: SocketAddr, datagram: Vec<u8>) {
        let mut state = self.state();
        // A datagram to an address nobody holds is lost, as on a real network.
        if let Some(inbox) = state.inboxes.get_mut(&to) {
            inbox.datagrams.push_back((from, datagram));
            if let Some(waker) = inbox.waker.take() {
                waker.wake();
            }
        }
    }
}

/// One endpoint's socket on a [`SimNet`].
pub struct SimSocket {
    net: SimNet,
    addr: SocketAddr,
    generation: u64,
}

impl fmt::Debug for SimSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimSocket")
            .field("addr", &self.addr)
            .finish()
    }
}

/// The network never pushes back: a send always succeeds.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncUdpSocket for SimSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        if !self.net.plugged(self) {
            return Ok(());
        }
        let segment = transmit.segment_size.unwrap_or(transmit.contents.len());
        for datagram in transmit.contents.chunks(segment.max(1)) {
            self.net
                .send(self.addr, transmit.destination, datagram.to_vec());
        }
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut state = self.net.state();
        let inbox = state.inboxes.entry(self.addr).or_default();
        if inbox.generation != self.generation {
            // Unplugged: nothing will ever arrive.
            return Poll::Pending;
        }
        let mut received = 0;
        while received < bufs.len().min(meta.len()) {
            let Some((from, datagram)) = inbox.datagrams.pop_front() else {
                break;
            };
            let len = datagram.len().min(bufs[received].len());
            bufs[received][..len].copy_from_slice(&datagram[..len]);
            meta[received] = RecvMeta {
                addr: from,
                len,
                stride: len,
                ecn: None,
                dst_ip: None,
            };
            received += 1;
        }
        if received == 0 {
            inbox.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Ok(received))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }

    fn may_fragment(&self) -> bool {
        false
    }
}
