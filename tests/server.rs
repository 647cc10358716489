//! The gRPC server end to end on real sockets: status, readiness, limits, fan-out to hundreds of
//! agents, resync differences, reconnects and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use meshsync_agent::{Agent, AgentEvent};
use meshsync_cache::CacheConfig;
use meshsync_datastore::{ResourceKey, SourceEvent, SourceStatus};
use meshsync_proto::{self as pb, sync_client::SyncClient};
use meshsync_server::ServerConfig;
use support::{TestServer, http_get, next_update, until, until_in_sync, within};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn wep(name: &str, v: u32) -> SourceEvent {
    SourceEvent::Upsert {
        key: ResourceKey::new("", "WorkloadEndpoint", "default", name),
        value: Bytes::from(format!(
            "{{\"kind\":\"WorkloadEndpoint\",\"metadata\":{{\"name\":\"{name}\"}},\"spec\":{{\"v\":{v}}}}}"
        )),
        revision: format!("{v}").into(),
    }
}

fn status(s: SourceStatus) -> SourceEvent {
    SourceEvent::Status {
        cluster: "".into(),
        status: s,
    }
}

/// A source the test drives by hand.
fn source() -> (mpsc::Sender<SourceEvent>, ReceiverStream<SourceEvent>) {
    let (tx, rx) = mpsc::channel(1024);
    (tx, ReceiverStream::new(rx))
}

async fn send_all(tx: &mpsc::Sender<SourceEvent>, events: impl IntoIterator<Item = SourceEvent>) {
    for e in events {
        tx.send(e).await.unwrap();
    }
}

async fn initial_sync(tx: &mpsc::Sender<SourceEvent>, names: &[&str]) {
    send_all(
        tx,
        [
            status(SourceStatus::ResyncInProgress),
            SourceEvent::ResyncStart { cluster: "".into() },
        ],
    )
    .await;
    send_all(tx, names.iter().map(|n| wep(n, 1))).await;
    send_all(
        tx,
        [
            SourceEvent::ResyncDone { cluster: "".into() },
            status(SourceStatus::InSync),
        ],
    )
    .await;
}

