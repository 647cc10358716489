//! The `--tls-*` flags: the server's (`serve`) and the clients' (`agent`, `status`, `eval`,
//! `federate`), with Typha's meaning. Validated here, so a half-given pair fails the start with a
//! message naming the settings.

use std::path::PathBuf;

use clap::Args;
use meshsync_agent::ClientTls;
use meshsync_server::TlsFiles;

/// `serve`: TLS on the agents' port.
#[derive(Args, Debug, Clone, Default)]
pub struct ServerTlsFlags {
    /// The server's certificate (PEM, with its chain); with --tls-key-file turns TLS on. Re-read
    /// when it changes.
    #[arg(long, env = "MESHSYNC_TLS_CERT_FILE")]
    tls_cert_file: Option<PathBuf>,
    /// The server's private key (PEM).
    #[arg(long, env = "MESHSYNC_TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
    /// Require agents' certificates signed by this CA (PEM).
    #[arg(long, env = "MESHSYNC_TLS_CLIENT_CA_FILE")]
    tls_client_ca_file: Option<PathBuf>,
    /// Allowed agent certificate Common Name (either this or --tls-client-uri-san must match).
    #[arg(long, env = "MESHSYNC_TLS_CLIENT_CN")]
    tls_client_cn: Option<String>,
    /// Allowed agent certificate URI SAN.
    #[arg(long, env = "MESHSYNC_TLS_CLIENT_URI_SAN")]
    tls_client_uri_san: Option<String>,
}

impl ServerTlsFlags {
    pub fn files(&self) -> anyhow::Result<Option<TlsFiles>> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert_file: cert.clone(),
                key_file: key.clone(),
                client_ca_file: self.tls_client_ca_file.clone(),
                client_cn: self.tls_client_cn.clone(),
                client_uri_san: self.tls_client_uri_san.clone(),
            })),
            (None, None) => {
                anyhow::ensure!(
                    self.tls_client_ca_file.is_none()
                        && self.tls_client_cn.is_none()
                        && self.tls_client_uri_san.is_none(),
                    "--tls-client-ca-file, --tls-client-cn and --tls-client-uri-san need --tls-cert-file and --tls-key-file"
                );
                Ok(None)
            }
            _ => anyhow::bail!("--tls-cert-file and --tls-key-file go together"),
        }
    }
}

/// Clients: TLS towards the server.
#[derive(Args, Debug, Clone, Default)]
pub struct ClientTlsFlags {
    /// Connect with TLS; the server's certificate must chain to this CA (PEM).
    #[arg(long, env = "MESHSYNC_TLS_CA_FILE")]
    tls_ca_file: Option<PathBuf>,
    /// This client's certificate (PEM), for servers that require one.
    #[arg(long, env = "MESHSYNC_TLS_CERT_FILE")]
    tls_cert_file: Option<PathBuf>,
    /// This client's private key (PEM).
    #[arg(long, env = "MESHSYNC_TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host in --server).
    #[arg(long, env = "MESHSYNC_TLS_SERVER_NAME")]
    tls_server_name: Option<String>,
}

impl ClientTlsFlags {
    pub fn client_tls(&self) -> anyhow::Result<Option<ClientTls>> {
        let Some(ca) = &self.tls_ca_file else {
            anyhow::ensure!(
                self.tls_cert_file.is_none()
                    && self.tls_key_file.is_none()
                    && self.tls_server_name.is_none(),
                "--tls-cert-file, --tls-key-file and --tls-server-name need --tls-ca-file"
            );
            return Ok(None);
        };
        anyhow::ensure!(
            self.tls_cert_file.is_some() == self.tls_key_file.is_some(),
            "--tls-cert-file and --tls-key-file go together"
        );
        Ok(Some(ClientTls {
            ca_file: ca.clone(),
            cert_file: self.tls_cert_file.clone(),
            key_file: self.tls_key_file.clone(),
            server_name: self.tls_server_name.clone(),
        }))
    }
}
