//! Per-entry hashes and the order-independent cluster digest.
//!
//! The digest of a cluster is the wrapping sum of the xxh3-64 hashes of its entries, so it is
//! updated in O(1) per change (add the new hash, subtract the old) and does not depend on the order
//! changes arrived in. An agent computes the same sum over its mirror to verify it holds exactly
//! what the server holds. The hash covers the key and the value bytes, not the revision.

use xxhash_rust::xxh3::Xxh3;

/// The hash of one entry: key parts and value, each followed by a 0xff separator (which cannot
/// occur in UTF-8 text, so `("ab","c")` and `("a","bc")` hash differently).
pub fn entry_hash(cluster: &str, kind: &str, namespace: &str, name: &str, value: &[u8]) -> u64 {
    let mut h = Xxh3::new();
    for part in [
        cluster.as_bytes(),
        kind.as_bytes(),
        namespace.as_bytes(),
        name.as_bytes(),
    ] {
        h.update(part);
        h.update(&[0xff]);
    }
    h.update(value);
    h.digest()
}

/// Most buckets per cluster in an anti-entropy request.
pub const MAX_BUCKETS: usize = 1 << 16;
/// Most buckets of all clusters together: their digests (9 bytes each, packed) keep a request
/// well under the server's 1 MiB request limit.
pub const MAX_TOTAL_BUCKETS: usize = 1 << 16;

/// Bucket counts for clusters of `keys` keys each ([`bucket_count`]), the largest halved until
/// they add up to at most [`MAX_TOTAL_BUCKETS`].
pub fn bucket_counts(keys: &[u64]) -> Vec<usize> {
    let mut counts: Vec<usize> = keys.iter().map(|k| bucket_count(*k)).collect();
    while counts.iter().sum::<usize>() > MAX_TOTAL_BUCKETS {
        let Some(largest) = counts.iter_mut().max() else {
            break;
        };
        if *largest == 1 {
            break;
        }
        *largest /= 2;
    }
    counts
}

/// The bucket count an agent uses for a cluster of `keys` keys: about two keys per bucket, a
/// power of two, at most [`MAX_BUCKETS`]. Digests cost 8 bytes per bucket (≈ 4 per key, well
/// under 1 % of ~1 KiB values); a changed key costs its bucket's one or two keys.
pub fn bucket_count(keys: u64) -> usize {
    let per_two = usize::try_from(keys.div_ceil(2)).unwrap_or(usize::MAX);
    per_two.max(1).next_power_of_two().min(MAX_BUCKETS)
}

/// The bucket of a key among `buckets` (anti-entropy): the hash of its kind, namespace and name,
/// each followed by a 0xff separator; the cluster is not hashed (digests are per cluster).
pub fn key_bucket(kind: &str, namespace: &str, name: &str, buckets: usize) -> usize {
    bucket_of(key_hash(kind, namespace, name), buckets)
}

/// The hash [`key_bucket`] takes the bucket from (kept by a mirror per entry, so bucketing its
/// keys again for another bucket count costs no hashing).
pub fn key_hash(kind: &str, namespace: &str, name: &str) -> u64 {
    let mut h = Xxh3::new();
    for part in [kind.as_bytes(), namespace.as_bytes(), name.as_bytes()] {
        h.update(part);
        h.update(&[0xff]);
    }
    h.digest()
}

/// The bucket of a [`key_hash`] among `buckets`.
pub fn bucket_of(key_hash: u64, buckets: usize) -> usize {
    (key_hash % buckets.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_sized_to_the_keys_and_keys_spread_over_them() {
        assert_eq!(bucket_count(0), 1);
        assert_eq!(bucket_count(1), 1);
        assert_eq!(bucket_count(3), 2);
        assert_eq!(bucket_count(2000), 1024);
        assert_eq!(bucket_count(10_000_000), MAX_BUCKETS);
        let mut seen = vec![0u32; 64];
        for i in 0..6400 {
            seen[key_bucket("WorkloadEndpoint", "default", &format!("pod-{i}"), 64)] += 1;
        }
        assert!(seen.iter().all(|&n| (50..150).contains(&n)), "{seen:?}");
        assert_eq!(key_bucket("Node", "", "n1", 1), 0);
        let counts = bucket_counts(&[200_000, 200_000, 10]);
        assert!(
            counts.iter().sum::<usize>() <= MAX_TOTAL_BUCKETS,
            "{counts:?}"
        );
        assert_eq!(
            counts[2], 8,
            "small clusters keep their buckets: {counts:?}"
        );
        assert!(counts[..2].iter().all(|&c| c >= 1 << 14), "{counts:?}");
        assert_eq!(bucket_counts(&[2000, 30]), vec![1024, 16]);
    }

    #[test]
    fn separators_matter_and_sum_is_order_independent() {
        assert_ne!(
            entry_hash("", "ab", "", "c", b"{}"),
            entry_hash("", "a", "", "bc", b"{}")
        );
        let a = entry_hash("", "Node", "", "n1", b"1");
        let b = entry_hash("", "Node", "", "n2", b"2");
        assert_eq!(a.wrapping_add(b), b.wrapping_add(a));
        assert_eq!(a.wrapping_add(b).wrapping_sub(a), b);
    }
}
