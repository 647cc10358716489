//! Connection rebalancing, as Typha's `ConnectionRebalancingMode=kubernetes` computes it, but
//! shedding by message: over its share, a replica refuses new agents with a status that says so
//! (and names the other replicas it knows), and asks existing ones to move — a `Reconnect`, one
//! per second, the longest-snapshotted first — never a random kill.
//!
//! The inputs come from the cache, not from extra API calls: the number of nodes is the local
//! cluster's `Node` keys, and the number of replicas is the addresses in the local EndpointSlices
//! of the replicas' Service (`kubernetes.io/service-name`) that have the configured port name
//! (Typha counts them without looking at readiness; so do we). The target is Typha's:
//! `max(lower, syncers × (1 + nodes × 120 / (replicas − 1) / 100))`, at most the upper limit
//! (`--max-connections`); with at most one replica, or before the cache is in sync, the upper limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use meshsync_cache::{SnapshotCache, SyncState};
use rand::Rng;
use tracing::{info, warn};

use crate::core::connections::Connections;
use crate::core::streams::Streams;

/// What rebalancing looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RebalanceConfig {
    /// The replicas' Service: namespace and name.
    pub service_namespace: String,
    pub service_name: String,
    /// The port name of the agents' port in its EndpointSlices.
    pub port_name: String,
    /// Typha's factor: connections per node (one per syncer type). 4 as Typha.
    pub syncers: usize,
    /// The smallest target (Typha: 400).
    pub lower: usize,
    /// How often the target is recomputed (Typha: 30 s, +10 % jitter).
    pub poll: Duration,
    /// The pace of shedding (Typha's drop interval: 1 s, +10 % jitter).
    pub shed_interval: Duration,
}

impl RebalanceConfig {
    pub fn new(namespace: &str, name: &str) -> Self {
        RebalanceConfig {
            service_namespace: namespace.into(),
            service_name: name.into(),
            port_name: "meshsync".into(),
            syncers: 4,
            lower: 400,
            poll: Duration::from_secs(30),
            shed_interval: Duration::from_secs(1),
        }
    }
}

/// The connection limit now in force, shared by the service (refusing) and the governor.
#[derive(Debug)]
pub(crate) struct Limit {
    pub(crate) current: AtomicUsize,
    /// Replicas last counted (0: unknown).
    pub(crate) replicas: AtomicUsize,
    /// Other replicas' `address:port`, as last found.
    pub(crate) others: std::sync::Mutex<Vec<String>>,
}

impl Limit {
    pub(crate) fn new(upper: usize) -> Self {
        Limit {
            current: AtomicUsize::new(upper),
            replicas: AtomicUsize::new(0),
            others: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn get(&self) -> usize {
        self.current.load(Ordering::Acquire)
    }

    /// A replica to suggest, if one is known.
    pub(crate) fn elsewhere(&self) -> Option<String> {
        let others = self.others.lock().unwrap_or_else(|p| p.into_inner());
        if others.is_empty() {
            return None;
        }
        let i = rand::rng().random_range(0..others.len());
        Some(others[i].clone())
    }
}

/// Typha's target (see the module documentation).
pub fn target(nodes: usize, replicas: usize, syncers: usize, lower: usize, upper: usize) -> usize {
    if replicas <= 1 {
        return upper;
    }
    let per = nodes.saturating_mul(120) / (replicas - 1) / 100;
    syncers.saturating_mul(1 + per).max(lower).min(upper)
}

/// Nodes, replicas and the replicas' addresses, from the cache's local data.
fn count(cache: &SnapshotCache, config: &RebalanceConfig) -> (usize, usize, Vec<String>) {
    let head = cache.head();
    let mut nodes = 0;
    let mut replicas = 0;
    let mut addresses = Vec::new();
    for (key, entry) in head.snapshot.iter() {
        if !key.cluster().is_empty() {
            continue;
        }
        match key.kind() {
            "Node" => nodes += 1,
            "EndpointSlice" if key.namespace() == config.service_namespace => {
                let Ok(slice) = serde_json::from_slice::<serde_json::Value>(&entry.value) else {
                    continue;
                };
                let service = slice
                    .pointer("/metadata/labels/kubernetes.io~1service-name")
                    .and_then(|v| v.as_str());
                if service != Some(config.service_name.as_str()) {
                    continue;
                }
                let port = slice
                    .get("ports")
                    .and_then(|p| p.as_array())
                    .and_then(|ports| {
                        ports.iter().find(|p| {
                            p.get("name").and_then(|n| n.as_str()) == Some(&config.port_name)
                        })
                    })
                    .and_then(|p| p.get("port"))
                    .and_then(|p| p.as_u64());
                let Some(port) = port else {
                    continue;
                };
                for endpoint in slice
                    .get("endpoints")
                    .and_then(|e| e.as_array())
                    .into_iter()
                    .flatten()
                {
                    for address in endpoint
                        .get("addresses")
                        .and_then(|a| a.as_array())
                        .into_iter()
                        .flatten()
                        .filter_map(|a| a.as_str())
                    {
                        replicas += 1;
                        addresses.push(format!("{address}:{port}"));
                    }
                }
            }
            _ => {}
        }
    }
    (nodes, replicas, addresses)
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(1.0..=1.1))
}

/// Recomputes the target every poll and sheds the streams above it, one per shed interval,
/// until `stop` turns true.
pub(crate) async fn govern(
    cache: SnapshotCache,
    config: RebalanceConfig,
    upper: usize,
    limit: Arc<Limit>,
    streams: Arc<Streams>,
    connections: Arc<Connections>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut next_poll = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_poll {
            next_poll = tokio::time::Instant::now() + jittered(config.poll);
            let new = if cache.status().overall == SyncState::InSync {
                let (nodes, replicas, addresses) = count(&cache, &config);
                limit.replicas.store(replicas, Ordering::Release);
                *limit.others.lock().unwrap_or_else(|p| p.into_inner()) = addresses;
                target(nodes, replicas, config.syncers, config.lower, upper)
            } else {
                upper
            };
            let old = limit.current.swap(new, Ordering::AcqRel);
            if old != new {
                info!(
                    from = old,
                    to = new,
                    replicas = limit.replicas.load(Ordering::Acquire),
                    "connection target changed (rebalancing)"
                );
            }
        }
        let active = connections.active();
        let target = limit.get();
        if active > target {
            let mut open = streams.open();
            open.retain(|s| !s.asked_to_leave());
            open.sort_by_key(|s| s.snapshot_at());
            if let Some(stream) = open.first() {
                connections.shed.fetch_add(1, Ordering::Relaxed);
                warn!(active, target, node = %stream.node,
                    "over this replica's share of agents; asking one to move");
                stream.ask_to_leave_with(
                    "rebalancing: this replica is over its share of agents",
                    limit.elsewhere(),
                );
            }
        }
        let wait = if active > target {
            jittered(config.shed_interval)
        } else {
            config
                .shed_interval
                .min(next_poll - tokio::time::Instant::now())
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_is_typhas() {
        // Typha's own example: 1000 nodes and 6 replicas give 4 × 241 = 964.
        assert_eq!(target(1000, 6, 4, 400, 10_000), 964);
        assert_eq!(target(1000, 1, 4, 400, 10_000), 10_000);
        assert_eq!(target(10, 3, 4, 400, 10_000), 400);
        assert_eq!(target(100_000, 2, 4, 400, 10_000), 10_000);
        assert_eq!(target(2, 3, 4, 1, 100), 8);
    }
}
