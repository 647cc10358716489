//! The Typha front end's [`Encoding`]: the cache's v3 resources as Calico's v1 key/value pairs in
//! gob `MsgKVs` messages — plain, or in snappy frames after a decoder restart — made once per
//! breadcrumb and shared snapshot for every client of the same syncer and dialect.
//!
//! Every connection's gob stream starts with the same preamble of type definitions
//! ([`super::wire::preamble`]), so a message's bytes do not depend on the connection: the memo's
//! units are sent as they are to every client. Snappy frames are independent chunks, so the
//! framed units are shared too; each connection only sends its own stream identifier first.
//!
//! Remote clusters appear in the felix syncer only, renamed and labelled by
//! `meshsync_typha::v1::remote` (the other syncers serve the local cluster alone, as Typha does).

use std::sync::LazyLock;

use bytes::Bytes;
use meshsync_cache::{
    Batch, Breadcrumb, Change, Encoding, EncodingSlot, SnapshotEncodings, Subscription, SyncState,
    UpdateRef,
};
use meshsync_typha::messages::{SyncStatus, UpdateType};
use meshsync_typha::v1::remote::RemoteNamespaces;
use meshsync_typha::v1::{self, Dialect, Resource, Syncer};
use tracing::warn;

use super::wire;

/// Most KVs in one `MsgKVs` (Typha: 100 streamed, 1000 in its binary snapshot).
pub(crate) const MAX_KVS_PER_MESSAGE: usize = 1000;
/// A message is closed once its values add up to this many bytes.
const TARGET_MESSAGE_BYTES: usize = 64 << 10;

/// How a connection's server-to-client stream is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Plain gob (a client without decoder restart).
    Plain,
    /// Gob in snappy frames, after the decoder restart.
    Snappy,
}

/// One (syncer, dialect, framing) wire form. See the module documentation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TyphaEncoding {
    pub(crate) syncer: Syncer,
    pub(crate) dialect: Dialect,
    pub(crate) framing: Framing,
    /// v3 values carry the datastore's revision as their resource version (Kubernetes).
    pub(crate) v3_resource_versions: bool,
    /// Whether remote pods keep their namespace label (a process-wide setting, like the
    /// datastore's resource versions, so it does not split the memo).
    pub(crate) remote_namespaces: RemoteNamespaces,
}

static SLOTS: LazyLock<[EncodingSlot; 4]> = LazyLock::new(|| {
    [
        EncodingSlot::allocate("typha v3.31"),
        EncodingSlot::allocate("typha v3.31 snappy"),
        EncodingSlot::allocate("typha modern keys"),
        EncodingSlot::allocate("typha modern keys snappy"),
    ]
});

/// The cache's subscription type of a syncer (the memo's column; one encoding value serves one
/// syncer, so the column and the syncer always agree).
pub(crate) fn subscription_of(syncer: Syncer) -> Subscription {
    match syncer {
        Syncer::Felix => Subscription::FELIX,
        Syncer::Bgp => Subscription::BGP,
        Syncer::TunnelIpAllocation => Subscription::TUNNEL_IP_ALLOCATION,
        Syncer::NodeStatus => Subscription::NODE_STATUS,
    }
}

/// Typha's `SyncStatus` of a state.
pub(crate) fn sync_status(state: SyncState) -> SyncStatus {
    match state {
        SyncState::WaitForDatastore => SyncStatus::WaitForDatastore,
        SyncState::ResyncInProgress => SyncStatus::ResyncInProgress,
        SyncState::InSync => SyncStatus::InSync,
    }
}

impl TyphaEncoding {
    fn plain(self) -> TyphaEncoding {
        TyphaEncoding {
            framing: Framing::Plain,
            ..self
        }
    }

    /// Frames `messages` for this encoding's stream.
    fn framed(&self, messages: Vec<Bytes>) -> Vec<Bytes> {
        match self.framing {
            Framing::Plain => messages,
            Framing::Snappy => messages.iter().map(|m| wire::frame(m)).collect(),
        }
    }

