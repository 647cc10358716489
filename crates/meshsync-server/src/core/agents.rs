//! The registry of connected agents and what each says it holds.
//!
//! Every stream registers when it opens (and leaves when it ends); its agent reports, after every
//! in-sync and then periodically, its per-cluster key counts and digests at a cut (`Report`). The
//! report is judged at once against the server's own state at that seq — the retained breadcrumb
//! of exactly that seq, as the agent's subscription sees it — so `Status` with agents reads a
//! verdict, never recomputes one. Written by every connection task and read by `Status` and the
//! metrics: a concurrent map (`dashmap`), no global lock.
//!
//! Stream ids are listed by `Status` to anyone, so a report is taken only from the connection its
//! stream runs on (with TLS, that connection's session is the client identity that subscribed);
//! any other is refused. What a report leaves in the registry is bounded whatever it carries: its
//! cluster names must be names a cluster can have, and only a few clusters the server does not
//! know are kept by name (the rest are counted). `Status` lists a bounded number of agents, the
//! ones that need attention first.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use meshsync_cache::{SnapshotCache, Subscription};
use meshsync_proto::{self as pb, LogSafe};
use prost::Message;

use crate::core::accept::ConnState;
use crate::core::{MAX_CLUSTER_NAME_BYTES, MAX_REQUIRED_CLUSTERS};

/// A report older than this makes an `OK` agent `STALE` (agents report every 30 s by default).
pub const REPORT_STALE_AFTER: Duration = Duration::from_secs(90);

/// Clusters a report names that the server does not have are kept by name up to this many per
/// agent (the agent is `DIVERGED` on each); the others are only counted (`unlisted_clusters`).
pub const MAX_UNKNOWN_CLUSTERS_KEPT: usize = 8;

/// The most agents one `Status` lists (fewer when the caller asks for fewer), and about the most
/// bytes of them: the answer stays far below a client's 4 MiB message limit.
pub const MAX_LISTED_AGENTS: usize = 1000;
pub const MAX_LISTED_AGENT_BYTES: usize = 1 << 20;

/// What the server knows of one connected agent.
struct AgentRecord {
    /// Escaped for display; shared, so ordering a `Status` list copies no names.
    node: Arc<str>,
    peer: String,
    sub: Subscription,
    /// The front end's protocol (`grpc`, `typha`).
    protocol: &'static str,
    /// The connection the stream runs on: the only one whose reports are taken for it. `None`
    /// (a stream not accepted by our listener) takes no report.
    owner: Option<Arc<ConnState>>,
    report: Option<Judged>,
}

/// A report and the verdict on it.
struct Judged {
    seq: u64,
    at: Instant,
    clusters: Vec<pb::AgentCluster>,
    /// Clusters the server does not know beyond the [`MAX_UNKNOWN_CLUSTERS_KEPT`] kept.
    unlisted: u32,
}

/// Every connected agent, by stream id.
#[derive(Default)]
pub struct AgentRegistry {
    next_id: AtomicU64,
    agents: DashMap<u64, AgentRecord>,
}

impl std::fmt::Debug for AgentRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRegistry")
            .field("agents", &self.agents.len())
            .finish()
    }
}

/// Held by a stream; dropping it removes the agent from the registry.
pub(crate) struct Registered {
    registry: Arc<AgentRegistry>,
    pub(crate) id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.agents.remove(&self.id);
    }
}

/// Why a report was not taken.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("no open stream {0} on this server (reports go to the server the agent streams from)")]
    UnknownStream(u64),
    #[error("stream {0} runs on another connection; reports are taken only on the stream's own")]
    NotOwner(u64),
    #[error("a report names at most {0} clusters")]
    TooManyClusters(usize),
    #[error("a reported cluster name is {len} bytes; the limit is {MAX_CLUSTER_NAME_BYTES} bytes")]
    ClusterNameTooLong { len: usize },
    /// The name, escaped and cut.
    #[error("reported cluster \"{0}\" is no cluster's name (\"\" or a DNS-1123 subdomain)")]
    NotAClusterName(String),
}

