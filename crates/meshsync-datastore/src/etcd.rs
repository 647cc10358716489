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
//! Every value goes through [`crate::validate::validate_value`] (UTF-8, a JSON object within the
//! size and depth limits, `kind`/`metadata.name`/`metadata.namespace` agreeing with the key). An
//! invalid value is logged (key and reason, never the value) and counted
//! ([`crate::SourceCounters::invalid_values`]); it is absent from a listing and a watched one is emitted
//! as a `Delete` of its key, so a running source and a freshly started one always hold the same
//! keys. Keys of a served layout with the wrong shape (extra segments, empty names) are logged once
//! per key and counted ([`crate::SourceCounters::malformed_keys`]).
//!
//! One kind is converted at ingest: Calico's host block affinities, stored as v1 values with the
//! node and block only in the key, become the `BlockAffinity` resource the Kubernetes datastore
//! serves ([`affinity`]), so the cache holds one form of them whatever the datastore.
//!
//! A hung etcd (a stopped process, a dead link that still looks open) is noticed while watching
//! by a progress probe: when the watch has been silent for [`EtcdSourceConfig::probe_interval`]
//! the source asks etcd for a progress notification and fails the connection if nothing at all
//! arrives within [`EtcdSourceConfig::probe_timeout`] (defaults 2 s + 5 s: `ConnectionFailed`
//! within 7 s). Unary calls (the listing) have the client's HTTP/2 keepalive (a ping every 10 s,
//! 5 s to answer) and request timeout.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use meshsync_etcd::{EtcdClient, EtcdConfig, EtcdError, WatchStream, pb};
use tokio::time::{Instant, sleep_until};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, info, warn};

mod affinity;

use crate::common::{Closed, SourceCommon, SourceTx};
use crate::layout::{KeyClass, block_affinity_key, classify_key};
use crate::validate::validate_value;
use crate::{ClusterName, ResourceKey, SourceEvent, SourceStatus};
use meshsync_model::kinds::BLOCK_AFFINITY;

/// TLS material given as files, read at every connection attempt (the same reading as the
/// federation controller's; defined with the client).
pub use meshsync_etcd::TlsFiles;

/// Default for [`EtcdSourceConfig::probe_interval`].
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Default for [`EtcdSourceConfig::probe_timeout`].
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many distinct malformed keys are logged by name; later ones are only counted.
const MAX_LOGGED_MALFORMED_KEYS: usize = 1000;

/// Configuration of an etcd source.
#[derive(Clone, Debug)]
pub struct EtcdSourceConfig {
    /// Endpoints, credentials and inline TLS material.
    pub etcd: EtcdConfig,
    /// TLS material from files; merged over `etcd.tls` at each connect.
    pub tls_files: TlsFiles,
    /// Key prefix, `/calico` by default.
    pub prefix: String,
    /// Cluster, kinds (`None`: every kind the layout knows), value limits, backoff, counters
    /// (invalid values, malformed keys).
    pub common: SourceCommon,
    /// Keys per `Range` page while listing.
    pub page_size: i64,
    /// A watch silent for this long is probed (a progress request). Default 2 s.
    pub probe_interval: Duration,
    /// A probed watch that receives nothing for this long fails the connection. Default 5 s.
    pub probe_timeout: Duration,
}

impl EtcdSourceConfig {
    pub fn new(etcd: EtcdConfig, cluster: ClusterName) -> Self {
        EtcdSourceConfig {
            etcd,
            tls_files: TlsFiles::default(),
            prefix: "/calico".into(),
            common: SourceCommon::new(cluster),
            page_size: 1000,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
        }
    }
}

/// Starts the source task and returns its event stream. Connection problems are reported in the
/// stream as `ConnectionFailed` and retried; the task ends when the stream is dropped.
pub fn watch(config: EtcdSourceConfig) -> ReceiverStream<SourceEvent> {
    let (tx, rx) = SourceTx::channel(config.common.cluster.clone());
    tokio::spawn(async move {
        let mut source = EtcdSource {
            config,
            tx,
            logged_malformed: HashSet::new(),
        };
        source.run().await;
    });
    rx
}

struct EtcdSource {
    config: EtcdSourceConfig,
    tx: SourceTx,
    /// Malformed keys already logged (each is logged once).
    logged_malformed: HashSet<Vec<u8>>,
}

