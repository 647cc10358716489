//! Sync status: the overall state agents wait for and every cluster's state, key count and digest.

use std::collections::BTreeMap;

use meshsync_model::{ClusterName, SourceStatus};
use meshsync_proto as pb;

use meshsync_model::{SUBSCRIPTION_COUNT, Subscription};

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

/// What one subscription type sees of a cluster: its key count and digest over the kinds it
/// carries, so an agent can verify its (filtered) mirror.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct View {
    pub keys: u64,
    /// Order-independent digest of the entries (see `meshsync_proto::digest`).
    pub digest: u64,
}

/// One cluster's entry in the status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStatus {
    pub status: SourceStatus,
    /// The last connection failure, kept while the source retries (`Connecting`,
    /// `ResyncInProgress`) so that an unreachable cluster never shows an empty error between two
    /// attempts; cleared once it is in sync (or its configuration is the problem).
    pub last_error: Option<std::sync::Arc<str>>,
    /// Per subscription type (indexed by [`Subscription::index`]).
    pub views: [View; SUBSCRIPTION_COUNT],
    /// The seq at which the cluster last became in sync (0 while it is not): its data is
    /// complete in every cut from there on.
    pub in_sync_seq: u64,
    /// What the mesh refused to merge from this cluster ([`SourceEvent::Refused`]): how many
    /// resources, and the first reasons.
    ///
    /// [`SourceEvent::Refused`]: meshsync_model::SourceEvent::Refused
    pub refused: Option<(usize, std::sync::Arc<str>)>,
}

impl ClusterStatus {
    pub fn new(status: SourceStatus) -> Self {
        let mut c = ClusterStatus {
            status: SourceStatus::Connecting,
            last_error: None,
            views: [View::default(); SUBSCRIPTION_COUNT],
            in_sync_seq: 0,
            refused: None,
        };
        c.set(status);
        c
    }

    /// Moves to a new state at `seq`: remembers when it became in sync.
    pub fn set_at(&mut self, status: SourceStatus, seq: u64) {
        let was_in_sync = self.status == SourceStatus::InSync;
        self.set(status);
        match (was_in_sync, self.status == SourceStatus::InSync) {
            (false, true) => self.in_sync_seq = seq,
            (_, false) => self.in_sync_seq = 0,
            (true, true) => {}
        }
    }

    /// Moves to a new state, remembering or forgetting the last failure.
    pub fn set(&mut self, status: SourceStatus) {
        match &status {
            SourceStatus::ConnectionFailed(reason) => {
                self.last_error = Some(reason.as_str().into())
            }
            SourceStatus::InSync | SourceStatus::ConfigIncomplete(_) => self.last_error = None,
            SourceStatus::Connecting | SourceStatus::ResyncInProgress => {}
        }
        self.status = status;
    }

    /// The error agents and `meshsync status` see: the state's own, else the failure the source
    /// is retrying after.
    pub fn error(&self) -> String {
        match (&self.status, &self.last_error) {
            (SourceStatus::ConnectionFailed(e) | SourceStatus::ConfigIncomplete(e), _) => e.clone(),
            (_, Some(last)) => format!("retrying after: {last}"),
            (_, None) => match &self.refused {
                Some((0, notes)) => format!("note: {notes}"),
                Some((count, summary)) => format!("not merged ({count}): {summary}"),
                None => String::new(),
            },
        }
    }

    /// The cluster as `sub` sees it.
    pub fn view(&self, sub: Subscription) -> View {
        self.views[sub.index()]
    }

    /// Every key of the cluster (the `all` view).
    pub fn keys(&self) -> u64 {
        self.view(Subscription::ALL).keys
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
        self.clusters.values().map(|c| c.keys()).sum()
    }

    /// The status as `sub` sees it (key counts and digests over its kinds).
    pub fn to_proto(&self, sub: Subscription) -> pb::Status {
        pb::Status {
            seq: self.seq,
            overall: self.overall.to_proto() as i32,
            clusters: self
                .clusters
                .iter()
                .map(|(name, c)| pb::ClusterStatus {
                    cluster: name.to_string(),
                    state: cluster_state_to_proto(&c.status) as i32,
                    error: c.error(),
                    keys: c.view(sub).keys,
                    digest: c.view(sub).digest,
                    in_sync_seq: c.in_sync_seq,
                })
                .collect(),
            consistent_seq: self.consistent_seq(),
        }
    }

    /// With every cluster in sync, the seq from which every cut holds all of them completely.
    pub fn consistent_seq(&self) -> u64 {
        let all_in_sync = self
            .clusters
            .values()
            .all(|c| c.status == SourceStatus::InSync);
        if all_in_sync && self.overall == SyncState::InSync {
            self.clusters
                .values()
                .map(|c| c.in_sync_seq)
                .max()
                .unwrap_or(self.seq)
        } else {
            0
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
                .all(|((a, x), (b, y))| a == b && x.status == y.status && x.refused == y.refused)
    }
}

impl Default for SyncStatus {
    fn default() -> Self {
        Self::new()
    }
}
