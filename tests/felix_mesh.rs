#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
//! Cluster mesh for Calico Open Source (issue 24), proved with the real, unmodified Felix: two
//! clusters, each with its own etcd, its own meshsync (with an RCC for the other, overlay routing
//! on) and a Felix on one of its nodes whose dataplane is the recorder test double
//! (`support/felix.rs`). Felix in cluster A must hold B's matching pod IPs in the IP sets of a
//! GlobalNetworkPolicy's `app == "db"` and of a namespaced policy's `meshsync.io/cluster == "b"`,
//! a VXLAN route to B's block via B's node and that node's VTEP (with the MAC B's own Felix gives
//! its device) — and the mirror image in B. Then a B pod is relabelled, a B pod deleted, B's
//! datastore cut (the RCC's lost-cluster policy is `withdraw`) and restored, and the RCC
//! deleted: each is reflected in A's Felix within seconds, and neither Felix restarts.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use meshsync_etcd::EtcdClient;
use meshsync_typha::v1::remote::default_vtep_mac;
use serde_json::{Value, json};

use support::etcd::Cluster;
use support::felix::{Felix, FelixConfig, RecordedState};
use support::typha::{Syncer, TyphaDatastore, TyphaDump, meshsync_typha};
use support::typha_scenario::{block, put, put_namespace_profile, put_v3, put_wep};

/// Felix's start (config from the datastore, Typha connection, first sync).
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// A change reaching a Felix's dataplane.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
const IPAM: &str = "/calico/ipam/v2";
const DB_SELECTOR: &str = r#"app == "db""#;

/// One cluster of the test: its name (the other side's RCC name for it) and addresses.
#[derive(Clone, Copy)]
struct Site {
    name: &'static str,
    node: &'static str,
    /// Second octet of its pod addresses (`10.<n>.0.0/16`) and last octet of its node's IP.
    n: u8,
}

const A: Site = Site {
    name: "a",
    node: "a1",
    n: 1,
};
const B: Site = Site {
    name: "b",
    node: "b1",
    n: 2,
};