/// Refuses a report that names too many clusters, or a cluster no server can have: every cluster
/// is the local one (`""`) or named by a RemoteClusterConfiguration (a DNS-1123 subdomain), so
/// such a name can only be a mistake or an attempt to put something else in `Status`.
fn check_report(report: &pb::AgentReport) -> Result<(), ReportError> {
    if report.clusters.len() > MAX_REQUIRED_CLUSTERS {
        return Err(ReportError::TooManyClusters(MAX_REQUIRED_CLUSTERS));
    }
    for c in &report.clusters {
        if c.cluster.len() > MAX_CLUSTER_NAME_BYTES {
            return Err(ReportError::ClusterNameTooLong {
                len: c.cluster.len(),
            });
        }
        if c.cluster != meshsync_model::LOCAL_CLUSTER
            && !meshsync_model::is_remote_cluster_name(&c.cluster)
        {
            return Err(ReportError::NotAClusterName(
                LogSafe(&c.cluster).to_string(),
            ));
        }
    }
    Ok(())
}

impl AgentRegistry {
    /// Registers a new stream's agent; `node` is already escaped for display, `owner` is the
    /// connection the stream runs on.
    pub(crate) fn register(
        self: &Arc<Self>,
        node: String,
        peer: String,
        sub: Subscription,
        protocol: &'static str,
        owner: Option<Arc<ConnState>>,
    ) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.agents.insert(
            id,
            AgentRecord {
                node: node.into(),
                peer,
                sub,
                protocol,
                owner,
                report: None,
            },
        );
        Registered {
            registry: self.clone(),
            id,
        }
    }

    /// Takes a report that came on connection `from` and judges it against `cache`.
    pub(crate) fn report(
        &self,
        cache: &SnapshotCache,
        report: &pb::AgentReport,
        from: Option<&Arc<ConnState>>,
    ) -> Result<(), ReportError> {
        check_report(report)?;
        let mut record = self
            .agents
            .get_mut(&report.stream_id)
            .ok_or(ReportError::UnknownStream(report.stream_id))?;
        let owned = match (&record.owner, from) {
            (Some(owner), Some(from)) => Arc::ptr_eq(owner, from),
            _ => false,
        };
        if !owned {
            return Err(ReportError::NotOwner(report.stream_id));
        }
        let (clusters, unlisted) = judge(cache, record.sub, report);
        record.report = Some(Judged {
            seq: report.seq,
            at: Instant::now(),
            clusters,
            unlisted,
        });
        Ok(())
    }

    /// Connected agents.
    pub(crate) fn len(&self) -> usize {
        self.agents.len()
    }

    /// Up to `limit` connected agents (and about [`MAX_LISTED_AGENT_BYTES`]), for `Status`: the
    /// `DIVERGED` first, then those without a recent verdict, then the rest, each group sorted by
    /// node name, then stream. Only the listed agents are copied.
    pub(crate) fn list(&self, head_seq: u64, limit: usize) -> Vec<pb::AgentInfo> {
        let mut order: Vec<(u8, Arc<str>, u64)> = self
            .agents
            .iter()
            .map(|entry| (entry.attention(), entry.node.clone(), *entry.key()))
            .collect();
        order.sort_unstable();
        let mut out = Vec::new();
        let mut bytes = 0;
        for (_, _, id) in order {
            if out.len() >= limit {
                break;
            }
            // An agent that left meanwhile is skipped.
            let Some(entry) = self.agents.get(&id) else {
                continue;
            };
            let info = entry.info(id, head_seq);
            drop(entry);
            bytes += info.encoded_len();
            if bytes > MAX_LISTED_AGENT_BYTES {
                break;
            }
            out.push(info);
        }
        out
    }

    /// Agents whose last report disagreed with the server on some cluster.
    /// Connected agents per (protocol, subscription), sorted.
    pub fn by_protocol(&self) -> Vec<((&'static str, &'static str), u64)> {
        let mut counts = std::collections::BTreeMap::new();
        for a in self.agents.iter() {
            *counts.entry((a.protocol, a.sub.name())).or_insert(0u64) += 1;
        }
        counts.into_iter().collect()
    }

    pub fn diverged(&self) -> u64 {
        self.agents
            .iter()
            .filter(|a| {
                a.report.as_ref().is_some_and(|j| {
                    j.clusters
                        .iter()
                        .any(|c| c.state == pb::AgentClusterState::Diverged as i32)
                })
            })
            .count() as u64
    }
}

