#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// The federated services controller (issue 5) over real etcd processes: the local cluster "A"
// (with an RCC for the remote "B"), the real etcd source and mesh, the cache and server in
// process, and the controller running in process through `controller::run`. Every wait polls
// etcd for a condition with a deadline; nothing sleeps and hopes.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use support::etcd::{Cluster, wait_for};
use support::federation::{add_remote, address_set, ports_json, service, start_controller};
use support::mesh::mesh_over;
use support::{TestServer, logs};

const SELECTOR: &str = "federation.tigera.io/serviceSelector";
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const SERVICE_NAME: &str = "kubernetes.io/service-name";

// ---------------------------------------------------------------------------------------------
// Objects

/// Endpoints with one subset: ready `(ip, pod)` addresses and ports `(name, protocol, port)`.
fn endpoints(ns: &str, name: &str, addrs: &[(&str, &str)], ports: &[(&str, &str, i64)]) -> Value {
    let addresses: Vec<Value> = addrs
        .iter()
        .map(|(ip, pod)| {
            json!({"ip": ip, "targetRef": {"kind": "Pod", "namespace": ns, "name": pod, "uid": format!("uid-{pod}")}})
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": ns},
        "subsets": [{"addresses": addresses, "ports": ports_json(ports)}]
    })
}

fn federated(selector: &str) -> Value {
    service(
        "default",
        "my-app-federated",
        json!({}),
        json!({ SELECTOR: selector }),
        &[("my-app-ui", "TCP", 8080)],
    )
}

/// The port of the federated service and of its backing services.
const MY_APP_UI: &[(&str, &str, i64)] = &[("my-app-ui", "TCP", 80)];

/// Writes the federated service `default/my-app-federated` with `selector`.
async fn put_federated(a: &Cluster, selector: &str) {
    a.put(
        "Service",
        "default",
        "my-app-federated",
        &federated(selector),
    )
    .await;
}

/// A Service in `default` that the federated service selects (`run == "my-app"`), on `ports`.
fn backing(name: &str, ports: &[(&str, &str, i64)]) -> Value {
    service("default", name, json!({"run": "my-app"}), json!({}), ports)
}

/// Writes the backing Service `default/name` on `ports` and its Endpoints: ready `(ip, pod)`
/// addresses on the same ports.
async fn put_backing(c: &Cluster, name: &str, addrs: &[(&str, &str)], ports: &[(&str, &str, i64)]) {
    c.put("Service", "default", name, &backing(name, ports))
        .await;
    let eps = endpoints("default", name, addrs, ports);
    c.put("Endpoints", "default", name, &eps).await;
}

