//! `octopii certs`: make a cluster CA, node, client and admin certificates.
//!
//! Layout of the directory: `ca.pem` and `ca.key.pem` for the CA,
//! `NAME.pem` and `NAME.key.pem` for each certificate. A certificate's
//! role is in its subject alternative name: `octopii://node/<raft id>`,
//! `octopii://client/<name>` or `octopii://admin/<name>`. Keys are written
//! readable by their owner only, and nothing existing is ever overwritten.

use std::path::{Path, PathBuf};

use octopii::OctopiiError;
use octopii::transport::tls::{ClusterCa, Role, write_pem};

use crate::Result;

/// `octopii certs …` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    /// Make a new cluster CA in DIR (ca.pem, ca.key.pem).
    Init {
        /// Directory for the CA files (created if missing).
        dir: PathBuf,
    },
    /// Make a node certificate, carrying the node's raft id, signed by the
    /// CA in DIR (NAME.pem, NAME.key.pem).
    Node {
        /// Directory holding ca.pem and ca.key.pem.
        dir: PathBuf,
        /// The node's name (its certificate's subject and DNS name).
        #[arg(long)]
        name: String,
        /// The node's raft id (its `node_id`; not 0).
        #[arg(long)]
        id: u64,
    },
    /// Make a client certificate (no raft id: it may call services, never
    /// take part in raft), signed by the CA in DIR.
    Client {
        /// Directory holding ca.pem and ca.key.pem.
        dir: PathBuf,
        /// The client's name (letters, digits, `-`, `_`, `.`).
        #[arg(long)]
        name: String,
    },
    /// Make an admin certificate (may change raft membership without being
    /// a member), signed by the CA in DIR.
    Admin {
        /// Directory holding ca.pem and ca.key.pem.
        dir: PathBuf,
        /// The admin's name (letters, digits, `-`, `_`, `.`).
        #[arg(long)]
        name: String,
    },
}

/// Runs a `certs` subcommand.
pub fn run(command: CertsCommand) -> Result<()> {
    let (dir, name, role) = match command {
        CertsCommand::Init { dir } => {
            std::fs::create_dir_all(&dir).map_err(|e| OctopiiError::file(&dir, e))?;
            let ca = ClusterCa::generate()?;
            write_pem(&dir.join("ca.pem"), ca.cert_pem(), false)?;
            write_pem(&dir.join("ca.key.pem"), &ca.key_pem(), true)?;
            println!("cluster CA written to {}", dir.join("ca.pem").display());
            return Ok(());
        }
        CertsCommand::Node { dir, name, id } => (dir, name, Role::Node { id }),
        CertsCommand::Client { dir, name } => (dir, name, Role::Client),
        CertsCommand::Admin { dir, name } => (dir, name, Role::Admin),
    };
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(format!("unusable name {name:?}").into());
    }
    let ca = ClusterCa::from_pem(&read(&dir.join("ca.pem"))?, &read(&dir.join("ca.key.pem"))?)?;
    let creds = ca.issue(&name, role)?;
    let cert = dir.join(format!("{name}.pem"));
    write_pem(&cert, creds.cert_pem(), false)?;
    write_pem(&dir.join(format!("{name}.key.pem")), creds.key_pem(), true)?;
    println!(
        "{role} certificate for {name} written to {}",
        cert.display()
    );
    Ok(())
}

fn read(path: &Path) -> octopii::Result<String> {
    std::fs::read_to_string(path).map_err(|e| OctopiiError::file(path, e))
}
