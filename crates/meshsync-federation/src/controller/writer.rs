//! The writers: bring each planned object to its desired state in the local datastore, re-checking
//! against what the datastore holds at that moment.
//!
//! [`Writer`] is the one place that knows there are two datastores: etcd, where every write is a
//! compare-and-swap ([`etcd`]), and a file datastore's `generated/` directory, where every write is
//! an atomic rename ([`files`]). Both leave an object the controller does not manage alone and say
//! so with [`Outcome::Unmanaged`].

mod etcd;
mod files;

use std::path::PathBuf;

use meshsync_etcd::EtcdError;
use tracing::{info, warn};

use super::LOG_TARGET;
use super::plan::Action;
use super::{ControllerConfig, GENERATED_DIR, LocalDatastore, ReconcileStats};

use self::etcd::EtcdWriter;
use self::files::FileWriter;

/// Writes the planned objects into the local datastore: etcd (compare-and-swap) or files.
pub(super) enum Writer {
    /// Boxed: it holds the configuration and a client.
    Etcd(Box<EtcdWriter>),
    Files(FileWriter),
}

/// What writing one object did.
pub(super) enum Outcome {
    Written,
    Deleted,
    Unchanged,
    /// An object the controller does not manage is in the way (left alone).
    Unmanaged,
}

/// Why the local datastore cannot be written to at all (retried after
/// [`ControllerConfig::retry_delay`]).
#[derive(Debug, thiserror::Error)]
pub(super) enum PrepareError {
    #[error("cannot connect to the local etcd: {0}")]
    Connect(#[source] EtcdError),
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot list {}: {source}", path.display())]
    ListDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why one object could not be brought to its desired state (the others still are).
#[derive(Debug, thiserror::Error)]
pub(super) enum ApplyError {
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error("cannot encode the object: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("still conflicting after {0} compare-and-swap attempts")]
    Conflict(u32),
    #[error("not connected to etcd")]
    NotConnected,
    #[error("no etcd key layout for kind {0}")]
    NoLayout(&'static str),
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("renaming into {}: {source}", path.display())]
    Rename {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("removing {}: {source}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0:?} cannot be used in a file name")]
    BadName(String),
}

impl Writer {
    pub(super) fn new(config: &ControllerConfig) -> Writer {
        match &config.datastore {
            LocalDatastore::Etcd {
                config: etcd,
                prefix,
                tls_files,
            } => Writer::Etcd(Box::new(EtcdWriter::new(
                etcd.clone(),
                tls_files.clone(),
                prefix.clone(),
                config.max_attempts,
            ))),
            LocalDatastore::Files { dir } => {
                Writer::Files(FileWriter::new(dir.join(GENERATED_DIR)))
            }
        }
    }

    /// Connects to etcd / creates `generated/` if not done yet.
    pub(super) async fn prepare(&mut self) -> Result<(), PrepareError> {
        match self {
            Writer::Etcd(writer) => writer.prepare().await,
            Writer::Files(writer) => writer.prepare().await,
        }
    }

    async fn apply_one(&self, action: &Action) -> Result<Outcome, ApplyError> {
        match self {
            Writer::Etcd(writer) => writer.apply_one(action).await,
            Writer::Files(writer) => writer.apply_one(action).await,
        }
    }
}

/// Applies `actions` to the local datastore.
pub(super) async fn apply(writer: &Writer, actions: &[Action]) -> ReconcileStats {
    let mut stats = ReconcileStats::default();
    for action in actions {
        match writer.apply_one(action).await {
            Ok(Outcome::Written) => {
                info!(target: LOG_TARGET, kind = action.kind, namespace = %action.namespace, name = %action.name,
                "wrote federated object");
                stats.written += 1;
            }
            Ok(Outcome::Deleted) => {
                info!(target: LOG_TARGET, kind = action.kind, namespace = %action.namespace, name = %action.name,
                "deleted federated object");
                stats.deleted += 1;
            }
            Ok(Outcome::Unchanged) => {}
            Ok(Outcome::Unmanaged) => stats.skipped_unmanaged += 1,
            Err(e) => {
                warn!(target: LOG_TARGET, kind = action.kind, namespace = %action.namespace, name = %action.name,
                error = %e, "failed to reconcile federated object");
                stats.failed += 1;
            }
        }
    }
    stats
}

/// Refuses names that are not names: empty, path-like, or hidden-file-like. Kubernetes would never
/// accept them (namespaces are DNS-1123 labels, names DNS-1123 subdomains); a file datastore might
/// hold them.
fn check_name(part: &str) -> Result<(), ApplyError> {
    if part.is_empty() || part.contains(['/', '\\', '\0']) || part.starts_with('.') {
        return Err(ApplyError::BadName(part.to_string()));
    }
    Ok(())
}