    /// The v1 updates of one cached change, converted as the syncer's update processors would
    /// (a remote cluster's, for the felix syncer, renamed first); a value that cannot be
    /// converted deletes its keys and is logged.
    fn convert(&self, update: &UpdateRef<'_>, out: &mut Vec<wire::Kv>) {
        let key = update.key;
        let remote = !key.cluster().is_empty();
        if remote && self.syncer != Syncer::Felix {
            return;
        }
        let resource = Resource {
            kind: key.kind(),
            namespace: key.namespace(),
            name: key.name(),
            value: update.value,
            // What Calico's syncer leaves in a v3 value's resourceVersion: the Kubernetes
            // datastore's; nothing on etcd.
            revision: if self.v3_resource_versions {
                update.revision
            } else {
                ""
            },
        };
        let deleted = update.change == Change::Deleted;
        let converted = if remote {
            v1::convert_remote(
                self.dialect,
                key.cluster(),
                self.remote_namespaces,
                &resource,
                deleted,
            )
        } else {
            v1::convert(self.syncer, self.dialect, &resource, deleted)
        };
        if let Some(error) = converted.error {
            warn!(syncer = self.syncer.name(), cluster = key.cluster(), error = %error,
                "resource not valid for Typha's clients; its keys are deleted");
        }
        let kind = match update.change {
            Change::New => UpdateType::New,
            Change::Updated => UpdateType::Updated,
            Change::Deleted => UpdateType::Deleted,
        };
        let wire_revision: &str = update.revision;
        out.extend(converted.updates.into_iter().map(|update| wire::Kv {
            update_type: if update.value.is_none() {
                UpdateType::Deleted
            } else {
                kind
            },
            revision: wire_revision.to_string(),
            update,
        }));
    }
}

/// The profile every Calico datastore backend adds to its list of profiles (it is in no
/// datastore): endpoints without profiles of their own fall back to it.
const DEFAULT_ALLOW_PROFILE: &[u8] = br#"{"apiVersion":"projectcalico.org/v3","kind":"Profile","metadata":{"name":"projectcalico-default-allow"},"spec":{"ingress":[{"action":"Allow"}],"egress":[{"action":"Allow"}]}}"#;

impl TyphaEncoding {
    /// The felix syncer's keys of [`DEFAULT_ALLOW_PROFILE`], part of every snapshot (it never
    /// changes, so no delta carries it).
    fn default_allow_profile(&self) -> Vec<Bytes> {
        let key =
            meshsync_model::ResourceKey::new("", "Profile", "", "projectcalico-default-allow");
        let value = Bytes::from_static(DEFAULT_ALLOW_PROFILE);
        let revision: meshsync_model::Revision = "".into();
        self.updates(
            std::iter::once(UpdateRef {
                seq: 0,
                key: &key,
                change: Change::New,
                value: &value,
                revision: &revision,
            }),
            Batch::Unordered,
        )
    }
}

impl Encoding for TyphaEncoding {
    type Unit = Bytes;

    fn slot(&self) -> EncodingSlot {
        let index = match (self.dialect, self.framing) {
            (Dialect::V331, Framing::Plain) => 0,
            (Dialect::V331, Framing::Snappy) => 1,
            (Dialect::Modern, Framing::Plain) => 2,
            (Dialect::Modern, Framing::Snappy) => 3,
        };
        SLOTS[index]
    }

    fn updates<'a>(&self, updates: impl Iterator<Item = UpdateRef<'a>>, _: Batch) -> Vec<Bytes> {
        let mut messages = Vec::new();
        let mut batch: Vec<wire::Kv> = Vec::new();
        let mut bytes = 0usize;
        let mut converted = Vec::new();
        for update in updates {
            self.convert(&update, &mut converted);
            for kv in converted.drain(..) {
                bytes += kv.update.key.len() + kv.update.value.as_ref().map_or(0, Bytes::len) + 32;
                batch.push(kv);
                if batch.len() >= MAX_KVS_PER_MESSAGE || bytes >= TARGET_MESSAGE_BYTES {
                    messages.push(wire::kvs(&batch));
                    batch.clear();
                    bytes = 0;
                }
            }
        }
        if !batch.is_empty() {
            messages.push(wire::kvs(&batch));
        }
        self.framed(messages)
    }

    fn status(&self, status: &meshsync_cache::SyncStatus, _: Subscription) -> Bytes {
        let message = wire::sync_status(sync_status(status.overall));
        match self.framing {
            Framing::Plain => message,
            Framing::Snappy => wire::frame(&message),
        }
    }

    fn breadcrumb(&self, crumb: &Breadcrumb, sub: Subscription) -> Vec<Bytes> {
        match self.framing {
            Framing::Plain => meshsync_cache::breadcrumb_units(self, crumb, sub),
            Framing::Snappy => crumb
                .encoded(&self.plain(), sub)
                .iter()
                .map(|m| wire::frame(m))
                .collect(),
        }
    }

    fn snapshot(&self, snapshot: &SnapshotEncodings) -> Vec<Bytes> {
        match self.framing {
            Framing::Plain => {
                let mut units =
                    meshsync_cache::snapshot_units(self, &snapshot.crumb.snapshot, snapshot.sub);
                if self.syncer == Syncer::Felix {
                    units.extend(self.default_allow_profile());
                }
                units
            }
            Framing::Snappy => snapshot
                .encoded_blocking(&self.plain())
                .iter()
                .map(|m| wire::frame(m))
                .collect(),
        }
    }
}
