//! The lost-cluster policy: what a remote's connection reports does to its data.
//!
//! `keep` (Calico's behaviour) serves a lost cluster's last data; `withdraw` deletes it once the
//! cluster has been lost for its grace period (the relist on reconnect restores it), and every
//! later failure says so.

use futures::Stream;
use meshsync_model::{ClusterName, SourceEvent, SourceStatus};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::manager::RemoteClusterManager;
use crate::rcc::LostClusterPolicy;
use crate::state::{Link, RemoteState};

impl<L> RemoteClusterManager<L>
where
    L: Stream<Item = SourceEvent> + Unpin + Send,
{
    /// An event from a remote's source: its status moves the remote's [`Link`]; everything goes
    /// on to the cache.
    pub(crate) fn on_remote(&mut self, cluster: &str, mut event: SourceEvent) {
        let Some(remote) = self.remotes.get_mut(cluster) else {
            return;
        };
        // While its data is withdrawn, every failure says so (not only the first one).
        if remote.is_withdrawn()
            && let SourceEvent::Status {
                status: SourceStatus::ConnectionFailed(reason),
                ..
            } = &mut event
        {
            *reason = withdrawn_reason(reason);
        }
        if let SourceEvent::ResyncStart { .. } = &event
            && let RemoteState::Running {
                link: Link::Withdrawn { relisting },
                ..
            } = &mut remote.state
        {
            *relisting = true;
        }
        if let SourceEvent::Status { status, .. } = &event
            && let RemoteState::Running { config, link } = &mut remote.state
        {
            match status {
                SourceStatus::InSync => {
                    let resumed_without_data = matches!(link, Link::Withdrawn { relisting: false });
                    *link = Link::Up;
                    if resumed_without_data {
                        // Its source resumed its watches without listing: the withdrawn data
                        // comes back only with a full listing, so start the source anew.
                        info!(
                            cluster,
                            "remote cluster is back; restarting its source to restore its withdrawn data"
                        );
                        let stream = crate::remote::start(cluster, config, &self.config.limits);
                        self.sources
                            .insert(cluster.to_string(), crate::manager::supervised(stream));
                        return;
                    }
                    self.release(cluster);
                }
                SourceStatus::ConnectionFailed(reason) => {
                    warn!(cluster, error = %reason, "Sending connection failed update for RemoteClusterConfiguration({cluster})");
                    *link = match std::mem::replace(link, Link::Up) {
                        Link::Up => Link::Lost {
                            reason: reason.clone(),
                            withdraw_at: match config.policy {
                                LostClusterPolicy::Withdraw { grace } => {
                                    Some(Instant::now() + grace)
                                }
                                LostClusterPolicy::Keep => None,
                            },
                        },
                        Link::Lost { withdraw_at, .. } => Link::Lost {
                            reason: reason.clone(),
                            withdraw_at,
                        },
                        Link::Withdrawn { .. } => Link::Withdrawn { relisting: false },
                    };
                    self.release(cluster);
                }
                SourceStatus::ResyncInProgress | SourceStatus::Connecting => {}
                SourceStatus::ConfigIncomplete(_) => self.release(cluster),
            }
        }
        self.out.push_back(event);
    }

    /// Applies the `withdraw` policy to clusters lost for longer than their grace period.
    pub(crate) fn withdraw_due(&mut self) {
        let now = Instant::now();
        for (name, remote) in &mut self.remotes {
            let RemoteState::Running { link, .. } = &mut remote.state else {
                continue;
            };
            let reason = match link {
                Link::Lost {
                    reason,
                    withdraw_at: Some(at),
                } if *at <= now => std::mem::take(reason),
                _ => continue,
            };
            *link = Link::Withdrawn { relisting: false };
            warn!(cluster = %name, "remote cluster lost for longer than its grace period; withdrawing its data (lost-cluster policy withdraw)");
            let cluster: ClusterName = name.as_str().into();
            self.out.push_back(SourceEvent::ResyncStart {
                cluster: cluster.clone(),
            });
            self.out.push_back(SourceEvent::ResyncDone {
                cluster: cluster.clone(),
            });
            self.out.push_back(SourceEvent::Status {
                cluster,
                status: SourceStatus::ConnectionFailed(withdrawn_reason(&reason)),
            });
        }
    }
}

/// A lost cluster's failure reason, announcing that its data was withdrawn.
fn withdrawn_reason(reason: &str) -> String {
    const SUFFIX: &str = "; data withdrawn (lost-cluster policy withdraw)";
    if reason.ends_with(SUFFIX) {
        reason.to_string()
    } else {
        format!("{reason}{SUFFIX}")
    }
}
