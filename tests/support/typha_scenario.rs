//! The differential scenario: a realistic Calico dataset and a scripted series of changes, on an
//! etcd datastore (Calico's v3 objects written as Calico stores them in etcd) or on a real
//! kube-apiserver (Kubernetes objects and Calico's `crd.projectcalico.org/v1` resources through
//! kubectl), each step followed by [`Differential::check`]: the change has reached the reference
//! server and both servers' maps of every syncer are equal.
//!
//! The servers are a parameter ([`Differential`] holds any two Typha addresses): the scenario runs
//! against (calico-typha, calico-typha) to prove the harness, and against (calico-typha, meshsync's
//! Typha port) to prove the port. Write the dataset ([`write_etcd_dataset`], [`write_kdd_dataset`])
//! before or after starting the servers, then run [`etcd_scenario`] or [`kdd_scenario`].
//!
//! Each step's witnesses name keys by a part of their v1 path (`pod-a`, `kns.ns1`,
//! `config/LogSeverityScreen`) and a part of the value's JSON, so they hold whatever the exact
//! escaping of a path is; the comparison itself is of whole maps.
#![allow(dead_code)]

use std::time::Duration;

use meshsync_etcd::EtcdClient;
use serde_json::{Value, json};

use super::apiserver::ApiServer;
use super::typha::{Differential, StepMaps, Syncer, Witness};

/// Longest wait of one step (the change reaching the reference, then both maps equal).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

const V3: &str = "/calico/resources/v3/projectcalico.org";
const IPAM: &str = "/calico/ipam/v2";

use Syncer::{Bgp, Felix, NodeStatus, TunnelIpAllocation};

/// Runs one step's check, failing the test with the report; logs the map sizes.
async fn step(diff: &mut Differential, name: &str, witnesses: &[Witness]) -> StepMaps {
    let maps = diff
        .check(name, witnesses, STEP_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "typha differential: {} = {} after {name:?} ({})",
        diff.reference.label,
        diff.candidate.label,
        maps.summary()
    );
    maps
}

// ---------------------------------------------------------------------------------------------
// etcd
// ---------------------------------------------------------------------------------------------

/// A stable made-up UID for `name`.
fn uid(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("00000000-0000-4000-8000-{:012x}", h & 0xffff_ffff_ffff)
}

/// A `projectcalico.org/v3` object as Calico's etcd backend stores it (no resourceVersion).
fn v3(kind: &str, namespace: Option<&str>, name: &str, labels: Value, spec: Value) -> Value {
    let mut metadata = json!({
        "name": name,
        "uid": uid(&format!("{kind}/{}/{name}", namespace.unwrap_or(""))),
        "creationTimestamp": "2026-01-01T00:00:00Z",
    });
    if let Some(ns) = namespace {
        metadata["namespace"] = ns.into();
    }
    if !labels.is_null() {
        metadata["labels"] = labels;
    }
    json!({"kind": kind, "apiVersion": "projectcalico.org/v3", "metadata": metadata, "spec": spec})
}

/// The etcd key of a v3 object (`plural`, optional namespace, name).
fn v3_key(plural: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{V3}/{plural}/{ns}/{name}"),
        None => format!("{V3}/{plural}/{name}"),
    }
}

pub async fn put(client: &EtcdClient, key: String, value: &Value) {
    client
        .put(key.clone(), serde_json::to_vec(value).expect("JSON"))
        .await
        .unwrap_or_else(|e| panic!("etcd put {key}: {e}"));
}

pub async fn put_v3(
    client: &EtcdClient,
    plural: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    labels: Value,
    spec: Value,
) {
    let value = v3(kind, namespace, name, labels, spec);
    put(client, v3_key(plural, namespace, name), &value).await;
}

async fn delete(client: &EtcdClient, key: String) {
    client
        .delete(key.clone())
        .await
        .unwrap_or_else(|e| panic!("etcd delete {key}: {e}"));
}

/// A WorkloadEndpoint's name as Calico derives it (`node--1-k8s-pod--a-eth0`).
fn wep_name(node: &str, pod: &str) -> String {
    format!(
        "{}-k8s-{}-eth0",
        node.replace('-', "--"),
        pod.replace('-', "--")
    )
}

/// The etcd key of the WorkloadEndpoint of `pod` in `ns` on `node`, as the dataset writes it.
pub fn etcd_wep_key(node: &str, ns: &str, pod: &str) -> String {
    v3_key("workloadendpoints", Some(ns), &wep_name(node, pod))
}