#[tokio::test]
async fn readiness_follows_the_sync_state_and_status_reports_counts() {
    let (tx, rx) = source();
    let server = TestServer::start(rx).await;
    assert_eq!(http_get(server.health, "/liveness").await.0, 200);
    let (code, body) = http_get(server.health, "/readiness").await;
    assert_eq!(code, 503, "not ready before any data: {body}");

    send_all(
        &tx,
        [
            status(SourceStatus::ResyncInProgress),
            SourceEvent::ResyncStart { cluster: "".into() },
            wep("a", 1),
        ],
    )
    .await;
    within(
        "resync in progress",
        server.cache.wait_for_status(|s| s.total_keys() == 1),
    )
    .await;
    assert_eq!(http_get(server.health, "/readiness").await.0, 503);

    send_all(
        &tx,
        [
            wep("b", 1),
            SourceEvent::ResyncDone { cluster: "".into() },
            status(SourceStatus::InSync),
        ],
    )
    .await;
    let mut agent = server.agent("felix");
    until_in_sync(&mut agent).await;
    let (code, body) = http_get(server.health, "/readiness").await;
    assert_eq!(code, 200, "{body}");

    let mut client = SyncClient::connect(server.url()).await.unwrap();
    let resp = client
        .status(pb::StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let st = resp.status.unwrap();
    assert_eq!(st.overall(), pb::SyncState::InSync);
    assert_eq!(resp.epoch, server.cache.epoch());
    assert_eq!(resp.connections, 1, "the agent's stream is counted");
    assert_eq!(st.clusters.len(), 1);
    assert_eq!(st.clusters[0].keys, 2);
    assert_eq!(st.clusters[0].state(), pb::ClusterState::InSync);
    assert_eq!(st.seq, 2);

    // Metrics: key counts, and Calico's gauge for a remote cluster's state.
    send_all(
        &tx,
        [SourceEvent::Status {
            cluster: "Cluster-B".into(),
            status: SourceStatus::InSync,
        }],
    )
    .await;
    within(
        "remote status",
        server.cache.wait_for_status(|s| s.clusters.len() == 2),
    )
    .await;
    let (code, metrics) = http_get(server.metrics, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("meshsync_cache_keys{cluster=\"\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "meshsync_remote_cluster_connection_status{remote_cluster_name=\"cluster-b\"} 2"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("meshsync_connections_active 1"),
        "{metrics}"
    );

    // The datastore goes away: readiness drops again.
    tx.send(status(SourceStatus::ConnectionFailed("gone".into())))
        .await
        .unwrap();
    within(
        "not in sync",
        server
            .cache
            .wait_for_status(|s| s.overall != meshsync_cache::SyncState::InSync),
    )
    .await;
    assert_eq!(http_get(server.health, "/readiness").await.0, 503);
    drop(agent);
    server.stop().await;
}

#[tokio::test]
async fn unknown_subscription_and_connection_limit_are_refused_clearly() {
    let (tx, rx) = source();
    let server = TestServer::start_with(
        rx,
        CacheConfig::default(),
        ServerConfig {
            max_connections: 2,
            ..ServerConfig::default()
        },
    )
    .await;
    initial_sync(&tx, &["a"]).await;

    let err = match Agent::new(server.agent_config("bogus"))
        .unwrap()
        .next()
        .await
    {
        Err(e) => e.to_string(),
        Ok(ev) => panic!("expected a refusal, got {ev:?}"),
    };
    assert!(err.contains("unknown subscription type"), "{err}");
    assert!(err.contains("felix"), "lists the valid types: {err}");

    let mut a = server.agent("felix");
    let mut b = server.agent("felix");
    until_in_sync(&mut a).await;
    until_in_sync(&mut b).await;
    let mut client = SyncClient::connect(server.url()).await.unwrap();
    let third = client
        .subscribe(pb::SubscribeRequest {
            subscription: "felix".into(),
            ..Default::default()
        })
        .await;
    let status = third.expect_err("a third subscription is over the limit");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert!(status.message().contains("connection limit"));

    // Freeing a slot lets a new agent in.
    drop(a);
    within("slot released", async {
        while server.connections.active() > 1 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let mut c = server.agent("felix");
    until_in_sync(&mut c).await;
    drop((b, c));
    server.stop().await;
}

/// The recorded stream of one agent after it was in sync: (seq, type, key, revision, value).
type Recorded = Vec<(u64, i32, String, String, Bytes)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_agents_receive_identical_streams() {
    const AGENTS: usize = 300;
    const CHANGES: u32 = 200;
    let (tx, rx) = source();
    let server = TestServer::start(rx).await;
    initial_sync(&tx, &["w0", "w1", "w2"]).await;

    let mut agents = Vec::new();
    for _ in 0..AGENTS {
        agents.push(server.agent("felix"));
    }
    let synced = futures::future::join_all(agents.into_iter().map(|mut a| async move {
        until_in_sync(&mut a).await;
        a
    }));
    let agents = within("all agents in sync", synced).await;
    assert_eq!(server.connections.active(), AGENTS);
    // Agents that connect together share one encoded snapshot.
    let metrics = server.cache.metrics();
    let generated = metrics.snapshots_generated.load(Ordering::Relaxed);
    let reused = metrics.snapshots_reused.load(Ordering::Relaxed);
    assert_eq!(generated + reused, AGENTS as u64);
    assert!(
        generated <= 3,
        "snapshot encoded {generated} times for {AGENTS} agents"
    );

    // A stream of changes in bursts of different sizes, including deletes and no-ops.
    for i in 0..CHANGES {
        let e = match i % 5 {
            0 => SourceEvent::Delete {
                key: ResourceKey::new("", "WorkloadEndpoint", "default", &format!("w{}", i % 7)),
                revision: "d".into(),
            },
            1 => wep("w1", 1), // often unchanged: must be deduplicated
            _ => wep(&format!("w{}", i % 7), i),
        };
        tx.send(e).await.unwrap();
        if i % 37 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let sentinel = ResourceKey::new("", "WorkloadEndpoint", "default", "end");
    tx.send(wep("end", 0)).await.unwrap();

    let recorded = futures::future::join_all(agents.into_iter().map(|mut a| {
        let sentinel = sentinel.clone();
        async move {
            let mut rec: Recorded = Vec::new();
            loop {
                let u = next_update(&mut a).await;
                let done = u.name == sentinel.name();
                rec.push((u.seq, u.r#type, u.name, u.revision, u.value));
                if done {
                    return (rec, a);
                }
            }
        }
    }));
    let recorded = within("every agent to see the sentinel", recorded).await;
    let (first, first_agent) = &recorded[0];
    assert!(!first.is_empty());
    for (n, (rec, agent)) in recorded.iter().enumerate() {
        assert_eq!(rec, first, "agent {n} received a different stream");
        assert_eq!(agent.mirror().resources(), first_agent.mirror().resources());
    }
    // seqs strictly increase: no duplicates, nothing reordered.
    assert!(first.windows(2).all(|w| w[0].0 < w[1].0));
    let head = server.cache.head();
    assert_eq!(first_agent.mirror().len(), head.snapshot.len());
    drop(recorded);
    server.stop().await;
}

#[tokio::test]
async fn a_relist_sends_only_the_real_differences() {
    let (tx, rx) = source();
    let server = TestServer::start(rx).await;
    initial_sync(&tx, &["keep", "change", "vanish"]).await;
    let mut agent = server.agent("felix");
    until_in_sync(&mut agent).await;

    // Reconnect to the datastore: relist with one changed, one gone, one new.
    send_all(
        &tx,
        [
            status(SourceStatus::ResyncInProgress),
            SourceEvent::ResyncStart { cluster: "".into() },
            wep("keep", 1),
            wep("change", 2),
            wep("new", 1),
            SourceEvent::ResyncDone { cluster: "".into() },
            status(SourceStatus::InSync),
        ],
    )
    .await;
    let events = until(&mut agent, "relist applied", |m| {
        m.in_sync()
            && m.resources().keys().any(|k| k.name == "new")
            && !m.resources().keys().any(|k| k.name == "vanish")
    })
    .await;
    let mut changes: Vec<(String, i32)> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Update(u) => Some((u.name.clone(), u.r#type)),
            _ => None,
        })
        .collect();
    changes.sort();
    assert_eq!(
        changes,
        vec![
            ("change".to_string(), pb::UpdateType::Updated as i32),
            ("new".to_string(), pb::UpdateType::New as i32),
            ("vanish".to_string(), pb::UpdateType::Deleted as i32),
        ]
    );
    // Nothing else follows: the next update is the next real change.
    tx.send(wep("later", 1)).await.unwrap();
    assert_eq!(next_update(&mut agent).await.name, "later");
    server.stop().await;
}

#[tokio::test]
async fn an_agent_reconnects_and_drops_what_the_new_snapshot_lacks() {
    let (tx, rx) = source();
    let server = TestServer::start(rx).await;
    initial_sync(&tx, &["a", "b"]).await;
    let addr = server.grpc;
    let mut agent = server.agent("felix");
    until_in_sync(&mut agent).await;
    assert_eq!(agent.mirror().len(), 2);
    server.stop().await;

    // A new server on the same address, with different data.
    let (tx2, rx2) = source();
    let cache = meshsync_cache::SnapshotCache::spawn(rx2, CacheConfig::default());
    initial_sync(&tx2, &["b", "c"]).await;
    let bound = within("rebind", async {
        loop {
            let config = ServerConfig {
                listen: addr,
                health_listen: None,
                metrics_listen: None,
                ..ServerConfig::default()
            };
            match meshsync_server::BoundServer::bind(cache.clone(), config).await {
                Ok(b) => return b,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(bound.serve(async {
        let _ = stop_rx.await;
    }));

    let events = until(&mut agent, "resynced with the new server", |m| {
        m.in_sync() && m.epoch() == cache.epoch()
    })
    .await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::Disconnected { .. })),
        "the loss was reported"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::Removed(k) if k.name == "a")),
        "a, absent from the new snapshot, was removed"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, AgentEvent::DigestMismatch(_))),
        "digests agree"
    );
    let names: Vec<&str> = agent
        .mirror()
        .resources()
        .keys()
        .map(|k| k.name.as_str())
        .collect();
    assert_eq!(names, ["b", "c"]);
    let _ = stop_tx.send(());
    let _ = task.await;
}

#[tokio::test]
async fn oversized_values_are_refused_and_everything_else_flows() {
    let (tx, rx) = source();
    let server = TestServer::start_with(
        rx,
        CacheConfig {
            max_value_bytes: 200,
            ..CacheConfig::default()
        },
        ServerConfig::default(),
    )
    .await;
    initial_sync(&tx, &["a"]).await;
    let mut agent = server.agent("felix");
    until_in_sync(&mut agent).await;
    let original = agent.mirror().resources().values().next().unwrap().clone();

    tx.send(SourceEvent::Upsert {
        key: ResourceKey::new("", "WorkloadEndpoint", "default", "a"),
        value: Bytes::from(vec![b' '; 201]),
        revision: "big".into(),
    })
    .await
    .unwrap();
    tx.send(wep("b", 1)).await.unwrap();
    let u = next_update(&mut agent).await;
    assert_eq!(
        u.name, "b",
        "the oversized update was dropped, the next one flowed"
    );
    assert_eq!(
        agent.mirror().resources().values().next().unwrap(),
        &original,
        "previous value kept"
    );
    assert_eq!(
        server
            .cache
            .metrics()
            .rejected
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn a_lagging_agent_gets_a_coalesced_difference() {
    let (tx, rx) = source();
    let server = TestServer::start_with(
        rx,
        CacheConfig::default(),
        ServerConfig {
            lag_limit: 10,
            ..ServerConfig::default()
        },
    )
    .await;
    initial_sync(&tx, &["a"]).await;
    let mut agent = server.agent("felix");
    until_in_sync(&mut agent).await;
    // 100 versions of one key while the agent is not reading.
    for v in 2..102 {
        tx.send(wep("a", v)).await.unwrap();
    }
    within(
        "cache applied",
        server.cache.wait_for_status(|s| s.seq >= 101),
    )
    .await;
    let events = until(&mut agent, "caught up", |m| m.seq() >= 101).await;
    let updates = events
        .iter()
        .filter(|e| matches!(e, AgentEvent::Update(_)))
        .count();
    assert!(
        updates < 10,
        "intermediate versions were coalesced, got {updates} updates"
    );
    let value = &agent.mirror().resources().values().next().unwrap().value;
    assert!(
        String::from_utf8_lossy(value).contains("\"v\":101"),
        "latest value"
    );
    server.stop().await;
}
