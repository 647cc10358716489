//! The [`CollisionGuard`]: what the mesh does not merge from a remote cluster because it would
//! collide with another cluster's data once a node agent holds both.
//!
//! Consumers that key routing data by address, not by cluster — Felix among them: its IP pool and
//! IPAM block keys are CIDRs — would silently let one cluster's pool or block overwrite
//! another's, and Felix restarts whenever the pools it is sent change the encapsulation it
//! computed from its own cluster's pools. Remote nodes and endpoints are served under
//! `<cluster>.<node>` (see `meshsync_typha::v1::remote`), which collides only with a local node of
//! exactly that name. So the guard holds back, per remote cluster:
//!
//! - an **IP pool** whose encapsulation (VXLAN or IPIP, per IP family) none of the local pools
//!   uses, or whose CIDR overlaps a local pool's or another remote cluster's pool (both clusters'
//!   overlapping pools are refused: which one came first is no reason to prefer it);
//! - an **IPAM block** that no accepted pool of its own cluster contains;
//! - a **Node, WorkloadEndpoint or HostEndpoint** whose node, renamed, is a local node's name;
//! - a **WorkloadEndpoint** with an address inside a local pool (with or without overlay
//!   routing: Felix's IP sets hold addresses, so the remote pod would share a local pod's
//!   identity).
//!
//! A remote Node with the same name as a local one is reported too (it is served renamed, so it is
//! not merged, but an operator usually wants to know). Refusals are a status of the cluster
//! ([`SourceEvent::Refused`]: the count and the first reasons), a metric, and a log line when
//! they change. Every decision is revisited when what it depends on changes (local pools and
//! nodes, other clusters' pools, relists, a cluster leaving): a resource refused now is forwarded
//! when its collision goes away, and one forwarded is deleted when a collision appears. The guard
//! keeps the (shared, reference-counted) values of the kinds it judges, so it can forward them
//! later.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use bytes::Bytes;
use meshsync_model::{ClusterName, LOCAL_CLUSTER, ResourceKey, Revision, SourceEvent};
use tracing::{info, warn};

mod facts;

use facts::{Encapsulation, Fact, Pool};

pub(crate) const IP_POOL: &str = "IPPool";
pub(crate) const IPAM_BLOCK: &str = "IPAMBlock";
pub(crate) const NODE: &str = "Node";
pub(crate) const WORKLOAD_ENDPOINT: &str = "WorkloadEndpoint";
pub(crate) const HOST_ENDPOINT: &str = "HostEndpoint";

/// How many reasons a cluster's status lists (the count says how many there are).
const SUMMARY_REASONS: usize = 3;

/// A judged resource of a remote cluster.
struct Entry {
    value: Bytes,
    revision: Revision,
    fact: Fact,
    /// Whether the consumer holds it (it was forwarded and not deleted since).
    forwarded: bool,
}

/// One remote cluster's judged resources.
#[derive(Default)]
struct Remote {
    entries: HashMap<ResourceKey, Entry>,
    /// Original node name → the keys on that node (Nodes and endpoints).
    hosts: HashMap<String, HashSet<ResourceKey>>,
    pools: BTreeSet<ResourceKey>,
    blocks: BTreeSet<ResourceKey>,
    /// During a relist: the keys not seen again yet.
    unseen: Option<HashSet<ResourceKey>>,
    /// Refused keys with the reason; and reports that refuse nothing.
    refused: BTreeMap<ResourceKey, String>,
    notes: BTreeMap<ResourceKey, String>,
    /// What was last reported (count, summary).
    reported: (usize, String),
}

/// See the module documentation.
#[derive(Default)]
pub(crate) struct CollisionGuard {
    local_pools: BTreeMap<ResourceKey, Pool>,
    local_nodes: BTreeSet<String>,
    /// During a local relist: local pools and nodes not seen again yet.
    local_unseen: Option<(BTreeSet<ResourceKey>, BTreeSet<String>)>,
    remotes: BTreeMap<ClusterName, Remote>,
}

