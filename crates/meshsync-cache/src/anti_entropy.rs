//! Anti-entropy: bring an agent's mirror — of any server, any epoch, even half-received — to this
//! server's state by sending only the buckets that differ.
//!
//! The agent hashes its mirror into buckets per cluster (`SubscribeRequest.mirror`); this side
//! computes the same sums over the snapshot (only the kinds the subscription carries, which is all
//! the agent can hold) and answers with a `Replace` naming the differing buckets, then every entry
//! of those buckets as unordered updates. The agent drops what it holds in a replaced bucket unless
//! it is sent again, so after the status that follows its mirror equals the snapshot whatever it
//! held before. A cluster the agent did not report counts as one empty bucket.

use std::collections::HashMap;

use meshsync_proto::digest::{MAX_BUCKETS, key_bucket};
use meshsync_proto::{self as pb};

use crate::breadcrumb::Snapshot;
use crate::change::Change;
use crate::encoding::{Batch, Encoding, ReplacedBuckets, UpdateRef};
use meshsync_model::{ResourceKey, Subscription};

/// What one anti-entropy answer contains.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AntiEntropyStats {
    /// Buckets compared, and how many differed.
    pub buckets: usize,
    pub replaced: usize,
    /// Entries sent (the content of the replaced buckets).
    pub sent: usize,
}

/// The server's side of anti-entropy for one snapshot, subscription and bucket layout: per
/// cluster the bucket sums and the keys in each bucket. Built once and shared by every agent that
/// comes with the same layout while the snapshot is current — in a storm, every agent of a
/// restarted or lost server at once — so each agent then costs only the comparison and its
/// differing buckets' entries.
pub struct BucketTable {
    seq: u64,
    sub: Subscription,
    layout: Vec<(String, usize)>,
    clusters: Vec<(String, TableCluster)>,
}

struct TableCluster {
    digests: Vec<u64>,
    members: Vec<Vec<ResourceKey>>,
}

/// `(cluster, buckets)` of a request, first entry per cluster, counts within 1..=MAX_BUCKETS,
/// sorted by cluster.
pub fn layout_of(mirror: &[pb::BucketDigests]) -> Vec<(String, usize)> {
    let mut layout: Vec<(String, usize)> = Vec::with_capacity(mirror.len());
    for c in mirror {
        if !layout.iter().any(|(name, _)| *name == c.cluster) {
            layout.push((c.cluster.clone(), c.digests.len().clamp(1, MAX_BUCKETS)));
        }
    }
    layout.sort();
    layout
}

impl BucketTable {
    /// Sums `snapshot` (at `seq`, as `sub` sees it) into `layout`'s buckets; a cluster the layout
    /// does not name gets one bucket.
    pub fn build(
        snapshot: &Snapshot,
        seq: u64,
        sub: Subscription,
        layout: Vec<(String, usize)>,
    ) -> Self {
        let mut clusters: HashMap<&str, TableCluster> = layout
            .iter()
            .map(|(name, n)| {
                (
                    name.as_str(),
                    TableCluster {
                        digests: vec![0; *n],
                        members: vec![Vec::new(); *n],
                    },
                )
            })
            .collect();
        for (k, e) in snapshot.iter().filter(|(k, _)| sub.includes(k.kind())) {
            let cluster = clusters.entry(k.cluster()).or_insert_with(|| TableCluster {
                digests: vec![0],
                members: vec![Vec::new()],
            });
            let b = key_bucket(k.kind(), k.namespace(), k.name(), cluster.digests.len());
            cluster.digests[b] = cluster.digests[b].wrapping_add(e.hash);
            cluster.members[b].push(k.clone());
        }
        let mut clusters: Vec<(String, TableCluster)> = clusters
            .into_iter()
            .map(|(name, c)| (name.to_string(), c))
            .collect();
        clusters.sort_by(|a, b| a.0.cmp(&b.0));
        BucketTable {
            seq,
            sub,
            layout,
            clusters,
        }
    }

    /// Whether this table answers a request of `layout` against the snapshot at `seq`.
    pub fn matches(&self, seq: u64, sub: Subscription, layout: &[(String, usize)]) -> bool {
        self.seq == seq && self.sub == sub && self.layout == layout
    }

    /// What repairing `mirror` would send, without encoding anything: the buckets compared, how
    /// many differ and how many entries they hold.
    pub fn repair_size(&self, mirror: &[pb::BucketDigests]) -> AntiEntropyStats {
        let mut stats = AntiEntropyStats::default();
        for (name, cluster) in &self.clusters {
            let agent = mirror
                .iter()
                .find(|c| c.cluster == *name)
                .map(|c| &c.digests[..]);
            stats.buckets += cluster.digests.len();
            for (b, ours) in cluster.digests.iter().enumerate() {
                if agent.and_then(|d| d.get(b)).copied().unwrap_or(0) != *ours {
                    stats.replaced += 1;
                    stats.sent += cluster.members[b].len();
                }
            }
        }
        stats
    }

