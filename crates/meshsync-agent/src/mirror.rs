//! The local mirror an agent keeps: every resource it was sent, the sync status, and its own
//! digest per cluster so it can check it holds exactly what the server holds.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use meshsync_proto::digest::{MAX_BUCKETS, bucket_counts, bucket_of, entry_hash, key_hash};
use meshsync_proto::{self as pb};
use serde::Serialize;

/// `(cluster, kind, namespace, name)`, ordered that way.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MirrorKey {
    pub cluster: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl MirrorKey {
    fn of(u: &pb::Update) -> Self {
        MirrorKey {
            cluster: u.cluster.clone(),
            kind: u.kind.clone(),
            namespace: u.namespace.clone(),
            name: u.name.clone(),
        }
    }

    fn hash(&self, value: &[u8]) -> u64 {
        entry_hash(
            &self.cluster,
            &self.kind,
            &self.namespace,
            &self.name,
            value,
        )
    }
}

/// One mirrored resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorEntry {
    /// The object as JSON.
    pub value: Bytes,
    pub revision: String,
    pub seq: u64,
    /// `entry_hash` of key and value, kept so replacing or deleting needs no rehash.
    pub hash: u64,
    /// `key_hash` of the key: its anti-entropy bucket for any bucket count.
    pub key_hash: u64,
}

/// A cluster's state as the server last reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterInfo {
    pub state: pb::ClusterState,
    pub error: String,
    /// Keys the server holds for the cluster.
    pub keys: u64,
    /// The server's digest for the cluster.
    pub digest: u64,
    /// The seq at which the cluster last became in sync (0 while it is not).
    pub in_sync_seq: u64,
}

/// Calico's names for the cluster states, as used in dumps and `status --output json`.
pub fn cluster_state_name(state: pb::ClusterState) -> &'static str {
    match state {
        pb::ClusterState::Unspecified => "Unknown",
        pb::ClusterState::Connecting => "Connecting",
        pb::ClusterState::ConnectionFailed => "ConnectionFailed",
        pb::ClusterState::ResyncInProgress => "ResyncInProgress",
        pb::ClusterState::InSync => "InSync",
        pb::ClusterState::ConfigIncomplete => "ConfigIncomplete",
    }
}

/// Names for the overall state.
pub fn sync_state_name(state: pb::SyncState) -> &'static str {
    match state {
        pb::SyncState::Unspecified => "Unknown",
        pb::SyncState::WaitForDatastore => "WaitForDatastore",
        pb::SyncState::ResyncInProgress => "ResyncInProgress",
        pb::SyncState::InSync => "InSync",
    }
}

/// A digest disagreement found by [`Mirror::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestMismatch {
    pub cluster: String,
    pub server_keys: u64,
    pub local_keys: u64,
}

/// The agent's copy of the server's state.
#[derive(Debug, Default)]
pub struct Mirror {
    epoch: u64,
    seq: u64,
    overall: Option<pb::SyncState>,
    clusters: BTreeMap<String, ClusterInfo>,
    resources: BTreeMap<MirrorKey, MirrorEntry>,
    /// Per cluster: number of keys and digest of what this mirror holds.
    local: BTreeMap<String, (u64, u64)>,
    /// During a full snapshot after (re)connecting: keys not yet sent again.
    unseen: Option<HashSet<MirrorKey>>,
    required_clusters: Vec<String>,
    /// The mirror held a verified cut of `epoch`'s state (a snapshot or a resume whose digests
    /// matched) and has only applied that server's stream since: `(epoch, seq)` can resume.
    consistent: bool,
    /// The mirror holds exactly the server's state at `seq` (right after a status or the end of a
    /// breadcrumb), not a part of a breadcrumb: what a `Report` may describe.
    at_cut: bool,
}

impl Mirror {
    /// An empty mirror that only calls itself in sync once every cluster in `required_clusters`
    /// is in sync too.
    pub fn new(required_clusters: Vec<String>) -> Self {
        Mirror {
            required_clusters,
            ..Default::default()
        }
    }

    /// A full snapshot begins (hello without resume): remember what we hold, so that keys the
    /// snapshot does not mention can be deleted when it ends.
    pub fn begin_snapshot(&mut self, epoch: u64) {
        self.epoch = epoch;
        // Another epoch's sequence numbers mean nothing here: the snapshot's status sets it.
        self.seq = 0;
        self.overall = None;
        self.consistent = false;
        self.unseen = Some(self.resources.keys().cloned().collect());
    }

