//! Probing failed resources, so the cluster's status recovers.
//!
//! A watcher reports its errors but not its recovery: a resumed watch emits nothing until
//! something changes, so a cluster whose RBAC was fixed would stay `ConnectionFailed` until the
//! next change of that resource. While any resource is failed, the source therefore probes each
//! failed one every [`KubeSourceConfig::probe_interval`](super::KubeSourceConfig) with what its
//! watcher needs (a one-item LIST and a WATCH start); the ones that pass are no longer failed.
//! Secrets watched by name are not probed: they never fail the cluster (see [`super::secrets`]).

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams, WatchParams};
use tracing::info;

use super::running::{Closed, Running};
use super::watched::Target;

/// How long one probe may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

impl Running<'_> {
    /// Probes every failed resource; the ones that pass are no longer failed.
    pub(super) async fn probe_failed(&mut self) -> Result<(), Closed> {
        let failed: Vec<usize> = self
            .watched
            .iter()
            .filter(|(_, w)| w.failed.is_some() && matches!(*w.target, Target::Resource(_)))
            .map(|(id, _)| *id)
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        let mut changed = false;
        for id in failed {
            let Some(target) = self.watched.get(&id).map(|w| Arc::clone(&w.target)) else {
                continue;
            };
            let api = self.api(&target);
            let ok = tokio::time::timeout(PROBE_TIMEOUT, probe(&api))
                .await
                .unwrap_or(false);
            if ok && let Some(w) = self.watched.get_mut(&id) {
                w.failed = None;
                changed = true;
                info!(cluster = %self.cluster(), resource = %self.label(id), "the API answers again");
            }
        }
        if changed {
            self.update_status().await?;
        }
        Ok(())
    }
}

/// True if the API lets us list and watch through `api` (what a watcher needs).
async fn probe(api: &Api<DynamicObject>) -> bool {
    if api
        .list_metadata(&ListParams::default().limit(1))
        .await
        .is_err()
    {
        return false;
    }
    api.watch_metadata(&WatchParams::default().timeout(1), "0")
        .await
        .is_ok()
}