fn wep_spec(node: &str, ns: &str, pod: &str, ip: &str) -> Value {
    json!({
        "orchestrator": "k8s",
        "node": node,
        "containerID": format!("cid-{pod}"),
        "pod": pod,
        "endpoint": "eth0",
        "serviceAccountName": "default",
        "ipNetworks": [format!("{ip}/32")],
        "profiles": [format!("kns.{ns}"), format!("ksa.{ns}.default")],
        "interfaceName": format!("cali{}", &uid(pod)[25..]),
        "mac": "ee:ee:ee:ee:ee:ee",
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
    })
}

pub async fn put_wep(client: &EtcdClient, node: &str, ns: &str, pod: &str, app: &str, ip: &str) {
    put_v3(
        client,
        "workloadendpoints",
        "WorkloadEndpoint",
        Some(ns),
        &wep_name(node, pod),
        json!({
            "app": app,
            "projectcalico.org/namespace": ns,
            "projectcalico.org/orchestrator": "k8s",
            "projectcalico.org/serviceaccount": "default",
        }),
        wep_spec(node, ns, pod, ip),
    )
    .await;
}

pub async fn put_namespace_profile(client: &EtcdClient, ns: &str, team: &str) {
    put_v3(
        client,
        "profiles",
        "Profile",
        None,
        &format!("kns.{ns}"),
        Value::Null,
        json!({
            "ingress": [{"action": "Allow"}],
            "egress": [{"action": "Allow"}],
            "labelsToApply": {"pcns.projectcalico.org/name": ns, "pcns.team": team},
        }),
    )
    .await;
}

fn node_spec(node: &str, ip: &str, tunnel: &str) -> Value {
    json!({
        "bgp": {"ipv4Address": format!("{ip}/24"), "ipv4IPIPTunnelAddr": tunnel},
        "addresses": [{"address": ip, "type": "InternalIP"}],
        "orchRefs": [{"nodeName": node, "orchestrator": "k8s"}],
    })
}

fn ippool_spec(nat_outgoing: bool) -> Value {
    json!({
        "cidr": "10.65.0.0/16",
        "blockSize": 26,
        "ipipMode": "Always",
        "vxlanMode": "Never",
        "natOutgoing": nat_outgoing,
        "nodeSelector": "all()",
        "allowedUses": ["Workload", "Tunnel"],
    })
}

fn felix_configuration(log_severity: &str) -> Value {
    json!({
        "logSeverityScreen": log_severity,
        "reportingInterval": "0s",
        "ipipEnabled": true,
        "bpfEnabled": false,
    })
}

/// An IPAM block of 64 addresses (`/26`) with the ordinals `used` allocated to `pods`.
pub fn block(cidr: &str, node: &str, used: &[(usize, &str, &str)]) -> Value {
    let mut allocations = vec![Value::Null; 64];
    let mut attributes = Vec::new();
    for (i, (ordinal, ns, pod)) in used.iter().enumerate() {
        allocations[*ordinal] = json!(i);
        attributes.push(json!({
            "handle_id": format!("k8s-pod-network.cid-{pod}"),
            "secondary": {"namespace": ns, "node": node, "pod": pod, "timestamp": "2026-01-01 00:00:00 +0000 UTC"},
        }));
    }
    let unallocated: Vec<usize> = (0..64)
        .filter(|o| !used.iter().any(|(u, _, _)| u == o))
        .collect();
    json!({
        "cidr": cidr,
        "affinity": format!("host:{node}"),
        "strictAffinity": false,
        "allocations": allocations,
        "unallocated": unallocated,
        "attributes": attributes,
        "deleted": false,
        "sequenceNumber": 0,
    })
}

