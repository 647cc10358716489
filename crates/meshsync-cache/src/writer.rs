//! The cache's one writer: applies source events in order and publishes a breadcrumb per batch.
//!
//! The writer owns all mutable state, so nothing on the hot path takes a lock. It blocks for the
//! first event, then drains whatever else is ready (up to `max_batch`) into the same batch, so a
//! burst becomes one breadcrumb with one set of frames, while a lone update is published at once.
//! Unchanged values are dropped here (dedupe), so agents never see a no-op update.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt};
use meshsync_model::{ClusterName, ResourceKey, Revision, SourceEvent, SourceStatus};
use meshsync_proto::digest::entry_hash;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::breadcrumb::{Breadcrumb, Delta, Entry, Snapshot};
use crate::change::Change;
use crate::history::History;
use crate::metrics::CacheMetrics;
use crate::status::{ClusterStatus, SyncState, SyncStatus};
use meshsync_model::Subscription;

/// State owned by the writer task.
pub(crate) struct Writer {
    snapshot: Snapshot,
    status: SyncStatus,
    /// Per cluster in the middle of a relist: the keys not yet seen again.
    resyncing: BTreeMap<ClusterName, HashSet<ResourceKey>>,
    seq: u64,
    head: Arc<Breadcrumb>,
    head_tx: watch::Sender<Arc<Breadcrumb>>,
    metrics: Arc<CacheMetrics>,
    max_value_bytes: usize,
    kinds: KindTable,
    /// The longest wait for more events under load (see `CacheConfig::max_linger`).
    max_linger: Duration,
    /// Followers found behind since the last look (see `Follower::next`).
    behind: Arc<AtomicU64>,
    /// Breadcrumbs kept for resuming agents (none in unit tests that build a bare writer).
    history: Option<Arc<History>>,
}

/// Moves whatever events are ready now (without waiting) into `batch`, up to `max`.
fn drain_ready<S>(events: &mut S, batch: &mut Vec<SourceEvent>, max: usize)
where
    S: Stream<Item = SourceEvent> + Unpin,
{
    while batch.len() < max {
        match events.next().now_or_never() {
            Some(Some(event)) => batch.push(event),
            _ => break,
        }
    }
}

/// Which subscription types carry each kind, memoised (kinds are few; lookups are per change).
#[derive(Default)]
struct KindTable {
    masks: HashMap<Box<str>, u32>,
}

impl KindTable {
    fn subscriptions(&mut self, kind: &str) -> impl Iterator<Item = Subscription> + use<> {
        let mask = match self.masks.get(kind) {
            Some(mask) => *mask,
            None => {
                let mask = Subscription::all_types()
                    .filter(|s| s.includes(kind))
                    .fold(0u32, |m, s| m | (1 << s.index()));
                self.masks.insert(kind.into(), mask);
                mask
            }
        };
        Subscription::all_types().filter(move |s| mask & (1 << s.index()) != 0)
    }
}

impl Writer {
    pub(crate) fn new(
        head: Arc<Breadcrumb>,
        head_tx: watch::Sender<Arc<Breadcrumb>>,
        metrics: Arc<CacheMetrics>,
        max_value_bytes: usize,
    ) -> Self {
        Writer {
            snapshot: head.snapshot.clone(),
            status: (*head.status).clone(),
            resyncing: BTreeMap::new(),
            seq: head.seq,
            head,
            head_tx,
            metrics,
            max_value_bytes,
            kinds: KindTable::default(),
            max_linger: Duration::ZERO,
            behind: Arc::new(AtomicU64::new(0)),
            history: None,
        }
    }

    /// Lingers up to `max_linger` for more events while followers are behind.
    pub(crate) fn with_linger(mut self, max_linger: Duration, behind: Arc<AtomicU64>) -> Self {
        self.max_linger = max_linger;
        self.behind = behind;
        self
    }

    /// Records every published breadcrumb in `history` (for agents that resume).
    pub(crate) fn with_history(mut self, history: Arc<History>) -> Self {
        self.history = Some(history);
        self
    }

