//! Sources: one connection to one datastore, exposed as a `Stream` of [`SourceEvent`]s.
//!
//! A source lists everything (`ResyncStart`, `Upsert`…, `ResyncDone`), reports its status, then
//! streams live `Upsert`/`Delete` events. After any reconnect it relists; the cache deletes the
//! keys the relist did not mention, so consumers only ever see real differences. Drivers are chosen
//! by a datastore URL ([`DatastoreUrl`]); the data model they produce is `meshsync-model`'s.

pub mod etcd;
pub mod file;
pub mod kubernetes;
mod url;
pub mod validate;

/// Calico's etcd key layout (it lives in the model: the federation controller writes keys too).
pub use meshsync_model::etcd_layout as layout;
/// The model the drivers produce, re-exported for their users (as kube re-exports kube-core).
pub use meshsync_model::{
    ClusterName, LOCAL_CLUSTER, ResourceKey, Revision, SourceCounters, SourceEvent, SourceStatus,
};
pub use url::{DatastoreUrl, UrlError};
