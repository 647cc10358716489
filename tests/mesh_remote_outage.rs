#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// A remote cluster's etcd killed and restarted (issue 3): the remote is ConnectionFailed within
// seconds while the local cluster and the other remote keep flowing (policy keep: its data stays),
// and the resync after a restart sends exactly the real differences. Fixtures and expectations:
// `support::mesh`.

use std::time::{Duration, Instant};

use meshsync_proto as pb;
use support::mesh::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_remote_fails_fast_while_local_and_other_remote_keep_flowing() {
    let (mut a, mut b, mut c) = local_and_two_remotes().await;
    a.put_rcc("cluster-b", etcd_spec(&b.url())).await;
    a.put_rcc("cluster-c", etcd_spec(&c.url())).await;
    let (_server, mut agent) = serve_in_sync(&a, &["cluster-b", "cluster-c"]).await;
    let want = expected(
        &a,
        &remotes_without_overlay(&[("cluster-b", &b), ("cluster-c", &c)]),
    );
    assert_holds(agent.mirror(), &want, "before the kill");
    let b_keys = counts(&want)["cluster-b"];

    b.kill();
    let killed = Instant::now();
    let mut events = pump(&mut agent, "cluster-b ConnectionFailed", LONG, |m| {
        is(m, "cluster-b", pb::ClusterState::ConnectionFailed)
    })
    .await;
    let detected = killed.elapsed();
    assert!(
        detected < Duration::from_secs(10),
        "ConnectionFailed took {detected:?}"
    );
    let m = agent.mirror();
    assert!(
        !error_of(m, "cluster-b").is_empty(),
        "ConnectionFailed needs a reason: {}",
        describe(m)
    );
    // Policy keep: B's data stays, the others are untouched.
    assert_holds(m, &want, "right after the kill");
    assert_eq!(m.clusters()["cluster-b"].keys, b_keys);
    assert!(
        is(m, "cluster-c", pb::ClusterState::InSync),
        "{}",
        describe(m)
    );
    assert_eq!(m.overall(), Some(pb::SyncState::InSync));

    // Local and C keep flowing, promptly, while B is down (and being retried).
    let write = Instant::now();
    a.put_wep(
        "default",
        "node--a1-k8s-late-eth0",
        "node-a1",
        "10.65.0.9",
        "kns.default",
    )
    .await;
    let key = mkey("", "WorkloadEndpoint", "default", "node--a1-k8s-late-eth0");
    events.extend(
        pump(&mut agent, "local write while B is down", WAIT, |m| {
            m.resources().contains_key(&key)
        })
        .await,
    );
    assert!(
        write.elapsed() < Duration::from_secs(2),
        "local update took {:?}",
        write.elapsed()
    );

    let write = Instant::now();
    put_remote_pod(&mut c, 7, "10.67.0.7").await;
    c.delete("WorkloadEndpoint", "ns1", "node1-k8s-pod--2-eth0")
        .await;
    let want = expected(
        &a,
        &remotes_without_overlay(&[("cluster-b", &b), ("cluster-c", &c)]),
    );
    events.extend(
        pump(&mut agent, "C's writes while B is down", WAIT, |m| {
            holds(m, &want)
        })
        .await,
    );
    assert!(
        write.elapsed() < Duration::from_secs(2),
        "C's updates took {:?}",
        write.elapsed()
    );

    events.extend(sentinel(&mut a, &mut agent).await);
    // Nothing was sent for B, and the local in-sync never wavered.
    let for_b: Vec<Change> = changes(&events)
        .into_iter()
        .filter(|(k, _)| k.cluster == "cluster-b")
        .collect();
    assert!(for_b.is_empty(), "B's data must be kept: {for_b:?}");
    assert_local_stays_in_sync(&events, "while B is down");
    let m = agent.mirror();
    assert!(
        is(m, "cluster-b", pb::ClusterState::ConnectionFailed),
        "{}",
        describe(m)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_remote_resyncs_with_only_the_real_differences() {
    let (mut a, mut b) = local_and_one_remote().await;
    a.put_rcc("cluster-b", etcd_spec(&b.url())).await;
    let (_server, mut agent) = serve_in_sync(&a, &["cluster-b"]).await;
    let want = expected(&a, &[remote("cluster-b", &b, false)]);
    assert_holds(agent.mirror(), &want, "initial");

    // Down and up again with nothing changed: B is InSync again, and not one update for it.
    b.kill();
    let mut events = pump(&mut agent, "cluster-b ConnectionFailed", LONG, |m| {
        is(m, "cluster-b", pb::ClusterState::ConnectionFailed)
    })
    .await;
    b.restart().await;
    events.extend(
        pump(&mut agent, "cluster-b InSync after restart", LONG, |m| {
            is(m, "cluster-b", pb::ClusterState::InSync)
        })
        .await,
    );
    events.extend(sentinel(&mut a, &mut agent).await);
    assert_no_updates(&events, "restart with nothing changed");
    assert_local_stays_in_sync(&events, "restart with nothing changed");
    let states: Vec<pb::ClusterState> = statuses(&events)
        .iter()
        .filter_map(|s| status_cluster(s, "cluster-b").map(|c| c.state()))
        .collect();
    assert!(
        states.contains(&pb::ClusterState::ConnectionFailed)
            && states.last() == Some(&pb::ClusterState::InSync),
        "cluster-b states: {states:?}"
    );
    let want = expected(&a, &[remote("cluster-b", &b, false)]);
    assert_holds(agent.mirror(), &want, "after the first restart");

    // Down again; this time B's content changes right after it comes back.
    b.kill();
    let mut events = pump(&mut agent, "cluster-b ConnectionFailed (2)", LONG, |m| {
        is(m, "cluster-b", pb::ClusterState::ConnectionFailed)
    })
    .await;
    b.restart().await;
    let before = want;
    put_remote_pod(&mut b, 3, "10.66.0.3").await;
    put_remote_pod(&mut b, 2, "10.66.0.22").await;
    b.delete("HostEndpoint", "", "node1-eth0").await;
    b.put_profile("kns.ns1", "ns1-relabelled").await;
    // Changes to kinds that are not synced from a remote must not show up either.
    b.put("GlobalNetworkPolicy", "", "remote-deny-all", gnp("changed"))
        .await;
    b.put("Node", "", "node1", node("node1", "192.168.66.99"))
        .await;
    let after = expected(&a, &[remote("cluster-b", &b, false)]);
    events.extend(
        pump(&mut agent, "B's changes after restart", LONG, |m| {
            is(m, "cluster-b", pb::ClusterState::InSync) && holds(m, &after)
        })
        .await,
    );
    events.extend(sentinel(&mut a, &mut agent).await);
    let want_changes = diff(&before, &after);
    assert_eq!(want_changes.len(), 4, "{want_changes:?}");
    assert_eq!(
        changes(&events),
        want_changes,
        "exactly B's real differences"
    );
    assert_local_stays_in_sync(&events, "restart with changes");
}