/// Where the source is, in the style of kube-runtime's `watcher::State`: each phase does one
/// thing and says which phase comes next.
enum Phase {
    /// No connection: connect.
    Disconnected { attempt: u32 },
    /// Connected: list everything at one revision (again after a compaction).
    Listing { client: EtcdClient, attempt: u32 },
    /// Listed at `revision`: watch everything after it.
    Watching {
        client: EtcdClient,
        revision: i64,
        attempt: u32,
    },
    /// The connection failed: report it, back off, reconnect.
    Failed { reason: String, attempt: u32 },
}

/// How a watch ended.
enum WatchEnd {
    /// History we needed is gone: relist on the same connection.
    Compacted,
    /// The connection failed.
    Failed(String),
}

impl EtcdSource {
    async fn run(&mut self) {
        let _ = self.run_inner().await;
        debug!(cluster = %self.config.common.cluster, "etcd source stopped");
    }

    async fn run_inner(&mut self) -> Result<(), Closed> {
        self.tx.set_status(SourceStatus::Connecting).await?;
        let mut phase = Phase::Disconnected { attempt: 0 };
        loop {
            phase = self.step(phase).await?;
        }
    }

    /// Runs one phase; returns the next. `Err` only when the stream was dropped.
    async fn step(&mut self, phase: Phase) -> Result<Phase, Closed> {
        Ok(match phase {
            Phase::Disconnected { attempt } => match self.connect().await {
                Ok(client) => {
                    info!(cluster = %self.config.common.cluster, endpoint = client.endpoint(),
                        "connected to etcd");
                    Phase::Listing { client, attempt }
                }
                Err(reason) => Phase::Failed { reason, attempt },
            },
            Phase::Listing { client, attempt } => match self.list(&client).await? {
                Ok(revision) => Phase::Watching {
                    client,
                    revision,
                    attempt,
                },
                Err(WatchEnd::Compacted) => Phase::Listing { client, attempt },
                Err(WatchEnd::Failed(reason)) => Phase::Failed { reason, attempt },
            },
            Phase::Watching {
                client,
                revision,
                attempt,
            } => match self.watch(&client, revision, attempt).await? {
                (WatchEnd::Compacted, attempt) => Phase::Listing { client, attempt },
                (WatchEnd::Failed(reason), attempt) => Phase::Failed { reason, attempt },
            },
            Phase::Failed { reason, attempt } => {
                warn!(cluster = %self.config.common.cluster, error = %reason, "etcd connection failed; will retry");
                self.tx
                    .set_status(SourceStatus::ConnectionFailed(reason))
                    .await?;
                self.tx
                    .sleep(self.config.common.backoff.delay(attempt))
                    .await?;
                Phase::Disconnected {
                    attempt: attempt.saturating_add(1),
                }
            }
        })
    }

