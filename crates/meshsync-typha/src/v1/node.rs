//! Node: host IP and tunnel address keys, the v3 Node itself, WireGuard; per syncer.

use super::{Converted, Dialect, Resource, Syncer};

pub(super) fn convert(
    syncer: Syncer,
    dialect: Dialect,
    resource: &Resource<'_>,
    deleted: bool,
) -> Option<Converted> {
    let _ = (syncer, dialect, resource, deleted);
    None
}