impl CollisionGuard {
    /// Passes `event` on to `out`, holding back or releasing remote resources as their
    /// collisions come and go.
    pub(crate) fn apply(&mut self, event: SourceEvent, out: &mut VecDeque<SourceEvent>) {
        let cluster = event.cluster().to_owned();
        if cluster == LOCAL_CLUSTER {
            self.local(event, out);
        } else {
            self.remote(event, out);
        }
    }

    fn local(&mut self, event: SourceEvent, out: &mut VecDeque<SourceEvent>) {
        let mut pools_changed = false;
        let mut nodes_changed = Vec::new();
        let relisted = matches!(event, SourceEvent::ResyncDone { .. });
        match &event {
            SourceEvent::ResyncStart { .. } => {
                self.local_unseen = Some((
                    self.local_pools.keys().cloned().collect(),
                    self.local_nodes.clone(),
                ));
            }
            SourceEvent::ResyncDone { .. } => {
                if let Some((pools, nodes)) = self.local_unseen.take() {
                    for key in pools {
                        pools_changed |= self.local_pools.remove(&key).is_some();
                    }
                    for node in nodes {
                        self.local_nodes.remove(&node);
                        nodes_changed.push(node);
                    }
                }
            }
            SourceEvent::Upsert { key, value, .. } => match key.kind() {
                IP_POOL => {
                    if let Some((pools, _)) = self.local_unseen.as_mut() {
                        pools.remove(key);
                    }
                    let pool = match Fact::of(IP_POOL, key.name(), value) {
                        Some(Fact::Pool(pool)) => Some(pool),
                        _ => None,
                    };
                    let before = match pool {
                        Some(pool) => self.local_pools.insert(key.clone(), pool),
                        None => self.local_pools.remove(key),
                    };
                    pools_changed = before != pool;
                }
                NODE => {
                    if let Some((_, nodes)) = self.local_unseen.as_mut() {
                        nodes.remove(key.name());
                    }
                    if self.local_nodes.insert(key.name().to_owned()) {
                        nodes_changed.push(key.name().to_owned());
                    }
                }
                _ => {}
            },
            SourceEvent::Delete { key, .. } => match key.kind() {
                IP_POOL => pools_changed = self.local_pools.remove(key).is_some(),
                NODE if self.local_nodes.remove(key.name()) => {
                    nodes_changed.push(key.name().to_owned());
                }
                _ => {}
            },
            _ => {}
        }
        out.push_back(event);
        if pools_changed {
            self.judge_all_pools(None, out);
            self.judge_all_workloads(out);
        }
        for node in nodes_changed {
            self.judge_local_node(&node, out);
        }
        if relisted {
            let clusters: Vec<ClusterName> = self.remotes.keys().cloned().collect();
            for cluster in clusters {
                self.report(&cluster, out);
            }
        }
    }

