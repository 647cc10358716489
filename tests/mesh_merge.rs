#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// The cluster mesh's merged view over real etcd processes (issue 3): the local cluster and two
// remotes (one with overlay routing) in one agent's mirror, with per-cluster status and key
// counts, the kinds a remote never contributes, remote Profiles without rules, and live changes
// arriving under the right cluster name. Fixtures and expectations: `support::mesh`.

use meshsync_agent::{Mirror, MirrorKey};
use meshsync_proto as pb;
use support::mesh::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_two_remotes_are_merged_with_per_cluster_status() {
    let (mut a, mut b, mut c) = local_and_two_remotes().await;
    // B with overlay routing (Nodes, IPPools, IPAM blocks too), C with the default (Disabled).
    a.put_rcc("cluster-b", with_overlay(etcd_spec(&b.url()), "Enabled"))
        .await;
    a.put_rcc("cluster-c", etcd_spec(&c.url())).await;

    let server = TestServer::start(mesh_over(&a.etcd)).await;
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
    put_remote_pod(&mut b, 3, "10.66.0.3").await;
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