    async fn connect(&self) -> Result<EtcdClient, String> {
        let mut etcd = self.config.etcd.clone();
        self.config
            .tls_files
            .load_into(&mut etcd)
            .map_err(|e| e.to_string())?;
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

    /// Lists everything under the prefix at one revision and sends it as one relist. Returns the
    /// revision listed.
    async fn list(&mut self, client: &EtcdClient) -> Result<Result<i64, WatchEnd>, Closed> {
        let prefix = self.key_prefix();
        if self.tx.status() != Some(&SourceStatus::InSync) {
            self.tx.set_status(SourceStatus::ResyncInProgress).await?;
        }
        let (kvs, revision) = match client
            .list_prefix(prefix.as_bytes(), 0, self.config.page_size)
            .await
        {
            Ok(listing) => listing,
            Err(e) if e.is_compacted() => {
                info!(cluster = %self.config.common.cluster, error = %e, "history compacted while listing; relisting");
                return Ok(Err(WatchEnd::Compacted));
            }
            Err(e) => return Ok(Err(WatchEnd::Failed(e.to_string()))),
        };
        let cluster = self.config.common.cluster.clone();
        self.tx
            .send(SourceEvent::ResyncStart {
                cluster: cluster.clone(),
            })
            .await?;
        let mut count = 0usize;
        for kv in kvs {
            if let Some(event) = self.listed(&kv) {
                count += 1;
                self.tx.send(event).await?;
            }
        }
        self.tx
            .send(SourceEvent::ResyncDone {
                cluster: cluster.clone(),
            })
            .await?;
        info!(cluster = %cluster, revision, resources = count, "etcd listing complete");
        Ok(Ok(revision))
    }

    fn key_prefix(&self) -> String {
        format!("{}/", self.config.prefix.trim_end_matches('/'))
    }

    /// Watches everything after `revision` until the watch ends. The source is in sync once the
    /// watch runs, and the retry count starts again from there (returned with the end).
    async fn watch(
        &mut self,
        client: &EtcdClient,
        revision: i64,
        attempt: u32,
    ) -> Result<(WatchEnd, u32), Closed> {
        let prefix = self.key_prefix();
        let watch = match client.watch_prefix(prefix.as_bytes(), revision + 1).await {
            Ok(w) => w,
            Err(e) if e.is_compacted() => {
                info!(cluster = %self.config.common.cluster, error = %e, "history compacted before the watch started; relisting");
                return Ok((WatchEnd::Compacted, attempt));
            }
            Err(e) => return Ok((WatchEnd::Failed(e.to_string()), attempt)),
        };
        // In sync only once the watch runs: nothing after the listing can be missed from here on.
        self.tx.set_status(SourceStatus::InSync).await?;
        Ok((self.follow(watch).await?, 0))
    }

    /// Follows a running watch, probing it when it is silent, until it ends.
    async fn follow(&mut self, mut watch: WatchStream) -> Result<WatchEnd, Closed> {
        let (interval, timeout) = (self.config.probe_interval, self.config.probe_timeout);
        // When to probe a silent watch, and (once probed) when to give up on it. Both restart
        // after every response has been handled, so time spent waiting for our own consumer
        // never counts against etcd.
        let mut probe_at = Instant::now() + interval;
        let mut give_up_at: Option<Instant> = None;
        loop {
            let response = tokio::select! {
                biased;
                r = watch.next() => r,
                _ = self.tx.closed() => return Err(Closed),
                _ = sleep_until(give_up_at.unwrap_or(probe_at)) => {
                    if give_up_at.is_some() {
                        return Ok(WatchEnd::Failed(format!(
                            "etcd did not answer a watch progress request within {timeout:?}"
                        )));
                    }
                    if let Err(e) = watch.request_progress() {
                        return Ok(WatchEnd::Failed(e.to_string()));
                    }
                    give_up_at = Some(Instant::now() + timeout);
                    continue;
                }
            };
            match response {
                Ok(response) => {
                    for event in response.events {
                        if let Some(e) = self.watched(event) {
                            self.tx.send(e).await?;
                        }
                    }
                    probe_at = Instant::now() + interval;
                    give_up_at = None;
                }
                Err(e) if e.is_compacted() => {
                    self.config.common.counters.count_expired_relist();
                    info!(cluster = %self.config.common.cluster, error = %e, "watch compacted; relisting");
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

    /// The resource key of an etcd key, if it is served (and of a kind this source emits). A
    /// malformed key is counted (when `count`) and logged once.
    fn key_of(&mut self, raw: &[u8], count: bool) -> Option<ResourceKey> {
        let text = String::from_utf8_lossy(raw);
        let prefix = self.config.prefix.trim_end_matches('/');
        let class = match classify_key(prefix, &text) {
            KeyClass::Served(kind, ..) if std::str::from_utf8(raw).is_err() => {
                KeyClass::Malformed {
                    kind,
                    reason: "key is not valid UTF-8",
                }
            }
            class => class,
        };
        let wanted = |kind: &str| {
            self.config
                .common
                .kinds
                .as_ref()
                .is_none_or(|kinds| kinds.contains(kind))
        };
        match class {
            KeyClass::Served(kind, namespace, name) => wanted(kind)
                .then(|| ResourceKey::new(&self.config.common.cluster, kind, &namespace, &name)),
            KeyClass::Malformed { kind, reason } => {
                if count && wanted(kind) {
                    self.config.common.counters.count_malformed_key();
                    self.log_malformed(raw, &text, reason);
                }
                None
            }
            KeyClass::Ignored => None,
        }
    }

    fn log_malformed(&mut self, raw: &[u8], text: &str, reason: &str) {
        if self.logged_malformed.contains(raw) {
            return;
        }
        if self.logged_malformed.len() >= MAX_LOGGED_MALFORMED_KEYS {
            if self.logged_malformed.len() == MAX_LOGGED_MALFORMED_KEYS {
                warn!(cluster = %self.config.common.cluster, limit = MAX_LOGGED_MALFORMED_KEYS,
                    "more malformed etcd keys; further ones are counted, not logged");
                // One more entry (the marker's), so this line is written once.
                self.logged_malformed.insert(Vec::new());
            }
            return;
        }
        self.logged_malformed.insert(raw.to_vec());
        warn!(cluster = %self.config.common.cluster, key = %text, reason,
            "ignoring malformed etcd key (logged once per key)");
    }

    /// The value as served, or why it is invalid (logged and counted here).
    ///
    /// A served value is always its own allocation: `kv.value` is a slice of the buffer the
    /// whole response was decoded from (prost's `bytes` option over tonic's receive buffer; a
    /// listing page of 1,000 keys is megabytes), and the cache keeps a value for as long as its
    /// key is unchanged, so sharing would let one untouched key keep its whole page alive
    /// (measured: 2 % of 20,000 keys left from the listing held 30 MiB more;
    /// `scripts/measure-etcd-ingest-rss.sh`). The copy is one memcpy of bytes just parsed.
    fn checked_value(&self, key: &ResourceKey, kv: &pb::KeyValue) -> Option<Bytes> {
        let limits = &self.config.common.limits;
        // A host affinity's IPAM key (not its v3 resource path): the v1 value, converted.
        let host_affinity = (key.kind() == BLOCK_AFFINITY)
            .then(|| std::str::from_utf8(&kv.key).ok())
            .flatten()
            .and_then(|text| block_affinity_key(self.config.prefix.trim_end_matches('/'), text));
        let result = match host_affinity {
            // Built here, so already a new allocation.
            Some(host_affinity) => affinity::resource(&host_affinity, key, &kv.value, limits)
                .map_err(|e| e.to_string()),
            None => validate_value(key, &kv.value, limits)
                .map_err(|e| e.to_string())
                .and_then(|info| {
                    if info.has_resource_version {
                        // Re-encoded, so already a new allocation.
                        without_resource_version(&kv.value)
                    } else {
                        Ok(Bytes::copy_from_slice(&kv.value))
                    }
                }),
        };
        match result {
            Ok(value) => Some(value),
            Err(reason) => {
                self.config.common.counters.count_invalid_value();
                warn!(cluster = %self.config.common.cluster, key = %String::from_utf8_lossy(&kv.key),
                    revision = kv.mod_revision, reason = %reason,
                    "invalid etcd value; the key is not served (deleted at the agents)");
                None
            }
        }
    }

    /// A listed pair: an `Upsert`, or nothing (an invalid value is absent from the listing).
    fn listed(&mut self, kv: &pb::KeyValue) -> Option<SourceEvent> {
        let key = self.key_of(&kv.key, true)?;
        let value = self.checked_value(&key, kv)?;
        Some(SourceEvent::Upsert {
            key,
            value,
            revision: kv.mod_revision.to_string().into(),
        })
    }

    /// A watched event: an `Upsert`, or a `Delete` (a deleted key, or one whose new value is
    /// invalid: agents must not keep its previous value).
    fn watched(&mut self, event: pb::Event) -> Option<SourceEvent> {
        let kv = event.kv?;
        let deleted = event.r#type == pb::event::EventType::Delete as i32;
        let key = self.key_of(&kv.key, !deleted)?;
        let revision = kv.mod_revision.to_string().into();
        if deleted {
            return Some(SourceEvent::Delete { key, revision });
        }
        Some(match self.checked_value(&key, &kv) {
            Some(value) => SourceEvent::Upsert {
                key,
                value,
                revision,
            },
            None => SourceEvent::Delete { key, revision },
        })
    }
}

/// Drops `metadata.resourceVersion` that a writer left in a (valid) value (Calico clears it before
/// writing), so rewrites of equal content compare equal.
fn without_resource_version(raw: &Bytes) -> Result<Bytes, String> {
    let mut value: serde_json::Value =
        serde_json::from_slice(raw).map_err(|e| format!("value is not valid JSON: {e}"))?;
    if let Some(meta) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&value)
        .map(Bytes::from)
        .map_err(|e| format!("cannot re-encode value: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_version_is_dropped() {
        let rv = Bytes::from_static(br#"{"metadata":{"name":"a","resourceVersion":"7"}}"#);
        assert_eq!(
            without_resource_version(&rv).unwrap(),
            Bytes::from_static(br#"{"metadata":{"name":"a"}}"#)
        );
    }
}