    fn remote(&mut self, event: SourceEvent, out: &mut VecDeque<SourceEvent>) {
        let cluster: ClusterName = event.cluster().into();
        match event {
            SourceEvent::Upsert {
                key,
                value,
                revision,
            } => {
                let Some(fact) = Fact::of(key.kind(), key.name(), &value) else {
                    out.push_back(SourceEvent::Upsert {
                        key,
                        value,
                        revision,
                    });
                    return;
                };
                let remote = self.remotes.entry(cluster.clone()).or_default();
                if let Some(unseen) = remote.unseen.as_mut() {
                    unseen.remove(&key);
                }
                let is_pool = matches!(fact, Fact::Pool(_)) || key.kind() == IP_POOL;
                let forwarded = remote.remove(&key).is_some_and(|e| e.forwarded);
                remote.insert(
                    key.clone(),
                    Entry {
                        value,
                        revision,
                        fact,
                        forwarded,
                    },
                );
                self.judge(&cluster, &key, true, out);
                if is_pool {
                    self.judge_all_pools(Some(&cluster), out);
                }
            }
            SourceEvent::Delete { key, revision } => {
                let Some(remote) = self.remotes.get_mut(&cluster) else {
                    out.push_back(SourceEvent::Delete { key, revision });
                    return;
                };
                if let Some(unseen) = remote.unseen.as_mut() {
                    unseen.remove(&key);
                }
                match remote.remove(&key) {
                    Some(entry) => {
                        if entry.forwarded {
                            out.push_back(SourceEvent::Delete {
                                key: key.clone(),
                                revision,
                            });
                        }
                        if key.kind() == IP_POOL {
                            self.judge_all_pools(Some(&cluster), out);
                        }
                    }
                    None => out.push_back(SourceEvent::Delete { key, revision }),
                }
            }
            SourceEvent::ResyncStart { cluster } => {
                let remote = self.remotes.entry(cluster.clone()).or_default();
                remote.unseen = Some(remote.entries.keys().cloned().collect());
                out.push_back(SourceEvent::ResyncStart { cluster });
            }
            SourceEvent::ResyncDone { cluster } => {
                let mut pools_gone = false;
                if let Some(remote) = self.remotes.get_mut(&cluster)
                    && let Some(unseen) = remote.unseen.take()
                {
                    // The consumer deletes what the relist did not mention itself.
                    for key in unseen {
                        pools_gone |= key.kind() == IP_POOL;
                        remote.remove(&key);
                    }
                }
                if pools_gone {
                    self.judge_all_pools(Some(&cluster), out);
                }
                out.push_back(SourceEvent::ResyncDone {
                    cluster: cluster.clone(),
                });
                self.report(&cluster, out);
                return;
            }
            SourceEvent::ClusterRemoved { cluster } => {
                let had_pools = self
                    .remotes
                    .remove(&cluster)
                    .is_some_and(|r| !r.pools.is_empty());
                out.push_back(SourceEvent::ClusterRemoved { cluster });
                if had_pools {
                    self.judge_all_pools(None, out);
                }
                return;
            }
            other => out.push_back(other),
        }
        self.report(&cluster, out);
    }

    /// Re-judges every remote pool (pools are few), then the blocks of `also` and of the clusters
    /// whose accepted pools changed.
    fn judge_all_pools(&mut self, also: Option<&ClusterName>, out: &mut VecDeque<SourceEvent>) {
        let keys: Vec<(ClusterName, ResourceKey)> = self
            .remotes
            .iter()
            .flat_map(|(c, r)| r.pools.iter().map(move |k| (c.clone(), k.clone())))
            .collect();
        let mut changed: BTreeSet<ClusterName> = also.into_iter().cloned().collect();
        for (cluster, key) in keys {
            if self.judge(&cluster, &key, false, out) {
                changed.insert(cluster);
            }
        }
        for cluster in changed {
            let Some(remote) = self.remotes.get(&cluster) else {
                continue;
            };
            let blocks: Vec<ResourceKey> = remote.blocks.iter().cloned().collect();
            for key in blocks {
                self.judge(&cluster, &key, false, out);
            }
            self.report(&cluster, out);
        }
    }

    /// The local pools changed: every remote workload endpoint with addresses is judged again
    /// (an address inside a local pool would give a remote pod a local pod's identity).
    fn judge_all_workloads(&mut self, out: &mut VecDeque<SourceEvent>) {
        let keys: Vec<(ClusterName, ResourceKey)> = self
            .remotes
            .iter()
            .flat_map(|(c, r)| {
                r.entries
                    .iter()
                    .filter(|(_, e)| matches!(&e.fact, Fact::Host { nets, .. } if !nets.is_empty()))
                    .map(move |(k, _)| (c.clone(), k.clone()))
            })
            .collect();
        let clusters: BTreeSet<ClusterName> = keys.iter().map(|(c, _)| c.clone()).collect();
        for (cluster, key) in keys {
            self.judge(&cluster, &key, false, out);
        }
        for cluster in clusters {
            self.report(&cluster, out);
        }
    }

