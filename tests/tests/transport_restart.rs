//! A node killed without a word and restarted on the same address and key
//! is reached again at once, not when its peers' stale connection idles out.
//!
//! The server is this test binary run again (`std::env::current_exe()`) with
//! only the ignored test [`restarted_node_child`], told where its
//! certificates are and where to listen by environment variables, and
//! killed with SIGKILL, so no CONNECTION_CLOSE ever leaves it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use octopii::ClusterCa;
use octopii::config::TlsConfig;
use octopii::{Config, OctopiiNode, OctopiiRuntime};
use octopii_tests::{Echo, echo, echo_node};

const DIR_VAR: &str = "OCTOPII_RESTART_CERT_DIR";
const ADDR_VAR: &str = "OCTOPII_RESTART_BIND_ADDR";

/// The server run in the child process; does nothing unless told to.
#[test]
#[ignore = "run by a_restarted_peer_is_reached_again_within_two_seconds in a child process"]
fn restarted_node_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let dir = Path::new(&dir);
    let bind: SocketAddr = std::env::var(ADDR_VAR)
        .expect("bind address variable")
        .parse()
        .expect("bind address");
    let runtime = OctopiiRuntime::new(1).expect("runtime");
    let tls = TlsConfig::from_files(
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key.pem"),
    );
    let config = Config::builder()
        .bind_addr(bind)
        .worker_threads(1)
        .tls(tls)
        .build()
        .expect("child config");
    let node = OctopiiNode::with_handler(config, &runtime, Arc::new(Echo)).expect("child node");
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY {}", node.local_addr()).expect("stdout");
    out.flush().expect("flush");
    drop(out);
    // Serve until killed, or until the parent is gone (stdin closes).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// A server process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts the child on `bind` and waits until it listens.
    fn start(dir: &Path, bind: SocketAddr) -> Server {
        let exe = std::env::current_exe().expect("test binary path");
        let mut child = Command::new(exe)
            .args([
                "restarted_node_child",
                "--exact",
                "--nocapture",
                "--ignored",
            ])
            .args(["--test-threads", "1"])
            .env(DIR_VAR, dir)
            .env(ADDR_VAR, bind.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let addr = BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                // The harness may have begun the line ("test … ... ").
                .find_map(|line| Some(line.split_once("READY ")?.1.to_owned()));
            let _ = tx.send(addr);
        });
        let Ok(Some(addr)) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child server did not start");
        };
        Server {
            child,
            addr: addr.parse().expect("child address"),
        }
    }

    /// SIGKILL: the process vanishes without closing any connection.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL the child");
        self.child.wait().expect("wait for the child");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_restarted_peer_is_reached_again_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::generate().unwrap();
    let server = ca.issue_node("server", 1).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(dir.path().join("server.pem"), server.cert_pem()).unwrap();
    std::fs::write(dir.path().join("server.key.pem"), server.key_pem()).unwrap();

    let rt = OctopiiRuntime::new(2).unwrap();
    // The idle timeout stays at its 30 s default: only a reset can end the
    // stale connection within the bound below.
    let client = echo_node(&ca, "client", &rt);
    let first = Server::start(dir.path(), "127.0.0.1:0".parse().unwrap());
    let addr = first.addr;
    let stale = rt.block_on(async {
        let conn = client.connect(addr).await.unwrap();
        assert_eq!(echo(&conn, b"first").await.unwrap(), b"client:first");
        conn
    });

    first.kill();
    let _second = Server::start(dir.path(), addr);
    let restarted = Instant::now();
    // Calls as an application makes them, each given a short while; the
    // first may fail on the stale connection, later ones must get through.
    let reply = rt.block_on(async {
        while restarted.elapsed() < Duration::from_secs(4) {
            let attempt = tokio::time::timeout(Duration::from_millis(250), async {
                let conn = client.connect(addr).await?;
                echo(&conn, b"again").await
            });
            if let Ok(Ok(reply)) = attempt.await {
                return Some(reply);
            }
        }
        None
    });
    let elapsed = restarted.elapsed();
    assert_eq!(
        reply.as_deref(),
        Some(&b"client:again"[..]),
        "after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(2),
        "reached again after {elapsed:?}"
    );
    // The old connection ended by a stateless reset, not by its idle timer.
    assert!(
        matches!(
            stale.quinn().close_reason(),
            Some(quinn::ConnectionError::Reset)
        ),
        "{:?}",
        stale.quinn().close_reason()
    );
    assert_eq!(client.stats().pool.handshakes, 2);
}
