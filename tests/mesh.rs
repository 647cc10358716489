mod support;
// The cluster mesh over real etcd processes (issue 3): one etcd per simulated cluster (the local
// cluster "A", remotes "B", "C"), the real etcd source and mesh stage in process, agents on real
// gRPC connections, and the real binary for the operator log lines.
//
// Every expectation is built from what the test wrote into the datastores (local keys minus RCCs
// and Secrets; remote keys of the synced kinds under the RCC's name, Profiles without rules).
// "Nothing else was sent" is proven by a later real change (a sentinel written to the local
// datastore) being the very next update. Waits are on conditions with deadlines, never on sleeps.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use meshsync_agent::{Agent, AgentEvent, Mirror, MirrorKey};
use meshsync_datastore::SourceEvent;
use meshsync_datastore::etcd::EtcdSourceConfig;
use meshsync_datastore::layout::key_path;
use meshsync_etcd::{EtcdClient, EtcdConfig};
use meshsync_mesh::MeshConfig;
use meshsync_proto as pb;
use serde_json::{Value, json};
use support::etcd::Etcd;
use support::{TestServer, WAIT};
use tokio::sync::{mpsc, oneshot};

const RCC: &str = "RemoteClusterConfiguration";
const SECRET: &str = "Secret";
/// Synced from every remote cluster (DESIGN.md §2).
const REMOTE_KINDS: [&str; 6] = [
    "WorkloadEndpoint",
    "HostEndpoint",
    "Profile",
    // For the `federation` subscription (federated services).
    "Service",
    "Endpoints",
    "EndpointSlice",
];
/// Synced in addition with `overlayRoutingMode: Enabled`.
const OVERLAY_KINDS: [&str; 3] = ["Node", "IPPool", "IPAMBlock"];
/// Kinds of this file's data that the `felix` subscription does not carry (BGP only).
const NOT_FELIX: [&str; 4] = ["BGPFilter", "Service", "Endpoints", "EndpointSlice"];
/// For waits that include meshsync's remote reconnect backoff (0.5 s growing to 10 s).
const LONG: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Datastores

/// `(kind, namespace, name)`.
type ObjKey = (String, String, String);

/// One simulated cluster: a real etcd and what the test wrote into it.
struct Cluster {
    etcd: Etcd,
    client: EtcdClient,
    /// Every object written and not deleted: its etcd key and value.
    data: BTreeMap<ObjKey, (String, Value)>,
}

impl Cluster {
    async fn start(name: &str) -> Cluster {
        let etcd = Etcd::start(name).await;
        let client = etcd.client().await;
        Cluster {
            etcd,
            client,
            data: BTreeMap::new(),
        }
    }

    fn url(&self) -> String {
        self.etcd.url()
    }

    /// Writes a Calico v3 or Kubernetes object at its etcdv3 key.
    async fn put(&mut self, kind: &str, ns: &str, name: &str, value: Value) {
        let path = key_path("/calico", kind, ns, name)
            .unwrap_or_else(|| panic!("no etcd key layout for kind {kind}"));
        self.put_at(path, kind, ns, name, value).await;
    }

    /// Writes an IPAM block (`cidr` like `10.66.0.0/26`) at Calico's v1 IPAM key
    /// `/calico/ipam/v2/assignment/ipv4/block/10.66.0.0-26`; it is served as `IPAMBlock`
    /// `10-66-0-0-26`.
    async fn put_block(&mut self, cidr: &str, value: Value) {
        let segment = cidr.replace('/', "-");
        let name = segment.replace('.', "-");
        let path = format!("/calico/ipam/v2/assignment/ipv4/block/{segment}");
        self.put_at(path, "IPAMBlock", "", &name, value).await;
    }

    async fn put_at(&mut self, path: String, kind: &str, ns: &str, name: &str, value: Value) {
        let bytes = serde_json::to_vec(&value).expect("JSON");
        self.client
            .put(path.clone(), bytes)
            .await
            .unwrap_or_else(|e| panic!("etcd put {path}: {e}"));
        self.data
            .insert((kind.into(), ns.into(), name.into()), (path, value));
    }

    async fn delete(&mut self, kind: &str, ns: &str, name: &str) {
        let key = (kind.to_string(), ns.to_string(), name.to_string());
        let (path, _) = self
            .data
            .remove(&key)
            .unwrap_or_else(|| panic!("the test never wrote {key:?}"));
        let (_, deleted) = self
            .client
            .delete(path.clone())
            .await
            .unwrap_or_else(|e| panic!("etcd delete {path}: {e}"));
        assert_eq!(deleted, 1, "{path} was not in etcd");
    }

    /// Kills the etcd process (its data stays on disk).
    fn kill(&mut self) {
        self.etcd.kill();
    }

    /// Starts the etcd again on the same port with the same data.
    async fn restart(&mut self) {
        self.etcd.restart().await;
        self.client = self.etcd.client().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Calico objects

fn wep(ns: &str, name: &str, node: &str, ip: &str, profile: &str) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {
                "app": "web",
                "projectcalico.org/namespace": ns,
                "projectcalico.org/orchestrator": "k8s"
            }
        },
        "spec": {
            "orchestrator": "k8s",
            "node": node,
            "pod": name,
            "endpoint": "eth0",
            "interfaceName": "cali0123456789a",
            "ipNetworks": [format!("{ip}/32")],
            "profiles": [profile]
        }
    })
}

fn hep(name: &str, node: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "HostEndpoint",
        "metadata": {"name": name, "labels": {"role": "gateway"}},
        "spec": {"node": node, "interfaceName": "eth0", "expectedIPs": [ip]}
    })
}

/// A Profile with rules: remote copies must arrive without `spec.ingress` / `spec.egress`.
fn profile(name: &str, label: &str) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "Profile",
        "metadata": {"name": name},
        "spec": {
            "ingress": [{"action": "Allow", "source": {"selector": "all()"}}],
            "egress": [{"action": "Deny", "destination": {"nets": ["0.0.0.0/0"]}}],
            "labelsToApply": {"pcns.projectcalico.org/name": label}
        }
    })
}

fn node(name: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"bgp": {"ipv4Address": format!("{ip}/24")}, "ipv4VXLANTunnelAddr": ip}
    })
}

fn ippool(name: &str, cidr: &str) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr, "vxlanMode": "Always", "ipipMode": "Never", "natOutgoing": true}
    })
}

/// A v1 IPAM block value as Calico's IPAM writes it.
fn block(cidr: &str, node: &str) -> Value {
    json!({
        "cidr": cidr,
        "affinity": format!("host:{node}"),
        "strictAffinity": false,
        "allocations": [0, null, null, null],
        "unallocated": [1, 2, 3],
        "attributes": [{"handle_id": "k8s-pod-network.abc", "secondary": {"node": node}}],
        "deleted": false
    })
}

fn gnp(name: &str) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name},
        "spec": {"selector": "all()", "types": ["Ingress"], "ingress": [{"action": "Deny"}]}
    })
}

fn plain(kind: &str, ns: &str, name: &str) -> Value {
    let mut metadata = json!({"name": name});
    if !ns.is_empty() {
        metadata["namespace"] = json!(ns);
    }
    json!({"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": metadata, "spec": {}})
}

/// A Kubernetes Secret with base64 `data`.
fn secret_data(ns: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), json!(base64(v.as_bytes()))))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": ns}, "data": data})
}

/// A Kubernetes Secret with `stringData`.
fn secret_string_data(ns: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": ns}, "stringData": data})
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn rcc(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "projectcalico.org/v3", "kind": RCC, "metadata": {"name": name}, "spec": spec})
}

fn etcd_spec(url: &str) -> Value {
    json!({"datastoreType": "etcdv3", "etcdEndpoints": url})
}

fn with_overlay(mut spec: Value, mode: &str) -> Value {
    spec["syncOptions"] = json!({"overlayRoutingMode": mode});
    spec
}

/// The local cluster's own resources (plus an unrelated Secret, which must be consumed).
async fn fill_local(a: &mut Cluster) {
    a.put("Node", "", "node-a1", node("node-a1", "192.168.1.1"))
        .await;
    a.put(
        "WorkloadEndpoint",
        "default",
        "node--a1-k8s-web-eth0",
        wep(
            "default",
            "node--a1-k8s-web-eth0",
            "node-a1",
            "10.65.0.1",
            "kns.default",
        ),
    )
    .await;
    // The local cluster's own Profile keeps its rules.
    a.put(
        "Profile",
        "",
        "kns.default",
        profile("kns.default", "default"),
    )
    .await;
    a.put("GlobalNetworkPolicy", "", "allow-dns", gnp("allow-dns"))
        .await;
    a.put(
        "FelixConfiguration",
        "",
        "default",
        plain("FelixConfiguration", "", "default"),
    )
    .await;
    a.put(
        "IPPool",
        "",
        "local-pool",
        ippool("local-pool", "10.65.0.0/16"),
    )
    .await;
    a.put("BGPFilter", "", "f1", plain("BGPFilter", "", "f1"))
        .await;
    a.put(
        SECRET,
        "kube-system",
        "unrelated",
        secret_data("kube-system", "unrelated", &[("token", "s3cr3t")]),
    )
    .await;
}

