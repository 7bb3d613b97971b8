//! `octopii certs`: make a cluster CA and node certificates.
//!
//! Layout of the directory: `ca.pem` and `ca.key.pem` for the CA,
//! `NAME.pem` and `NAME.key.pem` for each node. Keys are written readable by
//! their owner only, and nothing existing is ever overwritten.

use std::path::{Path, PathBuf};

use octopii::transport::tls::{ClusterCa, write_pem};
use octopii::{OctopiiError, Result};

/// `octopii certs …` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    /// Make a new cluster CA in DIR (ca.pem, ca.key.pem).
    Init {
        /// Directory for the CA files (created if missing).
        dir: PathBuf,
    },
    /// Make a node certificate signed by the CA in DIR (NAME.pem, NAME.key.pem).
    Node {
        /// Directory holding ca.pem and ca.key.pem.
        dir: PathBuf,
        /// The node's name (its certificate's subject and DNS name).
        #[arg(long)]
        name: String,
    },
}

/// Runs a `certs` subcommand.
pub fn run(command: CertsCommand) -> Result<()> {
    match command {
        CertsCommand::Init { dir } => {
            std::fs::create_dir_all(&dir).map_err(|e| OctopiiError::file(&dir, e))?;
            let ca = ClusterCa::generate()?;
            write_pem(&dir.join("ca.pem"), ca.cert_pem(), false)?;
            write_pem(&dir.join("ca.key.pem"), &ca.key_pem(), true)?;
            println!("cluster CA written to {}", dir.join("ca.pem").display());
        }
        CertsCommand::Node { dir, name } => {
            if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                return Err(OctopiiError::Tls(format!("unusable node name {name:?}")));
            }
            let ca =
                ClusterCa::from_pem(&read(&dir.join("ca.pem"))?, &read(&dir.join("ca.key.pem"))?)?;
            let node = ca.issue_node(&name)?;
            let cert = dir.join(format!("{name}.pem"));
            write_pem(&cert, node.cert_pem(), false)?;
            write_pem(&dir.join(format!("{name}.key.pem")), node.key_pem(), true)?;
            println!("certificate for {name} written to {}", cert.display());
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| OctopiiError::file(path, e))
}