impl Site {
    fn node_ip(self) -> String {
        format!("10.0.0.{}", self.n)
    }
    fn tunnel(self) -> String {
        format!("10.{}.0.1", self.n)
    }
    fn pod_ip(self, last: u8) -> String {
        format!("10.{}.0.{last}", self.n)
    }
    fn block(self) -> String {
        format!("10.{}.0.0/26", self.n)
    }
    /// The name its node has in the other cluster's Felix.
    fn remote_node(self) -> String {
        format!("{}.{}", self.name, self.node)
    }
    /// The namespaced policy's rule selects the other cluster's pods.
    fn cluster_selector(other: Site) -> String {
        format!(r#"meshsync.io/cluster == "{}""#, other.name)
    }
}

fn set(items: &[String]) -> BTreeSet<String> {
    items.iter().map(|s| format!("{s}/32")).collect()
}

/// A cluster: config, one VXLAN pool, one node with its block, a db and a web pod in `prod`, a
/// global policy allowing from `app == "db"` and a namespaced one allowing from the other
/// cluster.
async fn write_site(client: &EtcdClient, site: Site, other: Site) {
    put_v3(
        client,
        "clusterinformations",
        "ClusterInformation",
        None,
        "default",
        Value::Null,
        json!({"clusterGUID": format!("{}0000000000000000000000000000000", site.n), "clusterType": "k8s,typha", "calicoVersion": "v3.31.0", "datastoreReady": true}),
    )
    .await;
    put_v3(
        client,
        "felixconfigurations",
        "FelixConfiguration",
        None,
        "default",
        Value::Null,
        json!({"reportingInterval": "0s", "bpfEnabled": false}),
    )
    .await;
    put_v3(
        client,
        "ippools",
        "IPPool",
        None,
        "default-ipv4-ippool",
        Value::Null,
        json!({"cidr": format!("10.{}.0.0/16", site.n), "blockSize": 26, "ipipMode": "Never",
               "vxlanMode": "Always", "natOutgoing": true, "nodeSelector": "all()",
               "allowedUses": ["Workload", "Tunnel"]}),
    )
    .await;
    put_v3(
        client,
        "nodes",
        "Node",
        None,
        site.node,
        json!({"kubernetes.io/hostname": site.node}),
        json!({"bgp": {"ipv4Address": format!("{}/24", site.node_ip())},
               "ipv4VXLANTunnelAddr": site.tunnel(),
               "addresses": [{"address": site.node_ip(), "type": "InternalIP"}],
               "orchRefs": [{"nodeName": site.node, "orchestrator": "k8s"}]}),
    )
    .await;
    let key = site.block().replace('/', "-");
    put(
        client,
        format!("{IPAM}/assignment/ipv4/block/{key}"),
        &block(
            &site.block(),
            site.node,
            &[(1, "", "tunnel"), (2, "prod", "db"), (3, "prod", "web")],
        ),
    )
    .await;
    put(
        client,
        format!("{IPAM}/host/{}/ipv4/block/{key}", site.node),
        &json!({"state": "confirmed", "deleted": false}),
    )
    .await;
    put_v3(
        client,
        "tiers",
        "Tier",
        None,
        "default",
        Value::Null,
        json!({"order": 1_000_000, "defaultAction": "Deny"}),
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
        "default.allow-from-db",
        Value::Null,
        json!({"tier": "default", "order": 100, "selector": "all()", "types": ["Ingress"],
               "ingress": [{"action": "Allow", "source": {"selector": DB_SELECTOR}}]}),
    )
    .await;
    put_v3(
        client,
        "networkpolicies",
        "NetworkPolicy",
        Some("prod"),
        "default.allow-from-other-cluster",
        Value::Null,
        json!({"tier": "default", "order": 200, "selector": "all()", "types": ["Ingress"],
               "ingress": [{"action": "Allow", "source": {"selector": Site::cluster_selector(other)}}]}),
    )
    .await;
}

/// The RCC in one cluster for the other: etcd, overlay routing, withdraw when lost (after 1 s).
async fn put_rcc(client: &EtcdClient, other: Site, other_etcd: &str) {
    let value = json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "RemoteClusterConfiguration",
        "metadata": {"name": other.name, "annotations": {
            "meshsync.io/lost-cluster-policy": "withdraw",
            "meshsync.io/lost-cluster-grace-period": "1s"}},
        "spec": {"datastoreType": "etcdv3", "etcdEndpoints": other_etcd,
                 "syncOptions": {"overlayRoutingMode": "Enabled"}},
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

/// The members of the IP set of the (only) active rule selector that mentions `part`.
fn members_with(state: &RecordedState, part: &str) -> Option<BTreeSet<String>> {
    let selector = state.selector_ipsets.keys().find(|s| s.contains(part))?;
    state.members_for_selector(selector)
}

/// What `site`'s Felix must program once it holds the `other` cluster: both db pods in the db
/// set, the other cluster's pods in the cluster set, the route to its block via its node, and
/// that node's VTEP with the MAC the other cluster's Felix gives its own device.
fn meshed(site: Site, other: Site) -> impl Fn(&RecordedState) -> Result<(), String> {
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
        let route = state.route(&other.block());
        expect(
            &format!(
                "a VXLAN route to {} via {}: {route:?}",
                other.block(),
                other.remote_node()
            ),
            route.is_some_and(|r| {
                r.has_type("REMOTE_WORKLOAD")
                    && r.ip_pool_type == "VXLAN"
                    && r.dst_node_name == other.remote_node()
                    && r.dst_node_ip == other.node_ip()
            }),
        )?;
        let vtep = state.vtep(&other.remote_node());
        expect(
            &format!("{}'s VTEP: {vtep:?}", other.remote_node()),
            vtep.is_some_and(|v| {
                v.parent_device_ip == other.node_ip()
                    && v.ipv4_addr == other.tunnel()
                    && v.mac == default_vtep_mac(other.node, false)
            }),
        )?;
        Ok(())
    }
}

/// Waits until `check` passes on `felix`'s recorded state (the first sync has longer).
async fn wait_for(
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
fn without(site: Site, other: Site) -> impl Fn(&RecordedState) -> Result<(), String> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmodified_felix_enforces_policy_and_routes_across_two_clusters() {
    let cluster_a = Cluster::start("felix-mesh-a").await;
    let cluster_b = Cluster::start("felix-mesh-b").await;
    write_site(&cluster_a.client, A, B).await;
    write_site(&cluster_b.client, B, A).await;
    put_rcc(&cluster_a.client, B, &cluster_b.etcd.url()).await;
    put_rcc(&cluster_b.client, A, &cluster_a.etcd.url()).await;

    let (serve_a, typha_a) = meshsync_typha(&format!("etcd://{}", cluster_a.etcd.host_port()));
    let (serve_b, typha_b) = meshsync_typha(&format!("etcd://{}", cluster_b.etcd.host_port()));
    let felix = |site: Site, cluster: &Cluster, typha: String| {
        Felix::start(
            site.name,
            FelixConfig {
                node_name: site.node.into(),
                typha_addr: typha,
                datastore: TyphaDatastore::etcd(&cluster.etcd),
                extra_env: Vec::new(),
            },
        )
    };
    let mut felix_a = felix(A, &cluster_a, typha_a.to_string());
    let mut felix_b = felix(B, &cluster_b, typha_b.to_string());

    wait_for(
        &mut felix_a,
        "cluster B meshed into A's Felix",
        meshed(A, B),
    )
    .await;
    wait_for(
        &mut felix_b,
        "cluster A meshed into B's Felix",
        meshed(B, A),
    )
    .await;
    eprintln!(
        "A's Felix programs:\n{}",
        felix_a.read_state().unwrap().unwrap().summary()
    );

    // The other syncers (confd, the tunnel address allocator, the status reporter) stay local:
    // with B in A's felix syncer, they hold A's nodes and pools and nothing of B.
    let felix_dump = TyphaDump::start(&typha_a.to_string(), Syncer::Felix)
        .wait_until(
            "B's renamed node in the felix syncer",
            |m| m.has("/calico/v1/host/b.b1/", None),
            CHANGE_TIMEOUT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(felix_dump.has("/calico/v1/host/a1/", None));
    for syncer in [Syncer::Bgp, Syncer::TunnelIpAllocation, Syncer::NodeStatus] {
        let map = TyphaDump::start(&typha_a.to_string(), syncer)
            .wait_until("the syncer in sync", |_| true, CHANGE_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", syncer.name()));
        let leaked: Vec<&String> = map
            .map
            .iter()
            .filter(|(k, v)| {
                let text = format!("{k} {v}");
                text.contains("b.b1") || text.contains("10.2.0.") || text.contains(B.node)
            })
            .map(|(k, _)| k)
            .collect();
        assert!(
            leaked.is_empty(),
            "{}: remote keys {leaked:?}",
            syncer.name()
        );
        if syncer != Syncer::NodeStatus {
            assert!(
                map.has("a1", None),
                "{}: A's own node is missing: {:?}",
                syncer.name(),
                map.map.keys().collect::<Vec<_>>()
            );
        }
    }

    // B's db pod is relabelled: it leaves A's db set, stays in the cluster set.
    put_wep(&cluster_b.client, B.node, "prod", "db", "web", &B.pod_ip(2)).await;
    wait_for(&mut felix_a, "B's relabelled pod out of the db set", |s| {
        let db = s.members_for_selector(DB_SELECTOR);
        (db == Some(set(&[A.pod_ip(2)])))
            .then_some(())
            .ok_or(format!("db set {db:?}"))
    })
    .await;

    // B's web pod is deleted: it leaves the cluster set.
    cluster_b
        .delete(
            "WorkloadEndpoint",
            "prod",
            &format!("{}-k8s-web-eth0", B.node),
        )
        .await;
    wait_for(
        &mut felix_a,
        "B's deleted pod out of the cluster set",
        |s| {
            let members = members_with(s, "meshsync.io/cluster");
            (members == Some(set(&[B.pod_ip(2)])))
                .then_some(())
                .ok_or(format!("cluster set {members:?}"))
        },
    )
    .await;

    // B's datastore is cut: after the grace period A's meshsync withdraws B, and A's Felix
    // drops B's pods, route and VTEP; when it is back, they return.
    let mut cluster_b = cluster_b;
    cluster_b.etcd.kill();
    wait_for(
        &mut felix_a,
        "B withdrawn after its link is cut",
        without(A, B),
    )
    .await;
    cluster_b.etcd.restart().await;
    wait_for(&mut felix_a, "B back after its link returns", |s| {
        let members = members_with(s, "meshsync.io/cluster");
        (members == Some(set(&[B.pod_ip(2)])) && s.vtep(&B.remote_node()).is_some())
            .then_some(())
            .ok_or(format!(
                "cluster set {members:?}, vteps {:?}",
                s.vteps.keys()
            ))
    })
    .await;

    // The RCC for B is deleted: B leaves A's Felix.
    cluster_a
        .delete("RemoteClusterConfiguration", "", B.name)
        .await;
    wait_for(
        &mut felix_a,
        "B gone after its RCC is deleted",
        without(A, B),
    )
    .await;

    for felix in [&mut felix_a, &mut felix_b] {
        let lifecycle = felix.restarts_or_exits();
        assert!(lifecycle.is_clean(), "Felix {}: {lifecycle}", felix.label);
    }
    drop((serve_a, serve_b));
}
