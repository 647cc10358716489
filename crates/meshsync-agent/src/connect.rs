//! Connecting to a meshsync server, in plaintext or over TLS with the server's identity checked and
//! (optionally) a client certificate presented — the one place every client (`agent`, `status`,
//! `eval`, `federate`, the federation controller) builds its channel.
//!
//! TLS material is read at every connection attempt, so a rotated certificate is used from the
//! next reconnect. The server's certificate must chain to `ca_file` and name the host of the URL,
//! or `server_name` when given (as Typha's clients check its CN/SAN). Errors name files, never
//! their contents.

use std::path::PathBuf;
use std::time::Duration;

use meshsync_model::error_chain;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// TLS towards the server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA the server's certificate must chain to.
    pub ca_file: PathBuf,
    /// A client certificate and key, for servers that require one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the URL's host).
    pub server_name: Option<String>,
}

/// Why a channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid server address {server:?}: {reason}")]
    BadAddress { server: String, reason: String },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("a client certificate needs both --tls-cert-file and --tls-key-file")]
    HalfIdentity,
    #[error("invalid TLS configuration: {0}")]
    Tls(String),
    #[error("cannot connect to {server}: {reason}")]
    Connect { server: String, reason: String },
}

fn read(path: &PathBuf) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|source| ConnectError::Read {
        path: path.clone(),
        source,
    })
}

/// The endpoint for `server` (with `tls`, an `http://` URL is taken as `https://`).
pub fn endpoint(
    server: &str,
    tls: Option<&ClientTls>,
    connect_timeout: Duration,
) -> Result<Endpoint, ConnectError> {
    let url = match (tls, server.strip_prefix("http://")) {
        (Some(_), Some(rest)) => format!("https://{rest}"),
        _ => server.to_string(),
    };
    let bad = |reason: String| ConnectError::BadAddress {
        server: server.to_string(),
        reason,
    };
    let mut endpoint = Endpoint::from_shared(url)
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20));
    if let Some(tls) = tls {
        let mut config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&tls.ca_file)?));
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, None) => {}
            _ => return Err(ConnectError::HalfIdentity),
        }
        if let Some(name) = &tls.server_name {
            config = config.domain_name(name.clone());
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| ConnectError::Tls(error_chain(&e)))?;
    }
    Ok(endpoint)
}

/// Connects to `server`.
pub async fn connect(
    server: &str,
    tls: Option<&ClientTls>,
    connect_timeout: Duration,
) -> Result<Channel, ConnectError> {
    endpoint(server, tls, connect_timeout)?
        .connect()
        .await
        .map_err(|e| ConnectError::Connect {
            server: server.to_string(),
            reason: error_chain(&e),
        })
}
