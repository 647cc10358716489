//! Sources: one connection to one datastore, exposed as a `Stream` of [`SourceEvent`]s.
//!
//! A source lists everything (`ResyncStart`, `Upsert`…, `ResyncDone`), reports its status, then
//! streams live `Upsert`/`Delete` events. After any reconnect it relists; the cache deletes the
//! keys the relist did not mention, so consumers only ever see real differences. Drivers are chosen
//! by a datastore URL ([`DatastoreUrl`]); this crate holds the data model every stage shares.

mod counters;
pub mod etcd;
pub mod file;
pub mod layout;
mod model;
mod url;
pub mod validate;

pub use counters::SourceCounters;
pub use model::{ClusterName, LOCAL_CLUSTER, ResourceKey, Revision, SourceEvent, SourceStatus};
pub use url::{DatastoreUrl, UrlError};
