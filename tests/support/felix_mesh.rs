//! Two clusters meshed for the real Felix (`felix_mesh.rs`, `felix_mesh_more.rs`): the dataset of
//! one cluster ("site") on etcd or on a real kube-apiserver, the RCC that points one site at the
//! other, `meshsync serve` with its Typha port, and what a Felix of one site must program once it
//! holds the other ([`meshed`]) or once it holds nothing of it ([`without`]).
//!
//! Every site has one node, one VXLAN pool `10.<n>.0.0/16` with the node's block
//! `10.<n>.0.0/26`, and in namespace `prod` a db pod (`.2`) and a web pod (`.3`); a
//! GlobalNetworkPolicy allows from `app == "db"` and a NetworkPolicy in `prod` from the other
//! cluster (`meshsync.io/cluster == "<other>"`), both selecting `all()`, so both are active on the
//! site's node and their rules' IP sets are what its Felix holds of the other cluster. The two
//! datastores write the same dataset, as Calico stores it in each.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use meshsync_etcd::EtcdClient;
use meshsync_typha::v1::remote::default_vtep_mac;
use serde_json::{Value, json};

use super::apiserver::ApiServer;
use super::binary::{DEADLINE, Serve, meshsync, run};
use super::felix::{Felix, RecordedState};
use super::log_text::text_field;
use super::typha_scenario::{
    apply, block, crd, ipam_block_crd, k8s_namespace, k8s_pod, put, put_namespace_profile, put_v3,
    put_wep,
};

/// Felix's start (config from the datastore, Typha connection, first sync).
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// A change reaching a Felix's dataplane, or a meshsync's status.
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
pub const IPAM: &str = "/calico/ipam/v2";
pub const DB_SELECTOR: &str = r#"app == "db""#;
/// The name of each site's IP pool.
pub const POOL: &str = "default-ipv4-ippool";
/// The GlobalNetworkPolicy allowing from [`DB_SELECTOR`] and the NetworkPolicy in `prod` allowing
/// from the other cluster (names without the tier).
pub const GLOBAL_POLICY: &str = "allow-from-db";
pub const NAMESPACED_POLICY: &str = "allow-from-other-cluster";

/// One cluster of a test: its name (the other side's RCC name for it) and addresses.
#[derive(Clone, Copy, Debug)]
pub struct Site {
    pub name: &'static str,
    pub node: &'static str,
    /// Second octet of its pod addresses (`10.<n>.0.0/16`) and last octet of its node's IP.
    pub n: u8,
    /// The node's explicit VXLAN MAC (`vxlanTunnelMACAddr`, or KDD's annotation), if any.
    pub vxlan_mac: Option<&'static str>,
}

pub const A: Site = Site {
    name: "a",
    node: "a1",
    n: 1,
    vxlan_mac: None,
};
pub const B: Site = Site {
    name: "b",
    node: "b1",
    n: 2,
    vxlan_mac: None,
};

impl Site {
    pub fn node_ip(self) -> String {
        format!("10.0.0.{}", self.n)
    }
    pub fn tunnel(self) -> String {
        format!("10.{}.0.1", self.n)
    }
    pub fn pod_ip(self, last: u8) -> String {
        format!("10.{}.0.{last}", self.n)
    }
    pub fn pool(self) -> String {
        format!("10.{}.0.0/16", self.n)
    }
    pub fn block(self) -> String {
        format!("10.{}.0.0/26", self.n)
    }
    /// The name its node has in the other cluster's Felix.
    pub fn remote_node(self) -> String {
        format!("{}.{}", self.name, self.node)
    }
    /// The MAC its node's VXLAN device has: the explicit one, else the one Felix derives from
    /// the node's (original) name.
    pub fn vtep_mac(self) -> String {
        self.vxlan_mac
            .map_or_else(|| default_vtep_mac(self.node, false), str::to_string)
    }
    /// The namespaced policy's rule selects the other cluster's pods.
    pub fn cluster_selector(other: Site) -> String {
        format!(r#"meshsync.io/cluster == "{}""#, other.name)
    }
}

/// Pod IPs as the `/32` members of an IP set.
pub fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().map(|s| format!("{s}/32")).collect()
}

/// An IP pool's encapsulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encap {
    Vxlan,
    Ipip,
}