/// The dataset: two nodes, an IPv4 and an IPv6 pool, their blocks and affinities, felix and BGP
/// configuration, cluster information, two namespaces' profiles, three pods' WorkloadEndpoints,
/// a namespaced policy whose rule has a namespaceSelector, a tiered global policy with a
/// namespaceSelector, a global and a namespaced network set, a host endpoint, a BGP peer and
/// filter, and a CalicoNodeStatus.
pub async fn write_etcd_dataset(client: &EtcdClient) {
    put_v3(
        client,
        "clusterinformations",
        "ClusterInformation",
        None,
        "default",
        Value::Null,
        json!({"clusterGUID": "5c1b2a3d4e5f40718293a4b5c6d7e8f9", "clusterType": "k8s,bgp,typha", "calicoVersion": "v3.31.0", "datastoreReady": true}),
    )
    .await;
    put_v3(
        client,
        "felixconfigurations",
        "FelixConfiguration",
        None,
        "default",
        Value::Null,
        felix_configuration("Info"),
    )
    .await;
    put_v3(
        client,
        "felixconfigurations",
        "FelixConfiguration",
        None,
        "node.node-1",
        Value::Null,
        json!({"defaultEndpointToHostAction": "Accept"}),
    )
    .await;
    put_v3(
        client,
        "bgpconfigurations",
        "BGPConfiguration",
        None,
        "default",
        Value::Null,
        json!({"logSeverityScreen": "Info", "nodeToNodeMeshEnabled": true, "asNumber": 64512}),
    )
    .await;
    for (node, ip, tunnel) in [
        ("node-1", "10.0.0.1", "10.65.0.1"),
        ("node-2", "10.0.0.2", "10.65.0.65"),
    ] {
        put_v3(
            client,
            "nodes",
            "Node",
            None,
            node,
            json!({"kubernetes.io/hostname": node}),
            node_spec(node, ip, tunnel),
        )
        .await;
    }
    put_v3(
        client,
        "ippools",
        "IPPool",
        None,
        "pool-v4",
        Value::Null,
        ippool_spec(true),
    )
    .await;
    put_v3(
        client,
        "ippools",
        "IPPool",
        None,
        "pool-v6",
        Value::Null,
        json!({"cidr": "fd00:65::/48", "blockSize": 122, "ipipMode": "Never", "vxlanMode": "Never", "natOutgoing": false, "nodeSelector": "all()"}),
    )
    .await;
    put(
        client,
        format!("{IPAM}/assignment/ipv4/block/10.65.0.0-26"),
        &block(
            "10.65.0.0/26",
            "node-1",
            &[(1, "", "tunnel"), (5, "ns1", "pod-a")],
        ),
    )
    .await;
    put(
        client,
        format!("{IPAM}/assignment/ipv4/block/10.65.0.64-26"),
        &block(
            "10.65.0.64/26",
            "node-2",
            &[(1, "", "tunnel"), (6, "ns1", "pod-b"), (7, "ns2", "pod-c")],
        ),
    )
    .await;
    for (node, cidr) in [("node-1", "10.65.0.0-26"), ("node-2", "10.65.0.64-26")] {
        put(
            client,
            format!("{IPAM}/host/{node}/ipv4/block/{cidr}"),
            &json!({"state": "confirmed", "deleted": false}),
        )
        .await;
    }
    for (name, order, action) in [("default", 1_000_000, "Deny"), ("security", 100, "Pass")] {
        put_v3(
            client,
            "tiers",
            "Tier",
            None,
            name,
            Value::Null,
            json!({"order": order, "defaultAction": action}),
        )
        .await;
    }
    put_namespace_profile(client, "ns1", "a").await;
    put_namespace_profile(client, "ns2", "b").await;
    for ns in ["ns1", "ns2"] {
        put_v3(
            client,
            "profiles",
            "Profile",
            None,
            &format!("ksa.{ns}.default"),
            Value::Null,
            json!({"labelsToApply": {"pcsa.projectcalico.org/name": "default"}}),
        )
        .await;
    }
    put_wep(client, "node-1", "ns1", "pod-a", "web", "10.65.0.5").await;
    put_wep(client, "node-2", "ns1", "pod-b", "client", "10.65.0.70").await;
    put_wep(client, "node-2", "ns2", "pod-c", "db", "10.65.0.71").await;
    put_v3(
        client,
        "networkpolicies",
        "NetworkPolicy",
        Some("ns1"),
        "default.allow-web",
        Value::Null,
        json!({
            "tier": "default",
            "order": 100,
            "selector": "app == 'web'",
            "types": ["Ingress"],
            "ingress": [{
                "action": "Allow",
                "protocol": "TCP",
                "source": {"namespaceSelector": "team == 'a'", "selector": "app == 'client'"},
                "destination": {"ports": [8080]},
            }],
        }),
    )
    .await;
    put_v3(
        client,
        "globalnetworkpolicies",
        "GlobalNetworkPolicy",
        None,
        "security.deny-external-db",
        Value::Null,
        json!({
            "tier": "security",
            "order": 10,
            "namespaceSelector": "team == 'b'",
            "selector": "app == 'db'",
            "types": ["Ingress"],
            "ingress": [{"action": "Deny", "source": {"selector": "role == 'external'"}}],
        }),
    )
    .await;
    put_v3(
        client,
        "globalnetworksets",
        "GlobalNetworkSet",
        None,
        "external",
        json!({"role": "external"}),
        json!({"nets": ["192.0.2.0/24"]}),
    )
    .await;
    put_v3(
        client,
        "networksets",
        "NetworkSet",
        Some("ns1"),
        "partners",
        json!({"role": "partner"}),
        json!({"nets": ["198.51.100.0/24"]}),
    )
    .await;
    put_v3(
        client,
        "hostendpoints",
        "HostEndpoint",
        None,
        "node-1-eth0",
        json!({"role": "host"}),
        json!({"node": "node-1", "interfaceName": "eth0", "expectedIPs": ["10.0.0.1"]}),
    )
    .await;
    put_v3(
        client,
        "bgppeers",
        "BGPPeer",
        None,
        "peer-1",
        Value::Null,
        json!({"peerIP": "10.0.0.254", "asNumber": 64513}),
    )
    .await;
    put_v3(
        client,
        "bgpfilters",
        "BGPFilter",
        None,
        "filter-1",
        Value::Null,
        json!({"exportV4": [{"action": "Reject", "matchOperator": "In", "cidr": "10.100.0.0/16"}]}),
    )
    .await;
    put_v3(
        client,
        "caliconodestatuses",
        "CalicoNodeStatus",
        None,
        "node-1-status",
        Value::Null,
        json!({"node": "node-1", "classes": ["Agent", "BGP", "Routes"], "updatePeriodSeconds": 10}),
    )
    .await;
}

