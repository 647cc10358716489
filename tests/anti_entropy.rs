//! Anti-entropy with any replica, after any restart (issue 14): an agent that reconnects to a
//! server of another epoch — a second replica, or the same server restarted — sends its mirror's
//! bucket digests and is sent only the buckets that differ (a `Replace`, their content, a status);
//! its mirror then equals the new server's state key for key and by digest, with keys the new
//! server does not have removed. One test with two in-process replicas, one with the real binary
//! restarted on a real etcd.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::time::Duration;

use meshsync_agent::{Agent, AgentConfig, Mirror};
use meshsync_cache::CacheConfig;
use meshsync_proto as pb;
use meshsync_server::ServerConfig;
use support::binary::Serve;
use support::endpoints::{server_with_endpoints, wep, wep_deleted};
use support::etcd::Cluster;
use support::reconnects::{assert_no_mismatch, last_hello, updates_after_hello};
use support::relay::Relay;
use support::{until, until_in_sync};

const KEYS: usize = 2000;

fn value_version(mirror: &Mirror, name: &str) -> Option<u32> {
    mirror
        .resources()
        .iter()
        .find(|(k, _)| k.name == name)
        .and_then(|(_, e)| {
            let v: serde_json::Value = serde_json::from_slice(&e.value).ok()?;
            v["spec"]["v"].as_u64().map(|v| v as u32)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_moved_to_another_replica_is_sent_only_the_buckets_that_differ() {
    let (_a_tx, a) =
        server_with_endpoints(KEYS, CacheConfig::default(), ServerConfig::default()).await;
    // Replica B saw the datastore a little later: 20 endpoints changed, 5 deleted, 3 added.
    let (b_tx, b) =
        server_with_endpoints(KEYS, CacheConfig::default(), ServerConfig::default()).await;
    for i in 0..20 {
        b_tx.send(wep(i * 11, 2)).await.unwrap();
    }
    for i in 0..5 {
        b_tx.send(wep_deleted(1500 + i)).await.unwrap();
    }
    for i in 0..3 {
        b_tx.send(wep(5000 + i, 1)).await.unwrap();
    }
    let expected = KEYS - 5 + 3;
    support::within(
        "replica B's changes",
        b.cache
            .wait_for_status(|s| s.total_keys() == expected as u64),
    )
    .await;
    assert_ne!(a.cache.epoch(), b.cache.epoch());

    let relay = Relay::start(a.grpc).await;
    let mut config: AgentConfig = a.agent_config("felix");
    config.servers = vec![format!("http://127.0.0.1:{}", relay.port), b.url()];
    let mut agent = Agent::new(config).unwrap();
    let first = until_in_sync(&mut agent).await;
    assert_eq!(last_hello(&first).path, pb::SyncPath::Full as i32);

    relay.cut();
    let moved = until(&mut agent, "the agent in sync on replica B", |m| {
        m.in_sync() && m.epoch() == b.cache.epoch()
    })
    .await;
    assert_eq!(last_hello(&moved).path, pb::SyncPath::AntiEntropy as i32);
    assert_no_mismatch(&moved);
    // 28 keys differ; each drags at most its bucket's few neighbours along.
    let sent = updates_after_hello(&moved).len();
    assert!(
        (28..=KEYS / 20).contains(&sent),
        "{sent} updates for 28 differences (a full snapshot is {expected})"
    );
    let mirror = agent.mirror();
    assert_eq!(mirror.len(), expected);
    assert!(mirror.verify().is_empty(), "digests equal B's");
    for i in 0..20 {
        assert_eq!(
            value_version(mirror, &format!("pod-{:05}", i * 11)),
            Some(2)
        );
    }
    for i in 0..5 {
        assert_eq!(value_version(mirror, &format!("pod-{:05}", 1500 + i)), None);
    }
    assert_eq!(value_version(mirror, "pod-05002"), Some(1));
    let (_, body) = support::http_get(b.metrics, "/metrics").await;
    assert!(
        body.lines()
            .any(|l| l == "meshsync_subscriptions_anti_entropy_total 1"),
        "{body}"
    );
    b.stop().await;
    a.stop().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn endpoint(i: usize, v: u32) -> serde_json::Value {
    serde_json::json!({
        "kind": "WorkloadEndpoint",
        "apiVersion": "projectcalico.org/v3",
        "metadata": {"name": format!("pod-{i:05}"), "namespace": "default",
            "labels": {"app": "web", "projectcalico.org/namespace": "default"}},
        "spec": {"node": format!("node-{}", i % 20), "pod": format!("pod-{i:05}"),
            "ipNetworks": [format!("10.1.{}.{}/32", i / 250, i % 250)], "v": v}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_of_the_real_server_the_agent_is_repaired_by_anti_entropy() {
    const N: usize = 1000;
    let cluster = Cluster::start("anti-entropy").await;
    for i in 0..N {
        cluster
            .put(
                "WorkloadEndpoint",
                "default",
                &format!("pod-{i:05}"),
                &endpoint(i, 1),
            )
            .await;
    }
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let datastore = format!("etcd://{}", cluster.etcd.host_port());
    let args = [
        "serve",
        "--datastore",
        &datastore,
        "--listen",
        &listen,
        "--no-health",
    ];
    let mut server = Serve::start(&args);
    server.wait_line("in sync", |l| {
        l.contains("Sending in-sync update for local datastore")
    });
    let mut config = AgentConfig::new(format!("http://{listen}"));
    config.node_name = "restart-node".into();
    config.backoff_initial = Duration::from_millis(50);
    config.backoff_max = Duration::from_millis(300);
    let mut agent = Agent::new(config).unwrap();
    until(&mut agent, "all endpoints", |m| m.in_sync() && m.len() == N).await;
    let first_epoch = agent.mirror().epoch();

    // The server goes away; 1 % of the endpoints change and two are deleted meanwhile.
    server.kill_and_collect();
    for i in 0..10 {
        cluster
            .put(
                "WorkloadEndpoint",
                "default",
                &format!("pod-{:05}", i * 97),
                &endpoint(i * 97, 2),
            )
            .await;
    }
    cluster
        .delete("WorkloadEndpoint", "default", "pod-00500")
        .await;
    cluster
        .delete("WorkloadEndpoint", "default", "pod-00501")
        .await;
    let mut restarted = Serve::start(&args);
    let back = until(
        &mut agent,
        "the agent in sync on the restarted server",
        |m| m.in_sync() && m.epoch() != first_epoch,
    )
    .await;
    assert_eq!(last_hello(&back).path, pb::SyncPath::AntiEntropy as i32);
    assert_no_mismatch(&back);
    let sent = updates_after_hello(&back).len();
    assert!(
        (10..=N / 20).contains(&sent),
        "{sent} updates for 12 differences (a full snapshot is {})",
        N - 2
    );
    let mirror = agent.mirror();
    assert_eq!(mirror.len(), N - 2);
    assert!(mirror.verify().is_empty());
    assert_eq!(value_version(mirror, "pod-00097"), Some(2));
    assert_eq!(value_version(mirror, "pod-00500"), None);
    let line = restarted.wait_line("the anti-entropy log line", |l| {
        l.contains("anti-entropy: sending the agent's differing buckets only")
    });
    assert!(line.contains("restart-node"), "{line}");
}
