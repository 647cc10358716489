#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
//! More of the cluster mesh proved with the real, unmodified Felix (the setup of `felix_mesh.rs`,
//! shared in `support/felix_mesh.rs`):
//!
//! - **mixed datastores**: cluster A on a real kube-apiserver (Calico's Kubernetes datastore:
//!   annotated Node, Pods, Namespace, Calico's CRDs), B on etcd, each meshsync with an RCC for the
//!   other (B's for A is `datastoreType: kubernetes`); a Felix on each side, A's on the Kubernetes
//!   datastore, holds the other's pods, routes and VTEP, and a pod relabelled through A's API
//!   reaches B's Felix;
//! - **refusals**: a remote pool of an encapsulation no local pool uses (IPIP beside VXLAN) would
//!   make Felix restart, so A's meshsync holds it and its blocks back — A's Felix never gets them
//!   and never restarts, still holds B's pods, and `meshsync status`, the refused-resources metric
//!   and a log line say why; once B's pool is VXLAN, it is merged; an overlapping CIDR is refused
//!   in the same way;
//! - **`--remote-namespaces distinct`**: B's pods are in no namespace of A, so A's namespaced rule
//!   `meshsync.io/cluster == "b"` selects none of them, while a GlobalNetworkPolicy's rule and a
//!   namespaced rule with a `namespaceSelector` do.
//!
//! Felixes never restart in any of them.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

use support::apiserver::ApiServer;
use support::etcd::Cluster;
use support::felix::{Felix, FelixConfig, RecordedState};
use support::felix_mesh::{
    A, B, DB_SELECTOR, Encap, MeshServe, NAMESPACED_POLICY, Site, members_with, meshed, put_pool,
    put_rcc, put_rcc_spec, remote_route, rule_members, set, wait_for, write_kdd_site, write_site,
    write_site_with,
};
use support::typha::TyphaDatastore;
use support::typha_scenario::{apply, crd, put_v3};

/// The metric of refused resources of cluster B.
const REFUSED_B: &str = r#"meshsync_remote_cluster_refused_resources{remote_cluster_name="b"}"#;
/// The log line of a refusal.
const REFUSAL_LINE: &str = "not merging remote resources that collide with other clusters' data";

/// A Felix on `site`'s node fed by `typha`, reading `datastore` at start.
fn felix(site: Site, serve: &MeshServe, datastore: TyphaDatastore) -> Felix {
    Felix::start(
        site.name,
        FelixConfig {
            node_name: site.node.into(),
            typha_addr: serve.typha.to_string(),
            datastore,
            extra_env: Vec::new(),
        },
    )
}

