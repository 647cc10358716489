#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// A remote reached through its cluster-access Secret (issue 3): missing (ConfigIncomplete naming
// it), created, rotated to another datastore and deleted, each step sending only its differences;
// Secrets are never forwarded. Fixtures and expectations: `support::mesh`.

use meshsync_proto as pb;
use serde_json::json;
use support::mesh::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_access_secret_missing_then_created_then_rotated() {
    let (mut a, mut b, mut c) = local_and_two_remotes().await;
    fill_overlap(&mut b, &mut c).await;
    a.put_rcc("cluster-b", json!({"clusterAccessSecret": {"kind": "Secret", "namespace": "kube-system", "name": "remote-b-access"}})).await;
    let server = TestServer::start(mesh_over(&a.etcd)).await;
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
    let want_changes = all_as(cluster_keys(&via_b, "cluster-b"), "New");
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
    let want_changes = all_as(c_keys, "Deleted");
    assert_eq!(changes(&events), want_changes, "deleting the secret");
    let reason = error_of(agent.mirror(), "cluster-b");
    assert!(reason.contains("remote-b-access"), "{reason:?}");
    assert_holds(
        agent.mirror(),
        &expected(&a, &[]),
        "after the secret is deleted",
    );
}
