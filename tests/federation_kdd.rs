#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// The federated services controller writing through the Kubernetes API (server-side apply), against
// a real kube-apiserver with RBAC on: the local cluster is the API server (the real Kubernetes
// source and mesh, the cache and server in process, as the ServiceAccount meshsync/meshsync with
// exactly the roles of deploy/kubernetes/rbac.yaml), the remote cluster "cluster-b" a real etcd
// holding the backing Service and Endpoints, named by an RCC in the API server. The controller runs
// in process (`controller::run` with `LocalDatastore::Kubernetes`), and `meshsync serve
// --datastore kubernetes:KUBECONFIG --federation` as the real binary. Everything is checked with
// `kubectl get -o json`; every wait polls for a condition with a deadline.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use meshsync_datastore::kubernetes::KubeAccess;
use meshsync_federation::controller::{ControllerConfig, FIELD_MANAGER, KubeConnect};
use serde_json::{Value, json};
use support::TestServer;
use support::apiserver::ApiServer;
use support::binary::{Serve, meshsync};
use support::etcd::Cluster;
use support::federation::{
    RunningController, address_set, ports_json, service, start_controller_with,
};
use support::kdd::{KDD_WAIT, kdd_mesh, rbac_yaml, write_file};
use support::log_text::text_field;
use support::logs;

const NS: &str = "fed";
const SLICES: &str = "endpointslices.discovery.k8s.io";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";

// ---------------------------------------------------------------------------------------------
// kubectl

