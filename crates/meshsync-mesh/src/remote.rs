//! One remote cluster's source: started from its [`RemoteConfig`], filtered to the kinds the mesh
//! syncs, and rewritten so a remote cluster can never contribute policy.

use std::collections::HashSet;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use meshsync_datastore::etcd::{EtcdSourceConfig, TlsFiles};
use meshsync_datastore::file::FileSourceConfig;
use meshsync_datastore::kubernetes::KubeSourceConfig;
use meshsync_etcd::{EtcdConfig, EtcdTls};
use meshsync_model::{ClusterName, SourceEvent, SourceStatus};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::warn;

use crate::rcc::{RemoteConfig, RemoteDatastore};

/// A boxed source stream.
pub type SourceStream = Pin<Box<dyn Stream<Item = SourceEvent> + Send>>;

/// Limits applied to remote sources.
#[derive(Clone, Debug)]
pub struct RemoteLimits {
    pub max_value_bytes: usize,
    /// Counts what the remote sources refuse (shared with the local source and `/metrics`).
    pub counters: std::sync::Arc<meshsync_model::SourceCounters>,
    /// Delay between attempts to open a remote file datastore that is missing.
    pub file_retry: Duration,
}

impl Default for RemoteLimits {
    fn default() -> Self {
        RemoteLimits {
            max_value_bytes: 1 << 20,
            counters: Default::default(),
            file_retry: Duration::from_secs(2),
        }
    }
}

/// Starts the source for remote cluster `cluster`.
pub fn start(cluster: &str, config: &RemoteConfig, limits: &RemoteLimits) -> SourceStream {
    let name: ClusterName = cluster.into();
    let kinds = config.kinds();
    let raw: SourceStream = match &config.datastore {
        RemoteDatastore::Etcd {
            endpoints,
            username,
            password,
            ca,
            cert,
            key,
            ca_file,
            cert_file,
            key_file,
        } => {
            let mut etcd = EtcdConfig::new(endpoints.clone());
            etcd.username = username.clone();
            etcd.password = password.clone();
            if ca.is_some() || cert.is_some() || key.is_some() {
                etcd.tls = Some(EtcdTls {
                    ca_pem: ca.as_ref().map(|s| s.as_bytes().to_vec()),
                    cert_pem: cert.as_ref().map(|s| s.as_bytes().to_vec()),
                    key_pem: key.as_ref().map(|s| s.as_bytes().to_vec()),
                });
            }
            // A remote that accepts connections but never answers must fail within seconds, so it
            // cannot hold the local in-sync for long (Calico's tests expect ~15 s at most).
            etcd.connect_timeout = Duration::from_secs(3);
            etcd.request_timeout = Duration::from_secs(5);
            let mut source = EtcdSourceConfig::new(etcd, name.clone());
            source.tls_files = TlsFiles {
                ca: ca_file.clone(),
                cert: cert_file.clone(),
                key: key_file.clone(),
            };
            source.kinds = Some(kinds.clone());
            source.max_value_bytes = limits.max_value_bytes;
            source.counters = limits.counters.clone();
            Box::pin(meshsync_datastore::etcd::watch(source))
        }
        RemoteDatastore::Kubernetes { access } => {
            let mut source = KubeSourceConfig::new(access.clone(), name.clone());
            source.kinds = Some(kinds.clone());
            source.max_value_bytes = limits.max_value_bytes;
            source.counters = limits.counters.clone();
            Box::pin(meshsync_datastore::kubernetes::watch(source))
        }
        RemoteDatastore::File { dir } => {
            let mut source = FileSourceConfig::new(dir.clone(), name.clone());
            source.max_value_bytes = limits.max_value_bytes;
            source.counters = limits.counters.clone();
            Box::pin(retrying_file_source(source, limits.file_retry))
        }
    };
    Box::pin(raw.filter_map(move |event| {
        let out = rewrite(event, &kinds);
        async move { out }
    }))
}

/// A file source that reports `ConnectionFailed` while its directory is missing and keeps trying.
fn retrying_file_source(config: FileSourceConfig, retry: Duration) -> ReceiverStream<SourceEvent> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        let _ = tx
            .send(SourceEvent::Status {
                cluster: config.cluster.clone(),
                status: SourceStatus::Connecting,
            })
            .await;
        let mut last_error = String::new();
        loop {
            match meshsync_datastore::file::watch(config.clone()) {
                Ok(mut inner) => {
                    while let Some(event) = inner.next().await {
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                    return;
                }
                Err(e) => {
                    let error = e.to_string();
                    if error != last_error {
                        warn!(cluster = %config.cluster, error = %error, "remote file datastore unavailable; will retry");
                        let status = SourceStatus::ConnectionFailed(error.clone());
                        if tx
                            .send(SourceEvent::Status {
                                cluster: config.cluster.clone(),
                                status,
                            })
                            .await
                            .is_err()
                        {
                            return;
                        }
                        last_error = error;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(retry) => {}
                        _ = tx.closed() => return,
                    }
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Keeps only the kinds synced from remote clusters and strips Profiles' rules (a remote
/// cluster's rules must never apply locally; its labels are what policy selects on).
pub fn rewrite(event: SourceEvent, kinds: &HashSet<String>) -> Option<SourceEvent> {
    match event {
        SourceEvent::Upsert {
            key,
            value,
            revision,
        } => {
            if !kinds.contains(key.kind()) {
                return None;
            }
            let value = if key.kind() == "Profile" {
                match strip_rules(&value) {
                    Ok(v) => v,
                    Err(e) => {
                        warn!(key = %key, error = %e, "skipping remote Profile that is not valid JSON");
                        return None;
                    }
                }
            } else {
                value
            };
            Some(SourceEvent::Upsert {
                key,
                value,
                revision,
            })
        }
        SourceEvent::Delete { key, revision } => kinds
            .contains(key.kind())
            .then_some(SourceEvent::Delete { key, revision }),
        other => Some(other),
    }
}

/// A Profile without `spec.ingress` and `spec.egress`.
fn strip_rules(value: &Bytes) -> Result<Bytes, serde_json::Error> {
    let mut profile: serde_json::Value = serde_json::from_slice(value)?;
    if let Some(spec) = profile.get_mut("spec").and_then(|s| s.as_object_mut()) {
        spec.remove("ingress");
        spec.remove("egress");
    }
    Ok(Bytes::from(serde_json::to_vec(&profile)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshsync_model::ResourceKey;

    #[test]
    fn filters_kinds_and_strips_profile_rules() {
        let kinds: HashSet<String> = ["Profile", "WorkloadEndpoint"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let profile = SourceEvent::Upsert {
            key: ResourceKey::new("b", "Profile", "", "kns.x"),
            value: Bytes::from_static(
                br#"{"kind":"Profile","spec":{"ingress":[{"action":"Allow"}],"egress":[],"labelsToApply":{"a":"b"}}}"#,
            ),
            revision: "1".into(),
        };
        match rewrite(profile, &kinds) {
            Some(SourceEvent::Upsert { value, .. }) => assert_eq!(
                value,
                Bytes::from_static(br#"{"kind":"Profile","spec":{"labelsToApply":{"a":"b"}}}"#)
            ),
            other => panic!("{other:?}"),
        }
        let policy = SourceEvent::Upsert {
            key: ResourceKey::new("b", "GlobalNetworkPolicy", "", "p"),
            value: Bytes::from_static(b"{}"),
            revision: "1".into(),
        };
        assert_eq!(rewrite(policy, &kinds), None);
    }
}
