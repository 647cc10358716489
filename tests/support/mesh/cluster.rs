//! A simulated cluster: a real etcd that remembers every object the test wrote into it (the
//! source of every expectation), and the fixtures that fill the local and remote clusters.

use std::collections::BTreeMap;

use meshsync_datastore::layout::key_path;
use meshsync_etcd::EtcdClient;
use serde_json::{Value, json};

use super::{RCC, SECRET, block, gnp, hep, ippool, node, plain, profile, rcc, secret_data, wep};
use crate::support::etcd::Etcd;

/// `(kind, namespace, name)`.
pub type ObjKey = (String, String, String);

/// One simulated cluster: a real etcd and what the test wrote into it.
pub struct Cluster {
    pub etcd: Etcd,
    pub client: EtcdClient,
    /// Every object written and not deleted: its etcd key and value.
    pub data: BTreeMap<ObjKey, (String, Value)>,
}

impl Cluster {
    pub async fn start(name: &str) -> Cluster {
        let etcd = Etcd::start(name).await;
        let client = etcd.client().await;
        Cluster {
            etcd,
            client,
            data: BTreeMap::new(),
        }
    }

    pub fn url(&self) -> String {
        self.etcd.url()
    }

    /// Writes a Calico v3 or Kubernetes object at its etcdv3 key.
    pub async fn put(&mut self, kind: &str, ns: &str, name: &str, value: Value) {
        let path = key_path("/calico", kind, ns, name)
            .unwrap_or_else(|| panic!("no etcd key layout for kind {kind}"));
        self.put_at(path, kind, ns, name, value).await;
    }

    /// Writes the WorkloadEndpoint `ns/name` as [`wep`] builds it.
    pub async fn put_wep(&mut self, ns: &str, name: &str, node: &str, ip: &str, profile: &str) {
        let value = wep(ns, name, node, ip, profile);
        self.put("WorkloadEndpoint", ns, name, value).await;
    }

    /// Writes the Profile `name` as [`profile`] builds it, labelled `label`.
    pub async fn put_profile(&mut self, name: &str, label: &str) {
        self.put("Profile", "", name, profile(name, label)).await;
    }

    /// Writes a [`plain`] object: its kind and name, an empty spec.
    pub async fn put_plain(&mut self, kind: &str, ns: &str, name: &str) {
        self.put(kind, ns, name, plain(kind, ns, name)).await;
    }

    /// Writes the RemoteClusterConfiguration `name` with `spec` (this is the local cluster).
    pub async fn put_rcc(&mut self, name: &str, spec: Value) {
        self.put(RCC, "", name, rcc(name, spec)).await;
    }

    /// Writes an IPAM block (`cidr` like `10.66.0.0/26`) at Calico's v1 IPAM key
    /// `/calico/ipam/v2/assignment/ipv4/block/10.66.0.0-26`; it is served as `IPAMBlock`
    /// `10-66-0-0-26`.
    pub async fn put_block(&mut self, cidr: &str, value: Value) {
        let segment = cidr.replace('/', "-");
        let name = segment.replace('.', "-");
        let path = format!("/calico/ipam/v2/assignment/ipv4/block/{segment}");
        self.put_at(path, "IPAMBlock", "", &name, value).await;
    }

    pub async fn put_at(&mut self, path: String, kind: &str, ns: &str, name: &str, value: Value) {
        let bytes = serde_json::to_vec(&value).expect("JSON");
        self.client
            .put(path.clone(), bytes)
            .await
            .unwrap_or_else(|e| panic!("etcd put {path}: {e}"));
        self.data
            .insert((kind.into(), ns.into(), name.into()), (path, value));
    }

