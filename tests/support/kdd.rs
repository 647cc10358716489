//! The Kubernetes datastore under test: the real Kubernetes source (`meshsync_datastore::
//! kubernetes`) over a real kube-apiserver ([`super::apiserver`]), the real mesh stage, and agents on
//! real gRPC connections. Objects are written with `kubectl`, as a user would.

use std::path::Path;
use std::time::Duration;

use meshsync_agent::{Mirror, MirrorKey};
use meshsync_datastore::kubernetes::{KubeAccess, KubeSourceConfig};
use meshsync_mesh::MeshConfig;
use serde_json::Value;

use super::mesh::Events;

/// Waits in these tests are for a real API server and watch round trips.
pub const KDD_WAIT: Duration = Duration::from_secs(45);

/// A Kubernetes source of cluster `cluster` through the kubeconfig file `kubeconfig`, with the
/// quick retries tests want.
pub fn kdd_config(kubeconfig: &Path, cluster: &str) -> KubeSourceConfig {
    let mut config = KubeSourceConfig::new(
        KubeAccess::Kubeconfig(Some(kubeconfig.to_path_buf())),
        cluster.into(),
    );
    config.retry_min = Duration::from_millis(200);
    config.retry_max = Duration::from_secs(2);
    config.probe_interval = Duration::from_millis(500);
    config
}

/// The local Kubernetes source through `kubeconfig`.
pub fn kdd_source(kubeconfig: &Path) -> Events {
    Box::pin(meshsync_datastore::kubernetes::watch(kdd_config(
        kubeconfig, "",
    )))
}

/// The mesh over a local Kubernetes datastore, ready for `TestServer::start`.
pub fn kdd_mesh(kubeconfig: &Path) -> Events {
    Box::pin(meshsync_mesh::mesh(
        kdd_source(kubeconfig),
        MeshConfig::default(),
    ))
}

/// The value an agent holds for a key, parsed.
pub fn held(m: &Mirror, cluster: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
    let key = MirrorKey {
        cluster: cluster.into(),
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
    };
    m.resources()
        .get(&key)
        .map(|e| serde_json::from_slice(&e.value).expect("held values are JSON"))
}

/// The revision an agent holds for a key.
pub fn held_revision(
    m: &Mirror,
    cluster: &str,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Option<String> {
    let key = MirrorKey {
        cluster: cluster.into(),
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
    };
    m.resources().get(&key).map(|e| e.revision.clone())
}

/// Keys an agent holds of `cluster` and `kind` in `namespace`.
pub fn held_names(m: &Mirror, cluster: &str, kind: &str, namespace: &str) -> Vec<String> {
    m.resources()
        .keys()
        .filter(|k| k.cluster == cluster && k.kind == kind && k.namespace == namespace)
        .map(|k| k.name.clone())
        .collect()
}