/// An IPPool's spec (v3 fields, the same in etcd and in the CRD).
pub fn pool_spec(cidr: &str, encap: Encap) -> Value {
    let (ipip, vxlan) = match encap {
        Encap::Vxlan => ("Never", "Always"),
        Encap::Ipip => ("Always", "Never"),
    };
    json!({"cidr": cidr, "blockSize": 26, "ipipMode": ipip, "vxlanMode": vxlan,
           "natOutgoing": true, "nodeSelector": "all()", "allowedUses": ["Workload", "Tunnel"]})
}

fn cluster_information(site: Site, cluster_type: &str) -> Value {
    json!({"clusterGUID": format!("{}0000000000000000000000000000000", site.n), "clusterType": cluster_type, "calicoVersion": "v3.31.0", "datastoreReady": true})
}

fn felix_configuration() -> Value {
    json!({"reportingInterval": "0s", "bpfEnabled": false})
}

fn default_tier() -> Value {
    json!({"order": 1_000_000, "defaultAction": "Deny"})
}

fn global_policy_spec() -> Value {
    json!({"tier": "default", "order": 100, "selector": "all()", "types": ["Ingress"],
           "ingress": [{"action": "Allow", "source": {"selector": DB_SELECTOR}}]})
}

fn namespaced_policy_spec(other: Site) -> Value {
    json!({"tier": "default", "order": 200, "selector": "all()", "types": ["Ingress"],
           "ingress": [{"action": "Allow", "source": {"selector": Site::cluster_selector(other)}}]})
}

/// The site's pool in etcd (replacing the one there).
pub async fn put_pool(client: &EtcdClient, cidr: &str, encap: Encap) {
    put_v3(
        client,
        "ippools",
        "IPPool",
        None,
        POOL,
        Value::Null,
        pool_spec(cidr, encap),
    )
    .await;
}

/// What every Felix of a test reads from its own datastore at start, on etcd: ClusterInformation
/// (`guid`, ready), the default FelixConfiguration and the default tier.
pub async fn put_cluster_basics(client: &EtcdClient, guid: &str, cluster_type: &str) {
    put_v3(
        client,
        "clusterinformations",
        "ClusterInformation",
        None,
        "default",
        Value::Null,
        json!({"clusterGUID": guid, "clusterType": cluster_type, "calicoVersion": "v3.31.0", "datastoreReady": true}),
    )
    .await;
    put_v3(
        client,
        "felixconfigurations",
        "FelixConfiguration",
        None,
        "default",
        Value::Null,
        felix_configuration(),
    )
    .await;
    put_v3(
        client,
        "tiers",
        "Tier",
        None,
        "default",
        Value::Null,
        default_tier(),
    )
    .await;
}

/// A Node on etcd with its BGP address and VXLAN tunnel address (and MAC, if given).
pub async fn put_vxlan_node(
    client: &EtcdClient,
    name: &str,
    ip: &str,
    tunnel: &str,
    mac: Option<&str>,
) {
    let mut spec = json!({"bgp": {"ipv4Address": format!("{ip}/24")},
           "ipv4VXLANTunnelAddr": tunnel,
           "addresses": [{"address": ip, "type": "InternalIP"}],
           "orchRefs": [{"nodeName": name, "orchestrator": "k8s"}]});
    if let Some(mac) = mac {
        spec["vxlanTunnelMACAddr"] = mac.into();
    }
    put_v3(
        client,
        "nodes",
        "Node",
        None,
        name,
        json!({"kubernetes.io/hostname": name}),
        spec,
    )
    .await;
}

/// An IPAM block of `node` on etcd (`cidr` a /26, the ordinals `used` allocated) and its
/// affinity, at Calico's etcd keys.
pub async fn put_node_block(
    client: &EtcdClient,
    node: &str,
    cidr: &str,
    used: &[(usize, &str, &str)],
) {
    let key = cidr.replace('/', "-");
    put(
        client,
        format!("{IPAM}/assignment/ipv4/block/{key}"),
        &block(cidr, node, used),
    )
    .await;
    put(
        client,
        format!("{IPAM}/host/{node}/ipv4/block/{key}"),
        &json!({"state": "confirmed", "deleted": false}),
    )
    .await;
}