    /// The server resumes this mirror (same epoch): what changed since [`Mirror::resume_token`]
    /// follows, applied on top of what the mirror holds; nothing is deleted unless the server says
    /// so.
    pub fn begin_resume(&mut self) {
        self.overall = None;
        self.unseen = None;
    }

    /// Anti-entropy begins (hello of another epoch, after this mirror sent its bucket digests):
    /// the server's `Replace` says which buckets to drop; the updates before the next status
    /// refill them.
    pub fn begin_anti_entropy(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.seq = 0;
        self.overall = None;
        self.consistent = false;
        self.unseen = Some(HashSet::new());
    }

    /// Marks every key held in the replaced buckets for deletion at the next status, unless the
    /// server sends it again before then.
    ///
    /// Linear in the `Replace` and in the mirror, however the `Replace` is made up: its entries are
    /// first gathered per cluster and bucket count, then each cluster's keys are visited once.
    /// Bucket counts are powers of two up to `MAX_BUCKETS` (what agents send; the server answers
    /// in the agent's count, or one bucket for a cluster the agent did not report), so a key is
    /// looked up under at most 17 counts; an entry with any other count is ignored (the digests
    /// checked at the next status tell whether the repair worked).
    pub fn replace_buckets(&mut self, replace: &pb::Replace) {
        let mut replaced: HashMap<&str, HashMap<usize, HashSet<usize>>> = HashMap::new();
        for cluster in &replace.clusters {
            let buckets = cluster.buckets as usize;
            if !buckets.is_power_of_two() || buckets > MAX_BUCKETS {
                continue;
            }
            replaced
                .entry(cluster.cluster.as_str())
                .or_default()
                .entry(buckets)
                .or_default()
                .extend(cluster.bucket.iter().map(|b| *b as usize));
        }
        let unseen = self.unseen.get_or_insert_with(HashSet::new);
        for (cluster, counts) in &replaced {
            for (key, entry) in cluster_range(&self.resources, cluster) {
                if counts
                    .iter()
                    .any(|(n, set)| set.contains(&bucket_of(entry.key_hash, *n)))
                {
                    unseen.insert(key.clone());
                }
            }
        }
    }

    /// The mirror's bucket digests per cluster it holds keys of (`SubscribeRequest.mirror`), with
    /// `bucket_counts` buckets each (about two keys per bucket, 65,536 in all at most).
    pub fn bucket_digests(&self) -> Vec<pb::BucketDigests> {
        let mut out: Vec<pb::BucketDigests> = Vec::new();
        let held: Vec<(&String, u64)> = self
            .local
            .iter()
            .filter(|(_, (keys, _))| *keys > 0)
            .map(|(cluster, (keys, _))| (cluster, *keys))
            .collect();
        let counts = bucket_counts(&held.iter().map(|(_, keys)| *keys).collect::<Vec<_>>());
        for ((cluster, _), count) in held.into_iter().zip(counts) {
            let mut digests = vec![0u64; count];
            let n = digests.len();
            for (_, entry) in cluster_range(&self.resources, cluster) {
                let b = bucket_of(entry.key_hash, n);
                digests[b] = digests[b].wrapping_add(entry.hash);
            }
            out.push(pb::BucketDigests {
                cluster: cluster.clone(),
                digests,
            });
        }
        out
    }

    /// A breadcrumb ended: the mirror holds the server's state at `seq`.
    pub fn apply_cut(&mut self, seq: u64) {
        self.seq = self.seq.max(seq);
        self.at_cut = true;
    }

    /// Whether the mirror is at a cut (see [`Mirror::apply_cut`]).
    pub fn at_cut(&self) -> bool {
        self.at_cut
    }

    /// Per cluster held: keys and digest of the mirror, for a `Report`.
    pub fn cluster_digests(&self) -> Vec<pb::ClusterDigest> {
        self.local
            .iter()
            .filter(|(_, (keys, _))| *keys > 0)
            .map(|(cluster, (keys, digest))| pb::ClusterDigest {
                cluster: cluster.clone(),
                keys: *keys,
                digest: *digest,
            })
            .collect()
    }

    /// The digests matched the server's status: the mirror is a verified cut and can resume.
    pub fn mark_consistent(&mut self) {
        self.consistent = true;
    }

    /// `(epoch, seq)` to resume from, when the mirror holds a verified cut of that server's state
    /// (everything up to `seq`, perhaps some later changes too, which a resume also covers).
    pub fn resume_token(&self) -> Option<(u64, u64)> {
        self.consistent.then_some((self.epoch, self.seq))
    }

