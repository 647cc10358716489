//! The etcd datastore (`--datastore etcd://host:port[,host:port…][?prefix=/calico]`), also used
//! for remote clusters of `datastoreType: etcdv3`.
//!
//! One connection, one list, one watch: the source lists everything under `<prefix>/` at one
//! revision (paged, every page pinned to the first page's revision, so the listing is a
//! consistent cut), then watches from that revision + 1. Keys are mapped to kinds by Calico's
//! etcdv3 layout ([`crate::layout`]); other keys are ignored. On compaction the source relists
//! (staying `InSync`: agents keep a complete view and only see the differences); on a lost
//! connection it reports `ConnectionFailed`, retries with a jittered, growing backoff, and relists
//! on reconnect. In every case the cache turns the relist into the real differences.
//!
//! A value that is not JSON or is larger than the limit is logged with its key and skipped.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use meshsync_etcd::{EtcdClient, EtcdConfig, EtcdError, EtcdTls, pb};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, info, warn};

use crate::layout::parse_key;
use crate::{ClusterName, ResourceKey, SourceEvent, SourceStatus};

/// TLS material given as files, read at every connection attempt (so rotated or late files are
/// picked up, and a missing file is a connection failure, not a crash).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }
}

/// Configuration of an etcd source.
#[derive(Clone, Debug)]
pub struct EtcdSourceConfig {
    /// Endpoints, credentials and inline TLS material.
    pub etcd: EtcdConfig,
    /// TLS material from files; merged over `etcd.tls` at each connect.
    pub tls_files: TlsFiles,
    /// Key prefix, `/calico` by default.
    pub prefix: String,
    pub cluster: ClusterName,
    /// Only these kinds are emitted (`None`: every kind the layout knows).
    pub kinds: Option<HashSet<String>>,
    pub max_value_bytes: usize,
    /// Keys per `Range` page while listing.
    pub page_size: i64,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl EtcdSourceConfig {
    pub fn new(etcd: EtcdConfig, cluster: ClusterName) -> Self {
        EtcdSourceConfig {
            etcd,
            tls_files: TlsFiles::default(),
            prefix: "/calico".into(),
            cluster,
            kinds: None,
            max_value_bytes: 1 << 20,
            page_size: 1000,
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(10),
        }
    }
}

/// Starts the source task and returns its event stream. Connection problems are reported in the
/// stream as `ConnectionFailed` and retried; the task ends when the stream is dropped.
pub fn watch(config: EtcdSourceConfig) -> ReceiverStream<SourceEvent> {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        let mut source = EtcdSource {
            config,
            tx,
            status: None,
        };
        source.run().await;
    });
    ReceiverStream::new(rx)
}

/// The receiver went away: stop.
struct Closed;

struct EtcdSource {
    config: EtcdSourceConfig,
    tx: mpsc::Sender<SourceEvent>,
    status: Option<SourceStatus>,
}

enum WatchEnd {
    /// History we needed is gone: relist on the same connection.
    Compacted,
    /// The connection failed.
    Failed(String),
}

impl EtcdSource {
    async fn run(&mut self) {
        let _ = self.run_inner().await;
        debug!(cluster = %self.config.cluster, "etcd source stopped");
    }