    /// Entries of the snapshot (as the subscription sees it) in the table.
    pub fn entries(&self) -> usize {
        self.clusters
            .iter()
            .map(|(_, c)| c.members.iter().map(Vec::len).sum::<usize>())
            .sum()
    }

    /// A replacement of everything the agent holds: every cluster of the table (those it
    /// reported and those of the snapshot) as one bucket, replaced. Followed by the full snapshot,
    /// it leaves the mirror equal to the snapshot, exactly as a repair of the differing buckets
    /// would. `None` when `encoding` has no replacement.
    pub fn replace_all<E: Encoding>(&self, encoding: &E) -> Option<E::Unit> {
        let replaced: Vec<_> = self
            .clusters
            .iter()
            .map(|(name, _)| ReplacedBuckets {
                cluster: name.clone(),
                buckets: 1,
                bucket: vec![0],
            })
            .collect();
        encoding.replace(&replaced)
    }

    /// The replacement and the units with the content of the buckets where `mirror` differs.
    /// `snapshot` must be the one the table was built from. `None` when `encoding` has no
    /// replacement.
    pub fn repair<E: Encoding>(
        &self,
        encoding: &E,
        snapshot: &Snapshot,
        mirror: &[pb::BucketDigests],
    ) -> Option<(Vec<E::Unit>, AntiEntropyStats)> {
        let mut stats = AntiEntropyStats::default();
        let mut replaced_all = Vec::new();
        let mut entries = Vec::new();
        for (name, cluster) in &self.clusters {
            let agent = mirror
                .iter()
                .find(|c| c.cluster == *name)
                .map(|c| &c.digests[..]);
            let n = cluster.digests.len();
            stats.buckets += n;
            let mut replaced = Vec::new();
            for b in 0..n {
                let theirs = agent.and_then(|d| d.get(b)).copied().unwrap_or(0);
                if theirs == cluster.digests[b] {
                    continue;
                }
                replaced.push(b as u32);
                entries.extend(
                    cluster.members[b]
                        .iter()
                        .filter_map(|key| Some((key, snapshot.get(key)?))),
                );
            }
            if !replaced.is_empty() {
                stats.replaced += replaced.len();
                replaced_all.push(ReplacedBuckets {
                    cluster: name.clone(),
                    buckets: n as u32,
                    bucket: replaced,
                });
            }
        }
        stats.sent = entries.len();
        let mut units = vec![encoding.replace(&replaced_all)?];
        units.extend(encoding.updates(
            entries.into_iter().map(|(key, e)| UpdateRef {
                seq: e.seq,
                key,
                change: Change::New,
                value: &e.value,
                revision: &e.revision,
            }),
            Batch::Unordered,
        ));
        Some((units, stats))
    }
}

