//! Counters a source keeps about the input it refused, for logs' companions on `/metrics`.
//!
//! One [`SourceCounters`] is shared (an `Arc`) between a source's task and whoever wants to read
//! it: the server's metrics endpoint, tests. Counts only grow.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a source refused, counted since it started.
#[derive(Debug, Default)]
pub struct SourceCounters {
    invalid_values: AtomicU64,
    malformed_keys: AtomicU64,
    refused_files: AtomicU64,
    expired_relists: AtomicU64,
}

impl SourceCounters {
    /// Values that failed the drivers' validation (`meshsync_datastore::validate`) (each time one was listed or
    /// watched): the key is absent from a listing and deleted when watched.
    pub fn invalid_values(&self) -> u64 {
        self.invalid_values.load(Ordering::Relaxed)
    }

    /// etcd keys in a served layout (a known Calico plural, the Kubernetes layout, IPAM blocks)
    /// with a wrong number of path segments or an empty name or namespace, each time one was
    /// listed or watched.
    pub fn malformed_keys(&self) -> u64 {
        self.malformed_keys.load(Ordering::Relaxed)
    }

    /// Files of the file datastore refused whole (larger than the file-size limit), each time
    /// one was read.
    pub fn refused_files(&self) -> u64 {
        self.refused_files.load(Ordering::Relaxed)
    }

    /// Relists forced because the datastore's history no longer reached back to where a watch
    /// was (etcd compaction; Kubernetes `410 Gone`).
    pub fn expired_relists(&self) -> u64 {
        self.expired_relists.load(Ordering::Relaxed)
    }

    pub fn count_expired_relist(&self) {
        self.expired_relists.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_invalid_value(&self) {
        self.invalid_values.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_malformed_key(&self) {
        self.malformed_keys.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_refused_file(&self) {
        self.refused_files.fetch_add(1, Ordering::Relaxed);
    }
}
