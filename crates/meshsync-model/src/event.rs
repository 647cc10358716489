//! What a source streams: its connection state, relist markers, upserts, deletes, and the objects
//! it was asked for but may not read.
//!
//! Every driver (file, etcd, Kubernetes) produces exactly these events, so everything downstream
//! (the mesh, the cache) is written once against them, in the style of kube-runtime's watcher
//! events. Only a driver that reads objects by name on request (Kubernetes, for Secrets) reports
//! one as `Unreadable`: the others list what they may read and have nothing to report.

use bytes::Bytes;

use crate::key::{ClusterName, ResourceKey, Revision};

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
    /// A resource was created or changed. `value` is the object as JSON, as the datastore holds
    /// it, after the drivers' validation (a JSON object whose kind and name match the key); the
    /// file driver canonicalises it (sorted keys, server fields removed), others pass it through.
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
    /// The source is told to read this object but may not (the Kubernetes API's own message, e.g.
    /// RBAC's `forbidden`). Nothing is served for it; whoever asked for the object (the mesh, for
    /// a Secret an RCC names) reports `reason`. A later `Upsert` or `Delete` of the key ends it.
    Unreadable { key: ResourceKey, reason: String },
    /// The listing that began with `ResyncStart` is complete; keys of `cluster` it did not mention
    /// no longer exist.
    ResyncDone { cluster: ClusterName },
    /// The cluster left the mesh (its RemoteClusterConfiguration was deleted): every key of it is
    /// deleted, then its status is removed.
    ClusterRemoved { cluster: ClusterName },
    /// What the mesh does not merge from remote `cluster` because it would collide with other
    /// clusters' data (overlapping pools, a node name taken locally, an encapsulation the local
    /// pools do not use): `count` resources, `summary` the first reasons on one line, then notes
    /// that refuse nothing (a node name also used locally). Sent when it changes; an empty
    /// summary clears it. The cluster's status shows it; nothing else changes.
    Refused {
        cluster: ClusterName,
        count: usize,
        summary: String,
    },
}

impl SourceEvent {
    /// The cluster this event belongs to.
    pub fn cluster(&self) -> &str {
        match self {
            SourceEvent::Status { cluster, .. }
            | SourceEvent::ResyncStart { cluster }
            | SourceEvent::ResyncDone { cluster }
            | SourceEvent::ClusterRemoved { cluster }
            | SourceEvent::Refused { cluster, .. } => cluster,
            SourceEvent::Upsert { key, .. }
            | SourceEvent::Delete { key, .. }
            | SourceEvent::Unreadable { key, .. } => key.cluster(),
        }
    }
}
