//! Agents in the mesh tests: pulling events until a condition holds (a disconnect fails the
//! test), and sentinels that prove nothing else was sent.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use meshsync_agent::{Agent, AgentEvent, Mirror};
use meshsync_mesh::MeshConfig;
use meshsync_proto as pb;
use tokio::sync::oneshot;

use super::{
    Cluster, TestServer, WAIT, changes, describe, describe_statuses, gated, is, key_of,
    local_source, mesh_over, mkey, statuses,
};

/// Pulls agent events until `pred` holds for the mirror (checked first), within `limit`. A
/// disconnect or digest mismatch fails the test: every scenario here must be served on one
/// subscription. Returns the events pulled.
pub async fn pump(
    agent: &mut Agent,
    what: &str,
    limit: Duration,
    pred: impl Fn(&Mirror) -> bool,
) -> Vec<AgentEvent> {
    let mut seen = Vec::new();
    let done = tokio::time::timeout(limit, async {
        while !pred(agent.mirror()) {
            let event = agent.next().await.expect("agent failed");
            match &event {
                AgentEvent::Disconnected { error, .. } => {
                    panic!("{what}: the agent was disconnected: {error}")
                }
                AgentEvent::DigestMismatch(m) => panic!("{what}: digest mismatch: {m:?}"),
                _ => {}
            }
            seen.push(event);
        }
    })
    .await;
    if done.is_err() {
        panic!(
            "timed out after {limit:?} waiting for {what}; agent: {}; statuses seen: {}",
            describe(agent.mirror()),
            describe_statuses(&statuses(&seen))
        );
    }
    seen
}

static SENTINELS: AtomicU32 = AtomicU32::new(0);

/// Writes a new object to the local datastore and pulls until the agent has it. The sentinel's
/// update must be the last event pulled; returns every event before it, i.e. everything the agent
/// received between the previous wait and this real change.
pub async fn sentinel(a: &mut Cluster, agent: &mut Agent) -> Vec<AgentEvent> {
    let name = format!("sentinel-{}", SENTINELS.fetch_add(1, Ordering::Relaxed));
    a.put_plain("GlobalNetworkSet", "", &name).await;
    sentinel_seen(agent, &name).await
}

pub async fn sentinel_seen(agent: &mut Agent, name: &str) -> Vec<AgentEvent> {
    let key = mkey("", "GlobalNetworkSet", "", name);
    let mut events = pump(agent, &format!("sentinel {name}"), WAIT, |m| {
        m.resources().contains_key(&key)
    })
    .await;
    match events.pop() {
        Some(AgentEvent::Update(u)) if key_of(&u) == key => events,
        other => panic!("the sentinel's update must end the wait, got {other:?}"),
    }
}

/// No update at all among `events`.
pub fn assert_no_updates(events: &[AgentEvent], what: &str) {
    let list = changes(events);
    assert!(list.is_empty(), "{what}: unexpected updates {list:?}");
}

/// Every status among `events` reports the local cluster (overall) in sync.
pub fn assert_local_stays_in_sync(events: &[AgentEvent], what: &str) {
    let list = statuses(events);
    assert!(
        list.iter().all(|s| s.overall() == pb::SyncState::InSync),
        "{what}: the overall state left InSync:{}",
        describe_statuses(&list)
    );
}

/// An agent config with the clusters it must see in sync before calling itself in sync.
pub fn agent_requiring(server: &TestServer, subscription: &str, clusters: &[&str]) -> Agent {
    let mut config = server.agent_config(subscription);
    config.required_clusters = clusters.iter().map(|c| c.to_string()).collect();
    Agent::new(config).expect("agent")
}

pub fn all_in_sync(m: &Mirror, clusters: &[&str]) -> bool {
    m.in_sync() && clusters.iter().all(|c| is(m, c, pb::ClusterState::InSync))
}

/// A server over the mesh of `a` and an `all` agent that has seen the local cluster and
/// `remotes` in sync.
pub async fn serve_in_sync(a: &Cluster, remotes: &[&str]) -> (TestServer, Agent) {
    let server = TestServer::start(mesh_over(&a.etcd)).await;
    let mut agent = server.agent("all");
    pump(&mut agent, "in sync", WAIT, |m| all_in_sync(m, remotes)).await;
    (server, agent)
}

/// A server over the mesh of `a` whose local source is held back (see [`gated`]), and an `all`
/// agent that has seen the first (empty) status; the sender releases the local source.
pub async fn serve_held_back(a: &Cluster) -> (TestServer, Agent, oneshot::Sender<()>) {
    let (go, local) = gated(local_source(&a.etcd));
    let server = TestServer::start(meshsync_mesh::mesh(local, MeshConfig::default())).await;
    let mut agent = server.agent("all");
    pump(&mut agent, "the first (empty) status", WAIT, |m| {
        m.overall().is_some()
    })
    .await;
    (server, agent, go)
}

/// Lets the held-back local source go; returns the moment it was released.
pub fn release(go: oneshot::Sender<()>) -> Instant {
    let released = Instant::now();
    go.send(()).expect("release the local source");
    released
}