/// A site on etcd ([the module's dataset](self)), its pool with `encap`.
pub async fn write_site_with(client: &EtcdClient, site: Site, other: Site, encap: Encap) {
    put_cluster_basics(
        client,
        &format!("{}0000000000000000000000000000000", site.n),
        "k8s,typha",
    )
    .await;
    put_pool(client, &site.pool(), encap).await;
    put_vxlan_node(
        client,
        site.node,
        &site.node_ip(),
        &site.tunnel(),
        site.vxlan_mac,
    )
    .await;
    put_node_block(
        client,
        site.node,
        &site.block(),
        &[(1, "", "tunnel"), (2, "prod", "db"), (3, "prod", "web")],
    )
    .await;
    put_namespace_profile(client, "prod", site.name).await;
    put_v3(
        client,
        "profiles",
        "Profile",
        None,
        "ksa.prod.default",
        Value::Null,
        json!({"labelsToApply": {"pcsa.projectcalico.org/name": "default"}}),
    )
    .await;
    put_wep(client, site.node, "prod", "db", "db", &site.pod_ip(2)).await;
    put_wep(client, site.node, "prod", "web", "web", &site.pod_ip(3)).await;
    put_v3(
        client,
        "globalnetworkpolicies",
        "GlobalNetworkPolicy",
        None,
        &format!("default.{GLOBAL_POLICY}"),
        Value::Null,
        global_policy_spec(),
    )
    .await;
    put_v3(
        client,
        "networkpolicies",
        "NetworkPolicy",
        Some("prod"),
        &format!("default.{NAMESPACED_POLICY}"),
        Value::Null,
        namespaced_policy_spec(other),
    )
    .await;
}

/// A site on etcd with a VXLAN pool.
pub async fn write_site(client: &EtcdClient, site: Site, other: Site) {
    write_site_with(client, site, other, Encap::Vxlan).await;
}

/// The same site on the Kubernetes datastore, as Calico keeps it there: a Node whose Calico
/// fields are `projectcalico.org/*` annotations, a Namespace with its default ServiceAccount,
/// Pods whose IPs are the CNI plugin's annotations (the KDD converter makes them
/// WorkloadEndpoints, the Namespace and ServiceAccount their profiles), and Calico's
/// `crd.projectcalico.org/v1` resources. Blocks (kubectl).
pub fn write_kdd_site(api: &ApiServer, site: Site, other: Site) {
    let mut annotations = json!({
        "projectcalico.org/IPv4Address": format!("{}/24", site.node_ip()),
        "projectcalico.org/IPv4VXLANTunnelAddr": site.tunnel(),
    });
    if let Some(mac) = site.vxlan_mac {
        annotations["projectcalico.org/VXLANTunnelMACAddr"] = mac.into();
    }
    let mut objects = vec![json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": site.node, "labels": {"kubernetes.io/hostname": site.node},
                     "annotations": annotations},
        "spec": {},
    })];
    objects.extend(k8s_namespace("prod", site.name));
    apply(api, objects);
    let block_name = site.block().replace(['.', '/'], "-");
    apply(
        api,
        vec![
            k8s_pod("prod", "db", site.node, "db", &site.pod_ip(2)),
            k8s_pod("prod", "web", site.node, "web", &site.pod_ip(3)),
            crd(
                "ClusterInformation",
                None,
                "default",
                Value::Null,
                cluster_information(site, "k8s,typha,kdd"),
            ),
            crd(
                "FelixConfiguration",
                None,
                "default",
                Value::Null,
                felix_configuration(),
            ),
            crd(
                "IPPool",
                None,
                POOL,
                Value::Null,
                pool_spec(&site.pool(), Encap::Vxlan),
            ),
            ipam_block_crd(
                &block_name,
                &site.block(),
                site.node,
                &[(1, "", "tunnel"), (2, "prod", "db"), (3, "prod", "web")],
            ),
            crd(
                "BlockAffinity",
                None,
                &format!("{}-{block_name}", site.node),
                Value::Null,
                json!({"node": site.node, "cidr": site.block(), "state": "confirmed", "deleted": "false"}),
            ),
            crd("Tier", None, "default", Value::Null, default_tier()),
            crd(
                "GlobalNetworkPolicy",
                None,
                &format!("default.{GLOBAL_POLICY}"),
                Value::Null,
                global_policy_spec(),
            ),
            crd(
                "NetworkPolicy",
                Some("prod"),
                &format!("default.{NAMESPACED_POLICY}"),
                Value::Null,
                namespaced_policy_spec(other),
            ),
        ],
    );
}

