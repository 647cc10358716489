//! The Kubernetes datastore (KDD), part one: the conversions Calico applies to core Kubernetes
//! objects, as pure functions over JSON (no API access here). The driver that lists and watches
//! through `kube` comes next (issue 12); it will feed these conversions and emit the same
//! `SourceEvent`s as the other drivers.
//!
//! [`pod`] turns a Pod into the WorkloadEndpoint Calico derives from it
//! (`../shared/reference/calico-model.md` §3.3), names included.

pub mod pod;