/// A remote cluster's resources; `octet` makes the values differ per cluster (10.<octet>.0.0/16).
/// Includes kinds that must never be synced from a remote (policy).
async fn fill_remote(c: &mut Cluster, octet: u8) {
    let ip = |n: u8| format!("10.{octet}.0.{n}");
    let mut first = wep("ns1", "node1-k8s-pod--1-eth0", "node1", &ip(1), "kns.ns1");
    // Calico clears resourceVersion before writing; a writer that leaves it in must not matter.
    first["metadata"]["resourceVersion"] = json!("4711");
    c.put("WorkloadEndpoint", "ns1", "node1-k8s-pod--1-eth0", first)
        .await;
    c.put(
        "WorkloadEndpoint",
        "ns1",
        "node1-k8s-pod--2-eth0",
        wep("ns1", "node1-k8s-pod--2-eth0", "node1", &ip(2), "kns.ns1"),
    )
    .await;
    c.put(
        "HostEndpoint",
        "",
        "node1-eth0",
        hep("node1-eth0", "node1", &ip(200)),
    )
    .await;
    c.put("Profile", "", "kns.ns1", profile("kns.ns1", "ns1"))
        .await;
    c.put(
        "Node",
        "",
        "node1",
        node("node1", &format!("192.168.{octet}.1")),
    )
    .await;
    c.put(
        "IPPool",
        "",
        "pool-1",
        ippool("pool-1", &format!("10.{octet}.0.0/16")),
    )
    .await;
    c.put_block(
        &format!("10.{octet}.0.0/26"),
        block(&format!("10.{octet}.0.0/26"), "node1"),
    )
    .await;
    c.put(
        "GlobalNetworkPolicy",
        "",
        "remote-deny-all",
        gnp("remote-deny-all"),
    )
    .await;
    c.put(
        "NetworkPolicy",
        "ns1",
        "remote-np",
        plain("NetworkPolicy", "ns1", "remote-np"),
    )
    .await;
    // Kubernetes objects of federated services, in meshsync's k8s layout.
    c.put(
        "Service",
        "ns1",
        "backing",
        plain("Service", "ns1", "backing"),
    )
    .await;
    c.put(
        "EndpointSlice",
        "ns1",
        "backing-x1",
        plain("EndpointSlice", "ns1", "backing-x1"),
    )
    .await;
    // A value that is not JSON is logged and skipped; nothing else is affected.
    let garbage = key_path("/calico", "WorkloadEndpoint", "ns1", "garbage-eth0").expect("path");
    c.client.put(garbage, "{not json").await.expect("etcd put");
}

/// Content that makes B and C overlap: identical objects in both, one object with the same key
/// and different values, and one object only in each.
async fn fill_overlap(b: &mut Cluster, c: &mut Cluster) {
    for cluster in [&mut *b, &mut *c] {
        cluster
            .put(
                "WorkloadEndpoint",
                "shared",
                "same-pod-eth0",
                wep(
                    "shared",
                    "same-pod-eth0",
                    "node9",
                    "10.99.0.1",
                    "kns.shared",
                ),
            )
            .await;
        cluster
            .put("Profile", "", "kns.shared", profile("kns.shared", "shared"))
            .await;
    }
    b.put(
        "WorkloadEndpoint",
        "shared",
        "only-b-eth0",
        wep("shared", "only-b-eth0", "node9", "10.99.0.2", "kns.shared"),
    )
    .await;
    c.put(
        "WorkloadEndpoint",
        "shared",
        "only-c-eth0",
        wep("shared", "only-c-eth0", "node9", "10.99.0.3", "kns.shared"),
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// The pipeline under test

type Events = std::pin::Pin<Box<dyn Stream<Item = SourceEvent> + Send>>;

/// The local etcd source of `a`, as `serve` builds it (cluster "").
fn local_source(a: &Cluster) -> Events {
    Box::pin(meshsync_datastore::etcd::watch(EtcdSourceConfig::new(
        EtcdConfig::new(vec![a.url()]),
        "".into(),
    )))
}

/// The mesh over `a`, ready for `TestServer::start`.
fn mesh_over(a: &Cluster) -> impl Stream<Item = SourceEvent> + Send + Unpin + 'static {
    meshsync_mesh::mesh(local_source(a), MeshConfig::default())
}

/// Holds `inner` back until the returned sender fires, so an agent can connect first and see
/// every state transition from the very beginning.
fn gated(inner: Events) -> (oneshot::Sender<()>, Events) {
    let (go, wait) = oneshot::channel::<()>();
    let stream = futures::stream::once(async move {
        let _ = wait.await;
        inner
    })
    .flatten();
    (go, Box::pin(stream))
}

/// A TCP endpoint that accepts connections and drops each after `hold` without a word: a remote
/// that fails slowly (unlike a refused port, which fails at once).
struct SlowFailingEndpoint {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl SlowFailingEndpoint {
    async fn start(hold: Duration) -> SlowFailingEndpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    tokio::time::sleep(hold).await;
                    drop(socket);
                });
            }
        });
        SlowFailingEndpoint { url, task }
    }
}

impl Drop for SlowFailingEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// Expectations

fn mkey(cluster: &str, kind: &str, ns: &str, name: &str) -> MirrorKey {
    MirrorKey {
        cluster: cluster.into(),
        kind: kind.into(),
        namespace: ns.into(),
        name: name.into(),
    }
}

fn key_of(u: &pb::Update) -> MirrorKey {
    mkey(&u.cluster, &u.kind, &u.namespace, &u.name)
}

/// A remote cluster as the local mesh names it.
struct Remote<'a> {
    name: &'a str,
    cluster: &'a Cluster,
    overlay: bool,
}

fn remote<'a>(name: &'a str, cluster: &'a Cluster, overlay: bool) -> Remote<'a> {
    Remote {
        name,
        cluster,
        overlay,
    }
}

fn without_resource_version(value: &Value) -> Value {
    let mut value = value.clone();
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    value
}

/// What an `all` agent must hold: the local keys minus RCCs and Secrets, and each remote's keys of
/// the synced kinds under the RCC name, its Profiles without rules.
fn expected(local: &Cluster, remotes: &[Remote<'_>]) -> BTreeMap<MirrorKey, Value> {
    let mut out = BTreeMap::new();
    for ((kind, ns, name), (_, value)) in &local.data {
        if kind == RCC || kind == SECRET {
            continue;
        }
        out.insert(mkey("", kind, ns, name), without_resource_version(value));
    }
    for r in remotes {
        for ((kind, ns, name), (_, value)) in &r.cluster.data {
            let synced = REMOTE_KINDS.contains(&kind.as_str())
                || (r.overlay && OVERLAY_KINDS.contains(&kind.as_str()));
            if !synced {
                continue;
            }
            let mut value = without_resource_version(value);
            if kind == "Profile"
                && let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut)
            {
                spec.remove("ingress");
                spec.remove("egress");
            }
            out.insert(mkey(r.name, kind, ns, name), value);
        }
    }
    out
}

/// What a `felix` agent must hold of `all`.
fn felix_view(all: &BTreeMap<MirrorKey, Value>) -> BTreeMap<MirrorKey, Value> {
    all.iter()
        .filter(|(k, _)| !NOT_FELIX.contains(&k.kind.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Keys per cluster.
fn counts(map: &BTreeMap<MirrorKey, Value>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for k in map.keys() {
        *out.entry(k.cluster.clone()).or_default() += 1;
    }
    out
}

fn cluster_keys(map: &BTreeMap<MirrorKey, Value>, cluster: &str) -> BTreeSet<MirrorKey> {
    map.keys()
        .filter(|k| k.cluster == cluster)
        .cloned()
        .collect()
}

/// The mirror's contents with values parsed.
fn mirror_map(m: &Mirror) -> BTreeMap<MirrorKey, Value> {
    m.resources()
        .iter()
        .map(|(k, e)| {
            let value = serde_json::from_slice(&e.value)
                .unwrap_or_else(|err| panic!("{k:?}: value is not JSON ({err})"));
            (k.clone(), value)
        })
        .collect()
}

fn holds(m: &Mirror, expected: &BTreeMap<MirrorKey, Value>) -> bool {
    m.len() == expected.len() && mirror_map(m) == *expected
}

fn assert_holds(m: &Mirror, expected: &BTreeMap<MirrorKey, Value>, what: &str) {
    let actual = mirror_map(m);
    if actual == *expected {
        return;
    }
    let mut report = String::new();
    for (k, v) in expected {
        match actual.get(k) {
            None => report.push_str(&format!("\n  missing  {k:?}")),
            Some(a) if a != v => {
                report.push_str(&format!("\n  differs  {k:?}\n    want {v}\n    got  {a}"))
            }
            _ => {}
        }
    }
    for k in actual.keys().filter(|k| !expected.contains_key(*k)) {
        report.push_str(&format!("\n  extra    {k:?}"));
    }
    panic!("{what}: the agent's mirror differs from the datastores:{report}");
}

/// An update as (key, type name).
type Change = (MirrorKey, &'static str);

fn type_name(t: pb::UpdateType) -> &'static str {
    match t {
        pb::UpdateType::New => "New",
        pb::UpdateType::Updated => "Updated",
        pb::UpdateType::Deleted => "Deleted",
        pb::UpdateType::Unspecified => "Unspecified",
    }
}

/// The updates among `events`, in order.
fn updates(events: &[AgentEvent]) -> Vec<pb::Update> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Update(u) => Some(u.clone()),
            _ => None,
        })
        .collect()
}

