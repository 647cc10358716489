//! The registry of connected agents and what each says it holds.
//!
//! Every stream registers when it opens (and leaves when it ends); its agent reports, after every
//! in-sync and then periodically, its per-cluster key counts and digests at a cut (`Report`). The
//! report is judged at once against the server's own state at that seq — the retained breadcrumb
//! of exactly that seq, as the agent's subscription sees it — so `Status` with agents reads a
//! verdict, never recomputes one. Written by every connection task and read by `Status` and the
//! metrics: a concurrent map (`dashmap`), no global lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use meshsync_cache::{SnapshotCache, Subscription};
use meshsync_proto as pb;

/// A report older than this makes an `OK` agent `STALE` (agents report every 30 s by default).
pub const REPORT_STALE_AFTER: Duration = Duration::from_secs(90);

/// What the server knows of one connected agent.
struct AgentRecord {
    node: String,
    peer: String,
    sub: Subscription,
    report: Option<Judged>,
}

/// A report and the verdict on it.
struct Judged {
    seq: u64,
    at: Instant,
    clusters: Vec<pb::AgentCluster>,
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
    #[error("a report names at most {0} clusters")]
    TooManyClusters(usize),
}

impl AgentRegistry {
    /// Registers a new stream's agent; `node` is already escaped for display.
    pub(crate) fn register(
        self: &Arc<Self>,
        node: String,
        peer: String,
        sub: Subscription,
    ) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.agents.insert(
            id,
            AgentRecord {
                node,
                peer,
                sub,
                report: None,
            },
        );
        Registered {
            registry: self.clone(),
            id,
        }
    }

    /// Takes a report and judges it against `cache`.
    pub(crate) fn report(
        &self,
        cache: &SnapshotCache,
        report: &pb::AgentReport,
    ) -> Result<(), ReportError> {
        if report.clusters.len() > crate::service::MAX_REQUIRED_CLUSTERS {
            return Err(ReportError::TooManyClusters(
                crate::service::MAX_REQUIRED_CLUSTERS,
            ));
        }
        let mut record = self
            .agents
            .get_mut(&report.stream_id)
            .ok_or(ReportError::UnknownStream(report.stream_id))?;
        let clusters = judge(cache, record.sub, report);
        record.report = Some(Judged {
            seq: report.seq,
            at: Instant::now(),
            clusters,
        });
        Ok(())
    }

    /// Every connected agent, for `Status` (sorted by node name, then stream).
    pub(crate) fn list(&self, head_seq: u64) -> Vec<pb::AgentInfo> {
        let mut out: Vec<pb::AgentInfo> = self
            .agents
            .iter()
            .map(|entry| {
                let (id, a) = (*entry.key(), entry.value());
                let (reported_seq, age, clusters) = match &a.report {
                    None => (0, None, Vec::new()),
                    Some(j) => {
                        let age = j.at.elapsed();
                        let clusters = j
                            .clusters
                            .iter()
                            .cloned()
                            .map(|mut c| {
                                if age > REPORT_STALE_AFTER
                                    && c.state == pb::AgentClusterState::Ok as i32
                                {
                                    c.state = pb::AgentClusterState::Stale as i32;
                                }
                                c
                            })
                            .collect();
                        (j.seq, Some(age), clusters)
                    }
                };
                pb::AgentInfo {
                    node_name: a.node.clone(),
                    peer: a.peer.clone(),
                    subscription: a.sub.name().to_string(),
                    stream_id: id,
                    reported_seq,
                    lag: head_seq.saturating_sub(reported_seq),
                    report_age_ms: age.map(|a| a.as_millis() as u64).unwrap_or(0),
                    clusters,
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.node_name, a.stream_id).cmp(&(&b.node_name, b.stream_id)));
        out
    }

    /// Agents whose last report disagreed with the server on some cluster.
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

/// Per cluster: `OK` when the agent's keys and digest equal the server's at the reported seq,
/// `DIVERGED` when they differ (a cluster the server had then and the agent did not report is
/// one too), `STALE` when the server cannot tell (another epoch, a seq it no longer retains or
/// that does not end a breadcrumb).
fn judge(
    cache: &SnapshotCache,
    sub: Subscription,
    report: &pb::AgentReport,
) -> Vec<pb::AgentCluster> {
    let crumb = (report.epoch == cache.epoch())
        .then(|| cache.resume_point(report.seq))
        .flatten()
        .filter(|c| c.seq == report.seq);
    let Some(crumb) = crumb else {
        return report
            .clusters
            .iter()
            .map(|c| pb::AgentCluster {
                cluster: c.cluster.clone(),
                state: pb::AgentClusterState::Stale as i32,
                keys: c.keys,
                server_keys: 0,
            })
            .collect();
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
        if !crumb
            .status
            .clusters
            .keys()
            .any(|n| n.as_ref() == c.cluster)
            && c.keys > 0
        {
            out.push(pb::AgentCluster {
                cluster: c.cluster.clone(),
                state: pb::AgentClusterState::Diverged as i32,
                keys: c.keys,
                server_keys: 0,
            });
        }
    }
    out
}
