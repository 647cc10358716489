//! [`Change`]: what happened to a key, as agents see it. Its own module because both the
//! breadcrumbs (whose deltas carry one) and the frame encoder (which puts it on the wire) use it.

use meshsync_proto as pb;

/// The kind of a change, as agents see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    New,
    Updated,
    Deleted,
}

impl Change {
    /// The wire's `UpdateType`.
    pub(crate) fn to_proto(self) -> pb::UpdateType {
        match self {
            Change::New => pb::UpdateType::New,
            Change::Updated => pb::UpdateType::Updated,
            Change::Deleted => pb::UpdateType::Deleted,
        }
    }
}