/// `kubectl get KIND NAME -n NS -o json`, `None` when it does not exist.
fn get(api: &ApiServer, kind: &str, name: &str) -> Option<Value> {
    let out = api.kubectl_output(
        &[
            "get",
            kind,
            name,
            "-n",
            NS,
            "-o",
            "json",
            "--ignore-not-found",
            // kubectl leaves managedFields out of its output otherwise.
            "--show-managed-fields",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "kubectl get {kind} {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return None;
    }
    Some(serde_json::from_str(&text).unwrap_or_else(|e| panic!("kubectl JSON: {e}\n{text}")))
}

/// Polls `check` until it returns `Some`, failing after [`KDD_WAIT`] with `what`.
async fn poll<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + KDD_WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {KDD_WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until `kind/name` exists and `matches` holds; returns it.
async fn wait_object(
    api: &ApiServer,
    kind: &str,
    name: &str,
    what: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    poll(what, || get(api, kind, name).filter(|v| matches(v))).await
}

/// Polls until `kind/name` is gone.
async fn wait_gone(api: &ApiServer, kind: &str, name: &str, what: &str) {
    poll(what, || get(api, kind, name).is_none().then_some(())).await
}

/// `(manager, operation)` of every entry of `metadata.managedFields`.
fn managers(object: &Value) -> BTreeSet<(String, String)> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["manager"].as_str().unwrap_or_default().to_owned(),
                m["operation"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn applied_by_us(object: &Value) -> bool {
    managers(object).contains(&(FIELD_MANAGER.to_owned(), "Apply".to_owned()))
}

/// Whether `manager`'s entry in `metadata.managedFields` owns the top-level field `field`
/// (`f:subsets`).
fn owns(object: &Value, manager: &str, field: &str) -> bool {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["manager"] == manager)
        .any(|m| m["fieldsV1"].get(field).is_some())
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The IPs of an EndpointSlice's endpoints.
fn slice_ips(slice: &Value) -> BTreeSet<String> {
    slice["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["addresses"][0].as_str().map(str::to_owned))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Objects

/// A federated Service `fed/name` selecting `run == "my-app"`, on port `my-app-ui`.
fn federated_yaml(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {NS}\n  annotations:\n    federation.tigera.io/serviceSelector: 'run == \"my-app\"'\nspec:\n  ports:\n    - name: my-app-ui\n      protocol: TCP\n      port: 8080\n"
    )
}

/// An Endpoints `fed/name` with one address on port `my-app-ui`, and the selector annotation when
/// `annotated` (i.e. managed by the federation controller's rule).
fn endpoints_yaml(name: &str, ip: &str, annotated: bool) -> String {
    let annotations = if annotated {
        "  annotations:\n    federation.tigera.io/serviceSelector: 'run == \"my-app\"'\n"
    } else {
        ""
    };
    format!(
        "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: {name}\n  namespace: {NS}\n{annotations}subsets:\n  - addresses:\n      - ip: {ip}\n    ports:\n      - name: my-app-ui\n        protocol: TCP\n        port: 1\n"
    )
}

/// `kubectl apply --server-side --field-manager=MANAGER -f -` of `yaml`.
fn apply_as(api: &ApiServer, manager: &str, yaml: &str) {
    api.kubectl_ok_with(
        &[
            "apply",
            "--server-side",
            &format!("--field-manager={manager}"),
            "-f",
            "-",
        ],
        Some(yaml),
    );
}

/// The backing Service `fed/my-app` in the remote etcd and its Endpoints: ready `(ip, pod)`.
async fn put_backing(b: &Cluster, addrs: &[(&str, &str)]) {
    let ports = &[("my-app-ui", "TCP", 80)];
    b.put(
        "Service",
        NS,
        "my-app",
        &service(NS, "my-app", json!({"run": "my-app"}), json!({}), ports),
    )
    .await;
    let addresses: Vec<Value> = addrs
        .iter()
        .map(|(ip, pod)| {
            json!({"ip": ip, "targetRef": {"kind": "Pod", "namespace": NS, "name": pod, "uid": format!("uid-{pod}")}})
        })
        .collect();
    let eps = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "my-app", "namespace": NS},
        "subsets": [{"addresses": addresses, "ports": ports_json(ports)}]
    });
    b.put("Endpoints", NS, "my-app", &eps).await;
}

/// A local API server with deploy/kubernetes/rbac.yaml, the namespace, and a kubeconfig of the
/// meshsync ServiceAccount (written into `dir`).
fn local_cluster(name: &str, dir: &Path) -> (ApiServer, std::path::PathBuf) {
    let api = ApiServer::start(name);
    api.apply(&rbac_yaml());
    api.create_namespace(NS);
    let kubeconfig = write_file(
        dir,
        "meshsync.kubeconfig",
        &api.service_account_kubeconfig("meshsync", "meshsync"),
    );
    (api, kubeconfig)
}

fn start_kube_controller(server: &TestServer, kubeconfig: &Path) -> RunningController {
    let access = KubeAccess::Kubeconfig(Some(kubeconfig.to_path_buf()));
    let connect = KubeConnect::new(move || {
        let access = access.clone();
        async move { access.client().await.map_err(Into::into) }
    });
    let mut config = ControllerConfig::kubernetes(server.agent_config("federation"), connect);
    config.debounce = Duration::from_millis(20);
    config.retry_delay = Duration::from_millis(200);
    start_controller_with(config)
}

/// Replaces the verbs of rule `index` of ClusterRole meshsync-federation.
fn set_federation_verbs(api: &ApiServer, index: usize, verbs: &[&str]) {
    let patch = json!([{"op": "replace", "path": format!("/rules/{index}/verbs"), "value": verbs}]);
    api.kubectl_ok(&[
        "patch",
        "clusterrole",
        "meshsync-federation",
        "--type=json",
        "-p",
        &patch.to_string(),
    ]);
}

// ---------------------------------------------------------------------------------------------

/// Federated Endpoints and EndpointSlices written with server-side apply from a remote cluster's
/// backing service; a remote change applied; an unmanaged Endpoints left byte-equal; a field
/// owned by another manager reported as a conflict and never forced (then applied once that
/// manager gives it up); each verb of the meshsync-federation ClusterRole needed; the managed
/// objects deleted with their service; revoked credentials replaced from the kubeconfig file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn federated_endpoints_through_server_side_apply() {
    logs::install();
    let dir = tempfile::tempdir().expect("tempdir");
    let (api, kubeconfig) = local_cluster("fed-local", dir.path());
    let b = Cluster::start("fed-b").await;
    put_backing(&b, &[("10.0.2.1", "pod-b1")]).await;
    api.apply(&format!(
        "apiVersion: crd.projectcalico.org/v1\nkind: RemoteClusterConfiguration\nmetadata:\n  name: cluster-b\nspec:\n  datastoreType: etcdv3\n  etcdEndpoints: {}\n",
        b.etcd.url()
    ));
    api.apply(&federated_yaml("my-app-federated"));

    let server = TestServer::start(kdd_mesh(&kubeconfig)).await;
    let controller = start_kube_controller(&server, &kubeconfig);

    // 1. The remote's addresses (targetRef rewritten), applied by meshsync-federation.
    let one = set(&[("10.0.2.1", "cluster-b/pod-b1")]);
    let eps = wait_object(
        &api,
        "endpoints",
        "my-app-federated",
        "the federated Endpoints",
        |e| address_set(e, &["addresses"]) == one,
    )
    .await;
    assert!(applied_by_us(&eps), "managedFields: {:?}", managers(&eps));
    assert_eq!(
        eps["metadata"]["annotations"]["federation.tigera.io/serviceSelector"],
        r#"run == "my-app""#
    );
    let slice = wait_object(
        &api,
        SLICES,
        "my-app-federated-federated-ipv4",
        "the federated EndpointSlice",
        |s| slice_ips(s) == BTreeSet::from(["10.0.2.1".to_owned()]),
    )
    .await;
    assert!(
        applied_by_us(&slice),
        "managedFields: {:?}",
        managers(&slice)
    );
    assert_eq!(slice["metadata"]["labels"][MANAGED_BY], FIELD_MANAGER);
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        "my-app-federated"
    );

    // 2. A change in the remote backing endpoints is applied.
    put_backing(&b, &[("10.0.2.1", "pod-b1"), ("10.0.2.2", "pod-b2")]).await;
    let two = set(&[
        ("10.0.2.1", "cluster-b/pod-b1"),
        ("10.0.2.2", "cluster-b/pod-b2"),
    ]);
    let eps = wait_object(
        &api,
        "endpoints",
        "my-app-federated",
        "the remote's new address",
        |e| address_set(e, &["addresses"]) == two,
    )
    .await;
    wait_object(
        &api,
        SLICES,
        "my-app-federated-federated-ipv4",
        "the remote's new address in the slice",
        |s| slice_ips(s).len() == 2,
    )
    .await;
    let converged_version = eps["metadata"]["resourceVersion"].clone();

    // 3. An Endpoints of a federated service's name that someone else made (not managed) is left
    // alone, byte for byte.
    apply_as(
        &api,
        "someone",
        &endpoints_yaml("other-federated", "1.2.3.4", false),
    );
    let before = get(&api, "endpoints", "other-federated").expect("unmanaged Endpoints");
    api.apply(&federated_yaml("other-federated"));
    // Its slice is ours (the name is free): once it exists, the pass that decided about the
    // Endpoints ran; the plan logged the unmanaged object.
    wait_object(
        &api,
        SLICES,
        "other-federated-federated-ipv4",
        "the other-federated EndpointSlice",
        |s| slice_ips(s).len() == 2,
    )
    .await;
    logs::wait_for_line(&["does not manage", "other-federated"], KDD_WAIT).await;
    let after = get(&api, "endpoints", "other-federated").expect("unmanaged Endpoints");
    assert_eq!(after, before, "the unmanaged Endpoints was touched");
    assert!(!applied_by_us(&after));
    let unmanaged = after;

    // 4. A conflict: another manager takes `subsets` of a managed Endpoints (applying it with
    // --force-conflicts, as another controller might). Our next apply conflicts with it: reported
    // with that manager and the field, never forced.
    api.apply(&federated_yaml("conflict-fed"));
    wait_object(
        &api,
        "endpoints",
        "conflict-fed",
        "the conflict-fed Endpoints",
        |e| address_set(e, &["addresses"]) == two && owns(e, FIELD_MANAGER, "f:subsets"),
    )
    .await;
    api.kubectl_ok_with(
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        Some(&endpoints_yaml("conflict-fed", "9.9.9.9", false)),
    );
    let before = get(&api, "endpoints", "conflict-fed").expect("the taken Endpoints");
    assert!(owns(&before, "other", "f:subsets"), "{before}");
    let lines = logs::wait_for_line(
        &["conflict-fed", "server-side apply conflict", "\"other\""],
        KDD_WAIT,
    )
    .await;
    assert!(lines[0].contains(".subsets"), "{}", lines[0]);
    eprintln!("reported: {}", lines[0]);
    // Reported again at the next retries: the object is still as the other manager left it.
    let reported = lines.len();
    poll("the conflict reported again", || {
        (logs::lines_with(&["conflict-fed", "server-side apply conflict"]).len() > reported)
            .then_some(())
    })
    .await;
    let after = get(&api, "endpoints", "conflict-fed").expect("the taken Endpoints");
    assert_eq!(after, before, "forced");
    assert!(!owns(&after, FIELD_MANAGER, "f:subsets"), "{after}");
    // The other manager gives `subsets` up (applies without it): the retries then succeed.
    apply_as(
        &api,
        "other",
        "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: conflict-fed\n  namespace: fed\n",
    );
    let resolved = wait_object(
        &api,
        "endpoints",
        "conflict-fed",
        "the conflict resolved",
        |e| address_set(e, &["addresses"]) == two,
    )
    .await;
    assert!(owns(&resolved, FIELD_MANAGER, "f:subsets"), "{resolved}");

    // Meanwhile the converged Endpoints was not rewritten.
    let eps = get(&api, "endpoints", "my-app-federated").expect("federated Endpoints");
    assert_eq!(eps["metadata"]["resourceVersion"], converged_version);

    // 5. Each verb of the meshsync-federation role is needed: without it the API's "cannot VERB"
    // is what the controller reports for that object; with it restored, the object converges.
    const ALL: [&str; 4] = ["get", "create", "patch", "delete"];
    for (index, kind, plural, suffix) in [
        (0, "endpoints", "endpoints", ""),
        (1, SLICES, "endpointslices", "-federated-ipv4"),
    ] {
        for verb in ALL {
            let svc = if verb == "delete" {
                // Converged in the "get" step of this round; now deleted.
                format!("verb-{index}-get")
            } else {
                format!("verb-{index}-{verb}")
            };
            let object = format!("{svc}{suffix}");
            let kept: Vec<&str> = ALL.into_iter().filter(|v| *v != verb).collect();
            set_federation_verbs(&api, index, &kept);
            if verb == "delete" {
                api.kubectl_ok(&["delete", "service", &svc, "-n", NS]);
            } else {
                api.apply(&federated_yaml(&svc));
            }
            logs::wait_for_line(
                &[
                    "failed to reconcile",
                    &format!("name={object}"),
                    &format!("cannot {verb} resource \"{plural}\""),
                ],
                KDD_WAIT,
            )
            .await;
            set_federation_verbs(&api, index, &ALL);
            if verb == "delete" {
                wait_gone(&api, kind, &object, "deleted with the verb restored").await;
            } else {
                wait_object(
                    &api,
                    kind,
                    &object,
                    "written with the verb restored",
                    |_| true,
                )
                .await;
            }
        }
    }

    // 6. The federated service deleted: its managed objects go; the unmanaged one stays.
    api.kubectl_ok(&["delete", "service", "my-app-federated", "-n", NS]);
    wait_gone(
        &api,
        "endpoints",
        "my-app-federated",
        "the managed Endpoints",
    )
    .await;
    wait_gone(
        &api,
        SLICES,
        "my-app-federated-federated-ipv4",
        "the managed EndpointSlice",
    )
    .await;
    let still = get(&api, "endpoints", "other-federated").expect("unmanaged Endpoints");
    assert_eq!(still, unmanaged);

    // 7. The controller's credentials revoked (the ServiceAccount recreated: its old tokens are
    // refused) and a new token put into the kubeconfig file: the first request is a 401, after
    // which the client is built again from the file, and the object is written.
    let old = write_file(
        dir.path(),
        "old.kubeconfig",
        &std::fs::read_to_string(&kubeconfig).expect("kubeconfig"),
    );
    api.kubectl_ok(&["delete", "serviceaccount", "meshsync", "-n", "meshsync"]);
    api.apply(&rbac_yaml());
    // The API server caches a token's successful authentication for a few seconds.
    poll("the old token refused", || {
        let out = std::process::Command::new("kubectl")
            .env_remove("KUBECONFIG")
            .arg("--kubeconfig")
            .arg(&old)
            .args(["get", "--raw", "/api"])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("kubectl");
        String::from_utf8_lossy(&out.stderr)
            .contains("Unauthorized")
            .then_some(())
    })
    .await;
    write_file(
        dir.path(),
        "meshsync.kubeconfig",
        &api.service_account_kubeconfig("meshsync", "meshsync"),
    );
    api.apply(&federated_yaml("after-rotation"));
    logs::wait_for_line(
        &["failed to reconcile", "name=after-rotation", "Unauthorized"],
        KDD_WAIT,
    )
    .await;
    wait_object(
        &api,
        "endpoints",
        "after-rotation",
        "written with the new token",
        |e| address_set(e, &["addresses"]) == two,
    )
    .await;

    controller.stop().await;
    server.stop().await;
}

