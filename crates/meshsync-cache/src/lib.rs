//! The snapshot cache.
//!
//! One writer task applies source events in order and publishes an immutable [`Breadcrumb`] per
//! batch: the snapshot after the batch (a persistent map, O(1) to keep), the deltas, the status
//! and a link to the next breadcrumb. Readers (the server's streams) walk the chain without
//! locks and wait only at its end. Each front end's [`Encoding`] of a batch is made once per
//! subscription type, and of a new client's snapshot once per shared snapshot, then shared by
//! every stream that needs it; the cache knows no wire protocol.

mod anti_entropy;
mod breadcrumb;
mod cache;
mod change;
mod encoding;
mod history;
mod metrics;
mod status;
mod supervisor;
mod writer;

pub use anti_entropy::{AntiEntropyStats, BucketTable, anti_entropy_units, layout_of};
pub use breadcrumb::{
    Breadcrumb, Delta, Entry, Snapshot, breadcrumb_units, diff_units, live_breadcrumbs,
    snapshot_units,
};
pub use cache::{
    CacheConfig, Follower, REPAIR_SHARE_DIVISOR, Repair, SharedSnapshot, SnapshotCache,
    SnapshotEncodings,
};
pub use change::Change;
pub use encoding::{
    Batch, Encoding, EncodingSlot, MAX_ENCODINGS, ReplacedBuckets, Units, UpdateRef,
};
pub use history::HistoryConfig;
/// Subscription types are the model's (the kinds registry says which kinds each carries).
pub use meshsync_model::{SUBSCRIPTION_COUNT, Subscription, UnknownSubscription};
pub use metrics::CacheMetrics;
pub use status::{ClusterStatus, SyncState, SyncStatus, View, cluster_state_to_proto};
pub use supervisor::Supervisor;
