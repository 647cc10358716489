//! The snapshot cache.
//!
//! One writer task applies source events in order and publishes an immutable [`Breadcrumb`] per
//! batch: the snapshot after the batch (a persistent map, O(1) to keep), the deltas, the status
//! and a link to the next breadcrumb. Readers (the gRPC server's streams) walk the chain without
//! locks and wait only at its end. Frames are encoded once per batch per subscription type and a
//! new client's snapshot frames once per breadcrumb, then shared by every stream that needs them.

mod anti_entropy;
mod breadcrumb;
mod cache;
mod change;
mod frames;
mod history;
mod metrics;
mod status;
mod supervisor;
mod writer;

pub use anti_entropy::{AntiEntropyStats, BucketTable, anti_entropy_frames, layout_of};
pub use breadcrumb::{
    Breadcrumb, Delta, Entry, Snapshot, diff_frames, encode_for, live_breadcrumbs, snapshot_frames,
};
pub use cache::{
    CacheConfig, Follower, REPAIR_SHARE_DIVISOR, Repair, SharedSnapshot, SnapshotCache,
};
pub use change::Change;
pub use frames::{FrameBuilder, MAX_UPDATES_PER_FRAME, hello_frame, status_frame};
pub use history::HistoryConfig;
/// Subscription types are the model's (the kinds registry says which kinds each carries).
pub use meshsync_model::{SUBSCRIPTION_COUNT, Subscription, UnknownSubscription};
pub use metrics::CacheMetrics;
pub use status::{ClusterStatus, SyncState, SyncStatus, View, cluster_state_to_proto};
pub use supervisor::Supervisor;