/// The RCC (etcd) named `other` with `spec` (overlay routing is added), withdrawing the cluster
/// 1 s after it is lost.
pub async fn put_rcc_spec(client: &EtcdClient, other: Site, mut spec: Value) {
    spec["syncOptions"] = json!({"overlayRoutingMode": "Enabled"});
    let value = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "RemoteClusterConfiguration",
        "metadata": {"name": other.name, "annotations": {
            "meshsync.io/lost-cluster-policy": "withdraw",
            "meshsync.io/lost-cluster-grace-period": "1s"}},
        "spec": spec,
    });
    put(
        client,
        format!(
            "/calico/resources/v3/projectcalico.org/remoteclusterconfigurations/{}",
            other.name
        ),
        &value,
    )
    .await;
}

/// The RCC in one cluster for the other on etcd at `other_etcd`.
pub async fn put_rcc(client: &EtcdClient, other: Site, other_etcd: &str) {
    put_rcc_spec(
        client,
        other,
        json!({"datastoreType": "etcdv3", "etcdEndpoints": other_etcd}),
    )
    .await;
}

/// The members of the IP set of the (only) active rule selector that mentions `part`.
pub fn members_with(state: &RecordedState, part: &str) -> Option<BTreeSet<String>> {
    let selector = state.selector_ipsets.keys().find(|s| s.contains(part))?;
    state.members_for_selector(selector)
}

/// The members of the source IP set of inbound rule `rule` of the active policy whose name
/// contains `policy` (a rule's own set, where several rules share a selector's text).
pub fn rule_members(state: &RecordedState, policy: &str, rule: usize) -> Option<BTreeSet<String>> {
    let (_, active) = state.policies.iter().find(|(k, _)| k.contains(policy))?;
    let id = active.inbound_rules.get(rule)?.src_ip_set_ids.first()?;
    Some(
        state
            .ipsets
            .get(id)
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default(),
    )
}

/// What `site`'s Felix must program once it holds the `other` cluster: both db pods in the db
/// set, the other cluster's pods in the cluster set, the route to its block via its node, and
/// that node's VTEP with the MAC the other cluster's Felix gives its own device.
pub fn meshed(site: Site, other: Site) -> impl Fn(&RecordedState) -> Result<(), String> {
    move |state: &RecordedState| {
        let expect = |what: &str, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(format!("{} lacks {what}", site.name))
            }
        };
        expect("in-sync", state.in_sync)?;
        let db = state.members_for_selector(DB_SELECTOR);
        expect(
            &format!("both db pods in {DB_SELECTOR}: {db:?}"),
            db == Some(set(&[site.pod_ip(2), other.pod_ip(2)])),
        )?;
        let cluster = members_with(state, "meshsync.io/cluster");
        expect(
            &format!("the other cluster's pods in its cluster selector: {cluster:?}"),
            cluster == Some(set(&[other.pod_ip(2), other.pod_ip(3)])),
        )?;
        remote_route(site, other)(state)?;
        let vtep = state.vtep(&other.remote_node());
        expect(
            &format!("{}'s VTEP: {vtep:?}", other.remote_node()),
            vtep.is_some_and(|v| {
                v.parent_device_ip == other.node_ip()
                    && v.ipv4_addr == other.tunnel()
                    && v.mac == other.vtep_mac()
            }),
        )?;
        Ok(())
    }
}

/// `site`'s Felix routes to `other`'s block by VXLAN via `other`'s renamed node.
pub fn remote_route(site: Site, other: Site) -> impl Fn(&RecordedState) -> Result<(), String> {
    move |state: &RecordedState| {
        let route = state.route(&other.block());
        let ok = route.is_some_and(|r| {
            r.has_type("REMOTE_WORKLOAD")
                && r.ip_pool_type == "VXLAN"
                && r.dst_node_name == other.remote_node()
                && r.dst_node_ip == other.node_ip()
        });
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{} lacks a VXLAN route to {} via {}: {route:?}",
                site.name,
                other.block(),
                other.remote_node()
            ))
        }
    }
}