/// The witnesses that the dataset has reached the reference (one per syncer).
fn dataset_witnesses() -> Vec<Witness> {
    vec![
        Witness::has(Felix, "pod-c", Some("10.65.0.71/32")),
        Witness::has(Felix, "deny-external-db", None),
        Witness::has(Bgp, "node-2", Some("10.0.0.2")),
        Witness::has(TunnelIpAllocation, "10.65.0.0-16", None),
        Witness::has(NodeStatus, "node-1-status", None),
    ]
}

/// Checks the dataset ([`write_etcd_dataset`]), then applies each change and checks again.
pub async fn etcd_scenario(client: &EtcdClient, diff: &mut Differential) {
    step(diff, "initial dataset", &dataset_witnesses()).await;

    put_wep(client, "node-2", "ns2", "pod-d", "db", "10.65.0.72").await;
    step(
        diff,
        "a pod created",
        &[Witness::has(Felix, "pod-d", Some("10.65.0.72/32"))],
    )
    .await;

    put_wep(client, "node-1", "ns1", "pod-a", "web", "10.65.0.9").await;
    step(
        diff,
        "a pod's IP changed (WorkloadEndpoint ipNetworks)",
        &[Witness::has(Felix, "pod-a", Some("10.65.0.9/32"))],
    )
    .await;

    put_namespace_profile(client, "ns1", "b").await;
    step(
        diff,
        "a namespace relabelled (profile kns.ns1)",
        &[Witness::has(Felix, "kns.ns1", Some(r#""pcns.team":"b""#))],
    )
    .await;

    put_v3(
        client,
        "networkpolicies",
        "NetworkPolicy",
        Some("ns2"),
        "default.from-team-b",
        Value::Null,
        json!({
            "tier": "default",
            "order": 200,
            "selector": "all()",
            "types": ["Ingress"],
            "ingress": [{"action": "Allow", "source": {"namespaceSelector": "team == 'b'"}}],
        }),
    )
    .await;
    step(
        diff,
        "a policy with a namespaceSelector created",
        &[Witness::has(Felix, "from-team-b", None)],
    )
    .await;

    put_v3(
        client,
        "felixconfigurations",
        "FelixConfiguration",
        None,
        "default",
        Value::Null,
        felix_configuration("Debug"),
    )
    .await;
    step(
        diff,
        "FelixConfiguration changed",
        &[Witness::has(
            Felix,
            "config/LogSeverityScreen",
            Some("Debug"),
        )],
    )
    .await;

    put_v3(
        client,
        "ippools",
        "IPPool",
        None,
        "pool-v4",
        Value::Null,
        ippool_spec(false),
    )
    .await;
    put_v3(
        client,
        "nodes",
        "Node",
        None,
        "node-2",
        json!({"kubernetes.io/hostname": "node-2"}),
        node_spec("node-2", "10.0.0.22", "10.65.0.65"),
    )
    .await;
    put_v3(
        client,
        "caliconodestatuses",
        "CalicoNodeStatus",
        None,
        "node-2-status",
        Value::Null,
        json!({"node": "node-2", "classes": ["Agent"], "updatePeriodSeconds": 30}),
    )
    .await;
    step(
        diff,
        "an IPPool, a Node and a CalicoNodeStatus changed",
        &[
            Witness::has(
                TunnelIpAllocation,
                "10.65.0.0-16",
                Some(r#""masquerade":false"#),
            ),
            Witness::has(Bgp, "node-2", Some("10.0.0.22")),
            Witness::has(NodeStatus, "node-2-status", None),
        ],
    )
    .await;

    delete(client, etcd_wep_key("node-2", "ns1", "pod-b")).await;
    delete(client, v3_key("globalnetworksets", None, "external")).await;
    delete(
        client,
        format!("{IPAM}/host/node-2/ipv4/block/10.65.0.64-26"),
    )
    .await;
    step(
        diff,
        "a pod, a global network set and a block affinity deleted",
        &[
            Witness::gone(Felix, "pod-b", None),
            Witness::gone(Felix, "netset/external", None),
            Witness::gone(Bgp, "host/node-2/ipv4/block", None),
        ],
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Kubernetes (KDD)
// ---------------------------------------------------------------------------------------------

/// `kubectl apply` (server-side) of `objects` as one List. kubectl's own schema check is off: it
/// does not know `nullable` and refuses an IPAMBlock's free (null) allocations, which the API
/// server's check of the CRD's schema accepts.
pub fn apply(api: &ApiServer, objects: Vec<Value>) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    api.kubectl_ok_with(
        &[
            "apply",
            "--server-side",
            "--field-manager=meshsync-tests",
            "--validate=false",
            "-f",
            "-",
        ],
        Some(&list.to_string()),
    );
}

/// A `crd.projectcalico.org/v1` object (Calico's resources on the Kubernetes datastore).
pub fn crd(kind: &str, namespace: Option<&str>, name: &str, labels: Value, spec: Value) -> Value {
    let mut metadata = json!({"name": name});
    if let Some(ns) = namespace {
        metadata["namespace"] = ns.into();
    }
    if !labels.is_null() {
        metadata["labels"] = labels;
    }
    json!({"apiVersion": "crd.projectcalico.org/v1", "kind": kind, "metadata": metadata, "spec": spec})
}

pub fn k8s_namespace(ns: &str, team: &str) -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"team": team}}}),
        // No controller manager runs: nothing else creates the account Pods need.
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}}),
    ]
}