    async fn run_inner(&mut self) -> Result<(), Closed> {
        self.set_status(SourceStatus::Connecting).await?;
        let mut attempt: u32 = 0;
        loop {
            let failure = match self.connect().await {
                Err(e) => e,
                Ok(client) => {
                    info!(cluster = %self.config.cluster, endpoint = client.endpoint(),
                        "connected to etcd");
                    loop {
                        match self.list_and_watch(&client, &mut attempt).await? {
                            WatchEnd::Compacted => continue,
                            WatchEnd::Failed(e) => break e,
                        }
                    }
                }
            };
            warn!(cluster = %self.config.cluster, error = %failure, "etcd connection failed; will retry");
            self.set_status(SourceStatus::ConnectionFailed(failure))
                .await?;
            let delay = backoff(self.config.retry_min, self.config.retry_max, attempt);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.tx.closed() => return Err(Closed),
            }
        }
    }

    async fn connect(&self) -> Result<EtcdClient, String> {
        let mut etcd = self.config.etcd.clone();
        let files = &self.config.tls_files;
        if !files.is_empty() {
            let mut tls = etcd.tls.take().unwrap_or_default();
            let read = |path: &PathBuf| {
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
            };
            if let Some(p) = &files.ca {
                tls.ca_pem = Some(read(p)?);
            }
            if let Some(p) = &files.cert {
                tls.cert_pem = Some(read(p)?);
            }
            if let Some(p) = &files.key {
                tls.key_pem = Some(read(p)?);
            }
            etcd.tls = Some(tls);
        }
        let connect = EtcdClient::connect(&etcd);
        match tokio::time::timeout(etcd.connect_timeout * 2 + Duration::from_secs(1), connect).await
        {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "cannot connect to etcd {:?}: timed out",
                etcd.endpoints
            )),
        }
    }

    /// Lists, then follows the watch until it ends.
    async fn list_and_watch(
        &mut self,
        client: &EtcdClient,
        attempt: &mut u32,
    ) -> Result<WatchEnd, Closed> {
        let prefix = format!("{}/", self.config.prefix.trim_end_matches('/'));
        if self.status != Some(SourceStatus::InSync) {
            self.set_status(SourceStatus::ResyncInProgress).await?;
        }
        let (kvs, revision) = match client
            .list_prefix(prefix.as_bytes(), 0, self.config.page_size)
            .await
        {
            Ok(listing) => listing,
            Err(e) if e.is_compacted() => {
                info!(cluster = %self.config.cluster, error = %e, "history compacted while listing; relisting");
                return Ok(WatchEnd::Compacted);
            }
            Err(e) => return Ok(WatchEnd::Failed(e.to_string())),
        };
        let cluster = self.config.cluster.clone();
        self.send(SourceEvent::ResyncStart {
            cluster: cluster.clone(),
        })
        .await?;
        let mut count = 0usize;
        for kv in kvs {
            if let Some(event) = self.upsert(&kv) {
                count += 1;
                self.send(event).await?;
            }
        }
        self.send(SourceEvent::ResyncDone {
            cluster: cluster.clone(),
        })
        .await?;
        info!(cluster = %cluster, revision, resources = count, "etcd listing complete");
        let mut watch = match client.watch_prefix(prefix.as_bytes(), revision + 1).await {
            Ok(w) => w,
            Err(e) if e.is_compacted() => {
                info!(cluster = %cluster, error = %e, "history compacted before the watch started; relisting");
                return Ok(WatchEnd::Compacted);
            }
            Err(e) => return Ok(WatchEnd::Failed(e.to_string())),
        };
        // In sync only once the watch runs: nothing after the listing can be missed from here on.
        self.set_status(SourceStatus::InSync).await?;
        *attempt = 0;
        loop {
            let response = tokio::select! {
                r = watch.next() => r,
                _ = self.tx.closed() => return Err(Closed),
            };
            match response {
                Ok(response) => {
                    for event in response.events {
                        if let Some(e) = self.watch_event(event) {
                            self.send(e).await?;
                        }
                    }
                }
                Err(e) if e.is_compacted() => {
                    info!(cluster = %cluster, error = %e, "watch compacted; relisting");
                    return Ok(WatchEnd::Compacted);
                }
                Err(EtcdError::Rpc(status)) => {
                    return Ok(WatchEnd::Failed(format!(
                        "watch failed: {}",
                        status.message()
                    )));
                }
                Err(e) => return Ok(WatchEnd::Failed(e.to_string())),
            }
        }
    }

    fn key_of(&self, raw: &[u8]) -> Option<ResourceKey> {
        let key = std::str::from_utf8(raw).ok()?;
        let (kind, namespace, name) = parse_key(self.config.prefix.trim_end_matches('/'), key)?;
        if let Some(kinds) = &self.config.kinds
            && !kinds.contains(kind)
        {
            return None;
        }
        Some(ResourceKey::new(
            &self.config.cluster,
            kind,
            &namespace,
            &name,
        ))
    }

    fn upsert(&self, kv: &pb::KeyValue) -> Option<SourceEvent> {
        let key = self.key_of(&kv.key)?;
        let value = match canonical_value(&kv.value, self.config.max_value_bytes) {
            Ok(v) => v,
            Err(reason) => {
                warn!(cluster = %self.config.cluster, key = %String::from_utf8_lossy(&kv.key),
                    reason = %reason, "skipping etcd value");
                return None;
            }
        };
        Some(SourceEvent::Upsert {
            key,
            value,
            revision: kv.mod_revision.to_string().into(),
        })
    }

    fn watch_event(&self, event: pb::Event) -> Option<SourceEvent> {
        let kv = event.kv?;
        if event.r#type == pb::event::EventType::Delete as i32 {
            let key = self.key_of(&kv.key)?;
            Some(SourceEvent::Delete {
                key,
                revision: kv.mod_revision.to_string().into(),
            })
        } else {
            self.upsert(&kv)
        }
    }

    async fn send(&self, event: SourceEvent) -> Result<(), Closed> {
        self.tx.send(event).await.map_err(|_| Closed)
    }

    async fn set_status(&mut self, status: SourceStatus) -> Result<(), Closed> {
        if self.status.as_ref() == Some(&status) {
            return Ok(());
        }
        self.status = Some(status.clone());
        self.send(SourceEvent::Status {
            cluster: self.config.cluster.clone(),
            status,
        })
        .await
    }
}

