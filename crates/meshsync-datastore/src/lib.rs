//! Sources: one connection to one datastore, exposed as a `Stream` of [`SourceEvent`]s.
//!
//! A source lists everything (`ResyncStart`, `Upsert`…, `ResyncDone`), reports its status, then
//! streams live `Upsert`/`Delete` events. After any reconnect it relists; the cache deletes the
//! keys the relist did not mention, so consumers only ever see real differences. A datastore is
//! described once ([`DatastoreSpec`], which a CLI [`DatastoreUrl`] and a remote cluster's
//! configuration both become) and started with what every source shares ([`SourceCommon`]);
//! every driver talks through one [`SourceTx`] and retries on its own, so no source stream ends
//! on its own. The data model the drivers produce is `meshsync-model`'s.
//!
//! Adding a driver: a module with its configuration (`common: SourceCommon` plus its own fields)
//! and a task that owns a [`SourceTx`] and never ends before the stream is dropped; a variant of
//! [`DatastoreSpec`] with its `start` arm and identity; a URL form in `url.rs` if the CLI names it.

mod common;
pub mod etcd;
pub mod file;
pub mod kubernetes;
pub mod spec;
mod url;
pub mod validate;

pub use common::{Backoff, Closed, SourceCommon, SourceStream, SourceTx};
/// Calico's etcd key layout (it lives in the model: the federation controller writes keys too).
pub use meshsync_model::etcd_layout as layout;
/// The model the drivers produce, re-exported for their users (as kube re-exports kube-core).
pub use meshsync_model::{
    ClusterName, LOCAL_CLUSTER, ResourceKey, Revision, SourceCounters, SourceEvent, SourceStatus,
};
pub use spec::DatastoreSpec;
pub use url::{DatastoreUrl, UrlError};