    /// A local node appeared or left: the remote resources it may collide with (those of cluster
    /// `c` on node `n`, for a local node named `c.n`) are judged again.
    fn judge_local_node(&mut self, local: &str, out: &mut VecDeque<SourceEvent>) {
        let mut touched = Vec::new();
        for (cluster, remote) in &self.remotes {
            if let Some(node) = local.strip_prefix(&format!("{cluster}."))
                && let Some(keys) = remote.hosts.get(node)
            {
                touched.extend(keys.iter().map(|k| (cluster.clone(), k.clone())));
            }
            // A remote Node of the same name is noted (not refused).
            let same = ResourceKey::new(cluster, NODE, "", local);
            if remote.entries.contains_key(&same) {
                touched.push((cluster.clone(), same));
            }
        }
        let clusters: BTreeSet<ClusterName> = touched.iter().map(|(c, _)| c.clone()).collect();
        for (cluster, key) in touched {
            self.judge(&cluster, &key, false, out);
        }
        for cluster in clusters {
            self.report(&cluster, out);
        }
    }

    /// Why `key` of `cluster` must not be merged, if it must not.
    fn verdict(&self, cluster: &str, key: &ResourceKey, fact: &Fact) -> Result<(), String> {
        match fact {
            Fact::Unreadable(reason) => Err(format!("{} {}: {reason}", key.kind(), key.name())),
            Fact::Host { node, nets } => {
                let renamed = format!("{cluster}.{node}");
                if self.local_nodes.contains(&renamed) {
                    return Err(format!(
                        "{} {}: its node is served as {renamed}, a local node's name",
                        key.kind(),
                        key.name()
                    ));
                }
                for net in nets {
                    if let Some((pool, _)) =
                        self.local_pools.iter().find(|(_, p)| p.cidr.overlaps(*net))
                    {
                        return Err(format!(
                            "WorkloadEndpoint {}/{}: its address {} is in the local pool {}",
                            key.namespace(),
                            key.name(),
                            net.render(),
                            pool.name()
                        ));
                    }
                }
                Ok(())
            }
            Fact::Pool(pool) => self.pool_verdict(cluster, key, *pool),
            Fact::Block(block) => {
                let remote = &self.remotes[cluster];
                let inside_accepted = remote.pools.iter().any(|k| {
                    matches!(remote.entries.get(k), Some(Entry { fact: Fact::Pool(p), forwarded: true, .. }) if p.cidr.contains(*block))
                });
                if inside_accepted {
                    Ok(())
                } else {
                    Err(format!(
                        "IPAMBlock {}: in no accepted IP pool of its cluster",
                        key.name()
                    ))
                }
            }
        }
    }

