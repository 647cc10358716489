//! Sync status: the overall state agents wait for and every cluster's state, key count and digest.

use std::collections::BTreeMap;

use meshsync_datastore::{ClusterName, SourceStatus};
use meshsync_proto as pb;

/// The overall state, as Typha's `MsgSyncStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncState {
    WaitForDatastore,
    ResyncInProgress,
    InSync,
}

impl SyncState {
    pub fn to_proto(self) -> pb::SyncState {
        match self {
            SyncState::WaitForDatastore => pb::SyncState::WaitForDatastore,
            SyncState::ResyncInProgress => pb::SyncState::ResyncInProgress,
            SyncState::InSync => pb::SyncState::InSync,
        }
    }
}

/// One cluster's entry in the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStatus {
    pub status: SourceStatus,
    /// Number of keys the cache holds for the cluster.
    pub keys: u64,
    /// Order-independent digest of the cluster's entries (see `meshsync_proto::digest`).
    pub digest: u64,
}

impl ClusterStatus {
    pub fn new(status: SourceStatus) -> Self {
        ClusterStatus {
            status,
            keys: 0,
            digest: 0,
        }
    }
}

/// Maps a source status to its wire enum.
pub fn cluster_state_to_proto(status: &SourceStatus) -> pb::ClusterState {
    match status {
        SourceStatus::Connecting => pb::ClusterState::Connecting,
        SourceStatus::ConnectionFailed(_) => pb::ClusterState::ConnectionFailed,
        SourceStatus::ResyncInProgress => pb::ClusterState::ResyncInProgress,
        SourceStatus::InSync => pb::ClusterState::InSync,
        SourceStatus::ConfigIncomplete(_) => pb::ClusterState::ConfigIncomplete,
    }
}

/// The whole status at one point of the sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncStatus {
    /// The last sequence number applied.
    pub seq: u64,
    pub overall: SyncState,
    pub clusters: BTreeMap<ClusterName, ClusterStatus>,
}

impl SyncStatus {
    pub fn new() -> Self {
        SyncStatus {
            seq: 0,
            overall: SyncState::WaitForDatastore,
            clusters: BTreeMap::new(),
        }
    }

    /// Total number of keys over every cluster.
    pub fn total_keys(&self) -> u64 {
        self.clusters.values().map(|c| c.keys).sum()
    }

    pub fn to_proto(&self) -> pb::Status {
        pb::Status {
            seq: self.seq,
            overall: self.overall.to_proto() as i32,
            clusters: self
                .clusters
                .iter()
                .map(|(name, c)| pb::ClusterStatus {
                    cluster: name.to_string(),
                    state: cluster_state_to_proto(&c.status) as i32,
                    error: c.status.error().to_string(),
                    keys: c.keys,
                    digest: c.digest,
                })
                .collect(),
        }
    }

    /// Equal ignoring `seq`, key counts and digests: whether agents need a new status message.
    pub fn same_states(&self, other: &SyncStatus) -> bool {
        self.overall == other.overall
            && self.clusters.len() == other.clusters.len()
            && self
                .clusters
                .iter()
                .zip(other.clusters.iter())
                .all(|((a, x), (b, y))| a == b && x.status == y.status)
    }
}

impl Default for SyncStatus {
    fn default() -> Self {
        Self::new()
    }
}
