#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
//! Proof by Calico's real node agent: Felix fed by Calico's calico-typha and Felix fed by
//! meshsync's Typha port, on the same etcd datastore, ask their dataplanes to program the same
//! thing — the IP set of a policy's source selector, the VXLAN route to another node's block and
//! that node's VTEP — before and after a pod is relabelled out of the selector, and neither Felix
//! restarts until a FelixConfiguration change, for which both do. Each Felix runs with the felix-dataplane-recorder test double as its dataplane
//! (see `support/felix.rs`).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use meshsync_etcd::EtcdClient;
use serde_json::{Value, json};

use support::etcd::Cluster;
use support::felix::{Felix, FelixConfig, RecordedState, json_differences};
use support::felix_mesh::{Encap, put_cluster_basics, put_node_block, put_pool, put_vxlan_node};
use support::typha::{CalicoTypha, TyphaDatastore, meshsync_typha};
use support::typha_scenario::{
    api_server_with_kdd_dataset, apply, crd, put_namespace_profile, put_v3, put_wep,
};

/// Felix's start (config from the datastore, Typha connection, first sync) and its first state.
const SYNC_TIMEOUT: Duration = Duration::from_secs(90);
/// A change reaching both Felixes' dataplanes.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The policy's source selector, as written in the policy.
const DB_SELECTOR: &str = r#"app == "db""#;
const DB_IP: &str = "10.65.0.66";
const NODE_B_BLOCK: &str = "10.65.0.64/26";
const NODE_B_IP: &str = "10.0.0.2";
const NODE_B_TUNNEL: &str = "10.65.0.65";
const NODE_B_VXLAN_MAC: &str = "66:0b:00:00:00:02";

