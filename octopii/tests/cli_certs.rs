//! `octopii certs` makes files that nodes load from a TOML config and use
//! to authenticate each other.

use std::path::Path;
use std::process::Command;

use octopii::transport::tls::{NodeCredentials, Role};
use octopii::{Config, OctopiiNode, OctopiiRuntime};

fn octopii(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_octopii"))
        .args(args)
        .output()
        .expect("run the octopii binary")
}

fn node_config(dir: &Path, name: &str) -> Config {
    let file = dir.join(format!("{name}.toml"));
    let toml = format!(
        "bind_addr = \"127.0.0.1:0\"\n[tls]\nca_cert = \"certs/ca.pem\"\ncert = \"certs/{name}.pem\"\nkey = \"certs/{name}.key.pem\"\n"
    );
    std::fs::write(&file, toml).unwrap();
    Config::from_toml_file(&file).unwrap()
}

#[test]
fn certificates_from_the_cli_authenticate_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let certs = certs.to_str().unwrap();
    assert!(octopii(&["certs", "init", certs]).status.success());
    for (name, id) in [("a", "1"), ("b", "2")] {
        let out = octopii(&["certs", "node", certs, "--name", name, "--id", id]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Nothing is overwritten: a second CA in the same place is refused.
    let again = octopii(&["certs", "init", certs]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("ca.pem"));

    let runtime = OctopiiRuntime::new(2).unwrap();
    let a = OctopiiNode::new(node_config(dir.path(), "a"), &runtime).unwrap();
    let b = OctopiiNode::new(node_config(dir.path(), "b"), &runtime).unwrap();
    let conn = runtime.block_on(a.connect(b.local_addr())).unwrap();
    assert_eq!(conn.peer().identity, "b");
    assert_eq!(conn.peer().role, Role::Node { id: 2 });
    assert!(conn.peer().verified);
}

#[test]
fn client_and_admin_certificates_say_their_role() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let certs = certs.to_str().unwrap();
    assert!(octopii(&["certs", "init", certs]).status.success());
    for (kind, name) in [("client", "alice"), ("admin", "ops")] {
        let out = octopii(&["certs", kind, certs, "--name", name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let load = |name: &str| {
        let path = |file: String| dir.path().join("certs").join(file);
        NodeCredentials::from_pem_files(
            &path("ca.pem".into()),
            &path(format!("{name}.pem")),
            &path(format!("{name}.key.pem")),
        )
        .unwrap()
        .role()
    };
    assert_eq!(load("alice"), Role::Client);
    assert_eq!(load("ops"), Role::Admin);
    // A node certificate needs its raft id, and 0 is no raft id.
    let no_id = octopii(&["certs", "node", certs, "--name", "c"]);
    assert!(!no_id.status.success());
    let zero = octopii(&["certs", "node", certs, "--name", "c", "--id", "0"]);
    assert!(!zero.status.success());
    assert!(String::from_utf8_lossy(&zero.stderr).contains("raft id"));
}

#[test]
fn a_node_certificate_needs_the_ca_files() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap();
    let out = octopii(&["certs", "node", dir, "--name", "x", "--id", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ca.pem"));
}
