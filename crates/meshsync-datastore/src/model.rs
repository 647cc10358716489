//! The resource model shared by every stage: keys, revisions and source events.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

/// A cluster's name: `""` for the local cluster, the RemoteClusterConfiguration name otherwise.
pub type ClusterName = Arc<str>;

/// The source's own revision string (etcd `mod_revision`, Kubernetes `resourceVersion`, or a
/// content hash for the file datastore).
pub type Revision = Arc<str>;

/// The cluster name of the local datastore.
pub const LOCAL_CLUSTER: &str = "";

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct KeyParts {
    cluster: Box<str>,
    kind: Box<str>,
    namespace: Box<str>,
    name: Box<str>,
}

/// `(cluster, kind, namespace, name)`, ordered in that order. Cheap to clone (one reference count),
/// because the same key is held by the snapshot map, the deltas and the frames.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKey(Arc<KeyParts>);

impl ResourceKey {
    /// A key; `namespace` is empty for cluster-scoped kinds.
    pub fn new(cluster: &str, kind: &str, namespace: &str, name: &str) -> Self {
        ResourceKey(Arc::new(KeyParts {
            cluster: cluster.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }))
    }

    pub fn cluster(&self) -> &str {
        &self.0.cluster
    }

    pub fn kind(&self) -> &str {
        &self.0.kind
    }

    pub fn namespace(&self) -> &str {
        &self.0.namespace
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }
}

impl fmt::Display for ResourceKey {
    /// `cluster/Kind/namespace/name`, with `(local)` for the local cluster and no namespace segment
    /// for cluster-scoped kinds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cluster = if self.cluster().is_empty() {
            "(local)"
        } else {
            self.cluster()
        };
        if self.namespace().is_empty() {
            write!(f, "{cluster}/{}/{}", self.kind(), self.name())
        } else {
            write!(
                f,
                "{cluster}/{}/{}/{}",
                self.kind(),
                self.namespace(),
                self.name()
            )
        }
    }
}

impl fmt::Debug for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceKey({self})")
    }
}

/// A source's connection state, as reported to agents per cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceStatus {
    Connecting,
    ConnectionFailed(String),
    ResyncInProgress,
    InSync,
    ConfigIncomplete(String),
}

impl SourceStatus {
    /// The state name used in logs, `agent --dump` and `status --output json`.
    pub fn name(&self) -> &'static str {
        match self {
            SourceStatus::Connecting => "Connecting",
            SourceStatus::ConnectionFailed(_) => "ConnectionFailed",
            SourceStatus::ResyncInProgress => "ResyncInProgress",
            SourceStatus::InSync => "InSync",
            SourceStatus::ConfigIncomplete(_) => "ConfigIncomplete",
        }
    }

    /// The error text carried by failed or incomplete states, empty otherwise.
    pub fn error(&self) -> &str {
        match self {
            SourceStatus::ConnectionFailed(e) | SourceStatus::ConfigIncomplete(e) => e,
            _ => "",
        }
    }
}

/// One event of a source's stream. Keys carry their cluster; status and resync markers name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceEvent {
    /// The source's connection state changed.
    Status {
        cluster: ClusterName,
        status: SourceStatus,
    },
    /// A full listing of `cluster` begins: every live key will be upserted before `ResyncDone`.
    ResyncStart { cluster: ClusterName },
    /// A resource was created or changed. `value` is the object as canonical JSON.
    Upsert {
        key: ResourceKey,
        value: Bytes,
        revision: Revision,
    },
    /// A resource was deleted.
    Delete {
        key: ResourceKey,
        revision: Revision,
    },
    /// The listing that began with `ResyncStart` is complete; keys of `cluster` it did not mention
    /// no longer exist.
    ResyncDone { cluster: ClusterName },
    /// The cluster left the mesh (its RemoteClusterConfiguration was deleted): every key of it is
    /// deleted, then its status is removed.
    ClusterRemoved { cluster: ClusterName },
}

impl SourceEvent {
    /// The cluster this event belongs to.
    pub fn cluster(&self) -> &str {
        match self {
            SourceEvent::Status { cluster, .. }
            | SourceEvent::ResyncStart { cluster }
            | SourceEvent::ResyncDone { cluster }
            | SourceEvent::ClusterRemoved { cluster } => cluster,
            SourceEvent::Upsert { key, .. } | SourceEvent::Delete { key, .. } => key.cluster(),
        }
    }
}
