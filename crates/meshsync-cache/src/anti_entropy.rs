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
use meshsync_proto::{self as pb, Frame, sync_event};

use crate::breadcrumb::Snapshot;
use crate::change::Change;
use crate::frames::FrameBuilder;
use meshsync_model::Subscription;

/// What one anti-entropy answer contains.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AntiEntropyStats {
    /// Buckets compared, and how many differed.
    pub buckets: usize,
    pub replaced: usize,
    /// Entries sent (the content of the replaced buckets).
    pub sent: usize,
}

/// One cluster's buckets: the agent's digests and the server's sums.
struct Side {
    agent: Vec<u64>,
    server: Vec<u64>,
}

impl Side {
    fn buckets(&self) -> usize {
        self.server.len()
    }
}

/// The `Replace` frame and the update frames that repair a mirror described by `mirror`, against
/// `snapshot` as subscription `sub` sees it. `mirror` has passed the request checks (bucket counts
/// between 1 and [`MAX_BUCKETS`]); a repeated cluster keeps its first entry.
pub fn anti_entropy_frames(
    snapshot: &Snapshot,
    sub: Subscription,
    mirror: &[pb::BucketDigests],
) -> (Vec<Frame>, AntiEntropyStats) {
    let mut sides: HashMap<&str, Side> = HashMap::new();
    for cluster in mirror {
        let n = cluster.digests.len().clamp(1, MAX_BUCKETS);
        sides
            .entry(cluster.cluster.as_str())
            .or_insert_with(|| Side {
                agent: cluster
                    .digests
                    .iter()
                    .copied()
                    .chain(std::iter::repeat(0))
                    .take(n)
                    .collect(),
                server: vec![0; n],
            });
    }
    let bucket_of = |sides: &HashMap<&str, Side>, k: &meshsync_model::ResourceKey| {
        let n = sides.get(k.cluster()).map(Side::buckets).unwrap_or(1);
        key_bucket(k.kind(), k.namespace(), k.name(), n)
    };
    // Pass 1: the server's sums, per cluster and bucket.
    for (k, e) in snapshot.iter().filter(|(k, _)| sub.includes(k.kind())) {
        let b = bucket_of(&sides, k);
        let side = sides.entry(k.cluster()).or_insert_with(|| Side {
            agent: vec![0],
            server: vec![0],
        });
        side.server[b] = side.server[b].wrapping_add(e.hash);
    }
    let mut stats = AntiEntropyStats::default();
    let mut replace = pb::Replace::default();
    let mut differing: HashMap<&str, Vec<bool>> = HashMap::new();
    let mut clusters: Vec<&&str> = sides.keys().collect();
    clusters.sort();
    for cluster in clusters {
        let side = &sides[*cluster];
        stats.buckets += side.buckets();
        let diff: Vec<bool> = side
            .agent
            .iter()
            .zip(&side.server)
            .map(|(a, s)| a != s)
            .collect();
        let replaced: Vec<u32> = diff
            .iter()
            .enumerate()
            .filter(|(_, d)| **d)
            .map(|(b, _)| b as u32)
            .collect();
        if !replaced.is_empty() {
            stats.replaced += replaced.len();
            replace.clusters.push(pb::ReplacedBuckets {
                cluster: cluster.to_string(),
                buckets: side.buckets() as u32,
                bucket: replaced,
            });
            differing.insert(cluster, diff);
        }
    }
    // Pass 2: the content of the differing buckets.
    let mut builder = FrameBuilder::unordered();
    for (k, e) in snapshot.iter().filter(|(k, _)| sub.includes(k.kind())) {
        let Some(diff) = differing.get(k.cluster()) else {
            continue;
        };
        if diff[bucket_of(&sides, k)] {
            builder.push(e.seq, k, Change::New, &e.value, &e.revision);
            stats.sent += 1;
        }
    }
    let mut frames = vec![Frame::encode(&pb::SyncEvent {
        event: Some(sync_event::Event::Replace(replace)),
    })];
    frames.extend(builder.finish());
    (frames, stats)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use meshsync_model::ResourceKey;
    use meshsync_proto::digest::entry_hash;
    use prost::Message;

    use super::*;
    use crate::breadcrumb::Entry;

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

    fn decode(frames: &[Frame]) -> (pb::Replace, Vec<pb::Update>) {
        let mut replace = None;
        let mut updates = Vec::new();
        for f in frames {
            match pb::SyncEvent::decode(f.message()).unwrap().event {
                Some(sync_event::Event::Replace(r)) => replace = Some(r),
                Some(sync_event::Event::Updates(b)) => {
                    assert!(b.unordered);
                    updates.extend(b.updates)
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        (replace.expect("a Replace first"), updates)
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
        let (frames, stats) = anti_entropy_frames(&server, Subscription::FELIX, &same);
        let (replace, updates) = decode(&frames);
        assert!(
            replace.clusters.is_empty() && updates.is_empty(),
            "{replace:?}"
        );
        assert_eq!(stats.replaced, 0);
        assert_eq!(stats.buckets, 64 + 64);

        // One value differs, one key only the agent has, and a cluster it never reported.
        insert(&mut agent, "", "WorkloadEndpoint", "w7", "{\"old\":1}");
        insert(&mut agent, "", "WorkloadEndpoint", "phantom", "{}");
        insert(&mut server, "c", "WorkloadEndpoint", "new-cluster", "{}");
        let (frames, stats) = anti_entropy_frames(
            &server,
            Subscription::FELIX,
            &digests_of(&agent, &["", "b"], 64),
        );
        let (replace, updates) = decode(&frames);
        let local = replace
            .clusters
            .iter()
            .find(|c| c.cluster.is_empty())
            .unwrap();
        assert_eq!(local.buckets, 64);
        let w7 = key_bucket("WorkloadEndpoint", "default", "w7", 64) as u32;
        let phantom = key_bucket("WorkloadEndpoint", "default", "phantom", 64) as u32;
        let mut want = vec![w7, phantom];
        want.sort();
        want.dedup();
        assert_eq!(local.bucket, want);
        let c = replace.clusters.iter().find(|c| c.cluster == "c").unwrap();
        assert_eq!((c.buckets, c.bucket.clone()), (1, vec![0]));
        assert!(!replace.clusters.iter().any(|c| c.cluster == "b"));
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
