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
    config.common.backoff.min = Duration::from_millis(200);
    config.common.backoff.max = Duration::from_secs(2);
    config.probe_interval = Duration::from_millis(500);
    config
}

/// The local Kubernetes source through `kubeconfig`.
pub fn kdd_source(kubeconfig: &Path) -> Events {
    Box::pin(meshsync_datastore::kubernetes::watch(kdd_config(
        kubeconfig, "",
    )))
}

/// The mesh over a local Kubernetes datastore, ready for `TestServer::start`: the mesh asks the
/// source for the Secrets its RCCs name, as `meshsync serve` does.
pub fn kdd_mesh(kubeconfig: &Path) -> Events {
    let config = kdd_config(kubeconfig, "");
    let local_secrets = config.secrets.clone();
    Box::pin(meshsync_mesh::mesh(
        meshsync_datastore::kubernetes::watch(config),
        MeshConfig {
            local_secrets,
            ..MeshConfig::default()
        },
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

/// What `deploy/kubernetes/rbac.yaml` holds (applied as it is in the tests).
pub fn rbac_yaml() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/rbac.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A namespace with the `default` ServiceAccount (no controller manager runs here to create it)
/// and `pods` pods on node `node`, each with an IP (`10.<octet>.0.<i>`) in its status, as the CNI
/// plugin would set it.
pub fn namespace_with_pods(
    api: &super::apiserver::ApiServer,
    ns: &str,
    node: &str,
    pods: u32,
    octet: u8,
) {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: default\n  namespace: {ns}\n"
    );
    for i in 0..pods {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-{i}\n  namespace: {ns}\n  labels:\n    app: a{i}\nspec:\n  nodeName: {node}\n  containers:\n    - name: c\n      image: registry.invalid/c:1\n"
        ));
    }
    api.apply(&yaml);
    for i in 0..pods {
        let ip = format!("10.{octet}.0.{}", i + 1);
        patch_pod_status(
            api,
            ns,
            &format!("pod-{i}"),
            &format!(r#"{{"status":{{"podIP":"{ip}","podIPs":[{{"ip":"{ip}"}}]}}}}"#),
        );
    }
}

/// Merges `status` (JSON) into pod `ns/pod`'s status, as the kubelet or CNI plugin would.
pub fn patch_pod_status(api: &super::apiserver::ApiServer, ns: &str, pod: &str, status: &str) {
    api.kubectl_ok(&[
        "patch",
        &format!("pod/{pod}"),
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        status,
    ]);
}

/// Replaces the verbs of rule `index` of RBAC `role` (`clusterrole/NAME`, or `role/NAME` with
/// `namespace`).
pub fn set_rule_verbs(
    api: &super::apiserver::ApiServer,
    role: &str,
    namespace: Option<&str>,
    index: usize,
    verbs: &[&str],
) {
    let patch = serde_json::json!([{"op": "replace", "path": format!("/rules/{index}/verbs"), "value": verbs}]);
    let patch = patch.to_string();
    let mut args = vec!["patch", role, "--type=json", "-p", &patch];
    if let Some(ns) = namespace {
        args.extend(["-n", ns]);
    }
    api.kubectl_ok(&args);
}

/// Writes `text` to a file in `dir` and returns its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// Pulls source events until a `Status` satisfies `pred`; returns its status.
pub async fn source_status_until(
    source: &mut Events,
    what: &str,
    pred: impl Fn(&meshsync_datastore::SourceStatus) -> bool,
) -> meshsync_datastore::SourceStatus {
    use futures::StreamExt;
    let mut seen = Vec::new();
    let found = tokio::time::timeout(KDD_WAIT, async {
        while let Some(event) = source.next().await {
            if let meshsync_datastore::SourceEvent::Status { status, .. } = event {
                if pred(&status) {
                    return Some(status);
                }
                seen.push(status);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(status)) => status,
        _ => panic!("{what}: not seen within {KDD_WAIT:?}; statuses seen: {seen:?}"),
    }
}

/// The WorkloadEndpoint name of pod `pod` on `node`.
pub fn wep_name_of(node: &str, pod: &str) -> String {
    meshsync_datastore::kubernetes::pod::workload_endpoint_name(node, "k8s", pod, "eth0")
}
