//! The writers: bring each planned object to its desired state in the local datastore, re-checking
//! against what the datastore holds at that moment.
//!
//! [`Writer`] is the one place that knows there are three datastores: etcd, where every write is a
//! compare-and-swap ([`etcd`]); a file datastore's `generated/` directory, where every write is an
//! atomic rename ([`files`]); and the Kubernetes API, where every write is a server-side apply as
//! the field manager `meshsync-federation`, never forced, and every delete has preconditions
//! ([`kube`]). All three leave an object the controller does not manage alone and say so with
//! [`Outcome::Unmanaged`].

mod etcd;
mod files;
mod kube;

use std::path::PathBuf;

use meshsync_etcd::EtcdError;
use tracing::{info, warn};

use super::LOG_TARGET;
use super::plan::Action;
use super::{ControllerConfig, GENERATED_DIR, KubeConnectError, LocalDatastore, ReconcileStats};

use self::etcd::EtcdWriter;
use self::files::FileWriter;
use self::kube::KubeWriter;

/// Writes the planned objects into the local datastore: etcd (compare-and-swap), files, or the
/// Kubernetes API (server-side apply).
pub(super) enum Writer {
    /// Boxed: it holds the configuration and a client.
    Etcd(Box<EtcdWriter>),
    Files(FileWriter),
    Kube(KubeWriter),
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
    #[error("cannot build a client for the local Kubernetes API: {0}")]
    KubeConnect(#[source] KubeConnectError),
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
    #[error("not connected to the local datastore")]
    NotConnected,
    /// The API's own answer (its message names the object, the identity and what is missing).
    #[error("the Kubernetes API answered {} {}: {}", .0.code, .0.reason, .0.message)]
    Api(#[source] Box<::kube::core::Status>),
    #[error("the Kubernetes API: {0}")]
    Kube(#[source] ::kube::Error),
    /// Server-side apply refused: other field managers own some of our fields with other values.
    /// Never forced; retried, and resolved when they give the fields up.
    #[error(
        "server-side apply conflict: field(s) {fields} owned by field manager(s) {managers}; not forced ({message})"
    )]
    FieldConflict {
        managers: String,
        fields: String,
        message: String,
    },
    #[error("changed by someone else between read and write, {0} times in a row")]
    StillModified(u32),
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
            LocalDatastore::Kubernetes { connect } => {
                Writer::Kube(KubeWriter::new(connect.clone(), config.max_attempts))
            }
        }
    }

    /// Connects to etcd / creates `generated/` / builds the Kubernetes client if not done yet.
    pub(super) async fn prepare(&mut self) -> Result<(), PrepareError> {
        match self {
            Writer::Etcd(writer) => writer.prepare().await,
            Writer::Files(writer) => writer.prepare().await,
            Writer::Kube(writer) => writer.prepare().await,
        }
    }

    async fn apply_one(&self, action: &Action) -> Result<Outcome, ApplyError> {
        match self {
            Writer::Etcd(writer) => writer.apply_one(action).await,
            Writer::Files(writer) => writer.apply_one(action).await,
            Writer::Kube(writer) => writer.apply_one(action).await,
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