/// Waits until `check` passes on `felix`'s recorded state (the first sync has longer).
pub async fn wait_for(
    felix: &mut Felix,
    what: &str,
    check: impl Fn(&RecordedState) -> Result<(), String>,
) {
    let timeout = if felix.read_state().ok().flatten().is_some_and(|s| s.in_sync) {
        CHANGE_TIMEOUT
    } else {
        SYNC_TIMEOUT
    };
    let result = felix.wait_state(what, |s| check(s).is_ok(), timeout).await;
    if let Err(e) = result {
        let last = felix.read_state().ok().flatten().unwrap_or_default();
        panic!("{e}\nfirst unmet: {:?}", check(&last).err());
    }
}

/// Nothing of the other cluster is left in `state` (its pods, block route, VTEP).
pub fn without(site: Site, other: Site) -> impl Fn(&RecordedState) -> Result<(), String> {
    move |state: &RecordedState| {
        let db = state.members_for_selector(DB_SELECTOR);
        let ok = db == Some(set(&[site.pod_ip(2)]))
            && members_with(state, "meshsync.io/cluster") == Some(BTreeSet::new())
            && state
                .route(&other.block())
                .is_none_or(|r| !r.has_type("REMOTE_WORKLOAD"))
            && state.vtep(&other.remote_node()).is_none();
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{} still holds {}'s data:\n{}",
                site.name,
                other.name,
                state.summary()
            ))
        }
    }
}

/// `meshsync serve` with a Typha port and a metrics port (on loopback), and what a test asks it.
pub struct MeshServe {
    pub serve: Serve,
    pub grpc: SocketAddr,
    pub typha: SocketAddr,
    pub metrics: SocketAddr,
}

impl MeshServe {
    /// `serve --datastore DATASTORE --typha-listen … --metrics-listen …` and `extra`; waits for
    /// its serving line.
    pub fn start(datastore: &str, extra: &[&str]) -> MeshServe {
        let mut args = vec![
            "--typha-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let mut serve = Serve::on_loopback(datastore, &args);
        let line = serve.wait_serving();
        let some = |name: &str| -> SocketAddr {
            text_field(&line, name)
                .and_then(|t| t.strip_prefix("Some(")?.strip_suffix(')')?.parse().ok())
                .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
        };
        let (typha, metrics) = (some("typha"), some("metrics"));
        let grpc = text_field(&line, "grpc")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no grpc= in {line:?}"));
        MeshServe {
            serve,
            grpc,
            typha,
            metrics,
        }
    }

    /// `meshsync status --output json`, parsed.
    pub async fn status(&self) -> Value {
        let server = format!("http://{}", self.grpc);
        let finished = tokio::task::spawn_blocking(move || {
            let mut cmd = meshsync();
            cmd.args(["status", "--server", &server, "--output", "json"]);
            run(&mut cmd, DEADLINE)
        })
        .await
        .expect("status task");
        assert!(finished.status.success(), "{}", finished.describe());
        serde_json::from_str(&finished.stdout)
            .unwrap_or_else(|e| panic!("status JSON ({e}): {}", finished.stdout))
    }

    /// Cluster `cluster`'s error in `meshsync status` (empty when it has none).
    pub async fn cluster_error(&self, cluster: &str) -> String {
        let status = self.status().await;
        let found = status["clusters"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["cluster"] == cluster))
            .unwrap_or_else(|| panic!("no cluster {cluster} in {status}"));
        found["error"].as_str().unwrap_or_default().to_string()
    }

    /// Polls `meshsync status` until cluster `cluster`'s error satisfies `pred`; returns it.
    pub async fn wait_cluster_error(
        &self,
        cluster: &str,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
        loop {
            let error = self.cluster_error(cluster).await;
            if pred(&error) {
                return error;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: cluster {cluster}'s error after {CHANGE_TIMEOUT:?} is {error:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The value of the metric line starting with `series` (name and labels), if exposed.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let (code, body) = super::http_get(self.metrics, "/metrics").await;
        assert_eq!(code, 200, "{body}");
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
}