/// Fails unless `felix` never restarted nor exited.
fn assert_no_restart(felix: &mut Felix) {
    let lifecycle = felix.restarts_or_exits();
    assert!(lifecycle.is_clean(), "Felix {}: {lifecycle}", felix.label);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn felix_on_kubernetes_and_felix_on_etcd_mesh_both_ways() {
    // A's node has an explicit VXLAN MAC (KDD's annotation): B's Felix must use it.
    const A_KDD: Site = Site {
        vxlan_mac: Some("66:aa:bb:cc:dd:01"),
        ..A
    };
    let api = tokio::task::spawn_blocking(|| Arc::new(ApiServer::start("felix-mesh-kdd-a")))
        .await
        .unwrap();
    let cluster_b = Cluster::start("felix-mesh-etcd-b").await;
    let writer = api.clone();
    let b_etcd = cluster_b.etcd.url();
    tokio::task::spawn_blocking(move || {
        write_kdd_site(&writer, A_KDD, B);
        apply(
            &writer,
            vec![crd(
                "RemoteClusterConfiguration",
                None,
                B.name,
                Value::Null,
                json!({"datastoreType": "etcdv3", "etcdEndpoints": b_etcd,
                       "syncOptions": {"overlayRoutingMode": "Enabled"}}),
            )],
        );
    })
    .await
    .unwrap();
    write_site(&cluster_b.client, B, A_KDD).await;
    put_rcc_spec(
        &cluster_b.client,
        A_KDD,
        json!({"datastoreType": "kubernetes", "kubeconfig": api.kubeconfig()}),
    )
    .await;

    let serve_a = MeshServe::start(&format!("kubernetes:{}", api.kubeconfig().display()), &[]);
    let serve_b = MeshServe::start(&format!("etcd://{}", cluster_b.etcd.host_port()), &[]);
    let mut felix_a = felix(A_KDD, &serve_a, TyphaDatastore::kubernetes(&api));
    let mut felix_b = felix(B, &serve_b, TyphaDatastore::etcd(&cluster_b.etcd));

    wait_for(
        &mut felix_a,
        "cluster B (etcd) meshed into A's Felix (Kubernetes)",
        meshed(A_KDD, B),
    )
    .await;
    wait_for(
        &mut felix_b,
        "cluster A (Kubernetes) meshed into B's Felix (etcd)",
        meshed(B, A_KDD),
    )
    .await;
    eprintln!(
        "B's Felix programs:\n{}",
        felix_b.read_state().unwrap().unwrap().summary()
    );

    // A's db pod is relabelled through A's API: it leaves the db set of B's Felix (and of A's),
    // and stays in B's set of cluster A's pods.
    let labeller = api.clone();
    tokio::task::spawn_blocking(move || {
        labeller.kubectl_ok(&["label", "pod", "db", "-n", "prod", "app=web", "--overwrite"]);
    })
    .await
    .unwrap();
    for (felix, site) in [(&mut felix_b, B), (&mut felix_a, A_KDD)] {
        wait_for(felix, "A's relabelled pod out of the db set", |s| {
            let db = s.members_for_selector(DB_SELECTOR);
            let cluster = members_with(s, "meshsync.io/cluster");
            let expected_cluster = if site.name == B.name {
                set(&[A_KDD.pod_ip(2), A_KDD.pod_ip(3)])
            } else {
                set(&[B.pod_ip(2), B.pod_ip(3)])
            };
            (db == Some(set(&[B.pod_ip(2)])) && cluster == Some(expected_cluster))
                .then_some(())
                .ok_or(format!("db set {db:?}, cluster set {cluster:?}"))
        })
        .await;
    }

    assert_no_restart(&mut felix_a);
    assert_no_restart(&mut felix_b);
    drop((serve_a, serve_b));
}

/// Nothing of B's pool or blocks in `state` (no route to its block, no CIDR_INFO route for its
/// pool, no IPAM pool of its CIDR), while B's pods are in A's IP sets.
fn pods_without_routing(state: &RecordedState, b_pool: &str) -> Result<(), String> {
    let db = state.members_for_selector(DB_SELECTOR);
    let cluster = members_with(state, "meshsync.io/cluster");
    let ok = state.in_sync
        && db == Some(set(&[A.pod_ip(2), B.pod_ip(2)]))
        && cluster == Some(set(&[B.pod_ip(2), B.pod_ip(3)]))
        && state.route(&B.block()).is_none()
        && state.route(b_pool).is_none()
        && state.ipam_pools.values().all(|p| p.cidr != b_pool);
    ok.then_some(()).ok_or(format!(
        "B's pods without B's routing (pool {b_pool}): db {db:?}, cluster {cluster:?}\n{}",
        state.summary()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_pool_of_another_encapsulation_is_refused_without_restarting_felix() {
    let cluster_a = Cluster::start("felix-refusal-a").await;
    let cluster_b = Cluster::start("felix-refusal-b").await;
    write_site(&cluster_a.client, A, B).await;
    write_site_with(&cluster_b.client, B, A, Encap::Ipip).await;
    put_rcc(&cluster_a.client, B, &cluster_b.etcd.url()).await;
    let mut serve_a = MeshServe::start(&format!("etcd://{}", cluster_a.etcd.host_port()), &[]);
    let mut felix_a = felix(A, &serve_a, TyphaDatastore::etcd(&cluster_a.etcd));

    // B's IPIP pool and its block are held back; its pods are not routing data and arrive.
    wait_for(&mut felix_a, "B's pods but not B's IPIP pool", |s| {
        pods_without_routing(s, &B.pool())
    })
    .await;
    let error = serve_a
        .wait_cluster_error("b", "the IPIP pool refused", |e| {
            e.starts_with("not merged (2): ")
        })
        .await;
    assert!(
        error.contains("encapsulation IPIP is not the local pools' (VXLAN); Felix would restart")
            && error.contains("in no accepted IP pool of its cluster"),
        "{error}"
    );
    assert_eq!(serve_a.metric(REFUSED_B).await, Some(2.0));
    let logged = serve_a
        .serve
        .wait_line("the refusal's log line", |l| l.contains(REFUSAL_LINE));
    assert!(
        logged.contains("cluster=b") && logged.contains("count=2"),
        "{logged}"
    );
    pods_without_routing(&felix_a.read_state().unwrap().unwrap(), &B.pool()).unwrap();
    assert_no_restart(&mut felix_a);

    // B's pool becomes VXLAN: merged, so A's Felix routes to B's block; the status clears.
    put_pool(&cluster_b.client, &B.pool(), Encap::Vxlan).await;
    wait_for(&mut felix_a, "B's VXLAN pool merged", |s| {
        remote_route(A, B)(s)?;
        let pool = s.route(&B.pool());
        pool.is_some_and(|r| r.has_type("CIDR_INFO") && r.ip_pool_type == "VXLAN")
            .then_some(())
            .ok_or(format!("no CIDR_INFO route for B's pool: {pool:?}"))
    })
    .await;
    serve_a
        .wait_cluster_error("b", "the refusal cleared", str::is_empty)
        .await;
    assert_eq!(serve_a.metric(REFUSED_B).await, Some(0.0));
    assert_no_restart(&mut felix_a);

    // B's pool grows over A's (10.0.0.0/8 overlaps 10.1.0.0/16, and still holds B's block):
    // refused again, so B's block leaves A's Felix; B's pods stay.
    let overlapping = "10.0.0.0/8";
    put_pool(&cluster_b.client, overlapping, Encap::Vxlan).await;
    wait_for(&mut felix_a, "B's overlapping pool refused", |s| {
        pods_without_routing(s, overlapping)?;
        s.route(&B.pool()).is_none().then_some(()).ok_or(format!(
            "B's old pool's route is still there:\n{}",
            s.summary()
        ))
    })
    .await;
    let error = serve_a
        .wait_cluster_error("b", "the overlapping pool refused", |e| {
            e.starts_with("not merged (2): ")
        })
        .await;
    assert!(
        error.contains("its CIDR overlaps the local pool"),
        "{error}"
    );
    assert_eq!(serve_a.metric(REFUSED_B).await, Some(2.0));
    assert_no_restart(&mut felix_a);
}

/// Rules of A (in `prod`, and global) whose source is cluster B's pods, in `distinct` mode.
const CLUSTER_B: &str = r#"meshsync.io/cluster == "b""#;
const GLOBAL_FROM_B: &str = "allow-b-everywhere";
const GLOBAL_FROM_B_NON_NAMESPACED: &str = "allow-b-non-namespaced";
const NAMESPACED_FROM_B_ALL: &str = "allow-b-from-any-namespace";
const NAMESPACED_FROM_B_PROD: &str = "allow-b-from-namespaces-named-prod";

/// A with `--remote-namespaces distinct` and its Felix, B (etcd) with its pods; A has, besides the
/// site's namespaced rule `meshsync.io/cluster == "b"`, a GlobalNetworkPolicy with that rule, one
/// with that selector and the namespaceSelector `global()`, and namespaced ones with that selector
/// and the namespaceSelectors `all()` and `projectcalico.org/name == "prod"`.
async fn distinct_mesh() -> (Cluster, Cluster, MeshServe, Felix) {
    let cluster_a = Cluster::start("felix-distinct-a").await;
    let cluster_b = Cluster::start("felix-distinct-b").await;
    write_site(&cluster_a.client, A, B).await;
    write_site(&cluster_b.client, B, A).await;
    let policy = |namespace_selector: Option<&str>| {
        let mut source = json!({"selector": CLUSTER_B});
        if let Some(ns) = namespace_selector {
            source["namespaceSelector"] = ns.into();
        }
        json!({"tier": "default", "order": 300, "selector": "all()", "types": ["Ingress"],
               "ingress": [{"action": "Allow", "source": source}]})
    };
    let client = &cluster_a.client;
    for (name, namespace_selector) in [
        (GLOBAL_FROM_B, None),
        (GLOBAL_FROM_B_NON_NAMESPACED, Some("global()")),
    ] {
        put_v3(
            client,
            "globalnetworkpolicies",
            "GlobalNetworkPolicy",
            None,
            &format!("default.{name}"),
            Value::Null,
            policy(namespace_selector),
        )
        .await;
    }
    for (name, namespace_selector) in [
        (NAMESPACED_FROM_B_ALL, "all()"),
        (
            NAMESPACED_FROM_B_PROD,
            r#"projectcalico.org/name == "prod""#,
        ),
    ] {
        put_v3(
            client,
            "networkpolicies",
            "NetworkPolicy",
            Some("prod"),
            &format!("default.{name}"),
            Value::Null,
            policy(Some(namespace_selector)),
        )
        .await;
    }
    put_rcc(&cluster_a.client, B, &cluster_b.etcd.url()).await;
    let serve_a = MeshServe::start(
        &format!("etcd://{}", cluster_a.etcd.host_port()),
        &["--remote-namespaces", "distinct"],
    );
    let felix_a = felix(A, &serve_a, TyphaDatastore::etcd(&cluster_a.etcd));
    (cluster_a, cluster_b, serve_a, felix_a)
}

/// The members of the IP set of the first inbound rule of A's active policy `policy`.
fn from_b(state: &RecordedState, policy: &str) -> Option<BTreeSet<String>> {
    rule_members(state, policy, 0)
}

/// Waits until A's Felix holds B's pods in the GlobalNetworkPolicy's rule and B's db pod in the
/// db set (so B is merged and the other rules' sets are final).
async fn wait_for_global_rule(felix_a: &mut Felix) {
    let b_pods = set(&[B.pod_ip(2), B.pod_ip(3)]);
    wait_for(felix_a, "B's pods in the global rule", |s| {
        let global = from_b(s, GLOBAL_FROM_B);
        let db = s.members_for_selector(DB_SELECTOR);
        (s.in_sync
            && global == Some(b_pods.clone())
            && db == Some(set(&[A.pod_ip(2), B.pod_ip(2)])))
        .then_some(())
        .ok_or(format!(
            "global rule {global:?}, db {db:?}\n{}",
            s.summary()
        ))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_remote_namespaces_keep_remote_pods_out_of_local_namespaced_rules() {
    let (_a, _b, _serve_a, mut felix_a) = distinct_mesh().await;
    let b_pods = set(&[B.pod_ip(2), B.pod_ip(3)]);
    wait_for_global_rule(&mut felix_a).await;
    let state = felix_a.read_state().unwrap().unwrap();
    assert_eq!(
        from_b(&state, NAMESPACED_POLICY),
        Some(BTreeSet::new()),
        "the namespaced rule without a namespaceSelector must select no remote pod:\n{}",
        state.summary()
    );
    assert_eq!(
        from_b(&state, NAMESPACED_FROM_B_PROD),
        Some(b_pods.clone()),
        "the namespaced rule with a namespaceSelector on the namespace's name:\n{}",
        state.summary()
    );
    assert_no_restart(&mut felix_a);
}

/// Product defect (see the report): `distinct` removes the `projectcalico.org/namespace` label
/// from remote pods, but Calico writes a rule's `namespaceSelector: all()` as
/// `has(projectcalico.org/namespace)` and `global()` as `!has(projectcalico.org/namespace)`: so
/// the `all()` rule selects none of B's pods, and a GlobalNetworkPolicy rule with `global()`
/// (meant for host endpoints and global network sets only) selects all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_remote_namespaces_keep_namespace_selectors_all_and_global_meaningful() {
    let (_a, _b, _serve_a, mut felix_a) = distinct_mesh().await;
    let b_pods = set(&[B.pod_ip(2), B.pod_ip(3)]);
    wait_for_global_rule(&mut felix_a).await;
    let state = felix_a.read_state().unwrap().unwrap();
    let all = from_b(&state, NAMESPACED_FROM_B_ALL);
    let global = from_b(&state, GLOBAL_FROM_B_NON_NAMESPACED);
    assert!(
        all == Some(b_pods) && global == Some(BTreeSet::new()),
        "namespaceSelector all() must select B's pods, global() none of them; all(): {all:?}, \
         global(): {global:?}\n{}",
        state.summary()
    );
    assert_no_restart(&mut felix_a);
}
