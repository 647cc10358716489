use std::collections::VecDeque;

use bytes::Bytes;
use meshsync_model::{ResourceKey, SourceEvent};
use serde_json::json;

use super::*;

fn upsert(
    cluster: &str,
    kind: &str,
    ns: &str,
    name: &str,
    value: serde_json::Value,
) -> SourceEvent {
    SourceEvent::Upsert {
        key: ResourceKey::new(cluster, kind, ns, name),
        value: Bytes::from(serde_json::to_vec(&value).unwrap()),
        revision: "1".into(),
    }
}

fn delete(cluster: &str, kind: &str, ns: &str, name: &str) -> SourceEvent {
    SourceEvent::Delete {
        key: ResourceKey::new(cluster, kind, ns, name),
        revision: "2".into(),
    }
}

fn pool(cluster: &str, name: &str, cidr: &str, vxlan: bool) -> SourceEvent {
    let mode = if vxlan { "vxlanMode" } else { "ipipMode" };
    upsert(
        cluster,
        "IPPool",
        "",
        name,
        json!({"kind": "IPPool", "metadata": {"name": name}, "spec": {"cidr": cidr, mode: "Always"}}),
    )
}

fn block(cluster: &str, cidr: &str) -> SourceEvent {
    let name = cidr.replace(['.', '/'], "-");
    upsert(
        cluster,
        "IPAMBlock",
        "",
        &name,
        json!({"kind": "IPAMBlock", "metadata": {"name": name}, "spec": {"cidr": cidr, "affinity": "host:n1"}}),
    )
}

fn wep(cluster: &str, node: &str) -> SourceEvent {
    let name = format!("{}-k8s-db-eth0", node.replace('-', "--"));
    upsert(
        cluster,
        "WorkloadEndpoint",
        "prod",
        &name,
        json!({"spec": {"node": node}}),
    )
}

/// Feeds events through a guard and returns what came out.
struct Harness {
    guard: CollisionGuard,
}

impl Harness {
    fn new() -> Self {
        Harness {
            guard: CollisionGuard::default(),
        }
    }

    fn feed(&mut self, events: impl IntoIterator<Item = SourceEvent>) -> Vec<SourceEvent> {
        let mut out = VecDeque::new();
        for e in events {
            self.guard.apply(e, &mut out);
        }
        out.into_iter().collect()
    }
}

fn upserted(events: &[SourceEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Upsert { key, .. } => {
                Some(format!("{}/{}/{}", key.cluster(), key.kind(), key.name()))
            }
            _ => None,
        })
        .collect()
}

fn deleted(events: &[SourceEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Delete { key, .. } => {
                Some(format!("{}/{}/{}", key.cluster(), key.kind(), key.name()))
            }
            _ => None,
        })
        .collect()
}

