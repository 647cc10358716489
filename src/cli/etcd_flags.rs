//! The etcd connection flags `serve` and `federate` share, and the [`EtcdConfig`] they make.
//!
//! Both subcommands reach the same local etcd (and `serve --federation` runs the controller
//! with `serve`'s flags), so the flags, their variables and the way they become a configuration
//! exist once. The TLS files are not read here: they are handed on as [`TlsFiles`] and read at
//! each connection attempt, by the etcd source and the federation controller alike.

use std::path::PathBuf;

use meshsync_etcd::{EtcdConfig, TlsFiles};

#[derive(clap::Args, Debug)]
pub struct EtcdFlags {
    /// etcd: CA bundle (PEM) that signed the etcd servers' certificates; enables TLS.
    #[arg(long, env = "MESHSYNC_ETCD_CA_FILE")]
    etcd_ca_file: Option<PathBuf>,
    /// etcd: client certificate (PEM); enables TLS.
    #[arg(long, env = "MESHSYNC_ETCD_CERT_FILE")]
    etcd_cert_file: Option<PathBuf>,
    /// etcd: client key (PEM).
    #[arg(long, env = "MESHSYNC_ETCD_KEY_FILE")]
    etcd_key_file: Option<PathBuf>,
    /// etcd: user name (with --etcd-password or MESHSYNC_ETCD_PASSWORD).
    #[arg(long, env = "MESHSYNC_ETCD_USERNAME")]
    etcd_username: Option<String>,
    /// etcd: password. Prefer the MESHSYNC_ETCD_PASSWORD variable over the flag.
    #[arg(long, env = "MESHSYNC_ETCD_PASSWORD", hide_env_values = true)]
    etcd_password: Option<String>,
}

impl EtcdFlags {
    /// The configuration for `endpoints` (`host:port`; `https://` when any TLS file is given)
    /// with the credentials, and the TLS files to read at connect. A certificate without its key
    /// (or the reverse) is refused.
    pub fn etcd_config(&self, endpoints: &[String]) -> anyhow::Result<(EtcdConfig, TlsFiles)> {
        anyhow::ensure!(
            self.etcd_cert_file.is_some() == self.etcd_key_file.is_some(),
            "--etcd-cert-file and --etcd-key-file go together"
        );
        let tls_files = TlsFiles {
            ca: self.etcd_ca_file.clone(),
            cert: self.etcd_cert_file.clone(),
            key: self.etcd_key_file.clone(),
        };
        let scheme = if tls_files.is_empty() {
            "http"
        } else {
            "https"
        };
        let mut etcd = EtcdConfig::new(
            endpoints
                .iter()
                .map(|e| format!("{scheme}://{e}"))
                .collect(),
        );
        etcd.username = self.etcd_username.clone();
        etcd.password = self.etcd_password.clone();
        Ok((etcd, tls_files))
    }
}
