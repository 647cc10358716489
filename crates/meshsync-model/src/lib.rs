//! meshsync's data model: the types every stage shares, and nothing else — no I/O, no drivers.
//!
//! This is the project's kube-core: the drivers (`meshsync-datastore`) produce [`SourceEvent`]s,
//! the mesh rewrites them, the cache applies them and the server and the federation controller
//! read what the cache holds, all in these terms. The [`kinds`] registry is the one table of
//! facts about kinds (subscriptions, remote sync, etcd and Kubernetes coordinates);
//! [`etcd_layout`] maps keys to Calico's etcd paths and back.

pub mod backoff;
mod counters;
mod error_chain;
pub mod etcd_layout;
mod event;
mod key;
pub mod kinds;
mod subscription;

pub use backoff::jittered_backoff;
pub use counters::SourceCounters;
pub use error_chain::error_chain;
pub use event::{SourceEvent, SourceStatus};
pub use key::{ClusterName, LOCAL_CLUSTER, ResourceKey, Revision, is_remote_cluster_name};
pub use kinds::{KindInfo, RemoteSync};
pub use subscription::{SUBSCRIPTION_COUNT, SUBSCRIPTION_NAMES, Subscription, UnknownSubscription};