/// A Pod on `node` whose IP is given as Calico's CNI plugin records it (the pod annotations,
/// which Calico's KDD reads before the status).
pub fn k8s_pod(ns: &str, pod: &str, node: &str, app: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod,
            "namespace": ns,
            "labels": {"app": app},
            "annotations": {
                "cni.projectcalico.org/podIP": format!("{ip}/32"),
                "cni.projectcalico.org/podIPs": format!("{ip}/32"),
                "cni.projectcalico.org/containerID": format!("cid-{pod}"),
            },
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "registry.invalid/c:1", "ports": [{"name": "http", "containerPort": 8080}]}],
        },
    })
}

fn k8s_node(node: &str, ip: &str, tunnel: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node,
            "labels": {"kubernetes.io/hostname": node},
            "annotations": {
                "projectcalico.org/IPv4Address": format!("{ip}/24"),
                "projectcalico.org/IPv4IPIPTunnelAddr": tunnel,
            },
        },
        "spec": {},
    })
}

pub fn ipam_block_crd(name: &str, cidr: &str, node: &str, used: &[(usize, &str, &str)]) -> Value {
    let mut spec = block(cidr, node, used);
    if let Some(spec) = spec.as_object_mut() {
        spec.remove("sequenceNumber");
    }
    crd("IPAMBlock", None, name, Value::Null, spec)
}

