//! `octopii serve` receives what `octopii send` sends, verified, over
//! certificates made by `octopii certs`; a failed peer makes `send` fail;
//! SIGTERM stops `serve` cleanly; `serve --metrics` answers a Prometheus
//! scrape.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

fn octopii() -> Command {
    Command::new(env!("CARGO_BIN_EXE_octopii"))
}

fn run(args: &[&str]) -> Output {
    let out = octopii()
        .args(args)
        .output()
        .expect("run the octopii binary");
    assert!(
        out.status.success(),
        "octopii {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Kills the server when the test ends, whatever its outcome.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `octopii serve` on an ephemeral port, with `extra` options;
/// returns it and its address.
fn serve(certs: &str, recv_dir: &Path, extra: &[&str]) -> (Server, String) {
    let recv = recv_dir.to_str().unwrap();
    let mut child = octopii()
        .args(["serve", "--listen", "127.0.0.1:0", "--recv-dir", recv])
        .args(["--certs", certs, "--name", "server"])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start octopii serve");
    let stdout = child.stdout.take().expect("piped stdout");
    let server = Server(child);
    let mut stdout = BufReader::new(stdout);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    // Keep reading what it prints, so that it never writes to a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    // "listening on ADDR, receiving into DIR"
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (server, addr)
}

#[test]
fn serve_receives_what_send_sends_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let certs = certs.to_str().unwrap();
    run(&["certs", "init", certs]);
    run(&["certs", "node", certs, "--name", "server", "--id", "1"]);
    run(&["certs", "client", certs, "--name", "client"]);
    let recv_dir = dir.path().join("inbox");
    std::fs::create_dir(&recv_dir).unwrap();
    let (mut server, addr) = serve(certs, &recv_dir, &[]);

    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let file = dir.path().join("data.bin");
    std::fs::write(&file, &data).unwrap();
    let file = file.to_str().unwrap();
    let client = ["--certs", certs, "--name", "client"];

    let sent = octopii()
        .args(["send", file, "--to", &addr])
        .args(client)
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert_eq!(std::fs::read(recv_dir.join("data.bin")).unwrap(), data);

    // One live peer and one that is not there: the live one receives, the
    // command reports the failure with a non-zero exit.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = dead.local_addr().unwrap().to_string();
    let to = format!("{addr},{dead}");
    let failed = octopii()
        .args(["send", file, "--to", &to, "--as", "again.bin"])
        .args(["--stall-timeout-secs", "3"])
        .args(client)
        .output()
        .unwrap();
    assert!(
        !failed.status.success(),
        "a failed peer must fail the command"
    );
    assert_eq!(std::fs::read(recv_dir.join("again.bin")).unwrap(), data);

    // SIGTERM shuts the server down cleanly.
    let pid = server.0.id().to_string();
    let term = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(term.success());
    let status = server.0.wait().unwrap();
    assert!(status.success(), "serve exits cleanly on SIGTERM: {status}");
}

#[test]
fn health_says_serving_for_a_served_service_and_unknown_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let certs = certs.to_str().unwrap();
    run(&["certs", "init", certs]);
    run(&["certs", "node", certs, "--name", "server", "--id", "1"]);
    run(&["certs", "client", certs, "--name", "probe"]);
    let (_server, addr) = serve(certs, dir.path(), &[]);
    let health = |service: &str| {
        let out = octopii()
            .args(["health", &addr, "--service", service])
            .args(["--certs", certs, "--name", "probe"])
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success(), printed)
    };
    assert_eq!(health(""), (true, "SERVING".to_owned()));
    assert_eq!(health("Chunk"), (true, "SERVING".to_owned()));
    assert_eq!(health("Nope"), (false, "UNKNOWN".to_owned()));
}

#[test]
fn serve_with_metrics_answers_a_scrape_that_counts_a_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let certs = certs.to_str().unwrap();
    run(&["certs", "init", certs]);
    run(&["certs", "node", certs, "--name", "server", "--id", "1"]);
    run(&["certs", "client", certs, "--name", "client"]);
    // A loopback port nobody listens on right now.
    let metrics = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let (_server, addr) = serve(certs, dir.path(), &["--metrics", &metrics]);

    let file = dir.path().join("data.bin");
    std::fs::write(&file, vec![1u8; 5000]).unwrap();
    let sent = octopii()
        .args([
            "send",
            file.to_str().unwrap(),
            "--to",
            &addr,
            "--as",
            "got.bin",
        ])
        .args(["--certs", certs, "--name", "client"])
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );

    let mut stream = std::net::TcpStream::connect(&metrics).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut scrape = String::new();
    stream.read_to_string(&mut scrape).unwrap();
    assert!(scrape.contains(" 200 "), "{scrape}");
    let received = scrape
        .lines()
        .find_map(|line| line.strip_prefix(r#"octopii_chunk_bytes_received_total{node="1"} "#));
    assert_eq!(received, Some("5000"), "{scrape}");
    assert!(
        scrape.contains(r#"octopii_connections_open{node="1"}"#),
        "{scrape}"
    );
}
