//! One description of a datastore ([`DatastoreSpec`]), whoever names it: the CLI's
//! `--datastore` URL ([`crate::DatastoreUrl::spec`]) and a RemoteClusterConfiguration (resolved by
//! the mesh) both become one, and [`DatastoreSpec::start`] is the only place a driver is chosen.
//! [`DatastoreSpec::identities`] tells when two descriptions name the same data, so that the mesh
//! can refuse an RCC that points back at the local datastore or at another remote's.

use std::fmt;
use std::path::{Path, PathBuf};

use meshsync_etcd::{EtcdConfig, TlsFiles};

use crate::common::{SourceCommon, SourceStream};
use crate::kubernetes::{KubeAccess, KubeSourceConfig, SecretWatches};
use crate::{etcd, file, kubernetes};

/// A datastore a source can read: what is needed to reach it, nothing about the consumer (that is
/// [`SourceCommon`]).
#[derive(Clone, PartialEq, Eq)]
pub enum DatastoreSpec {
    /// A directory of YAML/JSON manifests, watched live ([`crate::file`]).
    File { dir: PathBuf },
    /// etcd v3 with Calico's layout under `prefix` ([`crate::etcd`]). The TLS files are read at
    /// every connection attempt, over `etcd.tls`.
    Etcd {
        etcd: EtcdConfig,
        tls_files: TlsFiles,
        prefix: String,
    },
    /// The Kubernetes API (Calico's KDD, [`crate::kubernetes`]).
    Kubernetes { access: KubeAccess },
}

impl DatastoreSpec {
    /// Starts a source on this datastore. The stream never ends on its own: failures (a missing
    /// directory, an unreachable server) are `ConnectionFailed` statuses, retried with
    /// `common.backoff`. Must be called within a tokio runtime.
    pub fn start(&self, common: SourceCommon) -> SourceStream {
        self.start_watching_secrets(common, &SecretWatches::default())
    }

    /// [`start`](Self::start), with the Secrets a Kubernetes source watches by name taken from
    /// `secrets` (the file and etcd sources list every Secret they hold and ignore it).
    pub fn start_watching_secrets(
        &self,
        common: SourceCommon,
        secrets: &SecretWatches,
    ) -> SourceStream {
        match self {
            DatastoreSpec::File { dir } => {
                let mut config = file::FileSourceConfig::new(dir.clone(), common.cluster.clone());
                config.common = common;
                Box::pin(file::start(config))
            }
            DatastoreSpec::Etcd {
                etcd,
                tls_files,
                prefix,
            } => {
                let mut config = etcd::EtcdSourceConfig::new(etcd.clone(), common.cluster.clone());
                config.tls_files = tls_files.clone();
                config.prefix = prefix.clone();
                config.common = common;
                Box::pin(etcd::watch(config))
            }
            DatastoreSpec::Kubernetes { access } => {
                let mut config = KubeSourceConfig::new(access.clone(), common.cluster.clone());
                config.common = common;
                config.secrets = secrets.clone();
                Box::pin(kubernetes::watch(config))
            }
        }
    }

    /// Why this datastore cannot be read right now, for a caller that refuses to start without
    /// it (`serve`'s local file datastore must exist; a remote one is waited for). Only a file
    /// datastore is checked: the others are reached over the network, and retried.
    pub fn check(&self) -> Result<(), file::FileSourceError> {
        match self {
            DatastoreSpec::File { dir } => file::check_dir(dir),
            DatastoreSpec::Etcd { .. } | DatastoreSpec::Kubernetes { .. } => Ok(()),
        }
    }

    /// The directory of a file datastore.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            DatastoreSpec::File { dir } => Some(dir),
            _ => None,
        }
    }

    /// What identifies the datastore, so that two descriptions of one datastore (two RCCs, or an
    /// RCC and the local `--datastore`) are recognised: any shared identity means the same data.
    pub fn identities(&self) -> Vec<String> {
        match self {
            DatastoreSpec::File { dir } => vec![file_identity(dir)],
            DatastoreSpec::Etcd { etcd, prefix, .. } => etcd
                .endpoints
                .iter()
                .map(|e| etcd_identity(e, prefix))
                .collect(),
            DatastoreSpec::Kubernetes { access } => vec![kube_identity(access)],
        }
    }
}

/// For logs: where the datastore is, never a credential.
impl fmt::Display for DatastoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatastoreSpec::File { dir } => write!(f, "file {}", dir.display()),
            DatastoreSpec::Etcd { etcd, prefix, .. } => {
                write!(f, "etcd {:?} prefix {prefix}", etcd.endpoints)
            }
            DatastoreSpec::Kubernetes { access } => write!(f, "kubernetes {access:?}"),
        }
    }
}

/// Never prints a credential ([`EtcdConfig`]'s and [`KubeAccess`]'s own `Debug` redact them).
impl fmt::Debug for DatastoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatastoreSpec::File { dir } => f.debug_struct("File").field("dir", dir).finish(),
            DatastoreSpec::Etcd {
                etcd,
                tls_files,
                prefix,
            } => f
                .debug_struct("Etcd")
                .field("etcd", etcd)
                .field("tls_files", tls_files)
                .field("prefix", prefix)
                .finish(),
            DatastoreSpec::Kubernetes { access } => f
                .debug_struct("Kubernetes")
                .field("access", access)
                .finish(),
        }
    }
}

/// Identifies an etcd datastore by one endpoint (scheme dropped, host lower-cased) and prefix.
/// Best effort: two names for one host (`localhost`, `127.0.0.1`) are not recognised as one.
pub fn etcd_identity(endpoint: &str, prefix: &str) -> String {
    let host_port = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .unwrap_or(endpoint)
        .trim_end_matches('/')
        .to_ascii_lowercase();
    format!("etcd {host_port}{}", prefix.trim_end_matches('/'))
}

/// Identifies a file datastore by its directory (resolved through symlinks when it exists).
pub fn file_identity(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    format!("file {}", dir.display())
}

/// Identifies a Kubernetes datastore by how it is reached (best effort: the API server's address
/// is only known once a kubeconfig is read, so two kubeconfigs for one cluster are not recognised
/// as one).
pub fn kube_identity(access: &KubeAccess) -> String {
    match access {
        KubeAccess::InCluster => "kubernetes in-cluster".into(),
        KubeAccess::Kubeconfig(path) => format!("kubernetes kubeconfig {path:?}"),
        KubeAccess::KubeconfigInline(text) => format!(
            "kubernetes kubeconfig text {:016x}",
            xxhash_rust::xxh3::xxh3_64(text.as_bytes())
        ),
        KubeAccess::Endpoint(e) => format!("kubernetes {}", e.server.to_ascii_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_ignore_the_scheme_and_case() {
        let spec = |endpoints: &[&str], prefix: &str| DatastoreSpec::Etcd {
            etcd: EtcdConfig::new(endpoints.iter().map(|e| e.to_string()).collect()),
            tls_files: TlsFiles::default(),
            prefix: prefix.into(),
        };
        let local = spec(&["127.0.0.1:2379"], "/calico");
        let remote = spec(&["http://127.0.0.1:2379/", "https://B:1"], "/calico/");
        assert!(
            local
                .identities()
                .iter()
                .any(|i| remote.identities().contains(i))
        );
        assert_eq!(remote.identities()[1], "etcd b:1/calico");
        let other_prefix = spec(&["127.0.0.1:2379"], "/other");
        assert!(
            !local
                .identities()
                .iter()
                .any(|i| other_prefix.identities().contains(i))
        );
    }
}