/// Checks a value is JSON within the size limit; drops `metadata.resourceVersion` if a writer left
/// it in (Calico clears it before writing), so rewrites of equal content compare equal.
pub(crate) fn canonical_value(raw: &Bytes, max: usize) -> Result<Bytes, String> {
    if raw.len() > max {
        return Err(format!(
            "value of {} bytes exceeds the {max}-byte limit",
            raw.len()
        ));
    }
    if !contains(raw, b"\"resourceVersion\"") {
        serde_json::from_slice::<serde::de::IgnoredAny>(raw)
            .map_err(|e| format!("value is not valid JSON: {e}"))?;
        return Ok(raw.clone());
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(raw).map_err(|e| format!("value is not valid JSON: {e}"))?;
    if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&value)
        .map(Bytes::from)
        .map_err(|e| format!("cannot re-encode value: {e}"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `min · 2^attempt`, capped at `max`, with jitter between half and all of it.
pub(crate) fn backoff(min: Duration, max: Duration, attempt: u32) -> Duration {
    let base = min.saturating_mul(1u32 << attempt.min(16)).min(max);
    let nanos = base.as_nanos() as u64;
    // Cheap jitter without a RNG dependency: the clock's sub-second nanoseconds.
    let noise = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let half = nanos / 2;
    Duration::from_nanos(half + if half > 0 { noise % half } else { 0 })
}

/// Convenience for tests and tools: an [`EtcdTls`] from PEM strings.
pub fn tls_from_pem(ca: Option<&str>, cert: Option<&str>, key: Option<&str>) -> EtcdTls {
    EtcdTls {
        ca_pem: ca.map(|s| s.as_bytes().to_vec()),
        cert_pem: cert.map(|s| s.as_bytes().to_vec()),
        key_pem: key.map(|s| s.as_bytes().to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_and_resource_version_dropped() {
        let ok = Bytes::from_static(br#"{"kind":"Node","metadata":{"name":"a"}}"#);
        assert_eq!(canonical_value(&ok, 1000).unwrap(), ok);
        let rv = Bytes::from_static(br#"{"metadata":{"name":"a","resourceVersion":"7"}}"#);
        assert_eq!(
            canonical_value(&rv, 1000).unwrap(),
            Bytes::from_static(br#"{"metadata":{"name":"a"}}"#)
        );
        assert!(canonical_value(&Bytes::from_static(b"{nope"), 1000).is_err());
        assert!(canonical_value(&ok, 3).unwrap_err().contains("limit"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        assert!(backoff(min, max, 0) <= min);
        assert!(backoff(min, max, 0) >= min / 2);
        assert!(backoff(min, max, 10) <= max);
        assert!(backoff(min, max, 10) >= max / 2);
    }
}