impl AgentRecord {
    /// The verdict's age, and its clusters with an old `OK` shown `STALE`.
    fn verdict(&self) -> Option<(Duration, Vec<pb::AgentCluster>)> {
        let judged = self.report.as_ref()?;
        let age = judged.at.elapsed();
        let clusters = judged
            .clusters
            .iter()
            .cloned()
            .map(|mut c| {
                if age > REPORT_STALE_AFTER && c.state == pb::AgentClusterState::Ok as i32 {
                    c.state = pb::AgentClusterState::Stale as i32;
                }
                c
            })
            .collect();
        Some((age, clusters))
    }

    /// 0: `DIVERGED` on some cluster; 1: no report, or a cluster not verified (`STALE`, an old
    /// report); 2: `OK`. `Status` lists agents in this order.
    fn attention(&self) -> u8 {
        let Some(judged) = &self.report else {
            return 1;
        };
        let state = |s: pb::AgentClusterState| judged.clusters.iter().any(|c| c.state == s as i32);
        if state(pb::AgentClusterState::Diverged) {
            0
        } else if state(pb::AgentClusterState::Stale) || judged.at.elapsed() > REPORT_STALE_AFTER {
            1
        } else {
            2
        }
    }

    fn info(&self, id: u64, head_seq: u64) -> pb::AgentInfo {
        let (reported_seq, age, clusters) = match self.verdict() {
            None => (0, None, Vec::new()),
            Some((age, clusters)) => (
                self.report.as_ref().map_or(0, |j| j.seq),
                Some(age),
                clusters,
            ),
        };
        pb::AgentInfo {
            node_name: self.node.to_string(),
            peer: self.peer.clone(),
            subscription: self.sub.name().to_string(),
            stream_id: id,
            reported_seq,
            lag: head_seq.saturating_sub(reported_seq),
            report_age_ms: age.map(|a| a.as_millis() as u64).unwrap_or(0),
            clusters,
            unlisted_clusters: self.report.as_ref().map_or(0, |j| j.unlisted),
        }
    }
}

/// Per cluster: `OK` when the agent's keys and digest equal the server's at the reported seq,
/// `DIVERGED` when they differ (a cluster the server had then and the agent did not report is
/// one too), `STALE` when the server cannot tell (another epoch, a seq it no longer retains or
/// that does not end a breadcrumb). Clusters the server does not have are kept by name up to
/// [`MAX_UNKNOWN_CLUSTERS_KEPT`]; the second value counts the others.
fn judge(
    cache: &SnapshotCache,
    sub: Subscription,
    report: &pb::AgentReport,
) -> (Vec<pb::AgentCluster>, u32) {
    let mut unknown = Unknown::default();
    let crumb = (report.epoch == cache.epoch())
        .then(|| cache.resume_point(report.seq))
        .flatten()
        .filter(|c| c.seq == report.seq);
    let Some(crumb) = crumb else {
        let head = cache.head();
        let mut out: Vec<pb::AgentCluster> = Vec::new();
        for c in &report.clusters {
            let known = head.status.clusters.contains_key(c.cluster.as_str());
            if out.iter().any(|o| o.cluster == c.cluster) || !(known || unknown.keep(&c.cluster)) {
                continue;
            }
            out.push(pb::AgentCluster {
                cluster: c.cluster.clone(),
                state: pb::AgentClusterState::Stale as i32,
                keys: c.keys,
                server_keys: 0,
            });
        }
        return (out, unknown.unlisted);
    };
    let mut out = Vec::new();
    for (name, status) in &crumb.status.clusters {
        let view = status.view(sub);
        let agent = report.clusters.iter().find(|c| c.cluster == name.as_ref());
        if agent.is_none() && view.keys == 0 {
            continue;
        }
        let (keys, same) = match agent {
            Some(a) => (a.keys, a.keys == view.keys && a.digest == view.digest),
            None => (0, false),
        };
        out.push(pb::AgentCluster {
            cluster: name.to_string(),
            state: if same {
                pb::AgentClusterState::Ok
            } else {
                pb::AgentClusterState::Diverged
            } as i32,
            keys,
            server_keys: view.keys,
        });
    }
    // Clusters only the agent holds.
    for c in &report.clusters {
        if c.keys > 0
            && !crumb.status.clusters.contains_key(c.cluster.as_str())
            && unknown.keep(&c.cluster)
        {
            out.push(pb::AgentCluster {
                cluster: c.cluster.clone(),
                state: pb::AgentClusterState::Diverged as i32,
                keys: c.keys,
                server_keys: 0,
            });
        }
    }
    (out, unknown.unlisted)
}