/// The updates among `events` as sorted changes (duplicates kept, so they show).
fn changes(events: &[AgentEvent]) -> Vec<Change> {
    let mut out: Vec<Change> = updates(events)
        .iter()
        .map(|u| (key_of(u), type_name(u.r#type())))
        .collect();
    out.sort();
    out
}

/// The changes that turn `before` into `after`, sorted.
fn diff(before: &BTreeMap<MirrorKey, Value>, after: &BTreeMap<MirrorKey, Value>) -> Vec<Change> {
    let mut out = Vec::new();
    for (k, v) in after {
        match before.get(k) {
            None => out.push((k.clone(), "New")),
            Some(old) if old != v => out.push((k.clone(), "Updated")),
            _ => {}
        }
    }
    for k in before.keys().filter(|k| !after.contains_key(*k)) {
        out.push((k.clone(), "Deleted"));
    }
    out.sort();
    out
}

fn statuses(events: &[AgentEvent]) -> Vec<pb::Status> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Status { status, .. } => Some(status.clone()),
            _ => None,
        })
        .collect()
}

fn state(m: &Mirror, cluster: &str) -> Option<pb::ClusterState> {
    m.clusters().get(cluster).map(|c| c.state)
}

fn is(m: &Mirror, cluster: &str, wanted: pb::ClusterState) -> bool {
    state(m, cluster) == Some(wanted)
}

fn error_of(m: &Mirror, cluster: &str) -> String {
    m.clusters()
        .get(cluster)
        .map(|c| c.error.clone())
        .unwrap_or_default()
}

fn status_cluster<'a>(s: &'a pb::Status, cluster: &str) -> Option<&'a pb::ClusterStatus> {
    s.clusters.iter().find(|c| c.cluster == cluster)
}

fn describe(m: &Mirror) -> String {
    let mut text = format!("overall {:?}, {} keys;", m.overall(), m.len());
    for (name, c) in m.clusters() {
        text.push_str(&format!(
            " [{name:?}: {:?} keys={} error={:?}]",
            c.state, c.keys, c.error
        ));
    }
    text
}