    /// Forget that the mirror can resume (its digests disagreed): the next stream is a full
    /// snapshot.
    pub fn forget_resume(&mut self) {
        self.consistent = false;
    }

    /// Applies one update. `ordered` is false inside a snapshot or coalesced catch-up, whose
    /// updates come in key order: then [`Mirror::seq`] only advances at the following status.
    pub fn apply_update(&mut self, u: &pb::Update, ordered: bool) {
        let key = MirrorKey::of(u);
        if let Some(unseen) = self.unseen.as_mut() {
            unseen.remove(&key);
        }
        if ordered {
            self.seq = self.seq.max(u.seq);
        }
        self.at_cut = false;
        if u.r#type == pb::UpdateType::Deleted as i32 {
            self.remove(&key);
        } else {
            let hash = key.hash(&u.value);
            let local = match self.local.get_mut(&key.cluster) {
                Some(local) => local,
                None => self.local.entry(key.cluster.clone()).or_default(),
            };
            let old = self.resources.insert(
                key,
                MirrorEntry {
                    key_hash: key_hash(&u.kind, &u.namespace, &u.name),
                    value: u.value.clone(),
                    revision: u.revision.clone(),
                    seq: u.seq,
                    hash,
                },
            );
            match old {
                Some(old) => local.1 = local.1.wrapping_sub(old.hash),
                None => local.0 += 1,
            }
            local.1 = local.1.wrapping_add(hash);
        }
    }

    fn remove(&mut self, key: &MirrorKey) -> Option<MirrorEntry> {
        let old = self.resources.remove(key)?;
        if let Some(local) = self.local.get_mut(&key.cluster) {
            local.0 = local.0.saturating_sub(1);
            local.1 = local.1.wrapping_sub(old.hash);
        }
        Some(old)
    }

    /// Applies a status. The first status after a snapshot ends it: returns the keys the snapshot
    /// did not mention, which are deleted.
    pub fn apply_status(&mut self, s: &pb::Status) -> Vec<MirrorKey> {
        let mut removed = Vec::new();
        if let Some(unseen) = self.unseen.take() {
            let mut unseen: Vec<MirrorKey> = unseen.into_iter().collect();
            unseen.sort();
            for key in unseen {
                if self.remove(&key).is_some() {
                    removed.push(key);
                }
            }
        }
        self.seq = self.seq.max(s.seq);
        self.at_cut = true;
        self.overall = Some(s.overall());
        self.clusters = s
            .clusters
            .iter()
            .map(|c| {
                (
                    c.cluster.clone(),
                    ClusterInfo {
                        state: c.state(),
                        error: c.error.clone(),
                        keys: c.keys,
                        digest: c.digest,
                        in_sync_seq: c.in_sync_seq,
                    },
                )
            })
            .collect();
        removed
    }

    /// The connection was lost: the data stays, but it is no longer known to be current.
    pub fn disconnected(&mut self) {
        self.overall = None;
        self.unseen = None;
    }

    /// True when the server says everything is in sync, and every required cluster is.
    pub fn in_sync(&self) -> bool {
        self.unseen.is_none()
            && self.overall == Some(pb::SyncState::InSync)
            && self.required_clusters.iter().all(|name| {
                self.clusters
                    .get(name)
                    .is_some_and(|c| c.state == pb::ClusterState::InSync)
            })
    }

    /// Compares this mirror's per-cluster digests with the server's last status. Only meaningful
    /// when the mirror is at that status's seq (as right after the snapshot).
    pub fn verify(&self) -> Vec<DigestMismatch> {
        self.clusters
            .iter()
            .filter_map(|(name, info)| {
                let (keys, digest) = self.local.get(name).copied().unwrap_or_default();
                (keys != info.keys || digest != info.digest).then(|| DigestMismatch {
                    cluster: name.clone(),
                    server_keys: info.keys,
                    local_keys: keys,
                })
            })
            .collect()
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The mesh-wide consistent cut: while every cluster this agent requires (every cluster, if
    /// it requires none) is in sync, the seq from which each cut holds all of them completely —
    /// the largest of their `in_sync_seq`. `None` while one of them is not in sync.
    pub fn consistent_cut_seq(&self) -> Option<u64> {
        let required: Vec<&ClusterInfo> = if self.required_clusters.is_empty() {
            self.clusters.values().collect()
        } else {
            self.required_clusters
                .iter()
                .map(|name| self.clusters.get(name))
                .collect::<Option<Vec<_>>>()?
        };
        if required.is_empty()
            || required
                .iter()
                .any(|c| c.state != pb::ClusterState::InSync || c.in_sync_seq == 0 && self.seq == 0)
        {
            return None;
        }
        Some(required.iter().map(|c| c.in_sync_seq).max().unwrap_or(0))
    }

    /// The sequence number of the last consistent cut of the server's state this mirror holds.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn overall(&self) -> Option<pb::SyncState> {
        self.overall
    }

    pub fn clusters(&self) -> &BTreeMap<String, ClusterInfo> {
        &self.clusters
    }

    pub fn resources(&self) -> &BTreeMap<MirrorKey, MirrorEntry> {
        &self.resources
    }

    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// The mirror as the `--dump` JSON document: resources sorted by (cluster, kind, namespace,
    /// name), each `value` the object as JSON.
    pub fn to_dump(&self) -> Dump<'_> {
        Dump {
            epoch: self.epoch,
            seq: self.seq,
            in_sync: self.in_sync(),
            clusters: self
                .clusters
                .iter()
                .map(|(name, c)| DumpCluster {
                    cluster: name,
                    state: cluster_state_name(c.state),
                    error: &c.error,
                    keys: c.keys,
                })
                .collect(),
            resources: self
                .resources
                .iter()
                .map(|(k, e)| DumpResource {
                    cluster: &k.cluster,
                    kind: &k.kind,
                    namespace: &k.namespace,
                    name: &k.name,
                    revision: &e.revision,
                    value: json_value(&e.value),
                })
                .collect(),
        }
    }
}