/// The clusters of one report that the server does not have: which to keep by name.
#[derive(Default)]
struct Unknown<'a> {
    seen: HashSet<&'a str>,
    unlisted: u32,
}

impl<'a> Unknown<'a> {
    /// True for the first [`MAX_UNKNOWN_CLUSTERS_KEPT`] distinct names; counts the others (a
    /// repeated name is neither kept again nor counted).
    fn keep(&mut self, name: &'a str) -> bool {
        if !self.seen.insert(name) {
            return false;
        }
        if self.seen.len() <= MAX_UNKNOWN_CLUSTERS_KEPT {
            true
        } else {
            self.unlisted += 1;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(stream_id: u64, clusters: &[&str]) -> pb::AgentReport {
        pb::AgentReport {
            stream_id,
            clusters: clusters
                .iter()
                .map(|c| pb::ClusterDigest {
                    cluster: c.to_string(),
                    keys: 1,
                    digest: 1,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn reports_name_only_clusters_a_server_can_have() {
        assert_eq!(
            check_report(&report(1, &["", "cluster-b", "eu.prod-1"])),
            Ok(())
        );
        let long = "a".repeat(254);
        for bad in ["(local)", "a\nb", "A", " ", "a/b"] {
            assert!(
                matches!(
                    check_report(&report(1, &[bad])),
                    Err(ReportError::NotAClusterName(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            check_report(&report(1, &[&long])),
            Err(ReportError::ClusterNameTooLong { len: 254 })
        );
        let many: Vec<String> = (0..=MAX_REQUIRED_CLUSTERS)
            .map(|i| format!("c{i}"))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(matches!(
            check_report(&report(1, &many)),
            Err(ReportError::TooManyClusters(_))
        ));
        // The refusal quotes the name escaped: it goes back to the client and may be logged.
        let refused = check_report(&report(1, &["x\u{1b}]0;title\u{7}"])).unwrap_err();
        assert!(
            !refused.to_string().chars().any(char::is_control),
            "{refused}"
        );
    }

    #[test]
    fn only_a_few_unknown_clusters_are_kept_by_name() {
        let names: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
        let mut unknown = Unknown::default();
        // Each name twice: a repeat is neither kept again nor counted.
        let kept = names
            .iter()
            .chain(names.iter())
            .filter(|n| unknown.keep(n))
            .count();
        assert_eq!(kept, MAX_UNKNOWN_CLUSTERS_KEPT);
        assert_eq!(unknown.unlisted, 20 - MAX_UNKNOWN_CLUSTERS_KEPT as u32);
    }

    #[tokio::test]
    async fn a_stream_of_no_known_connection_takes_no_report() {
        let cache = SnapshotCache::spawn(
            futures::stream::empty(),
            meshsync_cache::CacheConfig::default(),
        );
        let registry = Arc::new(AgentRegistry::default());
        let agent = registry.register(
            "node".into(),
            "peer".into(),
            Subscription::ALL,
            "grpc",
            None,
        );
        assert_eq!(
            registry.report(&cache, &report(agent.id, &[]), None),
            Err(ReportError::NotOwner(agent.id))
        );
        assert_eq!(
            registry.report(&cache, &report(agent.id + 1, &[]), None),
            Err(ReportError::UnknownStream(agent.id + 1))
        );
        assert_eq!(registry.list(0, MAX_LISTED_AGENTS).len(), 1);
        assert!(registry.list(0, 0).is_empty());
    }
}
