//! The federated services controller (as Calico Enterprise's kube-controllers runs it): the
//! rules, and the controller that applies them to a local datastore.
//!
//! A *federated* Service is a local Kubernetes Service carrying the annotation
//! [`SERVICE_SELECTOR_ANNOTATION`] and no `spec.selector`. Its endpoints are not chosen from pods
//! but from other Services — local or in remote clusters of the mesh — that the annotation's
//! selector matches. The crate has two layers:
//!
//! * The rules, pure functions without I/O: from a snapshot of Services and Endpoints, what the
//!   federated Endpoints (and EndpointSlices) *should* be.
//!   * [`ServiceInfo`] / [`EndpointsInfo`]: the parts of a Service / Endpoints object the rules
//!     use, parsed from Kubernetes JSON and tagged with their cluster ([`LOCAL_CLUSTER`] = `""`).
//!   * [`desired_endpoints`]: the selection rules and endpoints computation, ending in
//!     [`repack_subsets`], a port of Kubernetes' `RepackSubsets` with a documented total order.
//!   * [`DesiredEndpoints::to_endpoints_json`] / [`DesiredEndpoints::to_endpoint_slices_json`]:
//!     the objects to write. [`is_managed`] tells whether an existing object is ours to update or
//!     delete.
//! * [`controller`]: the I/O. It subscribes to a meshsync server (the `federation` subscription),
//!   feeds the mirror to the rules, diffs the result against what the local datastore holds and
//!   writes only what changed: into etcd with compare-and-swap, as files into a file
//!   datastore's `generated/` directory, or through the Kubernetes API with server-side apply. `meshsync federate` and `meshsync serve --federation`
//!   run it.

mod compute;
pub mod controller;
mod repack;
mod slices;
mod types;

#[cfg(test)]
mod tests;

pub use compute::{DesiredEndpoints, desired_endpoints, effective_selector};
pub use repack::repack_subsets;
pub use slices::{MANAGED_BY_LABEL, MANAGED_BY_VALUE, SERVICE_NAME_LABEL, is_managed};
pub use types::{
    EndpointAddress, EndpointPort, EndpointSubset, EndpointsInfo, ObjectReference, ServiceInfo,
    ServicePort,
};

/// The annotation that makes a Service federated; its value is the service selector.
pub const SERVICE_SELECTOR_ANNOTATION: &str = "federation.tigera.io/serviceSelector";
/// Implicit label carrying a candidate service's namespace.
pub const NAMESPACE_LABEL: &str = "projectcalico.org/namespace";
/// Implicit label carrying a remote candidate service's cluster name.
pub const REMOTE_CLUSTER_LABEL: &str = "federation.tigera.io/remoteClusterName";
/// The cluster name used for objects of the local cluster.
pub const LOCAL_CLUSTER: &str = "";