/// Polls until the federated service's managed EndpointSlice exists; returns it.
async fn wait_federated_slice(a: &Cluster, what: &str) -> (Value, i64) {
    wait_for(what, || async {
        a.get(
            "EndpointSlice",
            "default",
            "my-app-federated-federated-ipv4",
        )
        .await
    })
    .await
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

async fn wait_endpoints(
    a: &Cluster,
    what: &str,
    expected: &BTreeSet<(String, String)>,
) -> (Value, i64) {
    a.wait_object("Endpoints", "default", "my-app-federated", what, |eps| {
        address_set(eps, &["addresses", "notReadyAddresses"]) == *expected
    })
    .await
}

/// Polls until the federated service's managed Endpoints and EndpointSlice are both gone.
async fn wait_managed_gone(a: &Cluster, what: &str) {
    wait_for(what, || async {
        let eps = a.get("Endpoints", "default", "my-app-federated").await;
        let slice = a
            .get(
                "EndpointSlice",
                "default",
                "my-app-federated-federated-ipv4",
            )
            .await;
        (eps.is_none() && slice.is_none()).then_some(())
    })
    .await
}

// ---------------------------------------------------------------------------------------------

/// The seed document's example across two clusters, then the runtime scenarios: backing
/// service removed and added back, port mismatch, a hand-edited managed Endpoints restored,
/// an invalid selector (managed objects deleted) fixed later (recreated), an unmanaged Endpoints
/// left alone, and idempotence (no rewrite when nothing changed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn federated_service_across_two_clusters() {
    logs::show_in_test_output();
    let a = Cluster::start("a").await;
    let b = Cluster::start("b").await;

    // Local: the federated service, a matching backing service, and a matching service whose
    // port does not match (its addresses must never appear).
    put_federated(&a, r#"run == "my-app""#).await;
    put_backing(&a, "my-app-a", &[("10.0.1.1", "pod-a1")], MY_APP_UI).await;
    put_backing(
        &a,
        "metrics-a",
        &[("10.0.3.1", "pod-m1")],
        &[("metrics", "TCP", 9090)],
    )
    .await;
    // Remote B: a matching backing service.
    put_backing(&b, "my-app", &[("10.0.2.1", "pod-b1")], MY_APP_UI).await;
    add_remote(&a, "cluster-b", &b).await;

    let server = TestServer::start(mesh_over(&a.etcd)).await;
    let controller = start_controller(&server, &a);

    // 1. Both clusters' addresses; remote targetRef rewritten; the port-mismatched service absent.
    let both = set(&[("10.0.1.1", "pod-a1"), ("10.0.2.1", "cluster-b/pod-b1")]);
    let (eps, _) = wait_endpoints(&a, "federated Endpoints with both clusters", &both).await;
    assert_eq!(
        eps["metadata"]["annotations"][SELECTOR],
        r#"run == "my-app""#
    );
    let subsets = eps["subsets"].as_array().expect("subsets");
    for subset in subsets {
        let ports: Vec<&str> = subset["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(ports, vec!["my-app-ui"], "only the federated port: {eps}");
    }
    let (slice, _) = wait_federated_slice(&a, "the federated EndpointSlice").await;
    assert_eq!(
        slice["metadata"]["labels"][MANAGED_BY],
        "meshsync-federation"
    );
    assert_eq!(
        slice["metadata"]["labels"][SERVICE_NAME],
        "my-app-federated"
    );
    let slice_ips: BTreeSet<&str> = slice["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .filter_map(|e| e["addresses"][0].as_str())
        .collect();
    assert_eq!(slice_ips, BTreeSet::from(["10.0.1.1", "10.0.2.1"]));

    // 2. Backing service removed at runtime (remote), then added back.
    b.delete("Service", "default", "my-app").await;
    let only_a = set(&[("10.0.1.1", "pod-a1")]);
    wait_endpoints(&a, "the remote addresses to disappear", &only_a).await;
    b.put(
        "Service",
        "default",
        "my-app",
        &backing("my-app", MY_APP_UI),
    )
    .await;
    wait_endpoints(&a, "the remote addresses to come back", &both).await;

    // 3. A hand-edited managed Endpoints is restored.
    // The managed Endpoints as stored, so the hand edit keeps the annotation.
    let (mut edited, _) = stored_endpoints(&a, "my-app-federated").await;
    edited["subsets"] = json!([{"addresses": [{"ip": "9.9.9.9"}], "ports": [{"name": "my-app-ui", "protocol": "TCP", "port": 1}]}]);
    a.put("Endpoints", "default", "my-app-federated", &edited)
        .await;
    let (restored, rev_before) =
        wait_endpoints(&a, "the hand-edited Endpoints to be restored", &both).await;
    assert_eq!(
        restored["metadata"]["annotations"][SELECTOR],
        r#"run == "my-app""#
    );

    // 4. An unmanaged Endpoints of a federated service's name is left alone; meanwhile the
    // converged my-app-federated objects are not rewritten (idempotence).
    let unmanaged = endpoints(
        "default",
        "other-federated",
        &[("1.2.3.4", "mine")],
        &[("my-app-ui", "TCP", 1)],
    );
    a.put("Endpoints", "default", "other-federated", &unmanaged)
        .await;
    let (_, unmanaged_rev) = stored_endpoints(&a, "other-federated").await;
    let mut other = federated(r#"run == "my-app""#);
    other["metadata"]["name"] = json!("other-federated");
    a.put("Service", "default", "other-federated", &other).await;
    // The slice is ours (its name is free): once it exists, the controller has processed the
    // change, and the Endpoints decision (taken in the same pass) was made.
    wait_for("the other-federated EndpointSlice", || async {
        a.get("EndpointSlice", "default", "other-federated-federated-ipv4")
            .await
    })
    .await;
    let (still, rev) = stored_endpoints(&a, "other-federated").await;
    assert_eq!(
        rev, unmanaged_rev,
        "the unmanaged Endpoints was rewritten: {still}"
    );
    assert_eq!(still, unmanaged);
    let (_, rev_after) = stored_endpoints(&a, "my-app-federated").await;
    assert_eq!(
        rev_after, rev_before,
        "an unchanged managed Endpoints was rewritten"
    );

    // 5. An invalid selector deletes the managed objects; fixing it recreates them.
    put_federated(&a, r#"run == "#).await;
    wait_managed_gone(
        &a,
        "the managed objects of the invalid service to be deleted",
    )
    .await;
    put_federated(&a, r#"run == "my-app""#).await;
    wait_endpoints(&a, "the fixed service's Endpoints to be recreated", &both).await;
    wait_federated_slice(&a, "the fixed service's EndpointSlice").await;

    // 6. The remote cluster removed (its RCC deleted): only the local contribution remains.
    a.delete("RemoteClusterConfiguration", "", "cluster-b")
        .await;
    wait_endpoints(&a, "the removed cluster's addresses to disappear", &only_a).await;

    // 7. The federated service deleted: its managed objects go; the unmanaged one stays.
    a.delete("Service", "default", "my-app-federated").await;
    wait_managed_gone(&a, "the managed objects of the deleted service to go").await;
    assert!(
        a.get("Endpoints", "default", "other-federated")
            .await
            .is_some()
    );

    controller.stop().await;
    server.stop().await;
}

/// The Endpoints `default/name` as stored, with its mod_revision; it must exist.
async fn stored_endpoints(a: &Cluster, name: &str) -> (Value, i64) {
    a.get("Endpoints", "default", name)
        .await
        .unwrap_or_else(|| panic!("Endpoints default/{name} is not stored"))
}
