//! Datastore URLs: what a `--datastore` argument says, before it becomes a [`DatastoreSpec`].

use std::path::PathBuf;
use std::str::FromStr;

use meshsync_etcd::{EtcdConfig, TlsFiles};

use crate::DatastoreSpec;
use crate::kubernetes::KubeAccess;

/// A parsed `--datastore` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatastoreUrl {
    /// `file:DIR` — a directory of YAML/JSON manifests, watched live.
    File(PathBuf),
    /// `etcd://host:port[,host:port…][?prefix=/calico]` — etcd v3 with Calico's etcdv3 layout.
    Etcd {
        /// `host:port` entries, without scheme.
        endpoints: Vec<String>,
        /// Key prefix (default `/calico`).
        prefix: String,
    },
    /// `kubernetes[:KUBECONFIG]` — the Kubernetes API (Calico's KDD): the kubeconfig file given,
    /// else `$KUBECONFIG` / `~/.kube/config`, else in-cluster configuration.
    Kubernetes { kubeconfig: Option<PathBuf> },
}

/// Why a datastore URL was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("datastore URL is empty")]
    Empty,
    #[error("`file:` datastore needs a directory, e.g. file:examples/mesh/cluster-a")]
    MissingPath,
    #[error(
        "unsupported datastore `{0}`: supported are file:DIR, etcd://host:port[,host:port…][?prefix=/calico] and kubernetes[:KUBECONFIG]"
    )]
    Unsupported(String),
    #[error("`etcd://` datastore needs at least one host:port, e.g. etcd://127.0.0.1:2379")]
    MissingEndpoints,
    #[error("invalid etcd endpoint `{0}`: expected host:port")]
    BadEndpoint(String),
    #[error("unknown etcd datastore option `{0}`: supported is prefix=/path")]
    UnknownOption(String),
    #[error("etcd prefix must start with `/`, got `{0}`")]
    BadPrefix(String),
}

impl FromStr for DatastoreUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(UrlError::Empty);
        }
        if let Some(rest) = s.strip_prefix("file:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(UrlError::MissingPath);
            }
            return Ok(DatastoreUrl::File(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("etcd://") {
            return parse_etcd(rest);
        }
        if s == "kubernetes" || s == "kdd" {
            return Ok(DatastoreUrl::Kubernetes { kubeconfig: None });
        }
        if let Some(path) = s
            .strip_prefix("kubernetes:")
            .or_else(|| s.strip_prefix("kdd:"))
        {
            let path = path.strip_prefix("//").unwrap_or(path);
            return Ok(DatastoreUrl::Kubernetes {
                kubeconfig: (!path.is_empty()).then(|| PathBuf::from(path)),
            });
        }
        Err(UrlError::Unsupported(s.to_string()))
    }
}

impl DatastoreUrl {
    /// The datastore this URL names. `etcd` completes an etcd URL's `host:port` endpoints into a
    /// client configuration with its TLS files (credentials and TLS come from the CLI's flags,
    /// not from the URL); its error is returned as is.
    pub fn spec<E>(
        &self,
        etcd: impl FnOnce(&[String]) -> Result<(EtcdConfig, TlsFiles), E>,
    ) -> Result<DatastoreSpec, E> {
        Ok(match self {
            DatastoreUrl::File(dir) => DatastoreSpec::File { dir: dir.clone() },
            DatastoreUrl::Etcd { endpoints, prefix } => {
                let (etcd, tls_files) = etcd(endpoints)?;
                DatastoreSpec::Etcd {
                    etcd,
                    tls_files,
                    prefix: prefix.clone(),
                }
            }
            DatastoreUrl::Kubernetes { kubeconfig } => DatastoreSpec::Kubernetes {
                access: KubeAccess::Kubeconfig(kubeconfig.clone()),
            },
        })
    }
}

fn parse_etcd(rest: &str) -> Result<DatastoreUrl, UrlError> {
    let (hosts, query) = rest.split_once('?').unwrap_or((rest, ""));
    let endpoints: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(String::from)
        .collect();
    if endpoints.is_empty() {
        return Err(UrlError::MissingEndpoints);
    }
    for e in &endpoints {
        let valid = e
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(UrlError::BadEndpoint(e.clone()));
        }
    }
    let mut prefix = "/calico".to_string();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("prefix", value)) => {
                if !value.starts_with('/') {
                    return Err(UrlError::BadPrefix(value.to_string()));
                }
                prefix = value.trim_end_matches('/').to_string();
            }
            _ => return Err(UrlError::UnknownOption(pair.to_string())),
        }
    }
    Ok(DatastoreUrl::Etcd { endpoints, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_urls() {
        assert_eq!(
            "file:examples/a".parse(),
            Ok(DatastoreUrl::File("examples/a".into()))
        );
        assert_eq!(
            "file:///tmp/x".parse(),
            Ok(DatastoreUrl::File("/tmp/x".into()))
        );
        assert_eq!("file:".parse::<DatastoreUrl>(), Err(UrlError::MissingPath));
        assert!(matches!(
            "etcd2://x".parse::<DatastoreUrl>(),
            Err(UrlError::Unsupported(_))
        ));
    }

    #[test]
    fn parses_kubernetes_urls() {
        assert_eq!(
            "kubernetes".parse(),
            Ok(DatastoreUrl::Kubernetes { kubeconfig: None })
        );
        assert_eq!(
            "kubernetes:/etc/kube/config".parse(),
            Ok(DatastoreUrl::Kubernetes {
                kubeconfig: Some("/etc/kube/config".into())
            })
        );
        assert_eq!(
            "kubernetes:".parse(),
            Ok(DatastoreUrl::Kubernetes { kubeconfig: None })
        );
    }

    #[test]
    fn parses_etcd_urls() {
        assert_eq!(
            "etcd://127.0.0.1:2379".parse(),
            Ok(DatastoreUrl::Etcd {
                endpoints: vec!["127.0.0.1:2379".into()],
                prefix: "/calico".into()
            })
        );
        assert_eq!(
            "etcd://a:1,b:2?prefix=/x/".parse(),
            Ok(DatastoreUrl::Etcd {
                endpoints: vec!["a:1".into(), "b:2".into()],
                prefix: "/x".into()
            })
        );
        assert_eq!(
            "etcd://".parse::<DatastoreUrl>(),
            Err(UrlError::MissingEndpoints)
        );
        assert_eq!(
            "etcd://nohost".parse::<DatastoreUrl>(),
            Err(UrlError::BadEndpoint("nohost".into()))
        );
        assert_eq!(
            "etcd://a:1?foo=bar".parse::<DatastoreUrl>(),
            Err(UrlError::UnknownOption("foo=bar".into()))
        );
    }
}