/// The entries of one cluster: keys are ordered by cluster first, so they are one range.
fn cluster_range<'a>(
    resources: &'a BTreeMap<MirrorKey, MirrorEntry>,
    cluster: &'a str,
) -> impl Iterator<Item = (&'a MirrorKey, &'a MirrorEntry)> + 'a {
    let first = MirrorKey {
        cluster: cluster.to_string(),
        kind: String::new(),
        namespace: String::new(),
        name: String::new(),
    };
    resources
        .range(first..)
        .take_while(move |(k, _)| k.cluster == cluster)
}

/// The value as embedded JSON; bytes that are not JSON become a JSON string, so a dump is always
/// valid JSON.
fn json_value(bytes: &[u8]) -> Box<serde_json::value::RawValue> {
    let text = String::from_utf8_lossy(bytes).into_owned();
    match serde_json::value::RawValue::from_string(text) {
        Ok(raw) => raw,
        Err(_) => {
            let quoted = serde_json::to_string(&String::from_utf8_lossy(bytes))
                .unwrap_or_else(|_| "null".to_string());
            serde_json::value::RawValue::from_string(quoted)
                .unwrap_or_else(|_| Box::<serde_json::value::RawValue>::default())
        }
    }
}

/// `--dump` document.
#[derive(Serialize)]
pub struct Dump<'a> {
    pub epoch: u64,
    pub seq: u64,
    pub in_sync: bool,
    pub clusters: Vec<DumpCluster<'a>>,
    pub resources: Vec<DumpResource<'a>>,
}

#[derive(Serialize)]
pub struct DumpCluster<'a> {
    pub cluster: &'a str,
    pub state: &'static str,
    pub error: &'a str,
    pub keys: u64,
}