fn describe_statuses(list: &[pb::Status]) -> String {
    list.iter()
        .map(|s| {
            let clusters: Vec<String> = s
                .clusters
                .iter()
                .map(|c| format!("{:?}={:?}", c.cluster, c.state()))
                .collect();
            format!("\n  {:?} {}", s.overall(), clusters.join(" "))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Agents

/// Pulls agent events until `pred` holds for the mirror (checked first), within `limit`. A
/// disconnect or digest mismatch fails the test: every scenario here must be served on one
/// subscription. Returns the events pulled.
async fn pump(
    agent: &mut Agent,
    what: &str,
    limit: Duration,
    pred: impl Fn(&Mirror) -> bool,
) -> Vec<AgentEvent> {
    let mut seen = Vec::new();
    let done = tokio::time::timeout(limit, async {
        while !pred(agent.mirror()) {
            let event = agent.next().await.expect("agent failed");
            match &event {
                AgentEvent::Disconnected { error, .. } => {
                    panic!("{what}: the agent was disconnected: {error}")
                }
                AgentEvent::DigestMismatch(m) => panic!("{what}: digest mismatch: {m:?}"),
                _ => {}
            }
            seen.push(event);
        }
    })
    .await;
    if done.is_err() {
        panic!(
            "timed out after {limit:?} waiting for {what}; agent: {}; statuses seen: {}",
            describe(agent.mirror()),
            describe_statuses(&statuses(&seen))
        );
    }
    seen
}

static SENTINELS: AtomicU32 = AtomicU32::new(0);

/// Writes a new object to the local datastore and pulls until the agent has it. The sentinel's
/// update must be the last event pulled; returns every event before it, i.e. everything the agent
/// received between the previous wait and this real change.
async fn sentinel(a: &mut Cluster, agent: &mut Agent) -> Vec<AgentEvent> {
    let name = format!("sentinel-{}", SENTINELS.fetch_add(1, Ordering::Relaxed));
    a.put(
        "GlobalNetworkSet",
        "",
        &name,
        plain("GlobalNetworkSet", "", &name),
    )
    .await;
    sentinel_seen(agent, &name).await
}

async fn sentinel_seen(agent: &mut Agent, name: &str) -> Vec<AgentEvent> {
    let key = mkey("", "GlobalNetworkSet", "", name);
    let mut events = pump(agent, &format!("sentinel {name}"), WAIT, |m| {
        m.resources().contains_key(&key)
    })
    .await;
    match events.pop() {
        Some(AgentEvent::Update(u)) if key_of(&u) == key => events,
        other => panic!("the sentinel's update must end the wait, got {other:?}"),
    }
}

/// No update at all among `events`.
fn assert_no_updates(events: &[AgentEvent], what: &str) {
    let list = changes(events);
    assert!(list.is_empty(), "{what}: unexpected updates {list:?}");
}

/// Every status among `events` reports the local cluster (overall) in sync.
fn assert_local_stays_in_sync(events: &[AgentEvent], what: &str) {
    let list = statuses(events);
    assert!(
        list.iter().all(|s| s.overall() == pb::SyncState::InSync),
        "{what}: the overall state left InSync:{}",
        describe_statuses(&list)
    );
}

/// An agent config with the clusters it must see in sync before calling itself in sync.
fn agent_requiring(server: &TestServer, subscription: &str, clusters: &[&str]) -> Agent {
    let mut config = server.agent_config(subscription);
    config.required_clusters = clusters.iter().map(|c| c.to_string()).collect();
    Agent::new(config).expect("agent")
}

fn all_in_sync(m: &Mirror, clusters: &[&str]) -> bool {
    m.in_sync() && clusters.iter().all(|c| is(m, c, pb::ClusterState::InSync))
}

// =============================================================================================
// 1. Local + two remotes merged

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_two_remotes_are_merged_with_per_cluster_status() {
    let mut a = Cluster::start("a").await;
    let mut b = Cluster::start("b").await;
    let mut c = Cluster::start("c").await;
    fill_local(&mut a).await;
    fill_remote(&mut b, 66).await;
    fill_remote(&mut c, 67).await;
    // B with overlay routing (Nodes, IPPools, IPAM blocks too), C with the default (Disabled).
    a.put(
        RCC,
        "",
        "cluster-b",
        rcc("cluster-b", with_overlay(etcd_spec(&b.url()), "Enabled")),
    )
    .await;
    a.put(RCC, "", "cluster-c", rcc("cluster-c", etcd_spec(&c.url())))
        .await;

    let server = TestServer::start(mesh_over(&a)).await;
    let mut all = server.agent("all");
    let mut felix = agent_requiring(&server, "felix", &["cluster-b", "cluster-c"]);
    pump(&mut all, "all: everything in sync", WAIT, |m| {
        all_in_sync(m, &["cluster-b", "cluster-c"])
    })
    .await;
    pump(&mut felix, "felix: in sync", WAIT, Mirror::in_sync).await;

    let want = expected(
        &a,
        &[
            remote("cluster-b", &b, true),
            remote("cluster-c", &c, false),
        ],
    );
    assert_holds(all.mirror(), &want, "all agent");
    assert_holds(felix.mirror(), &felix_view(&want), "felix agent");

    // Per-cluster status: exactly the three clusters, InSync, with the right key counts.
    let m = all.mirror();
    let names: Vec<&str> = m.clusters().keys().map(String::as_str).collect();
    assert_eq!(names, ["", "cluster-b", "cluster-c"], "{}", describe(m));
    for (cluster, keys) in counts(&want) {
        let info = &m.clusters()[&cluster];
        assert_eq!(info.state, pb::ClusterState::InSync, "{cluster:?}");
        assert_eq!(info.keys, keys, "key count of {cluster:?}: {}", describe(m));
        assert!(info.error.is_empty(), "{cluster:?}: {}", info.error);
    }
    assert_eq!(
        counts(&want)["cluster-b"],
        9,
        "B: 2 WEPs, HEP, Profile, Service, EndpointSlice, Node, IPPool, block"
    );
    assert_eq!(
        counts(&want)["cluster-c"],
        6,
        "C: 2 WEPs, HEP, Profile, Service, EndpointSlice"
    );
    assert!(m.verify().is_empty(), "{:?}", m.verify());
    assert!(felix.mirror().verify().is_empty());

    // Spelled out, independent of the expectation builder.
    let has = |k: &MirrorKey| m.resources().contains_key(k);
    assert!(!has(&mkey(
        "cluster-b",
        "GlobalNetworkPolicy",
        "",
        "remote-deny-all"
    )));
    assert!(!has(&mkey(
        "cluster-b",
        "NetworkPolicy",
        "ns1",
        "remote-np"
    )));
    assert!(has(&mkey("cluster-b", "IPAMBlock", "", "10-66-0-0-26")));
    assert!(!has(&mkey("cluster-c", "Node", "", "node1")));
    assert!(
        m.resources()
            .keys()
            .all(|k| k.kind != RCC && k.kind != SECRET),
        "RCCs and Secrets are consumed, never forwarded"
    );
    for cluster in ["cluster-b", "cluster-c"] {
        let p = &mirror_map(m)[&mkey(cluster, "Profile", "", "kns.ns1")];
        assert!(p["spec"].get("ingress").is_none() && p["spec"].get("egress").is_none());
        assert_eq!(
            p["spec"]["labelsToApply"]["pcns.projectcalico.org/name"],
            "ns1"
        );
    }
    let local_profile = &mirror_map(m)[&mkey("", "Profile", "", "kns.default")];
    assert!(
        local_profile["spec"]["ingress"].is_array(),
        "local rules are kept"
    );
    let first = &mirror_map(m)[&mkey(
        "cluster-b",
        "WorkloadEndpoint",
        "ns1",
        "node1-k8s-pod--1-eth0",
    )];
    assert!(first["metadata"].get("resourceVersion").is_none());

    // Live updates of each cluster arrive under the right cluster name.
    b.put(
        "WorkloadEndpoint",
        "ns1",
        "node1-k8s-pod--3-eth0",
        wep(
            "ns1",
            "node1-k8s-pod--3-eth0",
            "node1",
            "10.66.0.3",
            "kns.ns1",
        ),
    )
    .await;
    c.delete("HostEndpoint", "", "node1-eth0").await;
    b.put("GlobalNetworkPolicy", "", "remote-2", gnp("remote-2"))
        .await;
    let want = expected(
        &a,
        &[
            remote("cluster-b", &b, true),
            remote("cluster-c", &c, false),
        ],
    );
    pump(&mut all, "live remote changes", WAIT, |m| holds(m, &want)).await;
    let rest = sentinel(&mut a, &mut all).await;
    assert_no_updates(&rest, "after the live changes");
    pump(&mut felix, "felix: live changes", WAIT, |m| {
        holds(m, &felix_view(&want))
    })
    .await;
}

// =============================================================================================
// 2. Remote killed

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_remote_fails_fast_while_local_and_other_remote_keep_flowing() {
    let mut a = Cluster::start("a").await;
    let mut b = Cluster::start("b").await;
    let mut c = Cluster::start("c").await;
    fill_local(&mut a).await;
    fill_remote(&mut b, 66).await;
    fill_remote(&mut c, 67).await;
    a.put(RCC, "", "cluster-b", rcc("cluster-b", etcd_spec(&b.url())))
        .await;
    a.put(RCC, "", "cluster-c", rcc("cluster-c", etcd_spec(&c.url())))
        .await;
    let server = TestServer::start(mesh_over(&a)).await;
    let mut agent = server.agent("all");
    pump(&mut agent, "in sync", WAIT, |m| {
        all_in_sync(m, &["cluster-b", "cluster-c"])
    })
    .await;
    let want = expected(
        &a,
        &[
            remote("cluster-b", &b, false),
            remote("cluster-c", &c, false),
        ],
    );
    assert_holds(agent.mirror(), &want, "before the kill");
    let b_keys = counts(&want)["cluster-b"];

    b.kill();
    let killed = Instant::now();
    let mut events = pump(&mut agent, "cluster-b ConnectionFailed", LONG, |m| {
        is(m, "cluster-b", pb::ClusterState::ConnectionFailed)
    })
    .await;
    let detected = killed.elapsed();
    assert!(
        detected < Duration::from_secs(10),
        "ConnectionFailed took {detected:?}"
    );
    let m = agent.mirror();
    assert!(
        !error_of(m, "cluster-b").is_empty(),
        "ConnectionFailed needs a reason: {}",
        describe(m)
    );
    // Policy keep: B's data stays, the others are untouched.
    assert_holds(m, &want, "right after the kill");
    assert_eq!(m.clusters()["cluster-b"].keys, b_keys);
    assert!(
        is(m, "cluster-c", pb::ClusterState::InSync),
        "{}",
        describe(m)
    );
    assert_eq!(m.overall(), Some(pb::SyncState::InSync));

    // Local and C keep flowing, promptly, while B is down (and being retried).
    let write = Instant::now();
    a.put(
        "WorkloadEndpoint",
        "default",
        "node--a1-k8s-late-eth0",
        wep(
            "default",
            "node--a1-k8s-late-eth0",
            "node-a1",
            "10.65.0.9",
            "kns.default",
        ),
    )
    .await;
    let key = mkey("", "WorkloadEndpoint", "default", "node--a1-k8s-late-eth0");
    events.extend(
        pump(&mut agent, "local write while B is down", WAIT, |m| {
            m.resources().contains_key(&key)
        })
        .await,
    );
    assert!(
        write.elapsed() < Duration::from_secs(2),
        "local update took {:?}",
        write.elapsed()
    );

    let write = Instant::now();
    c.put(
        "WorkloadEndpoint",
        "ns1",
        "node1-k8s-pod--7-eth0",
        wep(
            "ns1",
            "node1-k8s-pod--7-eth0",
            "node1",
            "10.67.0.7",
            "kns.ns1",
        ),
    )
    .await;
    c.delete("WorkloadEndpoint", "ns1", "node1-k8s-pod--2-eth0")
        .await;
    let want = expected(
        &a,
        &[
            remote("cluster-b", &b, false),
            remote("cluster-c", &c, false),
        ],
    );
    events.extend(
        pump(&mut agent, "C's writes while B is down", WAIT, |m| {
            holds(m, &want)
        })
        .await,
    );
    assert!(
        write.elapsed() < Duration::from_secs(2),
        "C's updates took {:?}",
        write.elapsed()
    );

    events.extend(sentinel(&mut a, &mut agent).await);
    // Nothing was sent for B, and the local in-sync never wavered.
    let for_b: Vec<Change> = changes(&events)
        .into_iter()
        .filter(|(k, _)| k.cluster == "cluster-b")
        .collect();
    assert!(for_b.is_empty(), "B's data must be kept: {for_b:?}");
    assert_local_stays_in_sync(&events, "while B is down");
    let m = agent.mirror();
    assert!(
        is(m, "cluster-b", pb::ClusterState::ConnectionFailed),
        "{}",
        describe(m)
    );
}

// =============================================================================================
// 3. Remote restarted

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_remote_resyncs_with_only_the_real_differences() {
    let mut a = Cluster::start("a").await;
    let mut b = Cluster::start("b").await;
    fill_local(&mut a).await;
    fill_remote(&mut b, 66).await;
    a.put(RCC, "", "cluster-b", rcc("cluster-b", etcd_spec(&b.url())))
        .await;
    let server = TestServer::start(mesh_over(&a)).await;
    let mut agent = server.agent("all");
    pump(&mut agent, "in sync", WAIT, |m| {
        all_in_sync(m, &["cluster-b"])
    })
    .await;
    let want = expected(&a, &[remote("cluster-b", &b, false)]);
    assert_holds(agent.mirror(), &want, "initial");

    // Down and up again with nothing changed: B is InSync again, and not one update for it.
    b.kill();
    let mut events = pump(&mut agent, "cluster-b ConnectionFailed", LONG, |m| {
        is(m, "cluster-b", pb::ClusterState::ConnectionFailed)
    })
    .await;
    b.restart().await;
    events.extend(
        pump(&mut agent, "cluster-b InSync after restart", LONG, |m| {
            is(m, "cluster-b", pb::ClusterState::InSync)
        })
        .await,
    );
    events.extend(sentinel(&mut a, &mut agent).await);
    assert_no_updates(&events, "restart with nothing changed");
    assert_local_stays_in_sync(&events, "restart with nothing changed");
    let states: Vec<pb::ClusterState> = statuses(&events)
        .iter()
        .filter_map(|s| status_cluster(s, "cluster-b").map(|c| c.state()))
        .collect();
    assert!(
        states.contains(&pb::ClusterState::ConnectionFailed)
            && states.last() == Some(&pb::ClusterState::InSync),
        "cluster-b states: {states:?}"
    );
    let want = expected(&a, &[remote("cluster-b", &b, false)]);
    assert_holds(agent.mirror(), &want, "after the first restart");

    // Down again; this time B's content changes right after it comes back.
    b.kill();
    let mut events = pump(&mut agent, "cluster-b ConnectionFailed (2)", LONG, |m| {
        is(m, "cluster-b", pb::ClusterState::ConnectionFailed)
    })
    .await;
    b.restart().await;
    let before = want;
    b.put(
        "WorkloadEndpoint",
        "ns1",
        "node1-k8s-pod--3-eth0",
        wep(
            "ns1",
            "node1-k8s-pod--3-eth0",
            "node1",
            "10.66.0.3",
            "kns.ns1",
        ),
    )
    .await;
    b.put(
        "WorkloadEndpoint",
        "ns1",
        "node1-k8s-pod--2-eth0",
        wep(
            "ns1",
            "node1-k8s-pod--2-eth0",
            "node1",
            "10.66.0.22",
            "kns.ns1",
        ),
    )
    .await;
    b.delete("HostEndpoint", "", "node1-eth0").await;
    b.put(
        "Profile",
        "",
        "kns.ns1",
        profile("kns.ns1", "ns1-relabelled"),
    )
    .await;
    // Changes to kinds that are not synced from a remote must not show up either.
    b.put("GlobalNetworkPolicy", "", "remote-deny-all", gnp("changed"))
        .await;
    b.put("Node", "", "node1", node("node1", "192.168.66.99"))
        .await;
    let after = expected(&a, &[remote("cluster-b", &b, false)]);
    events.extend(
        pump(&mut agent, "B's changes after restart", LONG, |m| {
            is(m, "cluster-b", pb::ClusterState::InSync) && holds(m, &after)
        })
        .await,
    );
    events.extend(sentinel(&mut a, &mut agent).await);
    let want_changes = diff(&before, &after);
    assert_eq!(want_changes.len(), 4, "{want_changes:?}");
    assert_eq!(
        changes(&events),
        want_changes,
        "exactly B's real differences"
    );
    assert_local_stays_in_sync(&events, "restart with changes");
}

// =============================================================================================
// 4. RCC added, changed, deleted at runtime

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcc_added_changed_and_deleted_at_runtime() {
    let mut a = Cluster::start("a").await;
    let mut b = Cluster::start("b").await;
    let mut c = Cluster::start("c").await;
    fill_local(&mut a).await;
    fill_remote(&mut b, 66).await;
    fill_remote(&mut c, 67).await;
    fill_overlap(&mut b, &mut c).await;
    // A second datastore with B's contents: C switches to it below (pointing C at B's own etcd
    // would be refused as a duplicate of cluster-b).
    let mut b2 = Cluster::start("b2").await;
    fill_remote(&mut b2, 66).await;
    fill_overlap(&mut b2, &mut c).await;
    a.put(RCC, "", "cluster-b", rcc("cluster-b", etcd_spec(&b.url())))
        .await;
    let server = TestServer::start(mesh_over(&a)).await;
    let mut agent = server.agent("all");
    pump(&mut agent, "in sync", WAIT, |m| {
        all_in_sync(m, &["cluster-b"])
    })
    .await;
    let only_b = expected(&a, &[remote("cluster-b", &b, false)]);
    assert_holds(agent.mirror(), &only_b, "before C is added");
    assert!(!agent.mirror().clusters().contains_key("cluster-c"));

    // Added: C's keys arrive, nothing else.
    a.put(RCC, "", "cluster-c", rcc("cluster-c", etcd_spec(&c.url())))
        .await;
    let with_c = expected(
        &a,
        &[
            remote("cluster-b", &b, false),
            remote("cluster-c", &c, false),
        ],
    );
    let mut events = pump(&mut agent, "cluster-c added", WAIT, |m| {
        is(m, "cluster-c", pb::ClusterState::InSync) && holds(m, &with_c)
    })
    .await;
    events.extend(sentinel(&mut a, &mut agent).await);
    let want_changes: Vec<Change> = cluster_keys(&with_c, "cluster-c")
        .into_iter()
        .map(|k| (k, "New"))
        .collect();
    assert_eq!(
        changes(&events),
        want_changes,
        "adding C sends C's keys only"
    );
    assert_local_stays_in_sync(&events, "adding C");
    let m = agent.mirror();
    assert_eq!(m.clusters()["cluster-c"].keys, counts(&with_c)["cluster-c"]);
    assert!(is(m, "cluster-b", pb::ClusterState::InSync));

    // A change that does not touch the connection (a label, an unrelated annotation): nothing.
    let mut relabelled = rcc("cluster-c", etcd_spec(&c.url()));
    relabelled["metadata"]["labels"] = json!({"team": "net"});
    relabelled["metadata"]["annotations"] = json!({"example.com/owner": "net"});
    a.put(RCC, "", "cluster-c", relabelled).await;
    let events = sentinel(&mut a, &mut agent).await;
    assert_no_updates(&events, "an RCC change that keeps the connection");
    assert!(
        statuses(&events).is_empty(),
        "no reconnect expected: {}",
        describe_statuses(&statuses(&events))
    );

    // Changed: cluster-c now points at a datastore holding what B holds. Only the differences
    // between the two clusters' contents are sent (identical objects are not), and only for
    // cluster-c.
    let before = expected(
        &a,
        &[
            remote("cluster-b", &b, false),
            remote("cluster-c", &c, false),
        ],
    );
    a.put(RCC, "", "cluster-c", rcc("cluster-c", etcd_spec(&b2.url())))
        .await;
    let after = expected(
        &a,
        &[
            remote("cluster-b", &b, false),
            remote("cluster-c", &b2, false),
        ],
    );
    let mut events = pump(&mut agent, "cluster-c switched to B2's etcd", LONG, |m| {
        is(m, "cluster-c", pb::ClusterState::InSync) && holds(m, &after)
    })
    .await;
    events.extend(sentinel(&mut a, &mut agent).await);
    let want_changes = diff(&before, &after);
    for kind in ["New", "Updated", "Deleted"] {
        assert!(
            want_changes.iter().any(|(_, t)| *t == kind),
            "the scenario needs a {kind} change: {want_changes:?}"
        );
    }
    assert!(
        !want_changes
            .iter()
            .any(|(k, _)| k.name == "same-pod-eth0" || k.name == "kns.shared"),
        "identical objects must not be resent"
    );
    assert_eq!(changes(&events), want_changes, "switching C's endpoints");
    assert_local_stays_in_sync(&events, "switching C's endpoints");
    assert!(is(agent.mirror(), "cluster-b", pb::ClusterState::InSync));

    // Deleted: a DELETED for every key of cluster-c, then its status disappears.
    let c_keys = cluster_keys(&after, "cluster-c");
    assert!(!c_keys.is_empty());
    a.delete(RCC, "", "cluster-c").await;
    let mut events = pump(&mut agent, "cluster-c removed from the status", WAIT, |m| {
        !m.clusters().contains_key("cluster-c")
    })
    .await;
    // The status that dropped the cluster came after the deletes.
    assert!(
        agent
            .mirror()
            .resources()
            .keys()
            .all(|k| k.cluster != "cluster-c"),
        "cluster-c's status went before its keys"
    );
    events.extend(sentinel(&mut a, &mut agent).await);
    let want_changes: Vec<Change> = c_keys.into_iter().map(|k| (k, "Deleted")).collect();
    assert_eq!(changes(&events), want_changes, "deleting C");
    assert_local_stays_in_sync(&events, "deleting C");
    let final_want = expected(&a, &[remote("cluster-b", &b, false)]);
    assert_holds(agent.mirror(), &final_want, "after C is deleted");
    let names: Vec<&str> = agent
        .mirror()
        .clusters()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names, ["", "cluster-b"]);
}

// =============================================================================================
// 5. Secret missing, created, changed, deleted

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_access_secret_missing_then_created_then_rotated() {
    let mut a = Cluster::start("a").await;
    let mut b = Cluster::start("b").await;
    let mut c = Cluster::start("c").await;
    fill_local(&mut a).await;
    fill_remote(&mut b, 66).await;
    fill_remote(&mut c, 67).await;
    fill_overlap(&mut b, &mut c).await;
    a.put(
        RCC,
        "",
        "cluster-b",
        rcc(
            "cluster-b",
            json!({"clusterAccessSecret": {"kind": "Secret", "namespace": "kube-system", "name": "remote-b-access"}}),
        ),
    )
    .await;
    let server = TestServer::start(mesh_over(&a)).await;
    let mut agent = server.agent("all");

    // Missing Secret: ConfigIncomplete naming it; the local cluster is in sync regardless.
    pump(
        &mut agent,
        "ConfigIncomplete for the missing secret",
        WAIT,
        |m| m.in_sync() && is(m, "cluster-b", pb::ClusterState::ConfigIncomplete),
    )
    .await;
    let m = agent.mirror();
    let reason = error_of(m, "cluster-b");
    assert!(
        reason.contains("remote-b-access") && reason.contains("not found"),
        "reason should name the missing secret: {reason:?}"
    );
    assert_holds(m, &expected(&a, &[]), "while the secret is missing");

    // Created (stringData): B's data arrives, nothing else.
    a.put(
        SECRET,
        "kube-system",
        "remote-b-access",
        secret_string_data(
            "kube-system",
            "remote-b-access",
            &[("datastoreType", "etcdv3"), ("etcdEndpoints", &b.url())],
        ),
    )
    .await;
    let via_b = expected(&a, &[remote("cluster-b", &b, false)]);
    let mut events = pump(&mut agent, "InSync once the secret exists", LONG, |m| {
        is(m, "cluster-b", pb::ClusterState::InSync) && holds(m, &via_b)
    })
    .await;
    events.extend(sentinel(&mut a, &mut agent).await);
    let want_changes: Vec<Change> = cluster_keys(&via_b, "cluster-b")
        .into_iter()
        .map(|k| (k, "New"))
        .collect();
    assert_eq!(changes(&events), want_changes, "creating the secret");
    assert_local_stays_in_sync(&events, "creating the secret");
    assert!(error_of(agent.mirror(), "cluster-b").is_empty());

    // Rotated (base64 data, now pointing at C's etcd): reconnects, only the differences.
    let via_b = expected(&a, &[remote("cluster-b", &b, false)]);
    a.put(
        SECRET,
        "kube-system",
        "remote-b-access",
        secret_data(
            "kube-system",
            "remote-b-access",
            &[("datastoreType", "etcdv3"), ("etcdEndpoints", &c.url())],
        ),
    )
    .await;
    let via_c = expected(&a, &[remote("cluster-b", &c, false)]);
    let mut events = pump(
        &mut agent,
        "reconnected through the changed secret",
        LONG,
        |m| is(m, "cluster-b", pb::ClusterState::InSync) && holds(m, &via_c),
    )
    .await;
    events.extend(sentinel(&mut a, &mut agent).await);
    assert_eq!(
        changes(&events),
        diff(&via_b, &via_c),
        "rotating the secret"
    );
    assert_local_stays_in_sync(&events, "rotating the secret");
    assert!(
        agent.mirror().resources().keys().all(|k| k.kind != SECRET),
        "Secrets are never forwarded"
    );

    // Deleted: the cluster's data is withdrawn and it is ConfigIncomplete again.
    let c_keys = cluster_keys(&via_c, "cluster-b");
    a.delete(SECRET, "kube-system", "remote-b-access").await;
    let mut events = pump(
        &mut agent,
        "ConfigIncomplete after the secret is deleted",
        WAIT,
        |m| is(m, "cluster-b", pb::ClusterState::ConfigIncomplete),
    )
    .await;
    events.extend(sentinel(&mut a, &mut agent).await);
    let want_changes: Vec<Change> = c_keys.into_iter().map(|k| (k, "Deleted")).collect();
    assert_eq!(changes(&events), want_changes, "deleting the secret");
    let reason = error_of(agent.mirror(), "cluster-b");
    assert!(reason.contains("remote-b-access"), "{reason:?}");
    assert_holds(
        agent.mirror(),
        &expected(&a, &[]),
        "after the secret is deleted",
    );
}

// =============================================================================================
// 6. Invalid RCCs

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_rccs_are_config_incomplete_and_never_hold_the_local_in_sync() {
    let mut a = Cluster::start("a").await;
    let mut b = Cluster::start("b").await;
    let mut c = Cluster::start("c").await;
    fill_local(&mut a).await;
    fill_remote(&mut b, 66).await;
    fill_remote(&mut c, 67).await;
    a.put(
        RCC,
        "",
        "cluster-bad-type",
        rcc(
            "cluster-bad-type",
            json!({"datastoreType": "this-is-not-valid", "etcdEndpoints": b.url()}),
        ),
    )
    .await;
    a.put(
        SECRET,
        "kube-system",
        "c-access",
        secret_string_data(
            "kube-system",
            "c-access",
            &[("datastoreType", "etcdv3"), ("etcdEndpoints", &c.url())],
        ),
    )
    .await;
    let secret_ref = json!({"kind": "Secret", "namespace": "kube-system", "name": "c-access"});
    a.put(
        RCC,
        "",
        "cluster-bad-both",
        rcc(
            "cluster-bad-both",
            json!({"clusterAccessSecret": secret_ref, "etcdEndpoints": c.url()}),
        ),
    )
    .await;

    let (go, local) = gated(local_source(&a));
    let server = TestServer::start(meshsync_mesh::mesh(local, MeshConfig::default())).await;
    let mut agent = server.agent("all");
    pump(&mut agent, "the first (empty) status", WAIT, |m| {
        m.overall().is_some()
    })
    .await;
    let released = Instant::now();
    go.send(()).expect("release the local source");
    let events = pump(&mut agent, "local in sync", WAIT, Mirror::in_sync).await;
    let took = released.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "invalid RCCs must not delay the local in-sync: {took:?}"
    );
    let m = agent.mirror();
    let first_in_sync = statuses(&events)
        .into_iter()
        .find(|s| s.overall() == pb::SyncState::InSync)
        .expect("an in-sync status");
    for (cluster, needle) in [
        ("cluster-bad-type", "DatastoreType"),
        ("cluster-bad-both", "should not be set"),
    ] {
        let c = status_cluster(&first_in_sync, cluster)
            .unwrap_or_else(|| panic!("{cluster} missing from {first_in_sync:?}"));
        assert_eq!(c.state(), pb::ClusterState::ConfigIncomplete, "{cluster}");
        assert!(c.error.contains(needle), "{cluster}: {:?}", c.error);
    }
    assert_holds(m, &expected(&a, &[]), "local only");

    // Fixing the type: InSync with B's data, nothing else.
    a.put(
        RCC,
        "",
        "cluster-bad-type",
        rcc("cluster-bad-type", etcd_spec(&b.url())),
    )
    .await;
    let with_b = expected(&a, &[remote("cluster-bad-type", &b, false)]);
    let mut events = pump(&mut agent, "cluster-bad-type fixed", LONG, |m| {
        is(m, "cluster-bad-type", pb::ClusterState::InSync) && holds(m, &with_b)
    })
    .await;
    events.extend(sentinel(&mut a, &mut agent).await);
    let want_changes: Vec<Change> = cluster_keys(&with_b, "cluster-bad-type")
        .into_iter()
        .map(|k| (k, "New"))
        .collect();
    assert_eq!(changes(&events), want_changes);
    assert!(is(
        agent.mirror(),
        "cluster-bad-both",
        pb::ClusterState::ConfigIncomplete
    ));

    // Fixing the double configuration: the Secret alone now says where C is.
    a.put(
        RCC,
        "",
        "cluster-bad-both",
        rcc(
            "cluster-bad-both",
            json!({"clusterAccessSecret": secret_ref}),
        ),
    )
    .await;
    let with_both = expected(
        &a,
        &[
            remote("cluster-bad-type", &b, false),
            remote("cluster-bad-both", &c, false),
        ],
    );
    let mut events = pump(&mut agent, "cluster-bad-both fixed", LONG, |m| {
        is(m, "cluster-bad-both", pb::ClusterState::InSync) && holds(m, &with_both)
    })
    .await;
    events.extend(sentinel(&mut a, &mut agent).await);
    let want_changes: Vec<Change> = cluster_keys(&with_both, "cluster-bad-both")
        .into_iter()
        .map(|k| (k, "New"))
        .collect();
    assert_eq!(changes(&events), want_changes);
    assert_local_stays_in_sync(&events, "fixing RCCs");
    let m = agent.mirror();
    for cluster in ["cluster-bad-type", "cluster-bad-both"] {
        assert!(error_of(m, cluster).is_empty(), "{}", describe(m));
    }
}

// =============================================================================================
// 7. overlayRoutingMode switched

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_routing_mode_switch_adds_and_removes_only_routing_kinds() {
    let mut a = Cluster::start("a").await;
    let mut b = Cluster::start("b").await;
    fill_local(&mut a).await;
    fill_remote(&mut b, 66).await;
    a.put(
        RCC,
        "",
        "cluster-b",
        rcc("cluster-b", with_overlay(etcd_spec(&b.url()), "Disabled")),
    )
    .await;
    let server = TestServer::start(mesh_over(&a)).await;
    let mut agent = server.agent("all");
    let mut felix = agent_requiring(&server, "felix", &["cluster-b"]);
    pump(&mut agent, "in sync", WAIT, |m| {
        all_in_sync(m, &["cluster-b"])
    })
    .await;
    pump(&mut felix, "felix in sync", WAIT, Mirror::in_sync).await;
    let disabled = expected(&a, &[remote("cluster-b", &b, false)]);
    assert_holds(agent.mirror(), &disabled, "Disabled");

    // Enabled: B's Node, IPPool and IPAM block appear; nothing else changes.
    a.put(
        RCC,
        "",
        "cluster-b",
        rcc("cluster-b", with_overlay(etcd_spec(&b.url()), "Enabled")),
    )
    .await;
    let enabled = expected(&a, &[remote("cluster-b", &b, true)]);
    let mut events = pump(&mut agent, "overlay enabled", LONG, |m| {
        is(m, "cluster-b", pb::ClusterState::InSync) && holds(m, &enabled)
    })
    .await;
    events.extend(sentinel(&mut a, &mut agent).await);
    let want_changes = vec![
        (mkey("cluster-b", "IPAMBlock", "", "10-66-0-0-26"), "New"),
        (mkey("cluster-b", "IPPool", "", "pool-1"), "New"),
        (mkey("cluster-b", "Node", "", "node1"), "New"),
    ];
    assert_eq!(diff(&disabled, &enabled), want_changes);
    assert_eq!(changes(&events), want_changes, "enabling overlay routing");
    assert_local_stays_in_sync(&events, "enabling overlay routing");
    pump(&mut felix, "felix: overlay enabled", WAIT, |m| {
        holds(m, &felix_view(&enabled))
    })
    .await;

    // Back to Disabled: exactly those three are deleted, WEPs untouched.
    a.put(
        RCC,
        "",
        "cluster-b",
        rcc("cluster-b", with_overlay(etcd_spec(&b.url()), "Disabled")),
    )
    .await;
    let disabled = expected(&a, &[remote("cluster-b", &b, false)]);
    let mut events = pump(&mut agent, "overlay disabled", LONG, |m| {
        is(m, "cluster-b", pb::ClusterState::InSync) && holds(m, &disabled)
    })
    .await;
    events.extend(sentinel(&mut a, &mut agent).await);
    let want_changes: Vec<Change> = want_changes
        .into_iter()
        .map(|(k, _)| (k, "Deleted"))
        .collect();
    assert_eq!(changes(&events), want_changes, "disabling overlay routing");
    assert_local_stays_in_sync(&events, "disabling overlay routing");
    pump(&mut felix, "felix: overlay disabled", WAIT, |m| {
        holds(m, &felix_view(&disabled))
    })
    .await;
}

// =============================================================================================
// 8. Local in-sync gating

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_in_sync_waits_for_remotes_known_at_start_until_they_fail() {
    let mut a = Cluster::start("a").await;
    fill_local(&mut a).await;
    // B: nothing listens (fails at once). C: accepts, then drops the connection after 1.5 s
    // (fails slowly, long after the local listing is done, so the hold is observable).
    let slow = SlowFailingEndpoint::start(Duration::from_millis(1500)).await;
    a.put(
        RCC,
        "",
        "cluster-b",
        rcc("cluster-b", etcd_spec("http://127.0.0.1:1")),
    )
    .await;
    a.put(RCC, "", "cluster-c", rcc("cluster-c", etcd_spec(&slow.url)))
        .await;

    let (go, local) = gated(local_source(&a));
    let server = TestServer::start(meshsync_mesh::mesh(local, MeshConfig::default())).await;
    let mut agent = server.agent("all");
    // The agent sees the state before the local datastore is even read.
    pump(&mut agent, "the first (empty) status", WAIT, |m| {
        m.overall().is_some()
    })
    .await;
    assert_eq!(
        agent.mirror().overall(),
        Some(pb::SyncState::WaitForDatastore)
    );
    let released = Instant::now();
    go.send(()).expect("release the local source");
    let events = pump(&mut agent, "local in sync", WAIT, Mirror::in_sync).await;
    let took = released.elapsed();
    let list = statuses(&events);
    let first_in_sync = list
        .iter()
        .find(|s| s.overall() == pb::SyncState::InSync)
        .expect("an in-sync status");
    for cluster in ["cluster-b", "cluster-c"] {
        let c = status_cluster(first_in_sync, cluster)
            .unwrap_or_else(|| panic!("{cluster} missing:{}", describe_statuses(&list)));
        assert_eq!(
            c.state(),
            pb::ClusterState::ConnectionFailed,
            "{cluster} at the first in-sync; statuses:{}",
            describe_statuses(&list)
        );
        assert!(
            !c.error.is_empty(),
            "{cluster}: ConnectionFailed needs a reason"
        );
    }
    assert!(took < Duration::from_secs(10), "in-sync took {took:?}");
    assert!(
        took >= Duration::from_millis(1400),
        "in-sync after {took:?}: it was not held for the slow remote"
    );
    // The held in-sync covered the local data (all of it, and no remote data).
    assert_holds(agent.mirror(), &expected(&a, &[]), "at the first in-sync");
    // The hold was visible: B had already failed (at once) while the in-sync still waited for C.
    let held = list
        .iter()
        .take_while(|s| s.overall() != pb::SyncState::InSync)
        .any(|s| {
            status_cluster(s, "cluster-b").map(|c| c.state())
                == Some(pb::ClusterState::ConnectionFailed)
        });
    assert!(
        held,
        "no status showed B failed with the in-sync still held:{}",
        describe_statuses(&list)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_holding_the_local_in_sync_releases_it_when_invalidated_or_deleted() {
    let mut a = Cluster::start("a").await;
    fill_local(&mut a).await;
    // Both remotes hang (TCP accepted, never answered), so they would hold the local in-sync
    // far longer than this test runs; only stopping them can release it.
    // (Two endpoints: two RCCs at one datastore would be refused as duplicates.)
    let hung = SlowFailingEndpoint::start(Duration::from_secs(3600)).await;
    let hung_c = SlowFailingEndpoint::start(Duration::from_secs(3600)).await;
    a.put(RCC, "", "cluster-b", rcc("cluster-b", etcd_spec(&hung.url)))
        .await;
    a.put(
        RCC,
        "",
        "cluster-c",
        rcc("cluster-c", etcd_spec(&hung_c.url)),
    )
    .await;
    let (go, local) = gated(local_source(&a));
    let server = TestServer::start(meshsync_mesh::mesh(local, MeshConfig::default())).await;
    let mut agent = server.agent("all");
    pump(&mut agent, "the first (empty) status", WAIT, |m| {
        m.overall().is_some()
    })
    .await;
    let released = Instant::now();
    go.send(()).expect("release the local source");
    // The whole local listing has arrived (so the local source has reported in sync), and the
    // in-sync is held for the two remotes.
    let local_only = expected(&a, &[]);
    pump(&mut agent, "the local data", WAIT, |m| {
        holds(m, &local_only)
    })
    .await;
    assert_ne!(
        agent.mirror().overall(),
        Some(pb::SyncState::InSync),
        "{}",
        describe(agent.mirror())
    );

    // Invalidating B releases B, but C still holds the in-sync.
    a.put(
        RCC,
        "",
        "cluster-b",
        rcc(
            "cluster-b",
            json!({"datastoreType": "bogus", "etcdEndpoints": hung.url}),
        ),
    )
    .await;
    pump(&mut agent, "cluster-b ConfigIncomplete", WAIT, |m| {
        is(m, "cluster-b", pb::ClusterState::ConfigIncomplete)
    })
    .await;
    let m = agent.mirror();
    assert!(
        error_of(m, "cluster-b").contains("stopping watch remote"),
        "{}",
        describe(m)
    );
    assert_ne!(
        m.overall(),
        Some(pb::SyncState::InSync),
        "C still holds it: {}",
        describe(m)
    );

    // Deleting C releases the last hold.
    a.delete(RCC, "", "cluster-c").await;
    let events = pump(&mut agent, "local in sync", WAIT, Mirror::in_sync).await;
    let took = released.elapsed();
    assert!(took < Duration::from_secs(10), "in-sync took {took:?}");
    let list = statuses(&events);
    let first_in_sync = list
        .iter()
        .find(|s| s.overall() == pb::SyncState::InSync)
        .expect("an in-sync status");
    assert!(
        status_cluster(first_in_sync, "cluster-c").is_none(),
        "{}",
        describe_statuses(&list)
    );
    assert_eq!(
        status_cluster(first_in_sync, "cluster-b").map(|c| c.state()),
        Some(pb::ClusterState::ConfigIncomplete)
    );
    assert_holds(agent.mirror(), &expected(&a, &[]), "at the in-sync");
}

/// Product bug (see the report): a remote that accepts the TCP connection but never answers is
/// only reported `ConnectionFailed` when HTTP/2 keep-alive gives up (~20 s), and holds the local
/// in-sync that long. The remote source sets a 3 s connect timeout but leaves the 30 s request
/// timeout (crates/meshsync-mesh/src/remote.rs, `start`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_remote_fails_within_seconds() {
    let mut a = Cluster::start("a").await;
    fill_local(&mut a).await;
    let hung = SlowFailingEndpoint::start(Duration::from_secs(3600)).await;
    a.put(RCC, "", "cluster-b", rcc("cluster-b", etcd_spec(&hung.url)))
        .await;
    let (go, local) = gated(local_source(&a));
    let server = TestServer::start(meshsync_mesh::mesh(local, MeshConfig::default())).await;
    let mut agent = server.agent("all");
    pump(&mut agent, "the first (empty) status", WAIT, |m| {
        m.overall().is_some()
    })
    .await;
    let released = Instant::now();
    go.send(()).expect("release the local source");
    pump(&mut agent, "local in sync", LONG, Mirror::in_sync).await;
    let took = released.elapsed();
    let m = agent.mirror();
    assert!(
        is(m, "cluster-b", pb::ClusterState::ConnectionFailed),
        "{}",
        describe(m)
    );
    assert!(
        took < Duration::from_secs(10),
        "a hung remote held the local in-sync for {took:?}"
    );
}

/// Product bug (see the report): once a `withdraw` cluster's data is withdrawn, the next
/// connection failure with a different error text replaces the status error, so the status no
/// longer says the data is withdrawn although it still is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawn_announcement_survives_later_failures() {
    let mut a = Cluster::start("a").await;
    let mut b = Cluster::start("b").await;
    fill_local(&mut a).await;
    fill_remote(&mut b, 66).await;
    let mut withdrawing = rcc("cluster-b", etcd_spec(&b.url()));
    // Shorter than the first retry (0.25-0.5 s): the next failure comes after the withdrawal.
    withdrawing["metadata"]["annotations"] = json!({
        "meshsync.io/lost-cluster-policy": "withdraw",
        "meshsync.io/lost-cluster-grace-period": "100ms"
    });
    a.put(RCC, "", "cluster-b", withdrawing).await;
    let server = TestServer::start(mesh_over(&a)).await;
    let mut agent = server.agent("all");
    pump(&mut agent, "in sync", WAIT, |m| {
        all_in_sync(m, &["cluster-b"])
    })
    .await;
    b.kill();
    pump(&mut agent, "withdrawn", WAIT, |m| {
        error_of(m, "cluster-b").contains("withdrawn")
    })
    .await;
    let announced = error_of(agent.mirror(), "cluster-b");
    // The watch failed first; the reconnect fails differently ("Connection refused").
    pump(&mut agent, "the next failure", WAIT, |m| {
        error_of(m, "cluster-b") != announced
    })
    .await;
    let m = agent.mirror();
    assert!(
        m.resources().keys().all(|k| k.cluster != "cluster-b"),
        "still withdrawn"
    );
    assert!(
        error_of(m, "cluster-b").contains("withdrawn"),
        "the status no longer says the data is withdrawn: {}",
        describe(m)
    );
}

// =============================================================================================
// 9. Lost-cluster policy withdraw

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdraw_policy_deletes_a_lost_clusters_data_after_the_grace_period() {
    let mut a = Cluster::start("a").await;
    let mut b = Cluster::start("b").await;
    let mut c = Cluster::start("c").await;
    fill_local(&mut a).await;
    fill_remote(&mut b, 66).await;
    fill_remote(&mut c, 67).await;
    let mut withdrawing = rcc("cluster-b", etcd_spec(&b.url()));
    withdrawing["metadata"]["annotations"] = json!({
        "meshsync.io/lost-cluster-policy": "withdraw",
        "meshsync.io/lost-cluster-grace-period": "1s"
    });
    a.put(RCC, "", "cluster-b", withdrawing).await;
    a.put(RCC, "", "cluster-c", rcc("cluster-c", etcd_spec(&c.url())))
        .await;
    let server = TestServer::start(mesh_over(&a)).await;
    let mut agent = server.agent("all");
    pump(&mut agent, "in sync", WAIT, |m| {
        all_in_sync(m, &["cluster-b", "cluster-c"])
    })
    .await;
    let full = expected(
        &a,
        &[
            remote("cluster-b", &b, false),
            remote("cluster-c", &c, false),
        ],
    );
    assert_holds(agent.mirror(), &full, "before the kill");
    let b_keys = cluster_keys(&full, "cluster-b");

    b.kill();
    let mut events = pump(&mut agent, "cluster-b ConnectionFailed", LONG, |m| {
        is(m, "cluster-b", pb::ClusterState::ConnectionFailed)
    })
    .await;
    let failed = Instant::now();
    // Still there right after the failure: the grace period runs.
    assert_holds(agent.mirror(), &full, "within the grace period");
    events.extend(
        pump(&mut agent, "B's data withdrawn", WAIT, |m| {
            m.resources().keys().all(|k| k.cluster != "cluster-b")
        })
        .await,
    );
    let waited = failed.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(6),
        "withdrawn {waited:?} after the failure was seen (grace 1 s)"
    );
    events.extend(
        pump(&mut agent, "status says withdrawn", WAIT, |m| {
            error_of(m, "cluster-b").contains("withdrawn")
        })
        .await,
    );
    let m = agent.mirror();
    assert!(
        is(m, "cluster-b", pb::ClusterState::ConnectionFailed),
        "{}",
        describe(m)
    );
    assert_eq!(m.clusters()["cluster-b"].keys, 0);
    assert!(
        is(m, "cluster-c", pb::ClusterState::InSync),
        "{}",
        describe(m)
    );
    events.extend(sentinel(&mut a, &mut agent).await);
    let want_changes: Vec<Change> = b_keys.iter().cloned().map(|k| (k, "Deleted")).collect();
    assert_eq!(changes(&events), want_changes, "withdrawal");
    assert_local_stays_in_sync(&events, "withdrawal");

    // B comes back: so does its data.
    let full = expected(
        &a,
        &[
            remote("cluster-b", &b, false),
            remote("cluster-c", &c, false),
        ],
    );
    b.restart().await;
    let mut events = pump(&mut agent, "B back in sync", LONG, |m| {
        is(m, "cluster-b", pb::ClusterState::InSync) && holds(m, &full)
    })
    .await;
    events.extend(sentinel(&mut a, &mut agent).await);
    let want_changes: Vec<Change> = b_keys.into_iter().map(|k| (k, "New")).collect();
    assert_eq!(changes(&events), want_changes, "B's return");
    assert!(error_of(agent.mirror(), "cluster-b").is_empty());
}

