#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test
mod support;
// Rebalancing by message (issue 13): with the replicas' Service known, a replica's limit is its
// Typha share (from the local Nodes and the Service's EndpointSlices in the cache), agents above it
// are asked to move — a `Reconnect`, one per shed interval, the longest-snapshotted first — and
// newcomers are refused with a status naming the reason and another replica.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use meshsync_agent::{AgentConfig, AgentEvent};
use meshsync_cache::CacheConfig;
use meshsync_datastore::{ResourceKey, SourceEvent, SourceStatus};
use meshsync_server::{RebalanceConfig, ServerConfig};
use serde_json::json;
use support::TestServer;

fn upsert(kind: &str, ns: &str, name: &str, value: serde_json::Value) -> SourceEvent {
    SourceEvent::Upsert {
        key: ResourceKey::new("", kind, ns, name),
        value: Bytes::from(value.to_string()),
        revision: "1".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_over_the_share_are_asked_to_move_oldest_first() {
    // 2 nodes, 3 replicas: Typha's share is 4 × (1 + 2 × 120 / 2 / 100) = 8.
    let mut events = vec![SourceEvent::ResyncStart { cluster: "".into() }];
    for n in ["node-1", "node-2"] {
        events.push(upsert(
            "Node",
            "",
            n,
            json!({"kind": "Node", "metadata": {"name": n}}),
        ));
    }
    // One replica at first: no share, the upper limit.
    events.push(slice(&["10.0.0.1"]));
    events.push(SourceEvent::ResyncDone { cluster: "".into() });
    events.push(SourceEvent::Status {
        cluster: "".into(),
        status: SourceStatus::InSync,
    });
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    for e in events {
        tx.send(e).await.unwrap();
    }
    let source = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut rebalance = RebalanceConfig::new("meshsync", "meshsync");
    rebalance.lower = 1;
    rebalance.poll = Duration::from_millis(100);
    rebalance.shed_interval = Duration::from_millis(150);
    let server_config = ServerConfig {
        rebalance: Some(rebalance),
        max_connections: 100,
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(source, CacheConfig::default(), server_config).await;
    assert_eq!(meshsync_server::rebalance_target(2, 3, 4, 1, 100), 8);

    // Twelve agents, all admitted while this is the only replica.
    let mut agents = Vec::new();
    for i in 0..12 {
        let mut config: AgentConfig = server.agent_config("felix");
        config.node_name = format!("node-{i:02}");
        config.backoff_initial = Duration::from_millis(200);
        config.backoff_max = Duration::from_millis(400);
        let mut agent = meshsync_agent::Agent::new(config).expect("agent");
        support::within("an agent in sync", async {
            loop {
                match agent.next().await.expect("agent") {
                    AgentEvent::Status { in_sync: true, .. } => break,
                    AgentEvent::Disconnected { error, .. } => {
                        // Admission is refused once the target is in force: that is a result too.
                        assert!(
                            error.contains(
                                "connection limit (8, this replica's share among 3 replicas)"
                            ) && error.contains("try another server, e.g. 10.0.0."),
                            "{error}"
                        );
                        break;
                    }
                    _ => {}
                }
            }
        })
        .await;
        agents.push(agent);
    }

    // Two more replicas appear: the share is 8.
    tx.send(slice(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]))
        .await
        .unwrap();

    // Within a few shed intervals, the server is down to its share; the agents asked to move are
    // the oldest (lowest numbers), each told why.
    let mut asked: Vec<(usize, Duration)> = Vec::new();
    let start = std::time::Instant::now();
    let mut streams: Vec<_> = agents
        .into_iter()
        .enumerate()
        .map(|(i, a)| a.into_stream().map(move |e| (i, e)).boxed())
        .collect();
    let mut merged = futures::stream::select_all(streams.drain(..));
    support::within("the server at its share", async {
        while server.connections.active() > 8 || asked.len() < 4 {
            if let Some((i, Ok(AgentEvent::Reconnect { reason, .. }))) =
                tokio::time::timeout(Duration::from_secs(5), merged.next())
                    .await
                    .ok()
                    .flatten()
            {
                assert!(reason.contains("rebalancing"), "{reason}");
                asked.push((i, start.elapsed()));
            }
        }
    })
    .await;
    eprintln!("asked to move: {asked:?}");
    let first_four: Vec<usize> = asked.iter().take(4).map(|(i, _)| *i).collect();
    assert!(
        first_four.iter().all(|i| *i < 8),
        "the longest-snapshotted go first: {asked:?}"
    );
    for pair in asked.windows(2).take(3) {
        assert!(
            pair[1].1 - pair[0].1 >= Duration::from_millis(100),
            "one per interval: {asked:?}"
        );
    }
    assert!(server.connections.active() <= 8);

    // A newcomer is refused, told why and where else to go.
    let mut late = server.agent("felix");
    let refused = support::within("the newcomer's refusal", async {
        loop {
            if let AgentEvent::Disconnected { error, .. } = late.next().await.expect("agent") {
                return error;
            }
        }
    })
    .await;
    assert!(
        refused.contains("connection limit (8, this replica's share among 3 replicas)")
            && refused.contains("try another server, e.g. 10.0.0."),
        "{refused}"
    );
}

fn slice(addresses: &[&str]) -> SourceEvent {
    let endpoints: Vec<_> = addresses
        .iter()
        .map(|a| json!({"addresses": [a]}))
        .collect();
    upsert(
        "EndpointSlice",
        "meshsync",
        "meshsync-abc",
        json!({"kind": "EndpointSlice", "metadata": {"name": "meshsync-abc", "namespace": "meshsync",
            "labels": {"kubernetes.io/service-name": "meshsync"}},
            "addressType": "IPv4", "ports": [{"name": "meshsync", "port": 5473}],
            "endpoints": endpoints}),
    )
}
