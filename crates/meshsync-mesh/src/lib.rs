//! The cluster mesh stage, between the sources and the cache.
//!
//! It owns the local source. RemoteClusterConfigurations and Secrets arriving from it are consumed
//! (never forwarded); the mesh tells the local source which Secrets its RCCs name
//! ([`MeshConfig::local_secrets`]: a Kubernetes source watches only those), and a Secret the
//! source may not read arrives as `Unreadable`, making its RCCs `ConfigIncomplete` with the
//! reason. Each valid RCC gets one remote source, named by the RCC, synced for the kinds
//! the mesh needs (WorkloadEndpoints, HostEndpoints, Profiles with their rules stripped; with
//! `overlayRoutingMode: Enabled` also Nodes, IPPools and IPAM blocks; for the `federation`
//! subscription also Services, Endpoints and EndpointSlices). Every remote's state
//! (`Connecting`, `ConnectionFailed`, `ResyncInProgress`, `InSync`, `ConfigIncomplete`) flows to the
//! cache as a status. The local in-sync is held until every RCC known at that moment is in sync or
//! has failed. A changed RCC or Secret restarts only that cluster's source (its relist becomes the
//! differences); a deleted RCC removes the cluster's keys, then its status.

mod collisions;
mod error;
mod lifecycle;
mod lost_cluster;
mod manager;
mod rcc;
mod remote;
mod secret;
mod state;

use futures::Stream;
use meshsync_model::SourceEvent;

pub use error::{ConfigError, JsonError, SecretError};
pub use manager::{MeshConfig, RCC_KIND, RemoteClusterManager, SECRET_KIND};
/// What identifies a datastore (defined with [`meshsync_datastore::DatastoreSpec::identities`]).
pub use meshsync_datastore::spec::{etcd_identity, file_identity, kube_identity};
pub use rcc::{
    CALICO_ETCD_PREFIX, InvalidClusterName, LOST_CLUSTER_GRACE_ANNOTATION,
    LOST_CLUSTER_POLICY_ANNOTATION, LostClusterPolicy, MAX_LOST_CLUSTER_GRACE, Rcc, RemoteConfig,
    Secrets, validate_cluster_name,
};
pub use remote::RemoteLimits;
pub use secret::SecretData;

/// The mesh over `local`: the merged stream of local and remote events for the cache.
pub fn mesh<L>(local: L, config: MeshConfig) -> impl Stream<Item = SourceEvent> + Send + Unpin
where
    L: Stream<Item = SourceEvent> + Unpin + Send + 'static,
{
    RemoteClusterManager::new(local, config).into_stream()
}