/// Two nodes on one VXLAN pool; node-b holds a db and a web pod, node-a one pod that an
/// `all()` policy with an ingress rule from `app == "db"` selects (so the policy, and with it the
/// selector's IP set, is active on node-a).
async fn write_dataset(client: &EtcdClient) {
    put_cluster_basics(client, "8d2f5a1c9e3b4f6a8c7d2e1f0a9b8c7d", "k8s,typha").await;
    put_pool(client, "10.65.0.0/16", Encap::Vxlan).await;
    put_vxlan_node(client, "node-a", "10.0.0.1", "10.65.0.1", None).await;
    put_vxlan_node(
        client,
        "node-b",
        NODE_B_IP,
        NODE_B_TUNNEL,
        Some(NODE_B_VXLAN_MAC),
    )
    .await;
    put_node_block(
        client,
        "node-a",
        "10.65.0.0/26",
        &[(1, "", "tunnel"), (2, "ns1", "pod-local")],
    )
    .await;
    put_node_block(
        client,
        "node-b",
        NODE_B_BLOCK,
        &[
            (1, "", "tunnel"),
            (2, "ns1", "pod-db"),
            (3, "ns1", "pod-web"),
        ],
    )
    .await;
    put_namespace_profile(client, "ns1", "a").await;
    put_v3(
        client,
        "profiles",
        "Profile",
        None,
        "ksa.ns1.default",
        Value::Null,
        json!({"labelsToApply": {"pcsa.projectcalico.org/name": "default"}}),
    )
    .await;
    put_wep(client, "node-a", "ns1", "pod-local", "local", "10.65.0.2").await;
    put_wep(client, "node-b", "ns1", "pod-db", "db", DB_IP).await;
    put_wep(client, "node-b", "ns1", "pod-web", "web", "10.65.0.67").await;
    put_v3(
        client,
        "globalnetworkpolicies",
        "GlobalNetworkPolicy",
        None,
        "default.allow-from-db",
        Value::Null,
        json!({
            "tier": "default",
            "order": 100,
            "selector": "all()",
            "types": ["Ingress"],
            "ingress": [{"action": "Allow", "source": {"selector": DB_SELECTOR}}],
        }),
    )
    .await;
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The dataset as node-a's dataplane must hold it: (a) the db selector's IP set, (b) the VXLAN
/// route to node-b's block, (c) node-b's VTEP.
fn dataset_programmed(state: &RecordedState) -> bool {
    state.in_sync
        && state.members_for_selector(DB_SELECTOR) == Some(set(&[&format!("{DB_IP}/32")]))
        && state.route(NODE_B_BLOCK).is_some()
        && state.vtep("node-b").is_some()
}

/// Asserts (a), (b) and (c) precisely, naming which Felix.
fn assert_dataset(label: &str, state: &RecordedState) {
    assert_eq!(
        state.members_for_selector(DB_SELECTOR),
        Some(set(&[&format!("{DB_IP}/32")])),
        "{label}: the IP set of {DB_SELECTOR}\n{}",
        state.summary()
    );
    let route = state.route(NODE_B_BLOCK).unwrap();
    assert!(
        route.has_type("REMOTE_WORKLOAD")
            && route.ip_pool_type == "VXLAN"
            && route.dst_node_name == "node-b"
            && route.dst_node_ip == NODE_B_IP,
        "{label}: the route to node-b's block is {route:?}"
    );
    let vtep = state.vtep("node-b").unwrap();
    assert_eq!(
        (
            vtep.parent_device_ip.as_str(),
            vtep.ipv4_addr.as_str(),
            vtep.mac.as_str()
        ),
        (NODE_B_IP, NODE_B_TUNNEL, NODE_B_VXLAN_MAC),
        "{label}: node-b's VTEP"
    );
    assert_eq!(
        state.workload_endpoints.len(),
        1,
        "{label}: node-a's workload endpoints: {:?}",
        state.workload_endpoints.keys().collect::<Vec<_>>()
    );
}

/// Waits until both Felixes' recorded states are equal (as [`RecordedState::comparable`]);
/// fails with the differences.
async fn wait_equal(reference: &Felix, candidate: &Felix, what: &str) -> RecordedState {
    let deadline = std::time::Instant::now() + CHANGE_TIMEOUT;
    loop {
        let a = reference.read_state().unwrap().unwrap_or_default();
        let b = candidate.read_state().unwrap().unwrap_or_default();
        let (ca, cb) = (a.comparable(), b.comparable());
        if ca == cb {
            return a;
        }
        if std::time::Instant::now() >= deadline {
            panic!(
                "{what}: Felix via {} and Felix via {} program different dataplanes after {CHANGE_TIMEOUT:?}:\n{}\n--- {}:\n{}\n--- {}:\n{}",
                reference.label,
                candidate.label,
                json_differences(&ca, &cb, 20).join("\n"),
                reference.label,
                a.summary(),
                candidate.label,
                b.summary()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_felix_programs_the_same_dataplane_via_calico_typha_and_meshsync() {
    let cluster = Cluster::start("felix-dataplane-etcd").await;
    write_dataset(&cluster.client).await;
    let datastore = TyphaDatastore::etcd(&cluster.etcd);
    let typha = CalicoTypha::start("reference", &datastore).await;
    let (_serve, meshsync) = meshsync_typha(&format!("etcd://{}", cluster.etcd.host_port()));
    let felix_config = |typha_addr: String| FelixConfig {
        node_name: "node-a".into(),
        typha_addr,
        datastore: datastore.clone(),
        extra_env: Vec::new(),
    };
    let mut via_typha = Felix::start("calico-typha", felix_config(typha.addr_string()));
    let mut via_meshsync = Felix::start("meshsync", felix_config(meshsync.to_string()));

    for felix in [&mut via_typha, &mut via_meshsync] {
        let state = felix
            .wait_state(
                "in sync with the dataset programmed",
                dataset_programmed,
                SYNC_TIMEOUT,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_dataset(&felix.label, &state);
    }
    let state = wait_equal(&via_typha, &via_meshsync, "the dataset").await;
    eprintln!("both Felixes programmed:\n{}", state.summary());

    // The db pod leaves the selector: its IP leaves the set on both nodes' dataplanes.
    put_wep(&cluster.client, "node-b", "ns1", "pod-db", "web", DB_IP).await;
    for felix in [&mut via_typha, &mut via_meshsync] {
        felix
            .wait_state(
                "the db selector's IP set emptied",
                |s| s.members_for_selector(DB_SELECTOR) == Some(BTreeSet::new()),
                CHANGE_TIMEOUT,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    wait_equal(&via_typha, &via_meshsync, "after the db pod's relabel").await;

    for felix in [&mut via_typha, &mut via_meshsync] {
        let lifecycle = felix.restarts_or_exits();
        assert!(
            lifecycle.is_clean(),
            "Felix via {}: {lifecycle}",
            felix.label
        );
    }

    // A FelixConfiguration change is one Felix restarts for: both must see it and exit (which
    // also proves that the restart check above can fail).
    put_v3(
        &cluster.client,
        "felixconfigurations",
        "FelixConfiguration",
        None,
        "default",
        Value::Null,
        json!({"reportingInterval": "0s", "bpfEnabled": false, "logPrefix": "changed-prefix"}),
    )
    .await;
    for felix in [&mut via_typha, &mut via_meshsync] {
        let lifecycle = felix
            .wait_exit(CHANGE_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            lifecycle
                .lines
                .iter()
                .any(|l| l.contains("change DOES require Felix to restart")
                    && l.contains("LogPrefix"))
                && lifecycle
                    .lines
                    .iter()
                    .any(|l| l.contains("Exiting for config change")),
            "Felix via {}: {lifecycle}\nits log ends:\n{}",
            felix.label,
            felix.log_tail(30)
        );
    }
}

/// The same on the Kubernetes datastore (a real kube-apiserver): Typha's shared dataset
/// (`typha_scenario::write_kdd_dataset`, an IPIP pool, so no VXLAN routes) plus the
/// ClusterInformation Felix waits for; node-1's Felix via each server must program the same
/// dataplane, including the IP set of the NetworkPolicy's `app: client` peer in namespaces with
/// `team: a` (pod-b).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kdd_felix_programs_the_same_dataplane_via_calico_typha_and_meshsync() {
    let api = api_server_with_kdd_dataset("felix-dataplane-kdd").await;
    let writer = api.clone();
    tokio::task::spawn_blocking(move || {
        apply(
            &writer,
            vec![crd(
                "ClusterInformation",
                None,
                "default",
                Value::Null,
                json!({"clusterGUID": "8d2f5a1c9e3b4f6a8c7d2e1f0a9b8c7d", "clusterType": "k8s,typha,kdd", "calicoVersion": "v3.31.0", "datastoreReady": true}),
            )],
        );
    })
    .await
    .unwrap();
    let datastore = TyphaDatastore::kubernetes(&api);
    let typha = CalicoTypha::start("reference", &datastore).await;
    let (_serve, meshsync) = meshsync_typha(&format!("kubernetes:{}", api.kubeconfig().display()));
    let felix_config = |typha_addr: String| FelixConfig {
        node_name: "node-1".into(),
        typha_addr,
        datastore: datastore.clone(),
        extra_env: Vec::new(),
    };
    let mut via_typha = Felix::start("calico-typha", felix_config(typha.addr_string()));
    let mut via_meshsync = Felix::start("meshsync", felix_config(meshsync.to_string()));
    for felix in [&mut via_typha, &mut via_meshsync] {
        felix
            .wait_state(
                "in sync with pod-a and pod-b's IP set",
                |s| {
                    s.in_sync
                        && s.workload_endpoints.keys().any(|k| k.contains("pod-a"))
                        && s.ipsets
                            .values()
                            .any(|m| m.iter().any(|ip| ip == "10.65.0.70/32"))
                },
                SYNC_TIMEOUT,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let state = wait_equal(&via_typha, &via_meshsync, "the KDD dataset").await;
    eprintln!("both Felixes programmed (KDD):\n{}", state.summary());
    for felix in [&mut via_typha, &mut via_meshsync] {
        let lifecycle = felix.restarts_or_exits();
        assert!(
            lifecycle.is_clean(),
            "Felix via {}: {lifecycle}",
            felix.label
        );
    }
}
