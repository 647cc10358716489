#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// RemoteClusterConfigurations changing at runtime (issue 3): added, relabelled, pointed elsewhere
// and deleted; invalid ones (ConfigIncomplete, never holding the local in-sync) fixed later; and
// `overlayRoutingMode` switched on and off. Each step sends only what it changes. Fixtures and
// expectations: `support::mesh`.

use std::time::Duration;

use meshsync_agent::Mirror;
use meshsync_proto as pb;
use serde_json::json;
use support::mesh::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rcc_added_changed_and_deleted_at_runtime() {
    let (mut a, mut b, mut c) = local_and_two_remotes().await;
    fill_overlap(&mut b, &mut c).await;
    // A second datastore with B's contents: C switches to it below (pointing C at B's own etcd
    // would be refused as a duplicate of cluster-b).
    let mut b2 = Cluster::start("b2").await;
    fill_remote(&mut b2, 66).await;
    fill_overlap(&mut b2, &mut c).await;
    a.put_rcc("cluster-b", etcd_spec(&b.url())).await;
    let (_server, mut agent) = serve_in_sync(&a, &["cluster-b"]).await;
    let only_b = expected(&a, &[remote("cluster-b", &b, false)]);
    assert_holds(agent.mirror(), &only_b, "before C is added");
    assert!(!agent.mirror().clusters().contains_key("cluster-c"));

    // Added: C's keys arrive, nothing else.
    a.put_rcc("cluster-c", etcd_spec(&c.url())).await;
    let with_c = expected(
        &a,
        &remotes_without_overlay(&[("cluster-b", &b), ("cluster-c", &c)]),
    );
    let mut events = pump(&mut agent, "cluster-c added", WAIT, |m| {
        is(m, "cluster-c", pb::ClusterState::InSync) && holds(m, &with_c)
    })
    .await;
    events.extend(sentinel(&mut a, &mut agent).await);
    let want_changes = all_as(cluster_keys(&with_c, "cluster-c"), "New");
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
        &remotes_without_overlay(&[("cluster-b", &b), ("cluster-c", &c)]),
    );
    a.put_rcc("cluster-c", etcd_spec(&b2.url())).await;
    let after = expected(
        &a,
        &remotes_without_overlay(&[("cluster-b", &b), ("cluster-c", &b2)]),
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
    let want_changes = all_as(c_keys, "Deleted");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_rccs_are_config_incomplete_and_never_hold_the_local_in_sync() {
    let (mut a, b, c) = local_and_two_remotes().await;
    a.put_rcc(
        "cluster-bad-type",
        json!({"datastoreType": "this-is-not-valid", "etcdEndpoints": b.url()}),
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
    a.put_rcc(
        "cluster-bad-both",
        json!({"clusterAccessSecret": secret_ref, "etcdEndpoints": c.url()}),
    )
    .await;

    let (_server, mut agent, go) = serve_held_back(&a).await;
    let released = release(go);
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
    a.put_rcc("cluster-bad-type", etcd_spec(&b.url())).await;
    let with_b = expected(&a, &[remote("cluster-bad-type", &b, false)]);
    let mut events = pump(&mut agent, "cluster-bad-type fixed", LONG, |m| {
        is(m, "cluster-bad-type", pb::ClusterState::InSync) && holds(m, &with_b)
    })
    .await;
    events.extend(sentinel(&mut a, &mut agent).await);
    let want_changes = all_as(cluster_keys(&with_b, "cluster-bad-type"), "New");
    assert_eq!(changes(&events), want_changes);
    assert!(is(
        agent.mirror(),
        "cluster-bad-both",
        pb::ClusterState::ConfigIncomplete
    ));

    // Fixing the double configuration: the Secret alone now says where C is.
    a.put_rcc(
        "cluster-bad-both",
        json!({"clusterAccessSecret": secret_ref}),
    )
    .await;
    let with_both = expected(
        &a,
        &remotes_without_overlay(&[("cluster-bad-type", &b), ("cluster-bad-both", &c)]),
    );
    let mut events = pump(&mut agent, "cluster-bad-both fixed", LONG, |m| {
        is(m, "cluster-bad-both", pb::ClusterState::InSync) && holds(m, &with_both)
    })
    .await;
    events.extend(sentinel(&mut a, &mut agent).await);
    let want_changes = all_as(cluster_keys(&with_both, "cluster-bad-both"), "New");
    assert_eq!(changes(&events), want_changes);
    assert_local_stays_in_sync(&events, "fixing RCCs");
    let m = agent.mirror();
    for cluster in ["cluster-bad-type", "cluster-bad-both"] {
        assert!(error_of(m, cluster).is_empty(), "{}", describe(m));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_routing_mode_switch_adds_and_removes_only_routing_kinds() {
    let (mut a, b) = local_and_one_remote().await;
    a.put_rcc("cluster-b", with_overlay(etcd_spec(&b.url()), "Disabled"))
        .await;
    let server = TestServer::start(mesh_over(&a.etcd)).await;
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
    a.put_rcc("cluster-b", with_overlay(etcd_spec(&b.url()), "Enabled"))
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
    a.put_rcc("cluster-b", with_overlay(etcd_spec(&b.url()), "Disabled"))
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
