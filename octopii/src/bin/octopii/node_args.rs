//! Command-line options shared by the commands that start a node: where
//! its certificates come from.

use std::path::PathBuf;

use octopii::config::TlsConfig;
use octopii::{Config, OctopiiError, Result};

/// How the node proves who it is and judges its peers.
#[derive(Debug, clap::Args)]
pub struct TlsArgs {
    /// Directory made by `octopii certs` (ca.pem, NAME.pem, NAME.key.pem).
    #[arg(long, requires = "name")]
    pub certs: Option<PathBuf>,
    /// This node's name: its certificate in --certs.
    #[arg(long)]
    pub name: Option<String>,
    /// A node TOML config file (TLS and limits); other options override it.
    #[arg(long, conflicts_with = "certs")]
    pub config: Option<PathBuf>,
    /// Accept any peer certificate without verification (both ends need
    /// it). Traffic is encrypted, but anyone can connect or impersonate a
    /// node: for local experiments only.
    #[arg(long)]
    pub insecure_accept_any_certificate: bool,
}

impl TlsArgs {
    /// The node configuration these options describe (not yet validated).
    pub fn base_config(&self) -> Result<Config> {
        let mut config = match &self.config {
            Some(file) => Config::from_toml_file(file)?,
            None => Config::default(),
        };
        if let (Some(dir), Some(name)) = (&self.certs, &self.name) {
            config.tls = Some(TlsConfig::from_files(
                dir.join("ca.pem"),
                dir.join(format!("{name}.pem")),
                dir.join(format!("{name}.key.pem")),
            ));
        }
        if self.insecure_accept_any_certificate {
            eprintln!(
                "warning: peer certificates are NOT verified \
                 (--insecure-accept-any-certificate): anyone can connect"
            );
            let tls = config.tls.get_or_insert(TlsConfig {
                ca_cert: None,
                cert: None,
                key: None,
                credentials: None,
                insecure_accept_any_certificate: true,
            });
            tls.insecure_accept_any_certificate = true;
        }
        if config.tls.is_none() {
            return Err(OctopiiError::Config {
                field: "tls",
                message: "give --certs DIR --name NAME, --config FILE, \
                          or --insecure-accept-any-certificate"
                    .into(),
            });
        }
        Ok(config)
    }
}
