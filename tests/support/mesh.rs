//! The cluster mesh's test vocabulary: simulated clusters on real etcd processes (the local
//! cluster "A", remotes "B", "C"), the real etcd source and mesh stage in process, and agents on
//! real gRPC connections — shared by the `mesh_*` test files, which `use support::mesh::*`.
//!
//! Every expectation is built from what the test wrote into the datastores (local keys minus RCCs
//! and Secrets; remote keys of the synced kinds under the RCC's name, Profiles without rules).
//! "Nothing else was sent" is proven by a later real change (a sentinel written to the local
//! datastore) being the very next update. Waits are on conditions with deadlines, never on sleeps.

mod agents;
mod cluster;
mod expect;
mod objects;
mod pipeline;

// The whole vocabulary at `support::mesh::*`; binaries that use none of it would warn.
#[allow(unused_imports)]
pub use {
    super::etcd::LONG,
    super::{TestServer, WAIT},
    agents::*,
    cluster::*,
    expect::*,
    objects::*,
    pipeline::*,
};

pub const RCC: &str = "RemoteClusterConfiguration";
pub const SECRET: &str = "Secret";
/// Synced from every remote cluster (with or without overlay routing).
pub const REMOTE_KINDS: [&str; 6] = [
    "WorkloadEndpoint",
    "HostEndpoint",
    "Profile",
    // For the `federation` subscription (federated services).
    "Service",
    "Endpoints",
    "EndpointSlice",
];
/// Synced in addition with `overlayRoutingMode: Enabled`.
pub const OVERLAY_KINDS: [&str; 3] = ["Node", "IPPool", "IPAMBlock"];
/// Kinds of the fixtures' data that the `felix` subscription does not carry (BGP only).
pub const NOT_FELIX: [&str; 4] = ["BGPFilter", "Service", "Endpoints", "EndpointSlice"];