    fn pool_verdict(&self, cluster: &str, key: &ResourceKey, pool: Pool) -> Result<(), String> {
        let name = key.name();
        if pool.encapsulation != Encapsulation::None
            && !self
                .local_pools
                .values()
                .any(|l| l.cidr.v6 == pool.cidr.v6 && l.encapsulation == pool.encapsulation)
        {
            let local: BTreeSet<&str> = self
                .local_pools
                .values()
                .filter(|l| l.cidr.v6 == pool.cidr.v6)
                .map(|l| l.encapsulation.name())
                .collect();
            return Err(format!(
                "IPPool {name}: encapsulation {} is not the local pools' ({}); Felix would restart",
                pool.encapsulation.name(),
                if local.is_empty() {
                    "no local pools".to_owned()
                } else {
                    local.into_iter().collect::<Vec<_>>().join(", ")
                }
            ));
        }
        if let Some((local, _)) = self
            .local_pools
            .iter()
            .find(|(_, l)| l.cidr.overlaps(pool.cidr))
        {
            return Err(format!(
                "IPPool {name}: its CIDR overlaps the local pool {}",
                local.name()
            ));
        }
        for (other, remote) in &self.remotes {
            if other.as_ref() as &str == cluster {
                continue;
            }
            for k in &remote.pools {
                if let Some(Entry {
                    fact: Fact::Pool(p),
                    ..
                }) = remote.entries.get(k)
                    && p.cidr.overlaps(pool.cidr)
                {
                    return Err(format!(
                        "IPPool {name}: its CIDR overlaps pool {} of cluster {other}",
                        k.name()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Judges `key` of `cluster` and forwards or withdraws it accordingly (`fresh`: its value
    /// just changed, so a forwarded entry is sent again). Returns whether its forwarding changed.
    fn judge(
        &mut self,
        cluster: &ClusterName,
        key: &ResourceKey,
        fresh: bool,
        out: &mut VecDeque<SourceEvent>,
    ) -> bool {
        let (verdict, note) = {
            let Some(entry) = self.remotes.get(cluster).and_then(|r| r.entries.get(key)) else {
                return false;
            };
            let note = match &entry.fact {
                Fact::Host { node, .. }
                    if key.kind() == NODE && self.local_nodes.contains(node) =>
                {
                    Some(format!(
                        "Node {node}: a local node has the same name (served as {cluster}.{node})"
                    ))
                }
                _ => None,
            };
            (self.verdict(cluster, key, &entry.fact), note)
        };
        let Some(remote) = self.remotes.get_mut(cluster) else {
            return false;
        };
        match note {
            Some(n) => remote.notes.insert(key.clone(), n),
            None => remote.notes.remove(key),
        };
        let Some(entry) = remote.entries.get_mut(key) else {
            return false;
        };
        let was = entry.forwarded;
        match verdict {
            Ok(()) => {
                if !was || fresh {
                    out.push_back(SourceEvent::Upsert {
                        key: key.clone(),
                        value: entry.value.clone(),
                        revision: entry.revision.clone(),
                    });
                }
                entry.forwarded = true;
                remote.refused.remove(key);
            }
            Err(reason) => {
                if was {
                    out.push_back(SourceEvent::Delete {
                        key: key.clone(),
                        revision: entry.revision.clone(),
                    });
                }
                entry.forwarded = false;
                remote.refused.insert(key.clone(), reason);
            }
        }
        was != entry.forwarded
    }

    /// Sends the cluster's refusals when they changed, with a log line; not while the cluster or
    /// the local datastore relists (a block listed before its pool is not a collision).
    fn report(&mut self, cluster: &ClusterName, out: &mut VecDeque<SourceEvent>) {
        if self.local_unseen.is_some() {
            return;
        }
        let Some(remote) = self.remotes.get_mut(cluster) else {
            return;
        };
        if remote.unseen.is_some()
            || (remote.refused.is_empty()
                && remote.notes.is_empty()
                && remote.reported == (0, String::new()))
        {
            return;
        }
        let count = remote.refused.len();
        let summary = remote
            .refused
            .values()
            .chain(remote.notes.values())
            .take(SUMMARY_REASONS)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if (count, &summary) == (remote.reported.0, &remote.reported.1) {
            return;
        }
        if count == 0 && summary.is_empty() {
            info!(cluster = %cluster, "remote cluster no longer collides with the mesh; all of it is merged");
        } else if count == 0 {
            info!(cluster = %cluster, notes = %summary, "remote cluster merged whole, with notes");
        } else {
            warn!(cluster = %cluster, count, reasons = %summary,
                "not merging remote resources that collide with other clusters' data");
        }
        remote.reported = (count, summary.clone());
        out.push_back(SourceEvent::Refused {
            cluster: cluster.clone(),
            count,
            summary,
        });
    }
}

impl Remote {
    fn insert(&mut self, key: ResourceKey, entry: Entry) {
        match &entry.fact {
            Fact::Host { node, .. } => {
                self.hosts
                    .entry(node.clone())
                    .or_default()
                    .insert(key.clone());
            }
            Fact::Pool(_) => {
                self.pools.insert(key.clone());
            }
            Fact::Block(_) => {
                self.blocks.insert(key.clone());
            }
            Fact::Unreadable(_) => {
                if key.kind() == IP_POOL {
                    self.pools.insert(key.clone());
                } else {
                    self.blocks.insert(key.clone());
                }
            }
        }
        self.entries.insert(key, entry);
    }

    fn remove(&mut self, key: &ResourceKey) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        if let Fact::Host { node, .. } = &entry.fact
            && let Some(keys) = self.hosts.get_mut(node)
        {
            keys.remove(key);
            if keys.is_empty() {
                self.hosts.remove(node);
            }
        }
        self.pools.remove(key);
        self.blocks.remove(key);
        self.refused.remove(key);
        self.notes.remove(key);
        Some(entry)
    }
}

#[cfg(test)]
mod tests;
