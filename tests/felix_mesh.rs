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

use support::etcd::Cluster;
use support::felix::{Felix, FelixConfig};
use support::felix_mesh::{
    A, B, CHANGE_TIMEOUT, DB_SELECTOR, Site, members_with, meshed, put_rcc, set, wait_for, without,
    write_site,
};
use support::typha::{Syncer, TyphaDatastore, TyphaDump, meshsync_typha};
use support::typha_scenario::put_wep;

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