/// The replacement and the update units that repair a mirror described by `mirror`, against
/// `snapshot` as subscription `sub` sees it (a table built for this one request; the cache shares
/// tables between requests, see `SnapshotCache::anti_entropy`).
pub fn anti_entropy_units<E: Encoding>(
    encoding: &E,
    snapshot: &Snapshot,
    sub: Subscription,
    mirror: &[pb::BucketDigests],
) -> Option<(Vec<E::Unit>, AntiEntropyStats)> {
    BucketTable::build(snapshot, 0, sub, layout_of(mirror)).repair(encoding, snapshot, mirror)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use meshsync_model::ResourceKey;
    use meshsync_proto::digest::entry_hash;

    use super::*;
    use crate::breadcrumb::Entry;
    use crate::encoding::test_encoding::{Recorded, TestEncoding, Unit};

    const ENC: TestEncoding = TestEncoding { per_unit: 7 };

    fn insert(s: &mut Snapshot, cluster: &str, kind: &str, name: &str, v: &str) {
        let key = ResourceKey::new(cluster, kind, "default", name);
        let value = Bytes::from(v.to_string());
        let hash = entry_hash(cluster, kind, "default", name, &value);
        s.insert(
            key,
            Entry {
                value,
                revision: "1".into(),
                hash,
                seq: 1,
            },
        );
    }

    /// The digests an agent holding `s` would send, with `buckets` per cluster.
    fn digests_of(s: &Snapshot, clusters: &[&str], buckets: usize) -> Vec<pb::BucketDigests> {
        clusters
            .iter()
            .map(|c| {
                let mut digests = vec![0u64; buckets];
                for (k, e) in s.iter().filter(|(k, _)| k.cluster() == *c) {
                    let b = key_bucket(k.kind(), k.namespace(), k.name(), buckets);
                    digests[b] = digests[b].wrapping_add(e.hash);
                }
                pb::BucketDigests {
                    cluster: c.to_string(),
                    digests,
                }
            })
            .collect()
    }

    fn decode(units: &[Unit]) -> (Vec<ReplacedBuckets>, Vec<Recorded>) {
        let mut replace = None;
        let mut updates = Vec::new();
        for u in units {
            match u {
                Unit::Replace(r) => replace = Some(r.clone()),
                Unit::Updates { batch, updates: u } => {
                    assert_eq!(*batch, Batch::Unordered);
                    updates.extend(u.iter().cloned())
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        (replace.expect("a Replace first"), updates)
    }

    /// The size a repair would have is what the repair sends; replacing everything names every
    /// cluster, reported or not, as one bucket.
    #[test]
    fn repair_size_matches_the_repair_and_replace_all_covers_every_cluster() {
        let mut server = Snapshot::new();
        for i in 0..50 {
            insert(&mut server, "", "WorkloadEndpoint", &format!("w{i}"), "{}");
        }
        insert(&mut server, "c", "WorkloadEndpoint", "remote", "{}");
        let mut agent = server.clone();
        insert(&mut agent, "", "WorkloadEndpoint", "w3", "{\"old\":1}");
        insert(&mut agent, "gone", "WorkloadEndpoint", "x", "{}");
        let mirror = digests_of(&agent, &["", "gone"], 16);
        let table = BucketTable::build(&server, 0, Subscription::FELIX, layout_of(&mirror));
        assert_eq!(table.entries(), 51);
        let (_, stats) = table.repair(&ENC, &server, &mirror).unwrap();
        assert_eq!(table.repair_size(&mirror), stats);
        let Some(Unit::Replace(all)) = table.replace_all(&ENC) else {
            panic!("not a Replace")
        };
        let mut clusters: Vec<_> = all
            .iter()
            .map(|c| (c.cluster.as_str(), c.buckets, c.bucket.clone()))
            .collect();
        clusters.sort();
        assert_eq!(
            clusters,
            vec![("", 1, vec![0]), ("c", 1, vec![0]), ("gone", 1, vec![0])]
        );
    }

    #[test]
    fn only_differing_buckets_are_replaced_and_sent() {
        let mut server = Snapshot::new();
        for i in 0..100 {
            insert(&mut server, "", "WorkloadEndpoint", &format!("w{i}"), "{}");
        }
        insert(&mut server, "", "BGPFilter", "not-for-felix", "{}");
        insert(&mut server, "b", "WorkloadEndpoint", "remote", "{}");
        let mut agent = server.clone();
        agent.remove(&ResourceKey::new(
            "",
            "BGPFilter",
            "default",
            "not-for-felix",
        ));
        // Identical for what felix carries (BGPFilters are not): nothing to replace.
        let same = digests_of(&agent, &["", "b"], 64);
        let (units, stats) = anti_entropy_units(&ENC, &server, Subscription::FELIX, &same).unwrap();
        let (replace, updates) = decode(&units);
        assert!(replace.is_empty() && updates.is_empty(), "{replace:?}");
        assert_eq!(stats.replaced, 0);
        assert_eq!(stats.buckets, 64 + 64);

        // One value differs, one key only the agent has, and a cluster it never reported.
        insert(&mut agent, "", "WorkloadEndpoint", "w7", "{\"old\":1}");
        insert(&mut agent, "", "WorkloadEndpoint", "phantom", "{}");
        insert(&mut server, "c", "WorkloadEndpoint", "new-cluster", "{}");
        let (units, stats) = anti_entropy_units(
            &ENC,
            &server,
            Subscription::FELIX,
            &digests_of(&agent, &["", "b"], 64),
        )
        .unwrap();
        let (replace, updates) = decode(&units);
        let local = replace.iter().find(|c| c.cluster.is_empty()).unwrap();
        assert_eq!(local.buckets, 64);
        let w7 = key_bucket("WorkloadEndpoint", "default", "w7", 64) as u32;
        let phantom = key_bucket("WorkloadEndpoint", "default", "phantom", 64) as u32;
        let mut want = vec![w7, phantom];
        want.sort();
        want.dedup();
        assert_eq!(local.bucket, want);
        let c = replace.iter().find(|c| c.cluster == "c").unwrap();
        assert_eq!((c.buckets, c.bucket.clone()), (1, vec![0]));
        assert!(!replace.iter().any(|c| c.cluster == "b"));
        // Sent: every server entry of the replaced buckets (w7 among them, never the phantom
        // nor the BGPFilter), and the new cluster's one endpoint.
        assert!(updates.iter().any(|u| u.name == "w7"));
        assert!(updates.iter().any(|u| u.cluster == "c"));
        assert!(
            !updates
                .iter()
                .any(|u| u.name == "phantom" || u.kind == "BGPFilter")
        );
        assert!(updates.iter().all(|u| u.cluster == "c"
            || want.contains(&(key_bucket(&u.kind, &u.namespace, &u.name, 64) as u32))));
        assert_eq!(stats.sent, updates.len());
        assert!(stats.sent < 20, "{} of 102", stats.sent);
    }
}
