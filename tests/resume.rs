//! Reconnecting to the same server costs only what changed (issue 14): an agent whose connection
//! is cut (a real TCP relay between it and the server) resubscribes with its resume token and,
//! within the retained history, is sent one coalesced difference — the changed and deleted keys,
//! nothing else — after which its mirror's digests verify. Outside the history its bucket digests
//! repair it (anti-entropy, also `tests/anti_entropy.rs`); an agent that sends neither token nor
//! digests gets a full snapshot and its mirror is replaced correctly.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use meshsync_agent::AgentConfig;
use meshsync_cache::{CacheConfig, HistoryConfig};
use meshsync_proto as pb;
use meshsync_server::ServerConfig;
use support::endpoints::{server_with_endpoints, wep, wep_deleted};
use support::reconnects::{assert_no_mismatch, last_hello, updates_after_hello};
use support::relay::Relay;
use support::{TestServer, until, until_in_sync, within};

const KEYS: usize = 2000;

/// An agent of `server` whose connection goes through `relay`, then to `more` servers.
fn agent_through(relay: &Relay, server: &TestServer, more: &[String]) -> meshsync_agent::Agent {
    let mut config: AgentConfig = server.agent_config("felix");
    config.servers = std::iter::once(format!("http://127.0.0.1:{}", relay.port))
        .chain(more.iter().cloned())
        .collect();
    meshsync_agent::Agent::new(config).unwrap()
}

/// Cuts the agent's connection and pulls events until it noticed.
async fn cut(agent: &mut meshsync_agent::Agent, relay: &Relay) {
    relay.cut();
    until(agent, "the agent to notice the cut", |m| {
        m.overall().is_none()
    })
    .await;
}

/// Changes 20 endpoints and deletes 5 while the agent is away; waits until the cache has them.
async fn churn_while_away(
    tx: &tokio::sync::mpsc::Sender<meshsync_datastore::SourceEvent>,
    server: &TestServer,
) {
    for i in 0..20 {
        tx.send(wep(i * 7, 2)).await.unwrap();
    }
    for i in 0..5 {
        tx.send(wep_deleted(1000 + i)).await.unwrap();
    }
    within(
        "the cache to apply the changes",
        server
            .cache
            .wait_for_status(|s| s.total_keys() == (KEYS - 5) as u64),
    )
    .await;
}

/// The mirror holds the endpoints as `churn_while_away` after 200 changes left them: 1000–1004
/// gone, 0–199 (and every 7th below 140) at version 2, the rest at version 1.
fn assert_mirror_is_the_churned_data(mirror: &meshsync_agent::Mirror) {
    for (key, entry) in mirror.resources() {
        let i: usize = key.name["pod-".len()..].parse().unwrap();
        assert!(!(1000..1005).contains(&i), "{} was deleted", key.name);
        let v = if i < 200 { b"\"v\":2" } else { b"\"v\":1" };
        assert!(
            entry.value.windows(5).any(|w| w == v),
            "{}: {}",
            key.name,
            String::from_utf8_lossy(&entry.value)
        );
    }
}

