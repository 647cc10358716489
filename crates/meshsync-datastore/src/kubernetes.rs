//! The Kubernetes datastore (KDD): `--datastore kubernetes[:KUBECONFIG]` for the local cluster, and
//! RemoteClusterConfigurations of `datastoreType: kubernetes` for remote ones.
//!
//! Calico keeps its own kinds in CRDs and derives the rest from core objects; this driver reads
//! both through `kube` and emits the same [`SourceEvent`](crate::SourceEvent)s as the file and etcd
//! drivers, so nothing downstream knows which datastore a cluster uses.
//!
//! - [`access`]: how to reach an API server (in-cluster, kubeconfig file or text, endpoint+token);
//! - [`resources`]: which API resources exist (discovery) and which to watch for the wanted kinds;
//! - [`convert`] with [`pod`], [`profile`], [`node`]: each object → the resources it stands for
//!   (`../shared/reference/calico-model.md` §3), pure functions over JSON;
//! - [`source`]: the task — one watcher per resource, relists that send only real differences,
//!   status with the API's own error messages, Secrets watched by name.

pub mod access;
pub mod convert;
pub mod node;
pub mod pod;
pub mod profile;
pub mod resources;
pub mod source;

pub use access::{AccessError, EndpointAccess, KubeAccess};
pub use source::{InitialList, KubeSourceConfig, UNREADABLE_SECRET_FIELD, watch};
