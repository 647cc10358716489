//! One remote cluster's source: started from its [`RemoteConfig`]'s datastore, filtered to the
//! kinds the mesh syncs, and rewritten so a remote cluster can never contribute policy.

use std::collections::HashSet;

use bytes::Bytes;
use futures::StreamExt;
use meshsync_datastore::validate::ValueLimits;
use meshsync_datastore::{Backoff, SourceCommon};
use meshsync_model::{ClusterName, SourceEvent};
use tracing::warn;

use crate::rcc::RemoteConfig;

/// A started source, whichever its driver.
pub use meshsync_datastore::SourceStream;

/// Limits applied to remote sources.
#[derive(Clone, Debug)]
pub struct RemoteLimits {
    pub max_value_bytes: usize,
    /// Counts what the remote sources refuse (shared with the local source and `/metrics`).
    pub counters: std::sync::Arc<meshsync_model::SourceCounters>,
}

impl Default for RemoteLimits {
    fn default() -> Self {
        RemoteLimits {
            max_value_bytes: 1 << 20,
            counters: Default::default(),
        }
    }
}

/// Starts the source for remote cluster `cluster`: its datastore's driver (which retries on its
/// own, so the stream never ends on its own), filtered and rewritten by [`rewrite`].
pub fn start(cluster: &str, config: &RemoteConfig, limits: &RemoteLimits) -> SourceStream {
    let kinds = config.kinds();
    let common = SourceCommon {
        cluster: ClusterName::from(cluster),
        kinds: Some(kinds.clone()),
        limits: ValueLimits::new(limits.max_value_bytes),
        backoff: Backoff::default(),
        counters: limits.counters.clone(),
    };
    let raw = config.datastore.start(common);
    Box::pin(raw.filter_map(move |event| {
        let out = rewrite(event, &kinds);
        async move { out }
    }))
}

/// Keeps only the kinds synced from remote clusters and strips Profiles' rules (a remote
/// cluster's rules must never apply locally; its labels are what policy selects on).
pub fn rewrite(event: SourceEvent, kinds: &HashSet<String>) -> Option<SourceEvent> {
    match event {
        SourceEvent::Upsert {
            key,
            value,
            revision,
        } => {
            if !kinds.contains(key.kind()) {
                return None;
            }
            let value = if key.kind() == "Profile" {
                match strip_rules(&value) {
                    Ok(v) => v,
                    Err(e) => {
                        warn!(key = %key, error = %e, "skipping remote Profile that is not valid JSON");
                        return None;
                    }
                }
            } else {
                value
            };
            Some(SourceEvent::Upsert {
                key,
                value,
                revision,
            })
        }
        SourceEvent::Delete { key, revision } => kinds
            .contains(key.kind())
            .then_some(SourceEvent::Delete { key, revision }),
        SourceEvent::Unreadable { key, reason } => kinds
            .contains(key.kind())
            .then_some(SourceEvent::Unreadable { key, reason }),
        other => Some(other),
    }
}

/// A Profile without `spec.ingress` and `spec.egress`.
fn strip_rules(value: &Bytes) -> Result<Bytes, serde_json::Error> {
    let mut profile: serde_json::Value = serde_json::from_slice(value)?;
    if let Some(spec) = profile.get_mut("spec").and_then(|s| s.as_object_mut()) {
        spec.remove("ingress");
        spec.remove("egress");
    }
    Ok(Bytes::from(serde_json::to_vec(&profile)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshsync_model::ResourceKey;

    #[test]
    fn filters_kinds_and_strips_profile_rules() {
        let kinds: HashSet<String> = ["Profile", "WorkloadEndpoint"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let profile = SourceEvent::Upsert {
            key: ResourceKey::new("b", "Profile", "", "kns.x"),
            value: Bytes::from_static(
                br#"{"kind":"Profile","spec":{"ingress":[{"action":"Allow"}],"egress":[],"labelsToApply":{"a":"b"}}}"#,
            ),
            revision: "1".into(),
        };
        match rewrite(profile, &kinds) {
            Some(SourceEvent::Upsert { value, .. }) => assert_eq!(
                value,
                Bytes::from_static(br#"{"kind":"Profile","spec":{"labelsToApply":{"a":"b"}}}"#)
            ),
            other => panic!("{other:?}"),
        }
        let policy = SourceEvent::Upsert {
            key: ResourceKey::new("b", "GlobalNetworkPolicy", "", "p"),
            value: Bytes::from_static(b"{}"),
            revision: "1".into(),
        };
        assert_eq!(rewrite(policy, &kinds), None);
    }
}
