//! `octopii certs` makes files that nodes load from a TOML config and use
//! to authenticate each other.

use std::path::Path;
use std::process::Command;

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
    for name in ["a", "b"] {
        let out = octopii(&["certs", "node", certs, "--name", name]);
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
    assert!(conn.peer().verified);
}

#[test]
fn a_node_certificate_needs_the_ca_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = octopii(&["certs", "node", dir.path().to_str().unwrap(), "--name", "x"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ca.pem"));
}
