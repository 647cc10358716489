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
//!   as Calico's Kubernetes datastore converts it, pure functions over JSON;
//! - [`source`]: the task — one watcher per resource, relists that send only real differences,
//!   status with the API's own error messages; its connected phase is `running`, with `watched`
//!   (per-watch key bookkeeping), `errors` (what a watcher's error means), `probe` (recovering
//!   failed resources);
//! - [`secrets`]: the Secrets watched by name, as the consumer asks ([`SecretWatches`]).

pub mod access;
pub mod convert;
mod errors;
pub mod node;
pub mod pod;
mod probe;
pub mod profile;
pub mod resources;
mod running;
pub mod secrets;
pub mod source;
mod watched;

pub use access::{AccessError, EndpointAccess, KubeAccess};
pub use secrets::{SecretName, SecretWatches};
pub use source::{InitialList, KubeSourceConfig, watch};
