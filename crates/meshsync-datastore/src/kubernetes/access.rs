//! How a Kubernetes source reaches its API server: in-cluster, a kubeconfig file, a kubeconfig's
//! text, or an endpoint with a token.
//!
//! Why its own type: the local datastore (`--datastore kubernetes[:KUBECONFIG]`) and every remote
//! cluster (an RCC's `kubeconfig`, `kubeconfigInline`, its Secret's `kubeconfig`, or
//! `k8sAPIEndpoint` + token + CA) describe access differently, and all of them are read again at
//! every connection attempt, so that a rotated token, certificate or kubeconfig file is picked up
//! without a restart. Secrets never reach a log line: [`KubeAccess`]'s `Debug` names the way, not
//! the material.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};

/// Where the API server is and how to authenticate to it.
#[derive(Clone, PartialEq, Eq)]
pub enum KubeAccess {
    /// The service account's token and CA, `KUBERNETES_SERVICE_HOST`/`_PORT` (a pod's view).
    InCluster,
    /// A kubeconfig file (its current context), or `$KUBECONFIG` / `~/.kube/config` when `None`,
    /// falling back to in-cluster config when neither exists (as `kubectl` and client-go do).
    Kubeconfig(Option<PathBuf>),
    /// A kubeconfig's text (an RCC's `kubeconfigInline`, a Secret's `kubeconfig` key).
    KubeconfigInline(String),
    /// An endpoint with explicit credentials (an RCC's `k8sAPIEndpoint` fields).
    Endpoint(EndpointAccess),
}

/// An API endpoint with explicit credentials.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EndpointAccess {
    /// `https://host:port`.
    pub server: String,
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub insecure_skip_tls_verify: bool,
}

impl fmt::Debug for KubeAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KubeAccess::InCluster => f.write_str("InCluster"),
            KubeAccess::Kubeconfig(path) => f.debug_tuple("Kubeconfig").field(path).finish(),
            KubeAccess::KubeconfigInline(_) => f.write_str("KubeconfigInline(<redacted>)"),
            KubeAccess::Endpoint(e) => f
                .debug_struct("Endpoint")
                .field("server", &e.server)
                .field("token", &e.token.as_ref().map(|_| "<redacted>"))
                .field("ca_file", &e.ca_file)
                .finish_non_exhaustive(),
        }
    }
}

/// Why a client could not be built (the message names the file or field, never its content).
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("cannot read kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("invalid kubeconfig: {0}")]
    Invalid(String),
    #[error("no in-cluster configuration: {0}")]
    InCluster(String),
    #[error("invalid API endpoint {0:?}: {1}")]
    Endpoint(String, String),
    #[error("cannot build a Kubernetes client: {0}")]
    Client(String),
}

/// Timeouts every client gets: a server that accepts but never answers must fail the connection
/// within seconds, as the etcd driver's do.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl KubeAccess {
    /// Builds a client, reading every file again.
    pub async fn client(&self) -> Result<kube::Client, AccessError> {
        let mut config = self.config().await?;
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        kube::Client::try_from(config).map_err(|e| AccessError::Client(e.to_string()))
    }

    /// A hash of the contents of the files this access reads (the kubeconfig file; an endpoint's
    /// CA, certificate and key; the in-cluster CA), or `None` when it reads none. A source
    /// compares it periodically and reconnects when it changes: a rotated kubeconfig or
    /// certificate takes effect without a restart. (Token files are re-read by the client itself.)
    pub fn fingerprint(&self) -> Option<u64> {
        let files: Vec<PathBuf> = match self {
            KubeAccess::InCluster => vec![PathBuf::from(
                "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
            )],
            KubeAccess::Kubeconfig(Some(path)) => vec![path.clone()],
            KubeAccess::Kubeconfig(None) => std::env::var_os("KUBECONFIG")
                .map(|v| std::env::split_paths(&v).collect())
                .or_else(|| {
                    std::env::var_os("HOME")
                        .map(|h| vec![PathBuf::from(h).join(".kube").join("config")])
                })
                .unwrap_or_default(),
            KubeAccess::KubeconfigInline(_) => Vec::new(),
            KubeAccess::Endpoint(e) => [&e.ca_file, &e.cert_file, &e.key_file]
                .into_iter()
                .flatten()
                .cloned()
                .collect(),
        };
        if files.is_empty() {
            return None;
        }
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for file in files {
            // A missing file hashes as empty: its appearance is a change too.
            hasher.update(&std::fs::read(&file).unwrap_or_default());
            hasher.update(b"\0");
        }
        Some(hasher.digest())
    }

    async fn config(&self) -> Result<kube::Config, AccessError> {
        let options = KubeConfigOptions::default();
        match self {
            KubeAccess::InCluster => {
                kube::Config::incluster().map_err(|e| AccessError::InCluster(e.to_string()))
            }
            KubeAccess::Kubeconfig(None) => kube::Config::infer()
                .await
                .map_err(|e| AccessError::Invalid(e.to_string())),
            KubeAccess::Kubeconfig(Some(path)) => {
                let kubeconfig =
                    Kubeconfig::read_from(path).map_err(|e| AccessError::Kubeconfig {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| AccessError::Kubeconfig {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })
            }
            KubeAccess::KubeconfigInline(text) => {
                let kubeconfig =
                    Kubeconfig::from_yaml(text).map_err(|e| AccessError::Invalid(e.to_string()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| AccessError::Invalid(e.to_string()))
            }
            KubeAccess::Endpoint(e) => endpoint_config(e),
        }
    }
}

fn endpoint_config(e: &EndpointAccess) -> Result<kube::Config, AccessError> {
    let uri: http::Uri = e.server.parse().map_err(|err: http::uri::InvalidUri| {
        AccessError::Endpoint(e.server.clone(), err.to_string())
    })?;
    let mut config = kube::Config::new(uri);
    config.accept_invalid_certs = e.insecure_skip_tls_verify;
    if let Some(ca) = &e.ca_file {
        let pem = std::fs::read(ca).map_err(|err| AccessError::Kubeconfig {
            path: ca.display().to_string(),
            message: err.to_string(),
        })?;
        config.root_cert = Some(pem_certificates(&pem));
        config.root_cert_file = Some(ca.clone());
    }
    config.auth_info.token = e.token.clone().map(Into::into);
    config.auth_info.client_certificate = e.cert_file.as_ref().map(|p| p.display().to_string());
    config.auth_info.client_key = e.key_file.as_ref().map(|p| p.display().to_string());
    Ok(config)
}

/// The DER bodies of the PEM certificates in `pem` (what `kube::Config::root_cert` holds).
fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with("-----BEGIN CERTIFICATE") {
            body = Some(String::new());
        } else if line.starts_with("-----END CERTIFICATE") {
            if let Some(b) = body.take()
                && let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b)
            {
                out.push(der);
            }
        } else if let Some(b) = body.as_mut() {
            b.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_credentials() {
        let inline = KubeAccess::KubeconfigInline("token: s3cret".into());
        let endpoint = KubeAccess::Endpoint(EndpointAccess {
            server: "https://h:6443".into(),
            token: Some("s3cret".into()),
            ..Default::default()
        });
        for a in [inline, endpoint] {
            let shown = format!("{a:?}");
            assert!(!shown.contains("s3cret"), "{shown}");
        }
    }

    #[test]
    fn pem_bundles_decode_to_each_certificate() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n\
                   -----BEGIN CERTIFICATE-----\nAwQF\n-----END CERTIFICATE-----\n";
        assert_eq!(
            pem_certificates(pem.as_bytes()),
            vec![vec![0, 1, 2], vec![3, 4, 5]]
        );
    }
}