/// A private real API server named `name` holding [`write_kdd_dataset`]'s dataset (started and
/// written off the async runtime).
pub async fn api_server_with_kdd_dataset(name: &'static str) -> std::sync::Arc<ApiServer> {
    tokio::task::spawn_blocking(move || {
        let api = ApiServer::start(name);
        write_kdd_dataset(&api);
        std::sync::Arc::new(api)
    })
    .await
    .expect("API server with the KDD dataset")
}

/// The dataset on Kubernetes: two Nodes, two Namespaces with their default ServiceAccounts and
/// three Pods, a NetworkPolicy whose rule has a namespaceSelector, a Service with an
/// EndpointSlice, and Calico's resources: an IPPool, its blocks and affinities, felix and BGP
/// configuration, a Tier with a GlobalNetworkPolicy that has a namespaceSelector, network sets, a
/// host endpoint, a BGP peer and a CalicoNodeStatus.
pub fn write_kdd_dataset(api: &ApiServer) {
    let mut objects = vec![
        k8s_node("node-1", "10.0.0.1", "10.65.0.1"),
        k8s_node("node-2", "10.0.0.2", "10.65.0.65"),
    ];
    objects.extend(k8s_namespace("ns1", "a"));
    objects.extend(k8s_namespace("ns2", "b"));
    apply(api, objects);
    apply(
        api,
        vec![
            k8s_pod("ns1", "pod-a", "node-1", "web", "10.65.0.5"),
            k8s_pod("ns1", "pod-b", "node-2", "client", "10.65.0.70"),
            k8s_pod("ns2", "pod-c", "node-2", "db", "10.65.0.71"),
            json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "allow-web", "namespace": "ns1"},
                "spec": {
                    "podSelector": {"matchLabels": {"app": "web"}},
                    "policyTypes": ["Ingress"],
                    "ingress": [{
                        "from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}, "podSelector": {"matchLabels": {"app": "client"}}}],
                        "ports": [{"protocol": "TCP", "port": 8080}],
                    }],
                },
            }),
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": "ns1"},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
            }),
            json!({
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {"name": "web-1", "namespace": "ns1", "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.65.0.5"], "nodeName": "node-1", "conditions": {"ready": true}}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }),
            crd(
                "FelixConfiguration",
                None,
                "default",
                Value::Null,
                felix_configuration("Info"),
            ),
            crd(
                "BGPConfiguration",
                None,
                "default",
                Value::Null,
                json!({"logSeverityScreen": "Info", "nodeToNodeMeshEnabled": true, "asNumber": 64512}),
            ),
            crd("IPPool", None, "pool-v4", Value::Null, ippool_spec(true)),
            ipam_block_crd(
                "10-65-0-0-26",
                "10.65.0.0/26",
                "node-1",
                &[(1, "", "tunnel"), (5, "ns1", "pod-a")],
            ),
            ipam_block_crd(
                "10-65-0-64-26",
                "10.65.0.64/26",
                "node-2",
                &[(1, "", "tunnel"), (6, "ns1", "pod-b"), (7, "ns2", "pod-c")],
            ),
            crd(
                "BlockAffinity",
                None,
                "node-1-10-65-0-0-26",
                Value::Null,
                json!({"node": "node-1", "cidr": "10.65.0.0/26", "state": "confirmed", "deleted": "false"}),
            ),
            crd(
                "BlockAffinity",
                None,
                "node-2-10-65-0-64-26",
                Value::Null,
                json!({"node": "node-2", "cidr": "10.65.0.64/26", "state": "confirmed", "deleted": "false"}),
            ),
            crd(
                "Tier",
                None,
                "security",
                Value::Null,
                json!({"order": 100, "defaultAction": "Pass"}),
            ),
            crd(
                "GlobalNetworkPolicy",
                None,
                "security.deny-external-db",
                Value::Null,
                json!({
                    "tier": "security",
                    "order": 10,
                    "namespaceSelector": "team == 'b'",
                    "selector": "app == 'db'",
                    "types": ["Ingress"],
                    "ingress": [{"action": "Deny", "source": {"selector": "role == 'external'"}}],
                }),
            ),
            crd(
                "GlobalNetworkSet",
                None,
                "external",
                json!({"role": "external"}),
                json!({"nets": ["192.0.2.0/24"]}),
            ),
            crd(
                "NetworkSet",
                Some("ns1"),
                "partners",
                json!({"role": "partner"}),
                json!({"nets": ["198.51.100.0/24"]}),
            ),
            crd(
                "HostEndpoint",
                None,
                "node-1-eth0",
                json!({"role": "host"}),
                json!({"node": "node-1", "interfaceName": "eth0", "expectedIPs": ["10.0.0.1"]}),
            ),
            crd(
                "BGPPeer",
                None,
                "peer-1",
                Value::Null,
                json!({"peerIP": "10.0.0.254", "asNumber": 64513}),
            ),
            crd(
                "CalicoNodeStatus",
                None,
                "node-1-status",
                Value::Null,
                json!({"node": "node-1", "classes": ["Agent", "BGP", "Routes"], "updatePeriodSeconds": 10}),
            ),
        ],
    );
}

