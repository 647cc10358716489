//! v3 kinds passed through as `ResourceKey`s (BGP configuration and peers, Kubernetes Services and EndpointSlices, CalicoNodeStatus, …).

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