    /// Runs until `events` ends.
    pub(crate) async fn run<S>(mut self, mut events: S, max_batch: usize)
    where
        S: Stream<Item = SourceEvent> + Unpin,
    {
        let mut batch = Vec::with_capacity(max_batch);
        while let Some(first) = events.next().await {
            batch.push(first);
            drain_ready(&mut events, &mut batch, max_batch);
            // Under load, wait a little for more: each breadcrumb costs every connection a
            // wake-up, so fewer, fuller breadcrumbs are cheaper than many small ones. A quiet
            // cache (every follower waiting at the head) publishes at once.
            let busy = self.behind.swap(0, Ordering::Relaxed) > 0;
            if busy && !self.max_linger.is_zero() && batch.len() < max_batch {
                let deadline = tokio::time::Instant::now() + self.max_linger;
                let mut ended = false;
                while batch.len() < max_batch {
                    tokio::select! {
                        event = events.next() => match event {
                            Some(event) => {
                                batch.push(event);
                                drain_ready(&mut events, &mut batch, max_batch);
                            }
                            None => {
                                ended = true;
                                break;
                            }
                        },
                        _ = tokio::time::sleep_until(deadline) => break,
                    }
                }
                self.apply_batch(batch.drain(..));
                if ended {
                    break;
                }
                continue;
            }
            self.apply_batch(batch.drain(..));
        }
        debug!("cache input ended; writer stops");
    }

    /// Applies a batch and publishes a breadcrumb if anything changed.
    pub(crate) fn apply_batch(&mut self, events: impl Iterator<Item = SourceEvent>) {
        let before = self.status.clone();
        let mut deltas = Vec::new();
        for event in events {
            self.apply(event, &mut deltas);
        }
        self.status.overall = overall_state(&self.status);
        self.status.seq = self.seq;
        let status_changed = !self.status.same_states(&before);
        if deltas.is_empty() && self.status == before {
            return;
        }
        self.metrics
            .updates
            .fetch_add(deltas.len() as u64, Ordering::Relaxed);
        let crumb = Arc::new(Breadcrumb::new(
            self.seq,
            self.head.bytes,
            self.snapshot.clone(),
            deltas,
            Arc::new(self.status.clone()),
            status_changed,
        ));
        // Link first, then announce: a follower that sees the new head can always walk to it.
        let _ = self.head.next.set(crumb.clone());
        self.head = crumb.clone();
        if let Some(history) = &self.history {
            history.push(crumb.clone());
        }
        self.head_tx.send_replace(crumb);
        // Log after publishing: whoever greps the line and then asks the server sees the state.
        if status_changed {
            self.log_status_transitions(&before);
        }
    }

    fn apply(&mut self, event: SourceEvent, deltas: &mut Vec<Delta>) {
        match event {
            SourceEvent::Status { cluster, status } => {
                let entry = self
                    .status
                    .clusters
                    .entry(cluster)
                    .or_insert_with(|| ClusterStatus::new(SourceStatus::Connecting));
                entry.set_at(status, self.seq);
            }
            SourceEvent::ResyncStart { cluster } => {
                let keys: HashSet<ResourceKey> = self.cluster_keys(&cluster).collect();
                debug!(cluster = %cluster, keys = keys.len(), "resync started");
                self.resyncing.insert(cluster, keys);
            }
            SourceEvent::ResyncDone { cluster } => {
                let Some(unseen) = self.resyncing.remove(&cluster) else {
                    warn!(cluster = %cluster, "ResyncDone without ResyncStart; ignored");
                    return;
                };
                let mut unseen: Vec<ResourceKey> = unseen.into_iter().collect();
                unseen.sort();
                debug!(cluster = %cluster, deleted = unseen.len(), "resync done");
                for key in unseen {
                    let revision: Revision = Arc::from("");
                    self.delete(key, revision, deltas);
                }
            }
            SourceEvent::ClusterRemoved { cluster } => {
                self.resyncing.remove(&cluster);
                let keys: Vec<ResourceKey> = self.cluster_keys(&cluster).collect();
                info!(cluster = %cluster, deleted = keys.len(), "cluster removed from the mesh");
                for key in keys {
                    self.delete(key, Arc::from(""), deltas);
                }
                self.status.clusters.remove(&cluster);
            }
            SourceEvent::Upsert {
                key,
                value,
                revision,
            } => {
                if let Some(unseen) = self.resyncing.get_mut(key.cluster()) {
                    unseen.remove(&key);
                }
                self.upsert(key, value, revision, deltas);
            }
            SourceEvent::Delete { key, revision } => {
                if let Some(unseen) = self.resyncing.get_mut(key.cluster()) {
                    unseen.remove(&key);
                }
                self.delete(key, revision, deltas);
            }
            SourceEvent::Refused {
                cluster,
                count,
                summary,
            } => {
                let entry = self
                    .status
                    .clusters
                    .entry(cluster)
                    .or_insert_with(|| ClusterStatus::new(SourceStatus::Connecting));
                entry.refused = (!summary.is_empty()).then(|| (count, summary.into()));
            }
            // Only the mesh asks for objects by name (Secrets, consumed there); anything else a
            // source could not read is not served, and was never upserted.
            SourceEvent::Unreadable { key, reason } => {
                debug!(key = %key, reason = %reason, "unreadable object; not served");
            }
        }
    }