fn metric(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_to_the_same_server_sends_only_what_changed() {
    let (tx, server) =
        server_with_endpoints(KEYS, CacheConfig::default(), ServerConfig::default()).await;
    let relay = Relay::start(server.grpc).await;
    let mut agent = agent_through(&relay, &server, &[]);
    let first = until_in_sync(&mut agent).await;
    assert_eq!(last_hello(&first).path, pb::SyncPath::Full as i32);
    assert_eq!(updates_after_hello(&first).len(), KEYS);
    let (epoch, seq) = agent
        .mirror()
        .resume_token()
        .expect("a verified mirror can resume");
    assert_eq!(epoch, server.cache.epoch());

    cut(&mut agent, &relay).await;
    churn_while_away(&tx, &server).await;
    relay.restore();
    let again = until_in_sync(&mut agent).await;
    let hello = last_hello(&again);
    assert_eq!(hello.path, pb::SyncPath::Resume as i32, "{hello:?}");
    assert!(hello.resumed);
    assert_no_mismatch(&again);
    // Exactly the 20 changed and 5 deleted keys, nothing else.
    let sent = updates_after_hello(&again);
    assert_eq!(sent.len(), 25, "{sent:?}");
    assert_eq!(
        sent.iter()
            .filter(|u| u.r#type == pb::UpdateType::Deleted as i32)
            .count(),
        5
    );
    assert!(
        sent.iter()
            .all(|u| u.r#type == pb::UpdateType::Deleted as i32
                || u.value.windows(5).any(|w| w == b"\"v\":2"))
    );
    let mirror = agent.mirror();
    assert_eq!(mirror.len(), KEYS - 5);
    assert!(mirror.seq() > seq);
    assert!(mirror.verify().is_empty());

    let (_, body) = support::http_get(server.metrics, "/metrics").await;
    assert_eq!(metric(&body, "meshsync_subscriptions_resumed_total"), 1);
    assert_eq!(metric(&body, "meshsync_subscriptions_full_total"), 1);

    // And again from the resumed state: resuming twice in a row works the same way.
    cut(&mut agent, &relay).await;
    tx.send(wep(1, 3)).await.unwrap();
    within(
        "the cache to apply the change",
        server.cache.wait_for_status(|_| true),
    )
    .await;
    relay.restore();
    let third = until(&mut agent, "the second resume's update", |m| {
        m.in_sync()
            && m.resources()
                .iter()
                .any(|(k, e)| k.name == "pod-00001" && e.value.windows(5).any(|w| w == b"\"v\":3"))
    })
    .await;
    assert_eq!(last_hello(&third).path, pb::SyncPath::Resume as i32);
    assert!(
        updates_after_hello(&third).len() <= 1,
        "{:?}",
        updates_after_hello(&third)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_the_history_anti_entropy_repairs_and_without_digests_it_is_a_full_snapshot() {
    // A history of 10 kB: the changes made while the agent is away do not fit.
    let small = CacheConfig {
        history: HistoryConfig {
            max_bytes: 10_000,
            ..HistoryConfig::default()
        },
        ..CacheConfig::default()
    };
    let (tx, server) = server_with_endpoints(KEYS, small, ServerConfig::default()).await;
    let relay = Relay::start(server.grpc).await;
    let mut agent = agent_through(&relay, &server, &[]);
    until_in_sync(&mut agent).await;
    cut(&mut agent, &relay).await;
    for i in 0..200 {
        tx.send(wep(i, 2)).await.unwrap();
    }
    churn_while_away(&tx, &server).await;
    relay.restore();
    // The token is outside the history: the mirror's bucket digests repair it instead.
    let again = until(&mut agent, "the repaired mirror", |m| {
        m.in_sync() && m.len() == KEYS - 5
    })
    .await;
    assert_eq!(last_hello(&again).path, pb::SyncPath::AntiEntropy as i32);
    assert_no_mismatch(&again);
    // 225 keys differ (of 2000, in 1024 buckets): their buckets, not the snapshot.
    let sent = updates_after_hello(&again).len();
    assert!((225..KEYS / 2).contains(&sent), "{sent}");
    assert_eq!(
        agent.mirror().len(),
        KEYS - 5,
        "the deleted keys left the mirror"
    );
    assert_mirror_is_the_churned_data(agent.mirror());

    // An agent that neither resumes nor sends digests moves to another server (another epoch)
    // by a full snapshot, and its mirror is replaced correctly.
    let (other_tx, other) =
        server_with_endpoints(KEYS, CacheConfig::default(), ServerConfig::default()).await;
    for i in 0..5 {
        other_tx.send(wep_deleted(1000 + i)).await.unwrap();
    }
    for i in 0..200 {
        other_tx.send(wep(i, 2)).await.unwrap();
    }
    for i in 0..20 {
        other_tx.send(wep(i * 7, 2)).await.unwrap();
    }
    within(
        "the other cache",
        other
            .cache
            .wait_for_status(|s| s.total_keys() == (KEYS - 5) as u64),
    )
    .await;
    let relay2 = Relay::start(server.grpc).await;
    let mut config: AgentConfig = server.agent_config("felix");
    config.servers = vec![format!("http://127.0.0.1:{}", relay2.port), other.url()];
    config.resume = false;
    let mut moving = meshsync_agent::Agent::new(config).unwrap();
    until_in_sync(&mut moving).await;
    relay2.cut();
    let moved = until(&mut moving, "the agent on the other server", |m| {
        m.in_sync() && m.epoch() == other.cache.epoch()
    })
    .await;
    assert_eq!(last_hello(&moved).path, pb::SyncPath::Full as i32);
    assert_no_mismatch(&moved);
    let moved = until(&mut moving, "the changes after the snapshot's cut", |m| {
        m.len() == KEYS - 5
    })
    .await;
    assert_no_mismatch(&moved);
    assert_mirror_is_the_churned_data(moving.mirror());
    other.stop().await;
    server.stop().await;
}