    pub async fn delete(&mut self, kind: &str, ns: &str, name: &str) {
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
    pub fn kill(&mut self) {
        self.etcd.kill();
    }

    /// Starts the etcd again on the same port with the same data.
    pub async fn restart(&mut self) {
        self.etcd.restart().await;
        self.client = self.etcd.client().await;
    }
}

/// The local cluster's own resources (plus an unrelated Secret, which must be consumed).
pub async fn fill_local(a: &mut Cluster) {
    a.put("Node", "", "node-a1", node("node-a1", "192.168.1.1"))
        .await;
    a.put_wep(
        "default",
        "node--a1-k8s-web-eth0",
        "node-a1",
        "10.65.0.1",
        "kns.default",
    )
    .await;
    // The local cluster's own Profile keeps its rules.
    a.put_profile("kns.default", "default").await;
    a.put("GlobalNetworkPolicy", "", "allow-dns", gnp("allow-dns"))
        .await;
    a.put_plain("FelixConfiguration", "", "default").await;
    a.put(
        "IPPool",
        "",
        "local-pool",
        ippool("local-pool", "10.65.0.0/16"),
    )
    .await;
    a.put_plain("BGPFilter", "", "f1").await;
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
pub async fn fill_remote(c: &mut Cluster, octet: u8) {
    let ip = |n: u8| format!("10.{octet}.0.{n}");
    let mut first = wep("ns1", "node1-k8s-pod--1-eth0", "node1", &ip(1), "kns.ns1");
    // Calico clears resourceVersion before writing; a writer that leaves it in must not matter.
    first["metadata"]["resourceVersion"] = json!("4711");
    c.put("WorkloadEndpoint", "ns1", "node1-k8s-pod--1-eth0", first)
        .await;
    put_remote_pod(c, 2, &ip(2)).await;
    c.put(
        "HostEndpoint",
        "",
        "node1-eth0",
        hep("node1-eth0", "node1", &ip(200)),
    )
    .await;
    c.put_profile("kns.ns1", "ns1").await;
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
    c.put_plain("NetworkPolicy", "ns1", "remote-np").await;
    // Kubernetes objects of federated services, in meshsync's k8s layout.
    c.put_plain("Service", "ns1", "backing").await;
    c.put_plain("EndpointSlice", "ns1", "backing-x1").await;
    // A value that is not JSON is logged and skipped; nothing else is affected.
    let garbage = key_path("/calico", "WorkloadEndpoint", "ns1", "garbage-eth0").expect("path");
    c.client.put(garbage, "{not json").await.expect("etcd put");
}

/// Writes the remote pod `n` ("node1-k8s-pod--<n>-eth0" in `ns1` on `node1`, with the `kns.ns1`
/// profile) at `ip`: the shape of every workload [`fill_remote`] writes.
pub async fn put_remote_pod(c: &mut Cluster, n: u8, ip: &str) {
    let name = format!("node1-k8s-pod--{n}-eth0");
    c.put_wep("ns1", &name, "node1", ip, "kns.ns1").await;
}

/// Content that makes B and C overlap: identical objects in both, one object with the same key
/// and different values, and one object only in each.
pub async fn fill_overlap(b: &mut Cluster, c: &mut Cluster) {
    for cluster in [&mut *b, &mut *c] {
        cluster
            .put_wep(
                "shared",
                "same-pod-eth0",
                "node9",
                "10.99.0.1",
                "kns.shared",
            )
            .await;
        cluster.put_profile("kns.shared", "shared").await;
    }
    b.put_wep("shared", "only-b-eth0", "node9", "10.99.0.2", "kns.shared")
        .await;
    c.put_wep("shared", "only-c-eth0", "node9", "10.99.0.3", "kns.shared")
        .await;
}

/// The local cluster "a", filled.
pub async fn local_cluster() -> Cluster {
    let mut a = Cluster::start("a").await;
    fill_local(&mut a).await;
    a
}

/// The local cluster "a" and the remote "b" (10.66.0.0/16), filled; no RCC yet.
pub async fn local_and_one_remote() -> (Cluster, Cluster) {
    let mut a = Cluster::start("a").await;
    let mut b = Cluster::start("b").await;
    fill_local(&mut a).await;
    fill_remote(&mut b, 66).await;
    (a, b)
}

/// The local cluster "a" and the remotes "b" (10.66.0.0/16) and "c" (10.67.0.0/16), filled; no
/// RCC yet.
pub async fn local_and_two_remotes() -> (Cluster, Cluster, Cluster) {
    let mut a = Cluster::start("a").await;
    let mut b = Cluster::start("b").await;
    let mut c = Cluster::start("c").await;
    fill_local(&mut a).await;
    fill_remote(&mut b, 66).await;
    fill_remote(&mut c, 67).await;
    (a, b, c)
}