// =============================================================================================
// 10. The binary's operator log lines

/// `meshsync serve` as a child process; stderr lines arrive on a channel. Killed on drop.
struct ServeChild {
    child: Child,
    rx: mpsc::UnboundedReceiver<String>,
    lines: Vec<String>,
}

impl ServeChild {
    fn start(args: &[&str]) -> ServeChild {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_meshsync"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("MESHSYNC_") {
                cmd.env_remove(&name);
            }
        }
        let mut child = cmd
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn meshsync serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ServeChild {
            child,
            rx,
            lines: Vec::new(),
        }
    }

    /// The first stderr line satisfying `pred`, waiting for it if needed.
    async fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.lines.iter().find(|l| pred(l)) {
            return line.clone();
        }
        let got = tokio::time::timeout(LONG, async {
            while let Some(line) = self.rx.recv().await {
                self.lines.push(line.clone());
                if pred(&line) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match got {
            Ok(Some(line)) => line,
            _ => panic!(
                "no stderr line for {what}; stderr so far:\n{}",
                self.lines.join("\n")
            ),
        }
    }

    /// Kills the server and returns its whole stderr.
    async fn kill_and_collect(&mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let rest = tokio::time::timeout(WAIT, async {
            while let Some(line) = self.rx.recv().await {
                self.lines.push(line);
            }
        })
        .await;
        assert!(rest.is_ok(), "stderr did not close after the kill");
        self.lines.clone()
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text-format log line's message is exactly `message` (then nothing or fields).
fn message_is(line: &str, message: &str) -> bool {
    line.split_once(": ").is_some_and(|(_, rest)| {
        rest == message
            || rest
                .strip_prefix(message)
                .is_some_and(|fields| fields.starts_with(' '))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_logs_one_in_sync_line_per_rcc_then_the_local_one() {
    let mut a = Cluster::start("a").await;
    let mut b = Cluster::start("b").await;
    let mut c = Cluster::start("c").await;
    fill_local(&mut a).await;
    fill_remote(&mut b, 66).await;
    fill_remote(&mut c, 67).await;
    a.put(RCC, "", "cluster-b", rcc("cluster-b", etcd_spec(&b.url())))
        .await;
    a.put(RCC, "", "cluster-c", rcc("cluster-c", etcd_spec(&c.url())))
        .await;
    let datastore = format!("etcd://{}", a.etcd.host_port());
    let mut serve = ServeChild::start(&[
        "serve",
        "--datastore",
        &datastore,
        "--listen",
        "127.0.0.1:0",
        "--health-listen",
        "127.0.0.1:0",
    ]);
    let serving = serve
        .wait_line("the serving line", |l| message_is(l, "meshsync serving"))
        .await;
    let grpc = serving
        .split_whitespace()
        .find_map(|t| t.strip_prefix("grpc="))
        .unwrap_or_else(|| panic!("no grpc= in {serving:?}"))
        .to_string();
    serve
        .wait_line("the local in-sync line", |l| {
            message_is(l, "Sending in-sync update for local datastore")
        })
        .await;

    // An agent on the real server sees the union; a real change from B proves the server is
    // live past start-up before its log is counted.
    let mut config = meshsync_agent::AgentConfig::new(format!("http://{grpc}"));
    config.subscription = "all".into();
    config.required_clusters = vec!["cluster-b".into(), "cluster-c".into()];
    let mut agent = Agent::new(config).expect("agent");
    let want = expected(
        &a,
        &[
            remote("cluster-b", &b, false),
            remote("cluster-c", &c, false),
        ],
    );
    pump(&mut agent, "agent of the binary in sync", WAIT, |m| {
        m.in_sync() && holds(m, &want)
    })
    .await;
    b.put(
        "WorkloadEndpoint",
        "ns1",
        "node1-k8s-pod--5-eth0",
        wep(
            "ns1",
            "node1-k8s-pod--5-eth0",
            "node1",
            "10.66.0.5",
            "kns.ns1",
        ),
    )
    .await;
    let want = expected(
        &a,
        &[
            remote("cluster-b", &b, false),
            remote("cluster-c", &c, false),
        ],
    );
    pump(&mut agent, "a live change from B", WAIT, |m| {
        holds(m, &want)
    })
    .await;

    let lines = serve.kill_and_collect().await;
    let find = |message: &str| -> Vec<usize> {
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| message_is(l, message))
            .map(|(i, _)| i)
            .collect()
    };
    let in_b = find("Sending in-sync update for RemoteClusterConfiguration(cluster-b)");
    let in_c = find("Sending in-sync update for RemoteClusterConfiguration(cluster-c)");
    let local = find("Sending in-sync update for local datastore");
    let all_in_sync_lines: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("Sending in-sync update"))
        .collect();
    let log = lines.join("\n");
    assert_eq!(in_b.len(), 1, "cluster-b in-sync lines:\n{log}");
    assert_eq!(in_c.len(), 1, "cluster-c in-sync lines:\n{log}");
    assert_eq!(local.len(), 1, "local in-sync lines:\n{log}");
    assert_eq!(all_in_sync_lines.len(), 3, "{all_in_sync_lines:#?}");
    assert!(
        local[0] > in_b[0] && local[0] > in_c[0],
        "the local in-sync line must follow both remotes':\n{log}"
    );
}
