//! Agents report what they hold (issue 14): each agent tells its server its per-cluster keys and
//! digests at a cut, after every in-sync and then periodically; the server judges each report
//! against its own state at that seq. `meshsync status --agents` (the real binary) lists every
//! agent with `OK` / `STALE` / `DIVERGED`, and a deliberately corrupted agent shows as
//! `DIVERGED` and in `meshsync_agents_diverged`. The status also carries the mesh-wide
//! consistent cut.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::time::Duration;

use meshsync_agent::{Agent, AgentConfig};
use meshsync_cache::CacheConfig;
use meshsync_proto::{self as pb, sync_client::SyncClient};
use meshsync_server::ServerConfig;
use support::binary::{meshsync, run};
use support::endpoints::{server_with_endpoints, wep};
use support::{TestServer, until_in_sync, within};

fn agent_config(server: &TestServer, node: &str) -> AgentConfig {
    let mut config = server.agent_config("felix");
    config.node_name = node.into();
    config.report_interval = Duration::from_millis(200);
    config
}

/// Drives an agent in the background (it reports as it goes) until told to stop; hands it back.
struct Driven {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Agent>,
}

fn drive(mut agent: Agent) -> Driven {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => return agent,
                event = agent.next() => if event.is_err() { return agent },
            }
        }
    });
    Driven { stop, task }
}

impl Driven {
    async fn stop(self) -> Agent {
        let _ = self.stop.send(true);
        self.task.await.unwrap()
    }
}

async fn agents_now(server: &TestServer) -> Vec<pb::AgentInfo> {
    let mut client = SyncClient::connect(server.url()).await.unwrap();
    client
        .status(pb::StatusRequest {
            agents: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .agents
}

/// Changes the last held value (no live update touches it) without the server knowing, as
/// memory corruption or a bug would, leaving the mirror at the same cut.
fn corrupt(mirror: &mut meshsync_agent::Mirror) {
    let key = mirror
        .resources()
        .keys()
        .next_back()
        .expect("a key")
        .clone();
    let seq = mirror.seq();
    mirror.apply_update(
        &pb::Update {
            cluster: key.cluster,
            kind: key.kind,
            namespace: key.namespace,
            name: key.name,
            r#type: pb::UpdateType::Updated as i32,
            value: bytes::Bytes::from_static(br#"{"corrupted":true}"#),
            ..Default::default()
        },
        false,
    );
    mirror.apply_cut(seq);
}

/// Waits until every listed agent's clusters are in `state` per `want(node)`.
async fn until_states(server: &TestServer, want: impl Fn(&str) -> i32) -> Vec<pb::AgentInfo> {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    within("the agents' reports", async {
        loop {
            let agents = agents_now(server).await;
            assert!(
                tokio::time::Instant::now() < deadline,
                "the agents' reports did not get there: {agents:#?}"
            );
            if agents.len() == 2
                && agents.iter().all(|a| {
                    !a.clusters.is_empty()
                        && a.clusters.iter().all(|c| c.state == want(&a.node_name))
                })
            {
                return agents;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_agent_is_listed_as_diverged() {
    let (tx, server) =
        server_with_endpoints(500, CacheConfig::default(), ServerConfig::default()).await;
    let mut good = Agent::new(agent_config(&server, "good-node")).unwrap();
    let mut bad = Agent::new(agent_config(&server, "corrupt-node")).unwrap();
    until_in_sync(&mut good).await;
    until_in_sync(&mut bad).await;
    // The mesh-wide cut: the one cluster is in sync, complete from a seq the mirror has passed.
    let cut = good
        .mirror()
        .consistent_cut_seq()
        .expect("in sync: a consistent cut");
    assert!(cut > 0 && cut <= good.mirror().seq(), "{cut}");

    // Both report soon after their snapshot, and keep reporting while live updates flow.
    let good_task = drive(good);
    let bad_task = drive(bad);
    let ok = pb::AgentClusterState::Ok as i32;
    let agents = until_states(&server, |_| ok).await;
    for a in &agents {
        assert_eq!(a.clusters[0].keys, 500);
        assert_eq!(a.clusters[0].server_keys, 500);
        assert!(a.reported_seq > 0);
    }
    for i in 0..20 {
        tx.send(wep(i, 2)).await.unwrap();
    }

    // Corrupt one value of `bad`'s mirror behind its back; its next report gives it away.
    let mut bad = bad_task.stop().await;
    corrupt(bad.mirror_mut_for_test());
    let bad_task = drive(bad);
    let diverged = pb::AgentClusterState::Diverged as i32;
    let agents = until_states(
        &server,
        |node| {
            if node == "corrupt-node" { diverged } else { ok }
        },
    )
    .await;
    let corrupt = agents
        .iter()
        .find(|a| a.node_name == "corrupt-node")
        .unwrap();
    assert_eq!(
        corrupt.clusters[0].keys, 500,
        "same keys, a different value"
    );

    // The operator's view: the real binary's table and JSON, and the metric.
    let out = run(
        meshsync().args(["status", "--agents", "--server", &server.url()]),
        Duration::from_secs(20),
    );
    assert!(out.status.success(), "{}", out.describe());
    let line = |node: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(node))
            .unwrap_or_else(|| panic!("no {node} in:\n{}", out.stdout))
            .to_string()
    };
    assert!(
        line("corrupt-node").contains("(local)=DIVERGED"),
        "{}",
        out.stdout
    );
    assert!(line("good-node").contains("(local)=OK"), "{}", out.stdout);
    assert!(out.stdout.contains("AGENT"), "{}", out.stdout);
    let out = run(
        meshsync().args([
            "status",
            "--agents",
            "--output",
            "json",
            "--server",
            &server.url(),
        ]),
        Duration::from_secs(20),
    );
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let states: Vec<(String, String)> = doc["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["node"].as_str().unwrap().to_string(),
                a["clusters"][0]["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            ("corrupt-node".to_string(), "DIVERGED".to_string()),
            ("good-node".to_string(), "OK".to_string())
        ]
    );
    assert!(doc["consistent_seq"].as_u64().unwrap() > 0);
    let (_, body) = support::http_get(server.metrics, "/metrics").await;
    assert!(
        body.lines().any(|l| l == "meshsync_agents_diverged 1"),
        "{body}"
    );
    // /readiness is not affected by a diverged agent.
    assert_eq!(support::http_get(server.health, "/readiness").await.0, 200);
    drop(good_task.stop().await);
    drop(bad_task.stop().await);
    // Gone agents leave the registry.
    within("the registry to empty", async {
        while !agents_now(&server).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    server.stop().await;
}