#[derive(Serialize)]
pub struct DumpResource<'a> {
    pub cluster: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub revision: &'a str,
    pub value: Box<serde_json::value::RawValue>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upd(seq: u64, name: &str, t: pb::UpdateType, v: &str) -> pb::Update {
        pb::Update {
            seq,
            cluster: String::new(),
            kind: "Node".into(),
            namespace: String::new(),
            name: name.into(),
            r#type: t as i32,
            value: Bytes::from(v.to_string()),
            revision: seq.to_string(),
        }
    }

    fn status(seq: u64, keys: u64, digest: u64) -> pb::Status {
        pb::Status {
            seq,
            overall: pb::SyncState::InSync as i32,
            clusters: vec![pb::ClusterStatus {
                cluster: String::new(),
                state: pb::ClusterState::InSync as i32,
                error: String::new(),
                keys,
                digest,
                in_sync_seq: 1,
            }],
            consistent_seq: 1,
        }
    }

    #[test]
    fn resnapshot_deletes_unseen_keys_and_digest_verifies() {
        let mut m = Mirror::new(vec![]);
        m.begin_snapshot(1);
        m.apply_update(&upd(1, "a", pb::UpdateType::New, "{\"a\":1}"), false);
        m.apply_update(&upd(2, "b", pb::UpdateType::New, "{}"), false);
        let ha = entry_hash("", "Node", "", "a", b"{\"a\":1}");
        let hb = entry_hash("", "Node", "", "b", b"{}");
        assert!(
            m.apply_status(&status(2, 2, ha.wrapping_add(hb)))
                .is_empty()
        );
        assert!(m.in_sync());
        assert!(m.verify().is_empty());
        // Reconnect: only b comes back.
        m.disconnected();
        assert!(!m.in_sync());
        m.begin_snapshot(2);
        m.apply_update(&upd(1, "b", pb::UpdateType::New, "{}"), false);
        let removed = m.apply_status(&status(1, 1, hb));
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].name, "a");
        assert!(m.verify().is_empty());
        assert_eq!(m.len(), 1);
        let dump = serde_json::to_value(m.to_dump()).unwrap();
        assert_eq!(dump["resources"][0]["value"], serde_json::json!({}));
        assert_eq!(dump["clusters"][0]["state"], "InSync");
    }

    #[test]
    fn a_replace_marks_exactly_the_keys_of_its_buckets_whatever_its_shape() {
        let mut m = Mirror::new(vec![]);
        m.begin_snapshot(1);
        for i in 0..64 {
            m.apply_update(&upd(i, &format!("n{i}"), pb::UpdateType::New, "{}"), false);
        }
        let bucket = |name: &str, n: usize| bucket_of(key_hash("Node", "", name), n) as u32;
        let entry = |cluster: &str, buckets: u32, bucket: Vec<u32>| pb::ReplacedBuckets {
            cluster: cluster.into(),
            buckets,
            bucket,
        };
        m.begin_anti_entropy(2);
        m.replace_buckets(&pb::Replace {
            clusters: vec![
                // n1's bucket among 8, n2's among 16, named twice; n3's in a count no agent
                // sends (ignored); and a cluster the mirror does not hold.
                entry("", 8, vec![bucket("n1", 8)]),
                entry("", 16, vec![bucket("n2", 16)]),
                entry("", 16, vec![bucket("n2", 16)]),
                entry("", 7, vec![bucket("n3", 7)]),
                entry("other", 1, vec![0]),
            ],
        });
        let removed: HashSet<String> = m
            .apply_status(&status(1, 0, 0))
            .into_iter()
            .map(|k| k.name)
            .collect();
        let expected: HashSet<String> = (0..64)
            .map(|i| format!("n{i}"))
            .filter(|n| bucket(n, 8) == bucket("n1", 8) || bucket(n, 16) == bucket("n2", 16))
            .collect();
        assert!(removed.contains("n1") && removed.contains("n2"));
        assert_eq!(removed, expected);
    }

    #[test]
    fn required_clusters_gate_in_sync() {
        let mut m = Mirror::new(vec!["b".into()]);
        m.begin_snapshot(1);
        m.apply_status(&status(0, 0, 0));
        assert!(!m.in_sync());
    }

    #[test]
    fn the_consistent_cut_is_the_latest_in_sync_seq_of_the_required_clusters() {
        let cluster = |name: &str, state: pb::ClusterState, in_sync_seq: u64| pb::ClusterStatus {
            cluster: name.into(),
            state: state as i32,
            in_sync_seq,
            ..Default::default()
        };
        let status = |clusters| pb::Status {
            seq: 50,
            overall: pb::SyncState::InSync as i32,
            clusters,
            consistent_seq: 0,
        };
        let mut m = Mirror::new(vec!["a".into(), "b".into()]);
        m.apply_status(&status(vec![
            cluster("", pb::ClusterState::InSync, 3),
            cluster("a", pb::ClusterState::InSync, 20),
            cluster("b", pb::ClusterState::InSync, 40),
            cluster("c", pb::ClusterState::ConnectionFailed, 0),
        ]));
        assert_eq!(m.consistent_cut_seq(), Some(40), "c is not required");
        m.apply_status(&status(vec![
            cluster("a", pb::ClusterState::InSync, 20),
            cluster("b", pb::ClusterState::ResyncInProgress, 0),
        ]));
        assert_eq!(m.consistent_cut_seq(), None);
        let mut all = Mirror::new(Vec::new());
        all.apply_status(&status(vec![
            cluster("", pb::ClusterState::InSync, 3),
            cluster("c", pb::ClusterState::ConnectionFailed, 0),
        ]));
        assert_eq!(
            all.consistent_cut_seq(),
            None,
            "without requirements: every cluster"
        );
    }
}