/// Checks the dataset ([`write_kdd_dataset`]), then applies each change and checks again.
pub async fn kdd_scenario(api: &ApiServer, diff: &mut Differential) {
    step(diff, "initial dataset", &dataset_witnesses()).await;

    apply(
        api,
        vec![k8s_pod("ns2", "pod-d", "node-2", "db", "10.65.0.72")],
    );
    step(
        diff,
        "a pod created",
        &[Witness::has(Felix, "pod-d", Some("10.65.0.72/32"))],
    )
    .await;

    api.kubectl_ok(&[
        "annotate",
        "pod/pod-a",
        "-n",
        "ns1",
        "--overwrite",
        "cni.projectcalico.org/podIP=10.65.0.9/32",
        "cni.projectcalico.org/podIPs=10.65.0.9/32",
    ]);
    step(
        diff,
        "a pod's IP changed",
        &[Witness::has(Felix, "pod-a", Some("10.65.0.9/32"))],
    )
    .await;

    api.kubectl_ok(&["label", "namespace", "ns1", "--overwrite", "team=b"]);
    step(
        diff,
        "a namespace relabelled",
        &[Witness::has(Felix, "kns.ns1", Some(r#""pcns.team":"b""#))],
    )
    .await;

    apply(
        api,
        vec![json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": "from-team-b", "namespace": "ns2"},
            "spec": {
                "podSelector": {},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}],
            },
        })],
    );
    step(
        diff,
        "a NetworkPolicy with a namespaceSelector created",
        &[Witness::has(Felix, "from-team-b", None)],
    )
    .await;

    apply(
        api,
        vec![crd(
            "FelixConfiguration",
            None,
            "default",
            Value::Null,
            felix_configuration("Debug"),
        )],
    );
    step(
        diff,
        "FelixConfiguration changed",
        &[Witness::has(
            Felix,
            "config/LogSeverityScreen",
            Some("Debug"),
        )],
    )
    .await;

    apply(
        api,
        vec![
            crd("IPPool", None, "pool-v4", Value::Null, ippool_spec(false)),
            crd(
                "CalicoNodeStatus",
                None,
                "node-2-status",
                Value::Null,
                json!({"node": "node-2", "classes": ["Agent"], "updatePeriodSeconds": 30}),
            ),
        ],
    );
    api.kubectl_ok(&[
        "annotate",
        "node/node-2",
        "--overwrite",
        "projectcalico.org/IPv4Address=10.0.0.22/24",
    ]);
    step(
        diff,
        "an IPPool, a Node and a CalicoNodeStatus changed",
        &[
            Witness::has(
                TunnelIpAllocation,
                "10.65.0.0-16",
                Some(r#""masquerade":false"#),
            ),
            Witness::has(Bgp, "node-2", Some("10.0.0.22")),
            Witness::has(NodeStatus, "node-2-status", None),
        ],
    )
    .await;

    // Forced: no kubelet runs to finish a graceful deletion.
    api.kubectl_ok(&[
        "delete",
        "pod/pod-b",
        "-n",
        "ns1",
        "--grace-period=0",
        "--force",
    ]);
    api.kubectl_ok(&[
        "delete",
        "globalnetworksets.crd.projectcalico.org",
        "external",
    ]);
    api.kubectl_ok(&[
        "delete",
        "blockaffinities.crd.projectcalico.org",
        "node-2-10-65-0-64-26",
    ]);
    step(
        diff,
        "a pod, a global network set and a block affinity deleted",
        &[
            Witness::gone(Felix, "pod-b", None),
            Witness::gone(Felix, "netset/external", None),
            Witness::gone(Bgp, "host/node-2/ipv4/block", None),
        ],
    )
    .await;
}