fn refused(events: &[SourceEvent]) -> Vec<(String, usize, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            SourceEvent::Refused {
                cluster,
                count,
                summary,
            } => Some((cluster.to_string(), *count, summary.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_pool_with_another_encapsulation_is_refused_until_the_local_pools_use_it() {
    let mut h = Harness::new();
    h.feed([pool("", "local", "10.1.0.0/16", false)]);
    let out = h.feed([
        pool("b", "p", "10.2.0.0/16", true),
        block("b", "10.2.0.0/26"),
    ]);
    assert!(upserted(&out).is_empty(), "{out:?}");
    let r = refused(&out);
    assert_eq!(r.last().unwrap().1, 2, "{r:?}");
    assert!(
        r[0].2
            .contains("encapsulation VXLAN is not the local pools' (IPIP)"),
        "{r:?}"
    );
    // The local pool moves to VXLAN: the remote pool and its block are forwarded.
    let out = h.feed([pool("", "local", "10.1.0.0/16", true)]);
    assert_eq!(
        upserted(&out),
        ["/IPPool/local", "b/IPPool/p", "b/IPAMBlock/10-2-0-0-26"]
    );
    assert_eq!(refused(&out), [("b".to_string(), 0, String::new())]);
    // And back: both are deleted again.
    let out = h.feed([pool("", "local", "10.1.0.0/16", false)]);
    assert_eq!(deleted(&out), ["b/IPPool/p", "b/IPAMBlock/10-2-0-0-26"]);
}

#[test]
fn overlapping_pools_are_refused_in_both_clusters_until_one_leaves() {
    let mut h = Harness::new();
    h.feed([pool("", "local", "10.1.0.0/16", true)]);
    let out = h.feed([pool("b", "p", "10.2.0.0/16", true)]);
    assert_eq!(upserted(&out), ["b/IPPool/p"]);
    let out = h.feed([pool("c", "q", "10.2.128.0/17", true)]);
    assert_eq!(deleted(&out), ["b/IPPool/p"]);
    assert!(upserted(&out).is_empty());
    let reasons = refused(&out);
    assert!(
        reasons
            .iter()
            .any(|(c, n, s)| c == "b" && *n == 1 && s.contains("overlaps pool q of cluster c")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(c, n, s)| c == "c" && *n == 1 && s.contains("overlaps pool p of cluster b")),
        "{reasons:?}"
    );
    // A pool overlapping a local one is refused too.
    let out = h.feed([pool("d", "r", "10.1.2.0/24", true)]);
    assert!(
        refused(&out)[0].2.contains("overlaps the local pool local"),
        "{out:?}"
    );
    let out = h.feed([SourceEvent::ClusterRemoved {
        cluster: "c".into(),
    }]);
    assert_eq!(upserted(&out), ["b/IPPool/p"]);
}

#[test]
fn blocks_need_an_accepted_pool_of_their_cluster_and_a_relist_reports_only_at_its_end() {
    let mut h = Harness::new();
    h.feed([
        SourceEvent::ResyncStart { cluster: "".into() },
        pool("", "local", "10.1.0.0/16", true),
        SourceEvent::ResyncDone { cluster: "".into() },
    ]);
    // The block is listed before its pool: no refusal is reported for the relist.
    let out = h.feed([
        SourceEvent::ResyncStart {
            cluster: "b".into(),
        },
        block("b", "10.2.0.0/26"),
        pool("b", "p", "10.2.0.0/16", true),
        SourceEvent::ResyncDone {
            cluster: "b".into(),
        },
    ]);
    assert_eq!(upserted(&out), ["b/IPPool/p", "b/IPAMBlock/10-2-0-0-26"]);
    assert!(refused(&out).is_empty(), "{out:?}");
    // The pool is deleted: its block is withdrawn and reported.
    let out = h.feed([delete("b", "IPPool", "", "p")]);
    assert_eq!(deleted(&out), ["b/IPPool/p", "b/IPAMBlock/10-2-0-0-26"]);
    assert!(
        refused(&out)[0].2.contains("in no accepted IP pool"),
        "{out:?}"
    );
    // A relist that no longer lists the block clears the refusal.
    let out = h.feed([
        SourceEvent::ResyncStart {
            cluster: "b".into(),
        },
        SourceEvent::ResyncDone {
            cluster: "b".into(),
        },
    ]);
    assert_eq!(refused(&out), [("b".to_string(), 0, String::new())]);
}

#[test]
fn endpoints_on_a_node_whose_new_name_is_local_are_held_back() {
    let mut h = Harness::new();
    let out = h.feed([wep("b", "n-1")]);
    assert_eq!(upserted(&out), ["b/WorkloadEndpoint/n--1-k8s-db-eth0"]);
    // A local node named `b.n-1` appears: the endpoint would be served on it.
    let out = h.feed([upsert("", "Node", "", "b.n-1", json!({}))]);
    assert_eq!(deleted(&out), ["b/WorkloadEndpoint/n--1-k8s-db-eth0"]);
    assert!(
        refused(&out)[0]
            .2
            .contains("served as b.n-1, a local node's name"),
        "{out:?}"
    );
    let out = h.feed([delete("", "Node", "", "b.n-1")]);
    assert_eq!(upserted(&out), ["b/WorkloadEndpoint/n--1-k8s-db-eth0"]);
    assert_eq!(refused(&out), [("b".to_string(), 0, String::new())]);
}

#[test]
fn a_remote_node_with_a_local_nodes_name_is_reported_and_still_served() {
    let mut h = Harness::new();
    h.feed([upsert("", "Node", "", "node-1", json!({}))]);
    let out = h.feed([upsert("b", "Node", "", "node-1", json!({}))]);
    assert_eq!(upserted(&out), ["b/Node/node-1"]);
    let r = refused(&out);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].1, 0, "a note refuses nothing: {r:?}");
    assert!(
        r[0].2
            .contains("a local node has the same name (served as b.node-1)"),
        "{r:?}"
    );
}

#[test]
fn other_kinds_pass_untouched_and_updates_are_forwarded_again() {
    let mut h = Harness::new();
    let profile = upsert("b", "Profile", "", "kns.prod", json!({}));
    assert_eq!(h.feed([profile.clone()]), [profile]);
    h.feed([pool("", "local", "10.1.0.0/16", true)]);
    h.feed([pool("b", "p", "10.2.0.0/16", true)]);
    let out = h.feed([pool("b", "p", "10.2.0.0/16", true)]);
    assert_eq!(upserted(&out), ["b/IPPool/p"]);
}

#[test]
fn a_remote_pod_with_a_local_pool_address_is_refused_until_the_pool_goes() {
    let mut h = Harness::new();
    h.feed([pool("", "local", "10.1.0.0/16", true)]);
    let pod = |ip: &str| {
        upsert(
            "b",
            "WorkloadEndpoint",
            "prod",
            "n1-k8s-db-eth0",
            json!({"spec": {"node": "n1", "ipNetworks": [ip]}}),
        )
    };
    let out = h.feed([pod("10.1.0.7/32")]);
    assert!(upserted(&out).is_empty(), "{out:?}");
    assert!(
        refused(&out)[0]
            .2
            .contains("its address 10.1.0.7/32 is in the local pool local"),
        "{out:?}"
    );
    // An address without a prefix is a host address.
    let out = h.feed([pod("10.1.0.8")]);
    assert!(upserted(&out).is_empty(), "{out:?}");
    let out = h.feed([pod("10.2.0.8/32")]);
    assert_eq!(upserted(&out), ["b/WorkloadEndpoint/n1-k8s-db-eth0"]);
    let out = h.feed([pod("10.1.0.9/32")]);
    assert_eq!(deleted(&out), ["b/WorkloadEndpoint/n1-k8s-db-eth0"]);
    let out = h.feed([delete("", "IPPool", "", "local")]);
    assert_eq!(upserted(&out), ["b/WorkloadEndpoint/n1-k8s-db-eth0"]);
    assert_eq!(refused(&out), [("b".to_string(), 0, String::new())]);
}