    /// Every key of `cluster`, in order.
    fn cluster_keys<'a>(&'a self, cluster: &'a str) -> impl Iterator<Item = ResourceKey> + 'a {
        self.snapshot
            .range(ResourceKey::new(cluster, "", "", "")..)
            .map(|(k, _)| k)
            .take_while(move |k| k.cluster() == cluster)
            .cloned()
    }

    fn upsert(
        &mut self,
        key: ResourceKey,
        value: Bytes,
        revision: Revision,
        deltas: &mut Vec<Delta>,
    ) {
        if value.len() > self.max_value_bytes {
            warn!(key = %key, bytes = value.len(), limit = self.max_value_bytes,
                "value larger than the limit; update dropped, previous value kept");
            self.metrics.rejected.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let hash = entry_hash(
            key.cluster(),
            key.kind(),
            key.namespace(),
            key.name(),
            &value,
        );
        let old = self.snapshot.get(&key);
        if let Some(old) = old
            && old.hash == hash
            && old.value == value
        {
            self.metrics.skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let change = if old.is_some() {
            Change::Updated
        } else {
            Change::New
        };
        let old_hash = old.map(|e| e.hash);
        self.seq += 1;
        let subs = self.kinds.subscriptions(key.kind());
        let cluster = self
            .status
            .clusters
            .entry(Arc::from(key.cluster()))
            .or_insert_with(|| ClusterStatus::new(SourceStatus::Connecting));
        for sub in subs {
            let view = &mut cluster.views[sub.index()];
            match old_hash {
                Some(h) => view.digest = view.digest.wrapping_sub(h),
                None => view.keys += 1,
            }
            view.digest = view.digest.wrapping_add(hash);
        }
        self.snapshot.insert(
            key.clone(),
            Entry {
                value: value.clone(),
                revision: revision.clone(),
                hash,
                seq: self.seq,
            },
        );
        deltas.push(Delta {
            seq: self.seq,
            key,
            change,
            value,
            revision,
        });
    }

    fn delete(&mut self, key: ResourceKey, revision: Revision, deltas: &mut Vec<Delta>) {
        let Some(old) = self.snapshot.remove(&key) else {
            return;
        };
        self.seq += 1;
        let subs = self.kinds.subscriptions(key.kind());
        if let Some(cluster) = self.status.clusters.get_mut(key.cluster()) {
            for sub in subs {
                let view = &mut cluster.views[sub.index()];
                view.keys = view.keys.saturating_sub(1);
                view.digest = view.digest.wrapping_sub(old.hash);
            }
        }
        let revision = if revision.is_empty() {
            old.revision
        } else {
            revision
        };
        deltas.push(Delta {
            seq: self.seq,
            key,
            change: Change::Deleted,
            // The last value: an encoding whose keys depend on content (Typha's v1 keys) needs it
            // to delete what the value produced; gRPC frames send deletes without a value.
            value: old.value,
            revision,
        });
    }

    /// The operator-facing log lines; `grep "Sending in-sync update"` is how people check us.
    fn log_status_transitions(&self, before: &SyncStatus) {
        for (name, cluster) in &self.status.clusters {
            let was = before.clusters.get(name).map(|c| &c.status);
            if was == Some(&cluster.status) {
                continue;
            }
            if !name.is_empty() && cluster.status == SourceStatus::InSync {
                info!(cluster = %name, "Sending in-sync update for RemoteClusterConfiguration({name})");
            } else if !name.is_empty() || cluster.status != SourceStatus::InSync {
                info!(cluster = %name, state = cluster.status.name(), error = cluster.status.error(),
                    "cluster state changed");
            }
        }
        if self.status.overall != before.overall {
            if self.status.overall == SyncState::InSync {
                info!(
                    seq = self.seq,
                    keys = self.status.total_keys(),
                    "Sending in-sync update for local datastore"
                );
            } else {
                info!(state = ?self.status.overall, "overall sync state changed");
            }
        }
    }
}

/// The overall state follows the local cluster's source.
fn overall_state(status: &SyncStatus) -> SyncState {
    match status.clusters.get(meshsync_model::LOCAL_CLUSTER) {
        Some(c) => match c.status {
            SourceStatus::InSync => SyncState::InSync,
            SourceStatus::ResyncInProgress => SyncState::ResyncInProgress,
            SourceStatus::Connecting
            | SourceStatus::ConnectionFailed(_)
            | SourceStatus::ConfigIncomplete(_) => SyncState::WaitForDatastore,
        },
        None => SyncState::WaitForDatastore,
    }
}