/// The binary: `meshsync serve --datastore kubernetes:KUBECONFIG --federation`, then `meshsync
/// federate --datastore kubernetes:KUBECONFIG`, write the federated objects of a local backing
/// service through the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_federation_into_kubernetes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (api, kubeconfig) = local_cluster("fed-serve", dir.path());
    api.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: my-app-local\n  namespace: {NS}\n  labels:\n    run: my-app\nspec:\n  ports:\n    - name: my-app-ui\n      protocol: TCP\n      port: 80\n"
    ));
    apply_as(
        &api,
        "endpoints-controller",
        &endpoints_yaml("my-app-local", "10.9.0.1", false),
    );
    api.apply(&federated_yaml("my-app-federated"));
    let datastore = format!("kubernetes:{}", kubeconfig.display());
    let mut serve = Serve::on_loopback(&datastore, &["--federation"]);
    serve.wait_serving();
    let eps = wait_object(
        &api,
        "endpoints",
        "my-app-federated",
        "the federated Endpoints from the binary",
        |e| address_set(e, &["addresses"]) == set(&[("10.9.0.1", "")]),
    )
    .await;
    assert!(applied_by_us(&eps), "managedFields: {:?}", managers(&eps));
    let slice = wait_object(
        &api,
        SLICES,
        "my-app-federated-federated-ipv4",
        "the federated EndpointSlice from the binary",
        |s| slice_ips(s) == BTreeSet::from(["10.9.0.1".to_owned()]),
    )
    .await;
    assert!(applied_by_us(&slice));
    drop(serve);

    // `meshsync federate --datastore kubernetes:KUBECONFIG` against a `serve` without the
    // controller: a change of the backing endpoints is written by that process.
    let mut serve = Serve::on_loopback(&datastore, &[]);
    let serving = serve.wait_serving();
    let grpc = text_field(&serving, "grpc").unwrap_or_else(|| panic!("no grpc= in {serving:?}"));
    let mut federate = meshsync();
    federate.args([
        "federate",
        "--datastore",
        &datastore,
        "--server",
        &format!("http://{grpc}"),
    ]);
    let mut federate = Serve::spawn(federate);
    apply_as(
        &api,
        "endpoints-controller",
        &endpoints_yaml("my-app-local", "10.9.0.2", false),
    );
    wait_object(
        &api,
        "endpoints",
        "my-app-federated",
        "the new address written by meshsync federate",
        |e| address_set(e, &["addresses"]) == set(&[("10.9.0.2", "")]),
    )
    .await;
    wait_object(
        &api,
        SLICES,
        "my-app-federated-federated-ipv4",
        "the new address in the slice, by meshsync federate",
        |s| slice_ips(s) == BTreeSet::from(["10.9.0.2".to_owned()]),
    )
    .await;
    let lines = federate.kill_and_collect();
    assert!(
        lines.iter().any(|l| l.contains("wrote federated object")),
        "{lines:#?}"
    );
    drop(serve);
}
