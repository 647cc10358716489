//! IP pools and IPAM blocks (and block affinities for the `bgp` syncer).

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
