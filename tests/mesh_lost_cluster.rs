#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// The lost-cluster policy `withdraw` (issue 3): a lost remote's data is deleted after the grace
// period, comes back with the remote, and the status keeps saying it is withdrawn through later
// failures. Fixtures and expectations: `support::mesh`.

use std::time::{Duration, Instant};

use meshsync_proto as pb;
use serde_json::json;
use support::mesh::*;

/// Product bug (see the report): once a `withdraw` cluster's data is withdrawn, the next
/// connection failure with a different error text replaces the status error, so the status no
/// longer says the data is withdrawn although it still is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawn_announcement_survives_later_failures() {
    let (mut a, mut b) = local_and_one_remote().await;
    let mut withdrawing = rcc("cluster-b", etcd_spec(&b.url()));
    // Shorter than the first retry (0.25-0.5 s): the next failure comes after the withdrawal.
    withdrawing["metadata"]["annotations"] = json!({
        "meshsync.io/lost-cluster-policy": "withdraw",
        "meshsync.io/lost-cluster-grace-period": "100ms"
    });
    a.put(RCC, "", "cluster-b", withdrawing).await;
    let (_server, mut agent) = serve_in_sync(&a, &["cluster-b"]).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdraw_policy_deletes_a_lost_clusters_data_after_the_grace_period() {
    let (mut a, mut b, c) = local_and_two_remotes().await;
    let mut withdrawing = rcc("cluster-b", etcd_spec(&b.url()));
    withdrawing["metadata"]["annotations"] = json!({
        "meshsync.io/lost-cluster-policy": "withdraw",
        "meshsync.io/lost-cluster-grace-period": "1s"
    });
    a.put(RCC, "", "cluster-b", withdrawing).await;
    a.put_rcc("cluster-c", etcd_spec(&c.url())).await;
    let (_server, mut agent) = serve_in_sync(&a, &["cluster-b", "cluster-c"]).await;
    let full = expected(
        &a,
        &remotes_without_overlay(&[("cluster-b", &b), ("cluster-c", &c)]),
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
    let want_changes = all_as(b_keys.iter().cloned(), "Deleted");
    assert_eq!(changes(&events), want_changes, "withdrawal");
    assert_local_stays_in_sync(&events, "withdrawal");

    // B comes back: so does its data.
    let full = expected(
        &a,
        &remotes_without_overlay(&[("cluster-b", &b), ("cluster-c", &c)]),
    );
    b.restart().await;
    let mut events = pump(&mut agent, "B back in sync", LONG, |m| {
        is(m, "cluster-b", pb::ClusterState::InSync) && holds(m, &full)
    })
    .await;
    events.extend(sentinel(&mut a, &mut agent).await);
    let want_changes = all_as(b_keys, "New");
    assert_eq!(changes(&events), want_changes, "B's return");
    assert!(error_of(agent.mirror(), "cluster-b").is_empty());
}
